/**
 * The cluster directory on a coordination store: two directories (two daemons) see each other's
 * nodes, DCs and endpoints through their caches; fixed-slot claims conflict with EDVSSLOTUSED;
 * per-node ranges never hand the same slot to two nodes and need no store round trip; generations
 * only increase, across releases and node restarts; a dead node's lease expiry removes its endpoints
 * from every cache; lookups never touch the store; a cache whose watch ended resynchronises; and the
 * whole thing works over the embedded TCP backend.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Directory, type DcEvent, type EndpointEvent, type NodeEvent } from '../../src/cluster/directory.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { StoreClient } from '../../src/cluster/store-client.js';
import { StoreServer } from '../../src/cluster/store-server.js';
import type { CoordinationStore } from '../../src/cluster/store.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits } from '../../src/ipc/limits.js';
import { SimClock } from '../../src/sim/sim-clock.js';
import { advance, codeOf, FaultyStore, until } from './helpers.js';

const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function world(): { clock: SimClock; store: MemoryStore; dir: (store?: CoordinationStore) => Directory } {
  const clock = new SimClock();
  const store = new MemoryStore({ clock });
  closers.push(() => store.close());
  const dir = (s: CoordinationStore = store): Directory => {
    const d = new Directory(s, { clock });
    closers.push(() => d.close({ revoke: false }));
    return d;
  };
  return { clock, store, dir };
}

function node(id: number): { nodeId: number; host: string; port: number } {
  return { nodeId: id, host: '127.0.0.1', port: 7000 + id };
}

function record<T>(d: Directory, name: 'node' | 'dc' | 'endpoint'): T[] {
  const out: T[] = [];
  d.on(name, (e) => out.push(e as T));
  return out;
}

const SPACE = new EndpointSpace(resolveDcLimits());

describe('two directories on one store', () => {
  it('see each other’s nodes, DCs and endpoints through their caches', async () => {
    const { dir } = world();
    const a = dir();
    const b = dir();
    const bNodes = record<NodeEvent>(b, 'node');
    const bDcs = record<DcEvent>(b, 'dc');
    const bEps = record<EndpointEvent>(b, 'endpoint');
    await a.start();
    await b.start();
    const na = await a.registerNode(node(1), 3000);
    await b.registerNode({ ...node(2), meta: { admin: 8080 } }, 3000);
    expect(na.incarnation).toBe(1);
    expect(a.nodes().map((n) => [n.nodeId, n.incarnation])).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(b.node(1)).toMatchObject({ host: '127.0.0.1', port: 7001 });
    expect(a.node(2)?.meta).toEqual({ admin: 8080 });
    expect(bNodes.map((e) => `${e.type}:${e.node.nodeId}`)).toEqual(['up:1', 'up:2']);

    await a.createDc({ dcid: 5, name: 'web', nodes: [1, 2] });
    expect(b.dc(5)).toMatchObject({ dcid: 5, name: 'web', nodes: [1, 2] });
    expect(b.dcs().map((d) => d.dcid)).toEqual([5]);
    expect(bDcs).toMatchObject([{ type: 'created', dc: { dcid: 5 } }]);

    const pm = await a.claimEndpoint(5, 1, { slot: 0, name: 'pm' });
    expect(pm).toBe(0); // generation 0 of slot 0
    const user = await b.claimEndpoint(5, 2, { name: 'shell' });
    await b.flush();
    expect(a.lookup(5, user)).toMatchObject({ node: 2, name: 'shell', generation: SPACE.generationOf(user) });
    expect(b.findByName(5, 'pm')).toMatchObject({ endpoint: pm, node: 1, slot: 0 });
    expect(a.endpoints(5).map((e) => e.name)).toEqual(['pm', 'shell']);
    expect(bEps.map((e) => `${e.type}:${e.endpoint.name}`)).toEqual(['bound:pm', 'bound:shell']);

    await a.releaseEndpoint(5, pm);
    expect(b.findByName(5, 'pm')).toBeUndefined();
    expect(bEps.at(-1)).toMatchObject({ type: 'unbound', endpoint: { endpoint: pm } });
  });

  it('manages DCs and their members with the documented errors', async () => {
    const { dir } = world();
    const a = dir();
    const b = dir();
    await b.start();
    const bDcs = record<DcEvent>(b, 'dc');
    await a.createDc({ dcid: 1, nodes: [0] });
    expect(await codeOf(a.createDc({ dcid: 1 }))).toBe('EDVSDCRUN');
    expect(await codeOf(b.createDc({ dcid: 1 }))).toBe('EDVSDCRUN');
    expect(await codeOf(a.createDc({ dcid: 70000 }))).toBe('EDVSBADDCID');
    expect(await codeOf(a.createDc({ dcid: 2, nodes: [99] }))).toBe('EDVSBADNODEID');
    expect(await codeOf(a.createDc({ dcid: 2, name: 'n'.repeat(33) }))).toBe('EDVSNAMESIZE');
    expect(await codeOf(a.createDc({ dcid: 2, limits: { nrProcs: 0 } }))).toBe('EDVSBADVALUE');
    expect((await a.addNode(1, 3)).nodes).toEqual([0, 3]);
    expect(await codeOf(b.addNode(1, 3))).toBe('EDVSDCNODE');
    expect(await codeOf(b.removeNode(1, 7))).toBe('EDVSNODCNODE');
    expect(await codeOf(b.addNode(9, 1))).toBe('EDVSBADDCID');
    expect((await b.removeNode(1, 0)).nodes).toEqual([3]);
    expect(a.dc(1)?.nodes).toEqual([3]);
    await b.removeDc(1);
    expect(await codeOf(a.removeDc(1))).toBe('EDVSBADDCID');
    expect(a.dc(1)).toBeUndefined();
    expect(bDcs.map((e) => e.type)).toEqual(['created', 'changed', 'changed', 'removed']);
    expect(bDcs[1]).toMatchObject({ dc: { nodes: [0, 3] }, previous: { nodes: [0] } });
  });

  it('announces what already exists when a directory starts: nodes, then DCs, then endpoints', async () => {
    const { dir } = world();
    const a = dir();
    await a.registerNode(node(1), 3000);
    await a.createDc({ dcid: 3, nodes: [1] });
    await a.claimEndpoint(3, 1, { slot: 2, name: 'ds' });
    const late = dir();
    const order: string[] = [];
    late.on('node', (e) => order.push(`node:${e.node.nodeId}`));
    late.on('dc', (e) => order.push(`dc:${e.dc.dcid}`));
    late.on('endpoint', (e) => order.push(`ep:${e.endpoint.name}`));
    await late.start();
    expect(order).toEqual(['node:1', 'dc:3', 'ep:ds']);
  });
});

describe('claiming endpoints', () => {
  it('a fixed slot: EDVSSLOTUSED while taken, the next generation after every release', async () => {
    const { dir } = world();
    const a = dir();
    const b = dir();
    await a.registerNode(node(1), 3000);
    await b.registerNode(node(2), 3000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    const e0 = await a.claimEndpoint(0, 1, { slot: 4, name: 'fs' });
    expect(await codeOf(b.claimEndpoint(0, 2, { slot: 4, name: 'fs' }))).toBe('EDVSSLOTUSED');
    expect(await codeOf(a.claimEndpoint(0, 1, { slot: 4 }))).toBe('EDVSSLOTUSED');
    await a.releaseEndpoint(0, e0);
    expect(await codeOf(a.releaseEndpoint(0, e0))).toBe('EDVSNOTBIND');
    const e1 = await b.claimEndpoint(0, 2, { slot: 4, name: 'fs' });
    expect(await codeOf(a.releaseEndpoint(0, e0))).toBe('EDVSENDPOINT'); // the slot holds a newer generation
    await b.releaseEndpoint(0, e1);
    const e2 = await a.claimEndpoint(0, 1, { slot: 4 });
    expect([e0, e1, e2].map((e) => SPACE.generationOf(e))).toEqual([0, 1, 2]);
    expect([e0, e1, e2].map((e) => SPACE.slotOf(e))).toEqual([4, 4, 4]);
    expect(b.generation(0, 4)).toBe(2);
    // Task slots too (SYSTASK of node 1), but never KERNEL, nor outside the DC.
    expect(await a.claimEndpoint(0, 1, { slot: SPACE.systask(1) })).toBe(SPACE.systask(1));
    expect(await codeOf(a.claimEndpoint(0, 1, { slot: -1 }))).toBe('EDVSBADPROC');
    expect(await codeOf(a.claimEndpoint(0, 1, { slot: 5000 }))).toBe('EDVSRANGE');
    expect(await codeOf(a.claimEndpoint(0, 1, { slot: 6, name: 'x'.repeat(40) }))).toBe('EDVSNAMESIZE');
    expect(await codeOf(a.claimEndpoint(0, 2, { slot: 6 }))).toBe('EDVSNONODE'); // node 2 is b's
    expect(await codeOf(a.claimEndpoint(9, 1, { slot: 6 }))).toBe('EDVSBADDCID');
    await a.createDc({ dcid: 1, nodes: [2] });
    expect(await codeOf(a.claimEndpoint(1, 1, { slot: 6 }))).toBe('EDVSNODCNODE');
  });

  it('a claim of a slot this directory is still releasing waits for the release (a server restarting at once)', async () => {
    const { dir } = world();
    const a = dir();
    await a.registerNode(node(1), 3000);
    await a.createDc({ dcid: 0, nodes: [1] });
    for (let round = 0; round < 5; round++) {
      const old = await a.claimEndpoint(0, 1, { slot: 4, name: 'fs' });
      // The daemon starts the release when the process unbinds and does not wait for it.
      const released = a.releaseEndpoint(0, old);
      const again = await a.claimEndpoint(0, 1, { slot: 4, name: 'fs' });
      await released;
      expect(SPACE.generationOf(again)).toBe(SPACE.generationOf(old) + 1);
      expect(a.lookup(0, again)).toMatchObject({ node: 1, name: 'fs' });
      await a.releaseEndpoint(0, again);
    }
  });

  it('concurrent claims of one slot: exactly one wins', async () => {
    const { dir } = world();
    const dirs = [dir(), dir(), dir(), dir()];
    for (let i = 0; i < dirs.length; i++) await dirs[i]!.registerNode(node(i), 3000);
    await dirs[0]!.createDc({ dcid: 0, nodes: [0, 1, 2, 3] });
    const results = await Promise.allSettled(dirs.map((d, i) => d.claimEndpoint(0, i, { slot: 7 })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('EDVSSLOTUSED');
  });

  it('user slots come from per-node ranges: never the same slot on two nodes', async () => {
    const { dir, store } = world();
    const a = dir();
    const b = dir();
    await a.registerNode(node(1), 3000);
    await b.registerNode(node(2), 3000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    const claims = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? a.claimEndpoint(0, 1) : b.claimEndpoint(0, 2)).then((ep) => ({ ep, node: i % 2 === 0 ? 1 : 2 }))),
    );
    await a.flush();
    await b.flush();
    const slots = claims.map((c) => SPACE.slotOf(c.ep));
    expect(new Set(slots).size).toBe(60);
    const firstUser = resolveDcLimits().nrSysProcs - resolveDcLimits().nrTasks;
    for (const s of slots) expect(s).toBeGreaterThanOrEqual(firstUser);
    for (const c of claims) expect(a.lookup(0, c.ep)?.node).toBe(c.node);
    expect(b.endpoints(0)).toHaveLength(60);
    // Every published endpoint left its reservation; the unused rest of each range is still reserved.
    const resv = (await store.getPrefix('/dvs/dcs/0/resv/')).entries;
    expect(resv.length).toBe(a.reservedSlots(0, 1).length + b.reservedSlots(0, 2).length);
    expect(resv.length).toBeGreaterThan(0);
  });

  it('a pool claim needs no store round trip', async () => {
    const store = new MemoryStore();
    closers.push(() => store.close());
    const slow = new FaultyStore(store);
    const d = new Directory(slow);
    closers.push(() => d.close());
    await d.registerNode(node(1), 5000);
    await d.createDc({ dcid: 0, nodes: [1] });
    expect(await d.reserveRange(0, 1)).toHaveLength(16);
    slow.delayMs = 200;
    const started = Date.now();
    const eps: number[] = [];
    for (let i = 0; i < 10; i++) eps.push(await d.claimEndpoint(0, 1, { name: `c${i}` }));
    expect(Date.now() - started).toBeLessThan(150); // less than one round trip for all ten
    expect(new Set(eps).size).toBe(10);
    await d.flush();
    expect(d.endpoints(0).map((e) => e.name)).toEqual(Array.from({ length: 10 }, (_, i) => `c${i}`));
  });

  it('EDVSNOSPC when the DC has no free user slot left', async () => {
    const { dir } = world();
    const a = dir();
    await a.registerNode(node(1), 3000);
    // 8 task slots, 16 system slots: user slots 8..11.
    await a.createDc({ dcid: 0, nodes: [1], limits: { nrNodes: 4, nrProcs: 12, nrSysProcs: 16 } });
    const eps = [];
    for (let i = 0; i < 4; i++) eps.push(await a.claimEndpoint(0, 1));
    expect(eps.map((e) => new EndpointSpace(a.dc(0)!.limits).slotOf(e)).sort((x, y) => x - y)).toEqual([8, 9, 10, 11]);
    expect(await codeOf(a.claimEndpoint(0, 1))).toBe('EDVSNOSPC');
    await a.flush();
    await a.releaseEndpoint(0, eps[2]!);
    const again = await a.claimEndpoint(0, 1);
    const space = new EndpointSpace(a.dc(0)!.limits);
    expect(space.slotOf(again)).toBe(space.slotOf(eps[2]!));
    expect(space.generationOf(again)).toBe(space.generationOf(eps[2]!) + 1);
  });

  it('generations keep increasing across a node restart', async () => {
    const { dir, clock } = world();
    const first = dir();
    await first.registerNode(node(1), 1000);
    await first.createDc({ dcid: 0, nodes: [1] });
    const before = new Map<number, number>();
    for (let i = 0; i < 20; i++) {
      const ep = await first.claimEndpoint(0, 1);
      before.set(SPACE.slotOf(ep), SPACE.generationOf(ep));
    }
    await first.flush();
    await first.close({ revoke: false }); // a crash: the lease is left to expire
    const second = dir();
    expect(await codeOf(second.registerNode(node(1), 1000))).toBe('EDVSNODEBUSY'); // the old lease still lives
    await advance(clock, 1100);
    expect(second.endpoints(0)).toEqual([]);
    const rec = await second.registerNode(node(1), 1000);
    expect(rec.incarnation).toBe(2);
    let compared = 0;
    for (let i = 0; i < 40; i++) {
      const ep = await second.claimEndpoint(0, 1);
      const old = before.get(SPACE.slotOf(ep));
      if (old !== undefined) {
        expect(SPACE.generationOf(ep)).toBeGreaterThan(old);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(0);
  });

  it('replace takes over a live registration, removing the old incarnation’s keys', async () => {
    const { dir } = world();
    const old = dir();
    await old.registerNode(node(3), 60_000);
    await old.createDc({ dcid: 0, nodes: [3] });
    await old.claimEndpoint(0, 3, { slot: 1 });
    const fresh = dir();
    const rec = await fresh.registerNode(node(3), 60_000, { replace: true });
    expect(rec.incarnation).toBe(2);
    expect(fresh.endpoints(0)).toEqual([]);
    expect(fresh.node(3)?.incarnation).toBe(2);
    expect(await fresh.claimEndpoint(0, 3, { slot: 1 })).toBe(SPACE.make(1, 1));
  });
});

describe('node failure', () => {
  it('lease expiry removes a dead node’s endpoints from every cache', async () => {
    const { clock, store, dir } = world();
    const link = new FaultyStore(store); // node 1 reaches the store through this
    const a = dir(link);
    const b = dir();
    await b.start();
    const bEvents: string[] = [];
    b.on('endpoint', (e) => bEvents.push(`${e.type}:${e.endpoint.node}:${e.endpoint.name}`));
    b.on('node', (e) => bEvents.push(`node-${e.type}:${e.node.nodeId}`));
    const aLost: number[] = [];
    a.on('leaseLost', (e) => aLost.push(e.nodeId));
    await a.registerNode(node(1), 1000);
    await b.registerNode(node(2), 1000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    await a.claimEndpoint(0, 1, { slot: 3, name: 'srv' });
    await a.claimEndpoint(0, 1, { name: 'cli' });
    await b.claimEndpoint(0, 2, { slot: 4, name: 'other' });
    await a.flush();
    // Both stay alive for many TTLs while their keepalives get through.
    await advance(clock, 3000);
    expect(b.nodes().map((n) => n.nodeId)).toEqual([1, 2]);
    expect(b.endpoints(0)).toHaveLength(3);
    bEvents.length = 0;
    // Node 1 is cut off from the store: its lease runs out.
    link.partitioned = true;
    await advance(clock, 1500);
    for (const d of [a, b]) {
      expect(d.nodes().map((n) => n.nodeId)).toEqual([2]);
      expect(d.endpoints(0).map((e) => e.name)).toEqual(['other']);
      expect(d.reservedSlots(0, 1)).toEqual([]);
    }
    expect(bEvents).toEqual(['unbound:1:srv', 'unbound:1:cli', 'node-down:1']);
    expect(aLost).toEqual([1]);
    expect(await codeOf(a.claimEndpoint(0, 1))).toBe('EDVSNONODE');
    // The DC and its membership are configuration: they stay.
    expect(b.dc(0)?.nodes).toEqual([1, 2]);
  });

  it('removing a node from a DC removes its endpoints there first', async () => {
    const { dir } = world();
    const a = dir();
    const b = dir();
    await a.registerNode(node(1), 3000);
    await b.registerNode(node(2), 3000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    await b.claimEndpoint(0, 2, { slot: 3 });
    const user = SPACE.slotOf(await b.claimEndpoint(0, 2));
    await b.flush();
    const order: string[] = [];
    a.on('endpoint', (e) => order.push(`${e.type}:${e.endpoint.slot}`));
    a.on('dc', (e) => order.push(`dc-${e.type}:${e.dc.nodes.join(',')}`));
    await a.removeNode(0, 2);
    expect(order.slice(0, 2).sort()).toEqual([`unbound:${user}`, 'unbound:3'].sort());
    expect(order.at(-1)).toBe('dc-changed:1');
    expect(b.endpoints(0)).toEqual([]);
    expect(b.reservedSlots(0, 2)).toEqual([]);
    expect(await codeOf(b.claimEndpoint(0, 2))).toBe('EDVSNODCNODE');
  });
});

describe('the cache', () => {
  it('answers lookups without touching the store', async () => {
    const { dir, store } = world();
    const a = dir();
    await a.registerNode(node(1), 3000);
    await a.createDc({ dcid: 0, nodes: [1] });
    const ep = await a.claimEndpoint(0, 1, { slot: 2, name: 'rs' });
    await a.claimEndpoint(0, 1);
    await a.flush();
    const before = store.calls.total();
    for (let i = 0; i < 1000; i++) {
      a.nodes();
      a.node(1);
      a.dcs();
      a.dc(0);
      a.endpoints(0);
      a.lookup(0, ep);
      a.endpointAt(0, 2);
      a.findByName(0, 'rs');
      a.generation(0, 2);
      a.reservedSlots(0, 1);
    }
    expect(store.calls.total()).toBe(before);
  });

  it('rebuilds itself from a fresh read when its watch ends, announcing what changed', async () => {
    const { dir, store, clock } = world();
    const flaky = new FaultyStore(store);
    const a = dir();
    const b = dir(flaky);
    await a.registerNode(node(1), 60_000);
    await a.createDc({ dcid: 0, nodes: [1] });
    const gone = await a.claimEndpoint(0, 1, { slot: 1, name: 'gone' });
    await b.start();
    const seen: string[] = [];
    b.on('endpoint', (e) => seen.push(`${e.type}:${e.endpoint.name}`));
    b.on('dc', (e) => seen.push(`dc-${e.type}:${e.dc.dcid}`));
    const errors: string[] = [];
    b.on('error', (e) => errors.push(e.code));
    let resynced = 0;
    b.on('resync', () => resynced++);
    flaky.endWatches('EDVSRANGE');
    // Changes b's watch does not see.
    await a.releaseEndpoint(0, gone);
    await a.claimEndpoint(0, 1, { slot: 2, name: 'new' });
    await a.createDc({ dcid: 7, nodes: [1] });
    expect(b.findByName(0, 'new')).toBeUndefined();
    await advance(clock, 10);
    await until(() => resynced === 1, 2000, 'resync');
    expect(errors).toEqual(['EDVSRANGE']);
    expect(seen).toEqual(['unbound:gone', 'dc-created:7', 'bound:new']);
    expect(b.findByName(0, 'new')?.slot).toBe(2);
    // And it follows live changes again.
    await a.claimEndpoint(0, 1, { slot: 3, name: 'live' });
    expect(b.findByName(0, 'live')).toBeDefined();
  });
});

describe('over the embedded TCP backend', () => {
  it('two daemons’ directories agree, and stay in sync across a cut connection', async () => {
    const server = new StoreServer({ clusterKey: 'tcp-directory-test-key-0123456789' });
    closers.push(() => server.close());
    const { port } = await server.listen();
    const clients = await Promise.all([1, 2].map(() => StoreClient.connect({ port, clusterKey: 'tcp-directory-test-key-0123456789', reconnectMinMs: 10, reconnectMaxMs: 50 })));
    for (const c of clients) closers.push(() => c.close());
    const [a, b] = clients.map((c) => {
      const d = new Directory(c);
      closers.push(() => d.close());
      return d;
    }) as [Directory, Directory];
    await a.registerNode(node(1), 2000);
    await b.registerNode(node(2), 2000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    await until(() => b.dc(0) !== undefined && b.nodes().length === 2, 2000, 'b sees a');
    const srv = await a.claimEndpoint(0, 1, { slot: 5, name: 'srv' });
    const cli = await b.claimEndpoint(0, 2, { name: 'cli' });
    await b.flush();
    await until(() => b.lookup(0, srv) !== undefined && a.lookup(0, cli) !== undefined, 2000, 'endpoints');
    server.dropConnections();
    await a.claimEndpoint(0, 1, { slot: 6, name: 'after-cut' }); // waits for the reconnect
    await until(() => b.findByName(0, 'after-cut') !== undefined, 3000, 'b sees the claim after the cut');
    await b.releaseEndpoint(0, cli);
    await until(() => a.lookup(0, cli) === undefined, 3000, 'a sees the release');
    expect(a.endpoints(0).map((e) => e.name)).toEqual(b.endpoints(0).map((e) => e.name));
    // Server-side truth matches the caches.
    const eps = server.store.rangeSync('/dvs/dcs/0/eps/').entries.map((e) => (e.value as { name: string }).name).sort();
    expect(eps).toEqual(a.endpoints(0).map((e) => e.name).sort());
  });
});
