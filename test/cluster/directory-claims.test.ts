/**
 * User-slot claims under load: against a store reached over real TCP (a StoreClient to a
 * StoreServer on 127.0.0.1), a burst of concurrent claims gets a slot for every claim while the DC
 * has free ones, and EDVSNOSPC only once it truly has none; a cache that does not show a release yet
 * does not make a claim fail.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Directory } from '../../src/cluster/directory.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { StoreClient } from '../../src/cluster/store-client.js';
import { StoreServer } from '../../src/cluster/store-server.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits, type DcLimits } from '../../src/ipc/limits.js';
import { SimClock } from '../../src/sim/sim-clock.js';
import { advance, FaultyStore } from './helpers.js';

const KEY = 'directory-claims-test-key-0123456789';
const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function node(id: number): { nodeId: number; host: string; port: number } {
  return { nodeId: id, host: '127.0.0.1', port: 7000 + id };
}

async function tcpStore(): Promise<{ server: StoreServer; client: StoreClient }> {
  const server = new StoreServer({ clusterKey: KEY });
  closers.push(() => server.close());
  const { port } = await server.listen();
  const client = await StoreClient.connect({ port, clusterKey: KEY, reconnectMinMs: 10, reconnectMaxMs: 100 });
  closers.push(() => client.close());
  return { server, client };
}

function directory(store: StoreClient): Directory {
  const d = new Directory(store);
  closers.push(() => d.close());
  return d;
}

/** Settles every claim: the endpoints of those that succeeded, and the codes of those that failed. */
async function settle(claims: Promise<number>[]): Promise<{ endpoints: number[]; codes: string[] }> {
  const results = await Promise.allSettled(claims);
  const endpoints: number[] = [];
  const codes: string[] = [];
  for (const r of results) {
    if (r.status === 'fulfilled') endpoints.push(r.value);
    else codes.push((r.reason as { code?: string }).code ?? String(r.reason));
  }
  return { endpoints, codes };
}

function userSlots(limits: DcLimits): number {
  return limits.nrProcs - (limits.nrSysProcs - limits.nrTasks);
}

describe('concurrent user-slot claims over a TCP store', () => {
  it('100 at once in a DC with enough free slots: every one succeeds, every endpoint distinct', async () => {
    const { server, client } = await tcpStore();
    const d = directory(client);
    await d.registerNode(node(1), 10_000);
    await d.createDc({ dcid: 0, nodes: [1] });
    expect(userSlots(resolveDcLimits())).toBeGreaterThan(100);
    const { endpoints, codes } = await settle(Array.from({ length: 100 }, (_, i) => d.claimEndpoint(0, 1, { name: `c${i}` })));
    expect(codes).toEqual([]);
    expect(new Set(endpoints).size).toBe(100);
    await d.flush();
    expect(d.endpoints(0)).toHaveLength(100);
    expect(server.store.rangeSync('/dvs/dcs/0/eps/').entries).toHaveLength(100);
  });

  it('with exactly N free user slots, exactly N of many concurrent claims succeed and the rest fail EDVSNOSPC', async () => {
    const { server, client } = await tcpStore();
    const d = directory(client);
    await d.registerNode(node(1), 10_000);
    const limits = { nrNodes: 4, nrProcs: 50, nrSysProcs: 16 };
    await d.createDc({ dcid: 0, nodes: [1], limits });
    const n = userSlots(resolveDcLimits(limits));
    expect(n).toBe(42);
    const { endpoints, codes } = await settle(Array.from({ length: 100 }, () => d.claimEndpoint(0, 1)));
    expect(endpoints).toHaveLength(n);
    expect(codes).toEqual(Array.from({ length: 100 - n }, () => 'EDVSNOSPC'));
    const space = new EndpointSpace(resolveDcLimits(limits));
    expect(new Set(endpoints.map((e) => space.slotOf(e))).size).toBe(n);
    await d.flush();
    expect(server.store.rangeSync('/dvs/dcs/0/eps/').entries).toHaveLength(n);
    expect(server.store.rangeSync('/dvs/dcs/0/resv/').entries).toHaveLength(0);
  });
});

describe('a full DC as the cache sees it', () => {
  it('is checked against a fresh read before a claim fails EDVSNOSPC', async () => {
    const clock = new SimClock();
    const store = new MemoryStore({ clock });
    closers.push(() => store.close());
    const stale = new FaultyStore(store);
    const a = new Directory(stale, { clock });
    const b = new Directory(store, { clock });
    closers.push(() => a.close(), () => b.close());
    a.on('error', () => undefined);
    await a.registerNode(node(1), 60_000);
    await b.registerNode(node(2), 60_000);
    // 8 task slots, 16 system slots: user slots 8..11, all claimed by node 2.
    const limits = { nrNodes: 4, nrProcs: 12, nrSysProcs: 16 };
    await b.createDc({ dcid: 0, nodes: [1, 2], limits });
    const eps: number[] = [];
    for (let i = 0; i < 4; i++) eps.push(await b.claimEndpoint(0, 2));
    await b.flush();
    await a.waitForRevision(store.revision);
    expect(a.endpoints(0)).toHaveLength(4);
    // a's watch ends (its resync waits for the virtual clock): it does not see the release.
    stale.endWatches('EDVSRANGE');
    await b.releaseEndpoint(0, eps[1]!);
    expect(a.endpoints(0)).toHaveLength(4);
    const claim = a.claimEndpoint(0, 1);
    let settled = false;
    claim.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (let i = 0; i < 200 && !settled; i++) await advance(clock, 10);
    const ep = await claim;
    const space = new EndpointSpace(resolveDcLimits(limits));
    expect(space.slotOf(ep)).toBe(space.slotOf(eps[1]!));
    expect(space.generationOf(ep)).toBe(space.generationOf(eps[1]!) + 1);
  });
});
