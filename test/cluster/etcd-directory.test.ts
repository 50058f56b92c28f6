/**
 * The cluster directory, unchanged, on the etcd backend (one real etcd member): two directories (two
 * daemons, each with its own etcd client) see each other's nodes, DCs and endpoints; fixed-slot claims
 * conflict; per-node ranges never overlap; generations only increase across a node restart; a dead
 * node's lease expiry removes its endpoints from every cache; lookups never touch the store; a cache
 * whose watch ended resynchronises; freezes and thaws (in place, with a move to another node's
 * lease, expiring with their own lease, refused with their codes, seen by another directory in
 * order, recognised after a lost reply). Each test works under its own root key.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Directory, type DcEvent, type EndpointEvent, type NodeEvent } from '../../src/cluster/directory.js';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import type { CoordinationStore, TxnRequest, TxnResult } from '../../src/cluster/store.js';
import { DvsError } from '../../src/ipc/errors.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits } from '../../src/ipc/limits.js';
import { startEtcd, type EtcdCluster } from '../support/etcd.js';
import { codeOf, FaultyStore, until } from './helpers.js';

let etcd: EtcdCluster;
const closers: (() => Promise<void>)[] = [];
let roots = 0;

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const SPACE = new EndpointSpace(resolveDcLimits());

/** A world of its own: a fresh root, and a factory of directories each on its own etcd client. */
function world(): { root: string; store: () => EtcdStore; dir: (s?: CoordinationStore) => Directory } {
  const root = `/dir${++roots}`;
  const store = (): EtcdStore => {
    const s = new EtcdStore({ endpoints: etcd.endpoints });
    closers.push(() => s.close());
    return s;
  };
  const dir = (s: CoordinationStore = store()): Directory => {
    const d = new Directory(s, { root });
    closers.push(() => d.close({ revoke: false }));
    return d;
  };
  return { root, store, dir };
}

function node(id: number): { nodeId: number; host: string; port: number } {
  return { nodeId: id, host: '127.0.0.1', port: 7000 + id };
}

function record<T>(d: Directory, name: 'node' | 'dc' | 'endpoint'): T[] {
  const out: T[] = [];
  d.on(name, (e) => out.push(e as T));
  return out;
}

describe('two directories on etcd', () => {
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
    await until(() => a.nodes().length === 2 && b.nodes().length === 2, 3000, 'both nodes everywhere');
    expect(a.nodes().map((n) => [n.nodeId, n.incarnation])).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(b.node(1)).toMatchObject({ host: '127.0.0.1', port: 7001, lease: na.lease });
    expect(a.node(2)?.meta).toEqual({ admin: 8080 });
    expect(bNodes.map((e) => `${e.type}:${e.node.nodeId}`)).toEqual(['up:1', 'up:2']);

    await a.createDc({ dcid: 5, name: 'web', nodes: [1, 2] });
    await until(() => b.dc(5) !== undefined, 3000, 'b sees the DC');
    expect(b.dc(5)).toMatchObject({ dcid: 5, name: 'web', nodes: [1, 2] });
    expect(bDcs).toMatchObject([{ type: 'created', dc: { dcid: 5 } }]);

    const pm = await a.claimEndpoint(5, 1, { slot: 0, name: 'pm' });
    expect(pm).toBe(0);
    const user = await b.claimEndpoint(5, 2, { name: 'shell' });
    await b.flush();
    await until(() => a.lookup(5, user) !== undefined && b.findByName(5, 'pm') !== undefined, 3000, 'endpoints everywhere');
    expect(a.lookup(5, user)).toMatchObject({ node: 2, name: 'shell', generation: SPACE.generationOf(user) });
    expect(b.findByName(5, 'pm')).toMatchObject({ endpoint: pm, node: 1, slot: 0 });
    expect(a.endpoints(5).map((e) => e.name)).toEqual(['pm', 'shell']);
    expect(bEps.map((e) => `${e.type}:${e.endpoint.name}`).sort()).toEqual(['bound:pm', 'bound:shell']);

    await a.releaseEndpoint(5, pm);
    await until(() => b.findByName(5, 'pm') === undefined, 3000, 'b sees the release');
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
    expect((await a.addNode(1, 3)).nodes).toEqual([0, 3]);
    expect(await codeOf(b.addNode(1, 3))).toBe('EDVSDCNODE');
    expect(await codeOf(b.removeNode(1, 7))).toBe('EDVSNODCNODE');
    expect(await codeOf(b.addNode(9, 1))).toBe('EDVSBADDCID');
    expect((await b.removeNode(1, 0)).nodes).toEqual([3]);
    await until(() => a.dc(1)?.nodes.length === 1, 3000, 'a sees the member removed');
    await b.removeDc(1);
    expect(await codeOf(a.removeDc(1))).toBe('EDVSBADDCID');
    await until(() => a.dc(1) === undefined, 3000, 'a sees the DC removed');
    expect(bDcs.map((e) => e.type)).toEqual(['created', 'changed', 'changed', 'removed']);
  });
});

describe('claims on etcd', () => {
  it('a fixed slot: EDVSSLOTUSED while taken, the next generation after every release; one winner among racers', async () => {
    const { dir } = world();
    const dirs = [dir(), dir(), dir()];
    for (let i = 0; i < dirs.length; i++) await dirs[i]!.registerNode(node(i), 3000);
    const [a, b] = dirs as [Directory, Directory, Directory];
    await a.createDc({ dcid: 0, nodes: [0, 1, 2] });
    const e0 = await a.claimEndpoint(0, 0, { slot: 4, name: 'fs' });
    expect(await codeOf(b.claimEndpoint(0, 1, { slot: 4, name: 'fs' }))).toBe('EDVSSLOTUSED');
    await a.releaseEndpoint(0, e0);
    const e1 = await b.claimEndpoint(0, 1, { slot: 4, name: 'fs' });
    expect(await codeOf(a.releaseEndpoint(0, e0))).toBe('EDVSENDPOINT');
    await b.releaseEndpoint(0, e1);
    const e2 = await a.claimEndpoint(0, 0, { slot: 4 });
    expect([e0, e1, e2].map((e) => SPACE.generationOf(e))).toEqual([0, 1, 2]);
    // Concurrent claims of one slot by three daemons: exactly one wins.
    const results = await Promise.allSettled(dirs.map((d, i) => d.claimEndpoint(0, i, { slot: 7 })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('EDVSSLOTUSED');
  });

  it('user slots come from per-node ranges: never the same slot on two nodes', async () => {
    const { dir, root, store } = world();
    const a = dir();
    const b = dir();
    await a.registerNode(node(1), 3000);
    await b.registerNode(node(2), 3000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    await until(() => b.dc(0) !== undefined, 3000, 'b sees the DC');
    const claims = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a.claimEndpoint(0, 1) : b.claimEndpoint(0, 2)).then((ep) => ({ ep, node: i % 2 === 0 ? 1 : 2 }))),
    );
    await a.flush();
    await b.flush();
    const slots = claims.map((c) => SPACE.slotOf(c.ep));
    expect(new Set(slots).size).toBe(40);
    await until(() => a.endpoints(0).length === 40 && b.endpoints(0).length === 40, 5000, 'every endpoint everywhere');
    for (const c of claims) expect(a.lookup(0, c.ep)?.node).toBe(c.node);
    const resv = (await store().getPrefix(`${root}/dcs/0/resv/`)).entries;
    expect(resv.length).toBe(a.reservedSlots(0, 1).length + b.reservedSlots(0, 2).length);
  });
});

describe('node failure on etcd', () => {
  it('lease expiry removes a dead node’s endpoints from every cache; its restart is a new incarnation with newer generations', async () => {
    const { dir, store } = world();
    const link = new FaultyStore(store()); // node 1 reaches etcd through this
    const a = dir(link);
    const b = dir();
    await b.start();
    const bEvents: string[] = [];
    b.on('endpoint', (e) => bEvents.push(`${e.type}:${e.endpoint.node}:${e.endpoint.name}`));
    b.on('node', (e) => bEvents.push(`node-${e.type}:${e.node.nodeId}`));
    const aLost: number[] = [];
    a.on('leaseLost', (e) => aLost.push(e.nodeId));
    await a.registerNode(node(1), 2000);
    await b.registerNode(node(2), 5000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    const srv = await a.claimEndpoint(0, 1, { slot: 3, name: 'srv' });
    await a.claimEndpoint(0, 1, { name: 'cli' });
    await b.claimEndpoint(0, 2, { slot: 4, name: 'other' });
    await a.flush();
    // Alive for over a TTL while keepalives get through.
    await new Promise((r) => setTimeout(r, 2500));
    await until(() => b.endpoints(0).length === 3, 3000, 'b sees three endpoints');
    expect(b.nodes().map((n) => n.nodeId)).toEqual([1, 2]);
    bEvents.length = 0;
    // Node 1 is cut off from etcd: its lease (2 s) runs out.
    link.partitioned = true;
    await until(() => b.nodes().length === 1 && aLost.length === 1, 8000, 'node 1 expired');
    expect(b.endpoints(0).map((e) => e.name)).toEqual(['other']);
    expect(b.reservedSlots(0, 1)).toEqual([]);
    expect(bEvents).toEqual(['unbound:1:srv', 'unbound:1:cli', 'node-down:1']);
    expect(aLost).toEqual([1]);
    expect(b.dc(0)?.nodes).toEqual([1, 2]);
    // The node restarts (a new daemon, a new client): incarnation 2, and a slot it had gets a newer generation.
    const again = dir();
    const rec = await again.registerNode(node(1), 3000);
    expect(rec.incarnation).toBe(2);
    const srv2 = await again.claimEndpoint(0, 1, { slot: 3, name: 'srv' });
    expect(SPACE.slotOf(srv2)).toBe(3);
    expect(SPACE.generationOf(srv2)).toBeGreaterThan(SPACE.generationOf(srv));
    await until(() => b.findByName(0, 'srv')?.endpoint === srv2, 3000, 'b sees the new srv');
  });

  it('a live registration: EDVSNODEBUSY, or replaced (the old incarnation’s keys go)', async () => {
    const { dir } = world();
    const old = dir();
    await old.registerNode(node(3), 60_000);
    await old.createDc({ dcid: 0, nodes: [3] });
    await old.claimEndpoint(0, 3, { slot: 1 });
    const fresh = dir();
    expect(await codeOf(fresh.registerNode(node(3), 60_000))).toBe('EDVSNODEBUSY');
    const rec = await fresh.registerNode(node(3), 60_000, { replace: true });
    expect(rec.incarnation).toBe(2);
    await until(() => fresh.endpoints(0).length === 0 && old.endpoints(0).length === 0, 3000, 'old endpoints gone');
    expect(await fresh.claimEndpoint(0, 3, { slot: 1 })).toBe(SPACE.make(1, 1));
  });
});

/** The store, except that the next `lose.n` transactions land but their replies are "lost" (EDVSNOTCONN). */
function losingReplies(inner: EtcdStore, lose: { n: number }): CoordinationStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'txn') {
        return async (req: TxnRequest): Promise<TxnResult> => {
          const r = await target.txn(req);
          if (lose.n > 0) {
            lose.n--;
            throw new DvsError('EDVSNOTCONN', 'reply lost (test)');
          }
          return r;
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('lost replies on etcd', () => {
  it('a registration or claim whose reply was lost is retried and recognised as its own', async () => {
    const { dir, store, root } = world();
    const s = store();
    const lose = { n: 1 };
    const d = dir(losingReplies(s, lose));
    const rec = await d.registerNode(node(5), 3000);
    expect(lose.n).toBe(0);
    expect(rec.incarnation).toBe(1); // not registered twice
    expect((await s.get(`${root}/nodes/5`))?.lease).toBe(rec.lease);
    await d.createDc({ dcid: 0, nodes: [5] });
    lose.n = 1;
    const ep = await d.claimEndpoint(0, 5, { slot: 9, name: 'srv' });
    expect(lose.n).toBe(0);
    expect(SPACE.generationOf(ep)).toBe(0); // the first attempt's generation, not a second claim
    expect(d.endpointAt(0, 9)?.endpoint).toBe(ep);
  });
});

describe('the cache on etcd', () => {
  it('answers lookups without touching the store', async () => {
    const { dir, store } = world();
    const s = store();
    const a = dir(s);
    await a.registerNode(node(1), 3000);
    await a.createDc({ dcid: 0, nodes: [1] });
    const ep = await a.claimEndpoint(0, 1, { slot: 2, name: 'rs' });
    await a.claimEndpoint(0, 1);
    await a.flush();
    const before = s.calls.total() - s.calls.get('keepAlive');
    for (let i = 0; i < 1000; i++) {
      a.nodes();
      a.dcs();
      a.endpoints(0);
      a.lookup(0, ep);
      a.findByName(0, 'rs');
      a.reservedSlots(0, 1);
    }
    expect(s.calls.total() - s.calls.get('keepAlive')).toBe(before);
  });

  it('rebuilds itself from a fresh read when its watch ends, announcing what changed', async () => {
    const { dir, store } = world();
    const flaky = new FaultyStore(store());
    const a = dir();
    const b = dir(flaky);
    await a.registerNode(node(1), 60_000);
    await a.createDc({ dcid: 0, nodes: [1] });
    const gone = await a.claimEndpoint(0, 1, { slot: 1, name: 'gone' });
    await b.start();
    await until(() => b.findByName(0, 'gone') !== undefined, 3000, 'b sees gone');
    const seen: string[] = [];
    b.on('endpoint', (e) => seen.push(`${e.type}:${e.endpoint.name}`));
    b.on('dc', (e) => seen.push(`dc-${e.type}:${e.dc.dcid}`));
    const errors: string[] = [];
    b.on('error', (e) => errors.push(e.code));
    let resynced = 0;
    b.on('resync', () => resynced++);
    // The watch ends while changes happen that it does not see.
    flaky.delayMs = 300; // the resync's read comes after the writes below
    flaky.endWatches('EDVSRANGE');
    await a.releaseEndpoint(0, gone);
    await a.claimEndpoint(0, 1, { slot: 2, name: 'new' });
    await a.createDc({ dcid: 7, nodes: [1] });
    await until(() => resynced === 1, 5000, 'resync');
    flaky.delayMs = 0;
    expect(errors).toEqual(['EDVSRANGE']);
    expect(seen).toEqual(['unbound:gone', 'dc-created:7', 'bound:new']);
    await a.claimEndpoint(0, 1, { slot: 3, name: 'live' });
    await until(() => b.findByName(0, 'live') !== undefined, 3000, 'b follows live changes again');
  });
});

/** Endpoint events as `type:node:epoch:frozen|thawed`. */
function steps(d: Directory): string[] {
  const out: string[] = [];
  d.on('endpoint', (e) => out.push(`${e.type}:${e.endpoint.node}:${e.endpoint.epoch}:${e.endpoint.frozen ? 'frozen' : 'thawed'}`));
  return out;
}

describe('freezes on etcd', () => {
  it('in place, then with a move: epoch + 1 under the new owner’s lease, gone with that lease and not the old one’s; another directory sees each step in order', async () => {
    const { dir, store, root } = world();
    const s = store();
    const linkA = new FaultyStore(store());
    const linkB = new FaultyStore(store());
    const a = dir(linkA);
    const b = dir(linkB);
    const c = dir(s);
    await c.start();
    const seen = steps(c);
    await a.registerNode(node(1), 2000);
    const nb = await b.registerNode(node(2), 2000);
    await a.createDc({ dcid: 0, nodes: [1, 2] });
    const ep = await a.claimEndpoint(0, 1, { slot: 5, name: 'srv' });
    await until(() => c.lookup(0, ep) !== undefined && c.node(2) !== undefined, 3000, 'c sees the endpoint');
    expect(c.lookup(0, ep)).toMatchObject({ epoch: 0, frozen: false });

    expect(await c.freezeEndpoint(0, ep, 0, 5000)).toMatchObject({ frozen: true, freezeMs: 5000 });
    await until(() => a.lookup(0, ep)?.frozen === true, 3000, 'a sees the freeze');
    expect(await codeOf(b.freezeEndpoint(0, ep, 0, 5000))).toBe('EDVSBUSY');
    expect(await c.thawEndpoint(0, ep, 0)).toMatchObject({ node: 1, epoch: 0, frozen: false });
    expect(await s.get(`${root}/dcs/0/frz/5`)).toBeUndefined();

    await b.freezeEndpoint(0, ep, 0, 5000);
    expect(await codeOf(b.thawEndpoint(0, ep, 0, { toNode: 3 }))).toBe('EDVSNODCNODE');
    const moved = await b.thawEndpoint(0, ep, 0, { toNode: 2 });
    expect(moved).toMatchObject({ node: 2, epoch: 1, frozen: false });
    expect((await s.get(`${root}/dcs/0/eps/5`))?.lease).toBe(nb.lease);
    await until(() => c.lookup(0, ep)?.node === 2 && c.lookup(0, ep)?.frozen === false, 3000, 'c sees the move');
    expect(seen).toEqual(['bound:1:0:thawed', 'bound:1:0:frozen', 'bound:1:0:thawed', 'bound:1:0:frozen', 'bound:2:1:frozen', 'bound:2:1:thawed']);

    // The old owner's lease expires: the moved endpoint stays.
    linkA.partitioned = true;
    await until(() => c.node(1) === undefined, 8000, 'node 1 expired');
    expect(c.lookup(0, ep)).toMatchObject({ node: 2, epoch: 1 });
    // The new owner's expires: it goes.
    linkB.partitioned = true;
    await until(() => c.node(2) === undefined, 8000, 'node 2 expired');
    expect(c.lookup(0, ep)).toBeUndefined();
    expect(seen.at(-1)).toBe('unbound:2:1:thawed');
  });

  it('a freeze nobody thaws expires with its lease, leaving the endpoint thawed where it was; refusals leave no marker', async () => {
    const { dir, store, root } = world();
    const s = store();
    const a = dir();
    const c = dir(s);
    await c.start();
    await a.registerNode(node(1), 10_000);
    await a.createDc({ dcid: 0, nodes: [1] });
    const ep = await a.claimEndpoint(0, 1, { slot: 3 });
    await until(() => c.lookup(0, ep) !== undefined, 3000, 'c sees the endpoint');
    expect(await codeOf(c.freezeEndpoint(0, ep, 1, 1000))).toBe('EDVSENDPOINT');
    expect(await codeOf(c.freezeEndpoint(0, SPACE.make(0, 4), 0, 1000))).toBe('EDVSNOTBIND');
    expect(await codeOf(c.thawEndpoint(0, ep, 0))).toBe('EDVSPROCSTS');
    expect(await s.get(`${root}/dcs/0/frz/3`)).toBeUndefined();
    const seen = steps(c);
    const started = Date.now();
    await c.freezeEndpoint(0, ep, 0, 1000);
    await until(() => c.lookup(0, ep)?.frozen === false, 8000, 'the freeze expired');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(seen).toEqual(['bound:1:0:frozen', 'bound:1:0:thawed']);
    expect(await codeOf(c.thawEndpoint(0, ep, 0))).toBe('EDVSPROCSTS');
    expect(a.lookup(0, ep)).toMatchObject({ node: 1, epoch: 0, frozen: false });
  });

  it('a freeze or thaw whose reply was lost is retried and recognised as its own', async () => {
    const { dir, store, root } = world();
    const s = store();
    const lose = { n: 0 };
    const d = dir(losingReplies(s, lose));
    const other = dir();
    await d.registerNode(node(1), 5000);
    await other.registerNode(node(2), 5000);
    await d.createDc({ dcid: 0, nodes: [1, 2] });
    const ep = await d.claimEndpoint(0, 1, { slot: 2 });
    lose.n = 1;
    expect(await d.freezeEndpoint(0, ep, 0, 5000)).toMatchObject({ frozen: true });
    expect(lose.n).toBe(0);
    lose.n = 1;
    expect(await d.thawEndpoint(0, ep, 0, { toNode: 2 })).toMatchObject({ node: 2, epoch: 1, frozen: false });
    expect(lose.n).toBe(0);
    const kv = await s.get(`${root}/dcs/0/eps/2`);
    expect(kv?.value).toMatchObject({ node: 2, epoch: 1 });
    expect(await s.get(`${root}/dcs/0/frz/2`)).toBeUndefined();
  });
});
