/**
 * User-slot claims under load: against a store reached over real TCP (a StoreClient to a
 * StoreServer on 127.0.0.1), a burst of concurrent claims gets a slot for every claim while the DC
 * has free ones, and EDVSNOSPC only once it truly has none; a cache that does not show a release yet
 * does not make a claim fail. Claims take a timeout and an abort signal: with the store stopped they
 * fail EDVSTIMEDOUT or EDVSINTR on time, and what they left in flight is undone once it lands; a
 * fixed-slot claim can ask for an exact generation.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Directory } from '../../src/cluster/directory.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { StoreClient } from '../../src/cluster/store-client.js';
import { StoreServer } from '../../src/cluster/store-server.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits, type DcLimits } from '../../src/ipc/limits.js';
import { SimClock } from '../../src/sim/sim-clock.js';
import { advance, codeOf, FaultyStore, until } from './helpers.js';

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

/** How long `p` takes to settle, and its error code. */
async function timed(p: Promise<unknown>): Promise<{ code: string; ms: number }> {
  const started = Date.now();
  const code = await codeOf(p);
  return { code, ms: Date.now() - started };
}

describe('claims with a timeout and an abort signal', () => {
  it('with the store stopped: EDVSTIMEDOUT at the timeout, EDVSINTR at the abort; once it is back nothing is left half-done', async () => {
    const store = new MemoryStore();
    closers.push(() => store.close());
    const first = new StoreServer({ clusterKey: KEY, store });
    const { port } = await first.listen();
    const client = await StoreClient.connect({ port, clusterKey: KEY, reconnectMinMs: 10, reconnectMaxMs: 100 });
    closers.push(() => client.close());
    const d = new Directory(client, { claimTimeoutMs: 700 });
    closers.push(() => d.close());
    d.on('error', () => undefined);
    await d.registerNode(node(1), 60_000);
    await d.createDc({ dcid: 0, nodes: [1] });
    const pool = await d.reserveRange(0, 1);
    const own = pool[0]!;
    await first.close();

    const fixed = await timed(d.claimEndpoint(0, 1, { slot: 7, timeoutMs: 500 }));
    expect(fixed.code).toBe('EDVSTIMEDOUT');
    expect(fixed.ms).toBeGreaterThanOrEqual(450);
    expect(fixed.ms).toBeLessThan(3000);
    const fromPool = await timed(d.claimEndpoint(0, 1, { slot: own, timeoutMs: 500 }));
    expect(fromPool.code).toBe('EDVSTIMEDOUT');
    expect(fromPool.ms).toBeLessThan(3000);
    const byDefault = await timed(d.claimEndpoint(0, 1, { slot: 9 }));
    expect(byDefault.code).toBe('EDVSTIMEDOUT');
    expect(byDefault.ms).toBeGreaterThanOrEqual(650);
    expect(byDefault.ms).toBeLessThan(3000);
    const abort = new AbortController();
    const aborted = timed(d.claimEndpoint(0, 1, { slot: 8, timeoutMs: -1, signal: abort.signal }));
    setTimeout(() => abort.abort(), 100);
    expect((await aborted).code).toBe('EDVSINTR');
    expect((await aborted).ms).toBeLessThan(1500);
    const already = new AbortController();
    already.abort();
    expect((await timed(d.claimEndpoint(0, 1, { slot: 10, signal: already.signal }))).code).toBe('EDVSINTR');

    // The store comes back with its data.
    const again = new StoreServer({ clusterKey: KEY, store, port });
    closers.push(() => again.close());
    await again.listen();
    await client.whenReady(5000);
    // Whatever the abandoned claims' writes did once they reached the store is undone: no endpoint
    // published, the pool's slot either back in the pool or consumed by a publication undone.
    const settled = (): boolean =>
      store.rangeSync('/dvs/dcs/0/eps/').entries.length === 0 && (d.reservedSlots(0, 1).includes(own) || store.getSync(`/dvs/dcs/0/resv/${own}`) === undefined);
    await until(settled, 15_000, 'the abandoned claims undone');
    for (const slot of [7, 8, 9, 10, own]) {
      const ep = await d.claimEndpoint(0, 1, { slot });
      expect(d.lookup(0, ep)?.node).toBe(1);
    }
    expect(store.rangeSync('/dvs/dcs/0/eps/').entries).toHaveLength(5);
  }, 30_000);

  it('a claim whose write lands after it gave up is undone, and the slot’s next claim gets the next generation', async () => {
    const store = new MemoryStore();
    closers.push(() => store.close());
    const slow = new FaultyStore(store);
    const d = new Directory(slow);
    closers.push(() => d.close());
    await d.registerNode(node(1), 60_000);
    await d.createDc({ dcid: 0, nodes: [1] });
    const seen: string[] = [];
    d.on('endpoint', (e) => seen.push(`${e.type}:${e.endpoint.slot}:${e.endpoint.generation}`));
    slow.delayMs = 300;
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: 9, timeoutMs: 100 }))).toBe('EDVSTIMEDOUT');
    await until(() => seen.length === 2, 5000, 'the late write landed and was undone');
    expect(seen).toEqual(['bound:9:0', 'unbound:9:0']);
    expect(store.getSync('/dvs/dcs/0/eps/9')).toBeUndefined();
    slow.delayMs = 0;
    const ep = await d.claimEndpoint(0, 1, { slot: 9 });
    expect(d.lookup(0, ep)?.generation).toBe(1);
  });
});

describe('claiming an exact generation', () => {
  it('gets it when it is the slot’s next, EDVSENDPOINT otherwise; bad options are EDVSINVAL', async () => {
    const clock = new SimClock();
    const store = new MemoryStore({ clock });
    closers.push(() => store.close());
    const d = new Directory(store, { clock });
    closers.push(() => d.close());
    await d.registerNode(node(1), 60_000);
    await d.createDc({ dcid: 0, nodes: [1] });
    const space = new EndpointSpace(resolveDcLimits());
    const e0 = await d.claimEndpoint(0, 1, { slot: 4, generation: 0 });
    expect(e0).toBe(space.make(0, 4));
    await d.releaseEndpoint(0, e0);
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: 4, generation: 0 }))).toBe('EDVSENDPOINT');
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: 4, generation: 2 }))).toBe('EDVSENDPOINT');
    expect(await d.claimEndpoint(0, 1, { slot: 4, generation: 1 })).toBe(space.make(1, 4));
    // A slot of the node's own pool: its next generation is the one reserved.
    const [own, other] = await d.reserveRange(0, 1);
    const reserved = d.generation(0, own!);
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: own!, generation: reserved + 1 }))).toBe('EDVSENDPOINT');
    expect(d.reservedSlots(0, 1)).toContain(own);
    expect(await d.claimEndpoint(0, 1, { slot: own!, generation: reserved })).toBe(space.make(reserved, own!));
    expect(await d.claimEndpoint(0, 1, { slot: other! })).toBe(space.make(d.generation(0, other!), other!));
    expect(await codeOf(d.claimEndpoint(0, 1, { generation: 0 }))).toBe('EDVSINVAL'); // no slot
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: 5, generation: -1 }))).toBe('EDVSINVAL');
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: 5, timeoutMs: -2 }))).toBe('EDVSINVAL');
    expect(await codeOf(d.claimEndpoint(0, 1, { slot: 5, timeoutMs: 1.5 }))).toBe('EDVSINVAL');
  });
});
