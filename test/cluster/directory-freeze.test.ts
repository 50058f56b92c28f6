/**
 * Epochs and freezes of endpoint entries (DESIGN.md, "Moving endpoints"), on the in-memory store
 * with virtual time: the epoch is a counter in the entry (0 when claimed, +1 per move) apart from
 * the key's modRevision; a freeze is a marker under a lease of its own that a thaw deletes (in
 * place, or moving the entry to another node at the next epoch under that node's lease); a freeze
 * whose coordinator vanished expires and leaves the endpoint thawed where it was; every refusal has
 * its code and leaves no lease behind; a second directory sees every step, in store order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Directory, type EndpointEvent } from '../../src/cluster/directory.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import type { CoordinationStore } from '../../src/cluster/store.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits } from '../../src/ipc/limits.js';
import { SimClock } from '../../src/sim/sim-clock.js';
import { advance, codeOf, FaultyStore } from './helpers.js';

const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const SPACE = new EndpointSpace(resolveDcLimits());

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

/** Endpoint events as `type:node:epoch:frozen|thawed`. */
function steps(d: Directory): string[] {
  const out: string[] = [];
  d.on('endpoint', (e: EndpointEvent) => out.push(`${e.type}:${e.endpoint.node}:${e.endpoint.epoch}:${e.endpoint.frozen ? 'frozen' : 'thawed'}`));
  return out;
}

/** Two nodes (1 on `a`, 2 on `b`) in DC 0, an observer `c`, and a server of node 1 in slot 5. */
async function twoNodes(ttlMs = 3000): Promise<{ clock: SimClock; store: MemoryStore; a: Directory; b: Directory; c: Directory; linkA: FaultyStore; linkB: FaultyStore; ep: number }> {
  const { clock, store, dir } = world();
  const linkA = new FaultyStore(store);
  const linkB = new FaultyStore(store);
  const a = dir(linkA);
  const b = dir(linkB);
  const c = dir();
  await c.start();
  await a.registerNode(node(1), ttlMs);
  await b.registerNode(node(2), ttlMs);
  await a.createDc({ dcid: 0, nodes: [1, 2] });
  const ep = await a.claimEndpoint(0, 1, { slot: 5, name: 'srv' });
  return { clock, store, a, b, c, linkA, linkB, ep };
}

describe('epochs', () => {
  it('start at 0 for fixed and pool claims; the key’s modRevision is a field of its own; entries without one read as 0', async () => {
    const { store, a, c, ep } = await twoNodes();
    const user = await a.claimEndpoint(0, 1, { name: 'cli' });
    await a.flush();
    for (const e of [ep, user]) {
      const rec = c.lookup(0, e);
      expect(rec).toMatchObject({ epoch: 0, frozen: false });
      const kv = await store.get(`/dvs/dcs/0/eps/${SPACE.slotOf(e)}`);
      expect(rec?.modRevision).toBe(kv?.modRevision);
      expect(kv?.value).toMatchObject({ epoch: 0 });
    }
    // An entry written before epochs existed (no field): epoch 0; a release still guards on its modRevision.
    const lease = a.registeredNodes()[0]!.lease;
    await store.put('/dvs/dcs/0/eps/7', { endpoint: SPACE.make(0, 7), generation: 0, node: 1, name: 'old' }, { lease });
    await c.waitForRevision(store.revision);
    expect(c.endpointAt(0, 7)).toMatchObject({ epoch: 0, name: 'old', modRevision: store.revision });
    await a.releaseEndpoint(0, ep);
    expect(c.lookup(0, ep)).toBeUndefined();
  });

  it('restoreEndpoint keeps the epoch it is given', async () => {
    const { a, c, ep } = await twoNodes();
    await a.releaseEndpoint(0, ep); // as a lost lease would have removed it
    await a.restoreEndpoint(0, ep, 1, 'srv', 4);
    expect(c.lookup(0, ep)).toMatchObject({ node: 1, epoch: 4 });
    expect(await codeOf(a.restoreEndpoint(0, ep, 1, 'srv', -1))).toBe('EDVSINVAL');
  });
});

describe('freeze and thaw', () => {
  it('in place: frozen everywhere under a lease of its own, thawed where it was, the marker’s lease revoked', async () => {
    const { store, a, b, c, ep } = await twoNodes();
    const seen = steps(c);
    const leasesBefore = store.leaseCount;
    const frozen = await b.freezeEndpoint(0, ep, 0, 2000);
    expect(frozen).toMatchObject({ endpoint: ep, node: 1, epoch: 0, frozen: true, freezeMs: 2000 });
    for (const d of [a, b, c]) expect(d.lookup(0, ep)).toMatchObject({ frozen: true, freezeMs: 2000, epoch: 0 });
    const marker = await store.get('/dvs/dcs/0/frz/5');
    expect(marker?.value).toMatchObject({ endpoint: ep, epoch: 0, ms: 2000 });
    expect(marker?.lease).toBeDefined();
    expect(store.leaseTtl(marker!.lease!)).toBe(2000);
    expect(store.leaseCount).toBe(leasesBefore + 1);

    const thawed = await a.thawEndpoint(0, ep, 0);
    expect(thawed).toMatchObject({ node: 1, epoch: 0, frozen: false });
    expect(thawed.freezeMs).toBeUndefined();
    for (const d of [a, b, c]) expect(d.lookup(0, ep)).toMatchObject({ frozen: false, node: 1, epoch: 0 });
    expect(await store.get('/dvs/dcs/0/frz/5')).toBeUndefined();
    expect(store.leaseCount).toBe(leasesBefore);
    expect(seen).toEqual(['bound:1:0:frozen', 'bound:1:0:thawed']);
    // It can be frozen again at the same epoch.
    expect((await c.freezeEndpoint(0, ep, 0, 1000)).frozen).toBe(true);
  });

  it('with a move: the entry goes to the new owner at epoch + 1 under its lease, and vanishes with that lease, not the old one', async () => {
    const { clock, a, b, c, linkA, linkB, ep } = await twoNodes(1000);
    const seen = steps(c);
    await c.freezeEndpoint(0, ep, 0, 5000);
    const moved = await c.thawEndpoint(0, ep, 0, { toNode: 2 });
    expect(moved).toMatchObject({ endpoint: ep, node: 2, epoch: 1, frozen: false, name: 'srv' });
    for (const d of [a, b, c]) expect(d.lookup(0, ep)).toMatchObject({ node: 2, epoch: 1, frozen: false });
    // Moved, still frozen, then thawed at the new place: a follower never sees it thawed at the old one.
    expect(seen).toEqual(['bound:1:0:frozen', 'bound:2:1:frozen', 'bound:2:1:thawed']);
    // The old incarnation retiring must not unpublish it.
    expect(await codeOf(a.releaseEndpoint(0, ep, { node: 1 }))).toBe('EDVSRMTPROC');
    expect(c.lookup(0, ep)?.node).toBe(2);
    // The old owner dies: the moved endpoint stays.
    linkA.partitioned = true;
    await advance(clock, 1500);
    expect(c.node(1)).toBeUndefined();
    expect(c.lookup(0, ep)).toMatchObject({ node: 2, epoch: 1 });
    // The new owner dies: it goes.
    linkB.partitioned = true;
    await advance(clock, 1500);
    expect(c.node(2)).toBeUndefined();
    expect(c.lookup(0, ep)).toBeUndefined();
    expect(seen.at(-1)).toBe('unbound:2:1:thawed');
  });

  it('with a move whose entry vanished with its old owner’s lease: adoptAs publishes it at the new owner at epoch + 1 and deletes the marker; without it, or over a newer claim, refused', async () => {
    const { clock, store, b, c, linkA, ep } = await twoNodes(1000);
    await b.freezeEndpoint(0, ep, 0, 60_000);
    // The owner (node 1) is cut off from the store while its endpoint moves: its lease ends, and the entry with it.
    linkA.partitioned = true;
    await advance(clock, 1500);
    expect(c.lookup(0, ep)).toBeUndefined();
    expect(await codeOf(b.thawEndpoint(0, ep, 0, { toNode: 2 }))).toBe('EDVSNOTBIND');
    const leases = store.leaseCount;
    const adopted = await b.thawEndpoint(0, ep, 0, { toNode: 2, adoptAs: 'srv' });
    expect(adopted).toMatchObject({ endpoint: ep, node: 2, epoch: 1, frozen: false, name: 'srv' });
    await c.waitForRevision(store.revision);
    expect(c.lookup(0, ep)).toMatchObject({ node: 2, epoch: 1, frozen: false, name: 'srv' });
    expect(await store.get('/dvs/dcs/0/frz/5')).toBeUndefined();
    expect(store.leaseCount).toBe(leases - 1); // the freeze's lease revoked
    // Under the new owner's lease: a second adoption of the same move is its own answer.
    expect((await store.get('/dvs/dcs/0/eps/5'))?.lease).toBe(b.registeredNodes()[0]!.lease);
    expect(await b.thawEndpoint(0, ep, 0, { toNode: 2, adoptAs: 'srv' })).toMatchObject({ node: 2, epoch: 1 });

    // A slot claimed anew (a newer generation) after the entry vanished is never overwritten.
    const { clock: clock2, store: store2, b: b2, c: c2, linkA: linkA2, ep: ep2 } = await twoNodes(1000);
    await b2.freezeEndpoint(0, ep2, 0, 60_000);
    linkA2.partitioned = true;
    await advance(clock2, 1500);
    const newer = await b2.claimEndpoint(0, 2, { slot: 5, name: 'other' });
    expect(newer).not.toBe(ep2);
    expect(await codeOf(b2.thawEndpoint(0, ep2, 0, { toNode: 2, adoptAs: 'srv' }))).toBe('EDVSENDPOINT'); // the slot holds another
    // Released again: free, but its last generation is not this endpoint's.
    await b2.releaseEndpoint(0, newer);
    expect(await codeOf(b2.thawEndpoint(0, ep2, 0, { toNode: 2, adoptAs: 'srv' }))).toBe('EDVSSLOTUSED');
    await c2.waitForRevision(store2.revision);
    expect(c2.lookup(0, ep2)).toBeUndefined();
  });

  it('a freeze whose coordinator vanished expires: every cache sees the endpoint thawed where it was', async () => {
    const { clock, store, a, b, c, ep } = await twoNodes(60_000);
    const seen = steps(c);
    await b.freezeEndpoint(0, ep, 0, 800);
    await b.close({ revoke: false }); // the coordinator is gone; nobody thaws
    await advance(clock, 500);
    expect(c.lookup(0, ep)?.frozen).toBe(true);
    await advance(clock, 500);
    for (const d of [a, c]) expect(d.lookup(0, ep)).toMatchObject({ node: 1, epoch: 0, frozen: false });
    expect(await store.get('/dvs/dcs/0/frz/5')).toBeUndefined();
    expect(seen).toEqual(['bound:1:0:frozen', 'bound:1:0:thawed']);
    expect(await codeOf(a.thawEndpoint(0, ep, 0, { toNode: 1 }))).toBe('EDVSPROCSTS');
    // A move after an expired freeze needs a new freeze.
    await a.freezeEndpoint(0, ep, 0, 800);
    expect(await a.thawEndpoint(0, ep, 0)).toMatchObject({ frozen: false });
  });

  it('refuses with the documented codes, leaving no lease behind', async () => {
    const { store, a, c, ep } = await twoNodes();
    const leases = store.leaseCount;
    const other = SPACE.make(1, 5);
    expect(await codeOf(c.freezeEndpoint(0, SPACE.make(0, 9), 0, 1000))).toBe('EDVSNOTBIND');
    expect(await codeOf(c.freezeEndpoint(0, other, 0, 1000))).toBe('EDVSENDPOINT'); // another generation of the slot
    expect(await codeOf(c.freezeEndpoint(0, ep, 1, 1000))).toBe('EDVSENDPOINT'); // another epoch
    expect(await codeOf(c.freezeEndpoint(0, ep, 0, 0))).toBe('EDVSINVAL');
    expect(await codeOf(c.freezeEndpoint(0, ep, -1, 1000))).toBe('EDVSINVAL');
    expect(await codeOf(c.freezeEndpoint(9, ep, 0, 1000))).toBe('EDVSBADDCID');
    expect(await codeOf(c.thawEndpoint(0, ep, 0))).toBe('EDVSPROCSTS'); // not frozen
    expect(store.leaseCount).toBe(leases);

    await c.freezeEndpoint(0, ep, 0, 5000);
    expect(await codeOf(a.freezeEndpoint(0, ep, 0, 1000))).toBe('EDVSBUSY');
    expect(await codeOf(c.thawEndpoint(0, ep, 1))).toBe('EDVSENDPOINT');
    expect(await codeOf(c.thawEndpoint(0, other, 0))).toBe('EDVSENDPOINT');
    expect(await codeOf(c.thawEndpoint(0, ep, 0, { toNode: 3 }))).toBe('EDVSNODCNODE');
    await a.addNode(0, 3);
    expect(await codeOf(c.thawEndpoint(0, ep, 0, { toNode: 3 }))).toBe('EDVSNONODE'); // a member, but not registered
    expect(await codeOf(c.thawEndpoint(0, ep, 0, { toNode: 5000 }))).toBe('EDVSBADNODEID');
    expect(store.leaseCount).toBe(leases + 1); // only the freeze's own
    // The entry rewritten while frozen (same endpoint and epoch, new modRevision): not the entry that was frozen.
    const kv = await store.get('/dvs/dcs/0/eps/5');
    await store.put('/dvs/dcs/0/eps/5', kv!.value, { lease: kv!.lease! });
    await c.waitForRevision(store.revision);
    expect(await codeOf(c.thawEndpoint(0, ep, 0))).toBe('EDVSENDPOINT');
    expect(c.lookup(0, ep)?.frozen).toBe(true);
  });

  it('a marker left by an earlier generation of the slot neither freezes its successor nor blocks a freeze of it', async () => {
    const { a, c, ep } = await twoNodes();
    await c.freezeEndpoint(0, ep, 0, 60_000);
    await a.releaseEndpoint(0, ep);
    const next = await a.claimEndpoint(0, 1, { slot: 5, name: 'srv' });
    expect(SPACE.generationOf(next)).toBe(1);
    expect(c.lookup(0, next)).toMatchObject({ frozen: false, epoch: 0 });
    expect((await c.freezeEndpoint(0, next, 0, 1000)).frozen).toBe(true);
    expect(a.lookup(0, next)?.frozen).toBe(true);
    await c.thawEndpoint(0, next, 0);
    expect(a.lookup(0, next)?.frozen).toBe(false);
  });

  it('a directory started later sees a frozen endpoint frozen, and a resync finds freezes and thaws it missed', async () => {
    const { clock, store, a, c, ep } = await twoNodes(60_000);
    await c.freezeEndpoint(0, ep, 0, 5000);
    const late = new Directory(store, { clock });
    closers.push(() => late.close({ revoke: false }));
    const seen = steps(late);
    await late.start();
    expect(late.lookup(0, ep)?.frozen).toBe(true);
    expect(seen).toEqual(['bound:1:0:frozen']);
    const flaky = new FaultyStore(store);
    const follower = new Directory(flaky, { clock });
    closers.push(() => follower.close({ revoke: false }));
    await follower.start();
    const followed = steps(follower);
    let resynced = 0;
    follower.on('resync', () => resynced++);
    follower.on('error', () => undefined);
    flaky.endWatches('EDVSRANGE');
    await a.thawEndpoint(0, ep, 0, { toNode: 2 });
    await advance(clock, 10);
    for (let i = 0; i < 100 && resynced === 0; i++) await advance(clock, 10);
    expect(resynced).toBe(1);
    expect(follower.lookup(0, ep)).toMatchObject({ node: 2, epoch: 1, frozen: false });
    // As a live follower would: frozen at the new place, then thawed there.
    expect(followed).toEqual(['bound:2:1:frozen', 'bound:2:1:thawed']);
  });
});
