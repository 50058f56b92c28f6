/**
 * MemoryStore semantics: revisions, reads, transactions and every compare target, leases expiring on
 * injected (virtual) time, watches in revision order without gaps, resume from a revision,
 * compaction, re-entrant writes from callbacks, and call counting.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import type { WatchEvent } from '../../src/cluster/store.js';
import { Prng } from '../../src/sim/prng.js';
import { SimClock } from '../../src/sim/sim-clock.js';
import { codeOf, codeOfSync } from './helpers.js';

let stores: MemoryStore[] = [];

function make(opts: ConstructorParameters<typeof MemoryStore>[0] = {}): { store: MemoryStore; clock: SimClock } {
  const clock = new SimClock();
  const store = new MemoryStore({ clock, ...opts });
  stores.push(store);
  return { store, clock };
}

afterEach(async () => {
  for (const s of stores) await s.close();
  stores = [];
  vi.restoreAllMocks();
});

describe('revisions and reads', () => {
  it('bumps one global revision per write and tracks create/mod revision and version', async () => {
    const { store } = make();
    expect(store.revision).toBe(0);
    expect(await store.put('/a', 1)).toEqual({ revision: 1 });
    expect(await store.put('/b', { x: [1, 'two'] })).toEqual({ revision: 2 });
    expect(await store.put('/a', 3)).toEqual({ revision: 3 });
    expect(await store.get('/a')).toEqual({ key: '/a', value: 3, createRevision: 1, modRevision: 3, version: 2 });
    expect(await store.get('/b')).toMatchObject({ value: { x: [1, 'two'] }, createRevision: 2, modRevision: 2, version: 1 });
    expect(await store.get('/missing')).toBeUndefined();
    // Deleting nothing does not make a revision.
    expect(await store.delete('/missing')).toEqual({ revision: 3, deleted: 0 });
    expect(await store.delete('/a')).toEqual({ revision: 4, deleted: 1 });
    await store.put('/a', 'again');
    expect(await store.get('/a')).toMatchObject({ createRevision: 5, modRevision: 5, version: 1 });
  });

  it('reads a prefix sorted by key with the revision of the read', async () => {
    const { store } = make();
    for (const k of ['/x/3', '/x/1', '/y/1', '/x/2', '/x']) await store.put(k, k);
    const r = await store.getPrefix('/x/');
    expect(r.revision).toBe(5);
    expect(r.entries.map((e) => e.key)).toEqual(['/x/1', '/x/2', '/x/3']);
    expect((await store.getPrefix('')).entries).toHaveLength(5);
    expect((await store.getPrefix('/none')).entries).toEqual([]);
  });

  it('keeps values apart from callers and checks them', async () => {
    const { store } = make();
    const v = { list: [1, 2] };
    await store.put('/v', v);
    v.list.push(3);
    const got = (await store.get('/v'))!.value as { list: number[] };
    expect(got.list).toEqual([1, 2]);
    got.list.push(9);
    expect(((await store.get('/v'))!.value as { list: number[] }).list).toEqual([1, 2]);
    await store.put('/bin', new Uint8Array([1, 2, 3]));
    const bin = (await store.get('/bin'))!.value;
    expect(bin).toBeInstanceOf(Uint8Array);
    expect([...(bin as Uint8Array)]).toEqual([1, 2, 3]);
    expect(await codeOf(store.put('/bad', new Map() as never))).toBe('EDVSBADVALUE');
    expect(await codeOf(store.put('/bad', (() => 1) as never))).toBe('EDVSBADVALUE');
    expect(await codeOf(store.put('', 1))).toBe('EDVSINVAL');
    expect(await codeOf(store.put(5 as never, 1))).toBe('EDVSINVAL');
    expect(await codeOf(store.put('k'.repeat(5000), 1))).toBe('EDVSINVAL');
    const small = make({ limits: { maxValueBytes: 100 } }).store;
    expect(await codeOf(small.put('/big', 'x'.repeat(200)))).toBe('EDVSMSGSIZE');
    expect(store.revision).toBe(2);
  });
});

describe('transactions', () => {
  it('evaluates every compare target and op', async () => {
    const { store } = make();
    await store.put('/k', 'v'); // rev 1
    await store.put('/k', 'w'); // rev 2: createRevision 1, modRevision 2, version 2
    const holds = async (c: object): Promise<boolean> => (await store.txn({ compare: [{ key: '/k', ...c } as never] })).succeeded;
    expect(await holds({ createRevision: 1 })).toBe(true);
    expect(await holds({ createRevision: 1, op: '!=' })).toBe(false);
    expect(await holds({ modRevision: 2, op: '==' })).toBe(true);
    expect(await holds({ modRevision: 3, op: '<' })).toBe(true);
    expect(await holds({ modRevision: 1, op: '>' })).toBe(true);
    expect(await holds({ modRevision: 2, op: '>' })).toBe(false);
    expect(await holds({ version: 2 })).toBe(true);
    expect(await holds({ version: 1, op: '>' })).toBe(true);
    expect(await holds({ value: 'w' })).toBe(true);
    expect(await holds({ value: 'v' })).toBe(false);
    expect(await holds({ value: 'v', op: '!=' })).toBe(true);
    expect(await holds({ exists: true })).toBe(true);
    expect(await holds({ exists: false })).toBe(false);
    expect(await holds({ exists: false, op: '!=' })).toBe(true);
    expect(await holds({ lease: 0 })).toBe(true);
    // A missing key: revisions, version and lease 0; a value compare is false whatever the op.
    const missing = async (c: object): Promise<boolean> => (await store.txn({ compare: [{ key: '/nope', ...c } as never] })).succeeded;
    expect(await missing({ createRevision: 0 })).toBe(true);
    expect(await missing({ modRevision: 0 })).toBe(true);
    expect(await missing({ version: 0 })).toBe(true);
    expect(await missing({ exists: false })).toBe(true);
    expect(await missing({ value: 'v' })).toBe(false);
    expect(await missing({ value: 'v', op: '!=' })).toBe(false);
    // Read-only transactions make no revision.
    expect(store.revision).toBe(2);
  });

  it('runs the success or failure branch atomically at one revision', async () => {
    const { store } = make();
    await store.put('/dir/a', 1);
    await store.put('/dir/b', 2);
    await store.put('/other', 0);
    const ok = await store.txn({
      compare: [{ key: '/other', value: 0 }],
      success: [
        { op: 'put', key: '/dir/c', value: 3 },
        { op: 'get', key: '/dir/', prefix: true },
        { op: 'delete', key: '/other' },
      ],
      failure: [{ op: 'put', key: '/never', value: 1 }],
    });
    expect(ok.succeeded).toBe(true);
    expect(ok.revision).toBe(4);
    expect(ok.results[0]).toEqual({ op: 'put', revision: 4 });
    // A get sees the earlier writes of its own transaction.
    expect(ok.results[1]).toMatchObject({ op: 'get', entries: [{ key: '/dir/a' }, { key: '/dir/b' }, { key: '/dir/c', modRevision: 4 }] });
    expect(ok.results[2]).toEqual({ op: 'delete', deleted: 1 });
    const failed = await store.txn({
      compare: [{ key: '/other', exists: true }],
      success: [{ op: 'put', key: '/never', value: 1 }],
      failure: [{ op: 'delete', key: '/dir/', prefix: true }, { op: 'get', key: '/dir/a' }],
    });
    expect(failed.succeeded).toBe(false);
    expect(failed.revision).toBe(5);
    expect(failed.results).toEqual([{ op: 'delete', deleted: 3 }, { op: 'get', entries: [] }]);
    expect(await store.get('/never')).toBeUndefined();
  });

  it('refuses malformed transactions without writing anything', async () => {
    const { store } = make();
    await store.put('/k', 1);
    const bad = async (req: object): Promise<string> => codeOf(store.txn(req as never));
    expect(await bad({ compare: [{ key: '/k' }] })).toBe('EDVSINVAL'); // no target
    expect(await bad({ compare: [{ key: '/k', modRevision: 1, version: 1 }] })).toBe('EDVSINVAL'); // two targets
    expect(await bad({ compare: [{ key: '/k', value: 1, op: '<' }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [{ key: '/k', exists: 'yes' }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [{ key: '/k', modRevision: 1, op: '=~' }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: 'all' })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: [{ op: 'rename', key: '/k' }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: [{ op: 'put', key: '/d', value: 1 }, { op: 'put', key: '/d', value: 2 }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: [{ op: 'delete', key: '/d', prefix: true }, { op: 'put', key: '/d/x', value: 2 }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: Array.from({ length: 129 }, (_, i) => ({ op: 'get', key: `/g${i}` })) })).toBe('EDVSINVAL');
    // A put on a lease that does not exist fails the whole branch.
    expect(await bad({ compare: [], success: [{ op: 'put', key: '/a', value: 1 }, { op: 'put', key: '/b', value: 1, lease: 12345 }] })).toBe('EDVSNOENT');
    expect(await bad({ compare: [], success: [{ op: 'put', key: '/a', value: new Set() }] })).toBe('EDVSBADVALUE');
    expect(store.revision).toBe(1);
    expect(await store.get('/a')).toBeUndefined();
  });
});

describe('leases on injected time', () => {
  it('expire after their TTL unless kept alive, deleting their keys in one revision', async () => {
    const { store, clock } = make();
    const lease = await store.grantLease(1000);
    await store.put('/n/1', 'a', { lease });
    await store.put('/n/2', 'b', { lease });
    await store.put('/n/3', 'c');
    expect((await store.get('/n/1'))!.lease).toBe(lease);
    const events: WatchEvent[] = [];
    await store.watch('/n/', undefined, (e) => events.push(e));
    clock.runUntil(900);
    expect(await store.keepAlive(lease)).toBe(1000);
    clock.runUntil(1800); // 900 ms after the keepalive
    expect((await store.getPrefix('/n/')).entries).toHaveLength(3);
    clock.runUntil(1900); // the deadline
    expect((await store.getPrefix('/n/')).entries.map((e) => e.key)).toEqual(['/n/3']);
    expect(events).toEqual([
      { type: 'delete', key: '/n/1', revision: 4 },
      { type: 'delete', key: '/n/2', revision: 4 },
    ]);
    expect(await codeOf(store.keepAlive(lease))).toBe('EDVSNOENT');
    expect(await codeOf(store.revokeLease(lease))).toBe('EDVSNOENT');
    expect(await codeOf(store.put('/n/4', 1, { lease }))).toBe('EDVSNOENT');
    expect(store.leaseCount).toBe(0);
  });

  it('revoke deletes the keys; a put without the lease detaches a key', async () => {
    const { store } = make();
    const a = await store.grantLease(5000);
    const b = await store.grantLease(5000);
    await store.put('/k1', 1, { lease: a });
    await store.put('/k2', 2, { lease: a });
    await store.put('/k2', 2); // detached
    await store.put('/k3', 3, { lease: a });
    await store.put('/k3', 3, { lease: b }); // moved to b
    await store.revokeLease(a);
    expect((await store.getPrefix('/k')).entries.map((e) => [e.key, e.lease])).toEqual([
      ['/k2', undefined],
      ['/k3', b],
    ]);
    await store.revokeLease(b);
    expect((await store.getPrefix('/k')).entries.map((e) => e.key)).toEqual(['/k2']);
  });

  it('a lease past its deadline is expired on use even before its timer ran', async () => {
    const { store, clock } = make();
    const lease = await store.grantLease(100);
    await store.put('/k', 1, { lease });
    clock.advanceTo(500); // time moves, no timer runs
    expect(await codeOf(store.keepAlive(lease))).toBe('EDVSNOENT');
    expect(await store.get('/k')).toBeUndefined();
    expect(await codeOf(store.grantLease(0))).toBe('EDVSINVAL');
    expect(await codeOf(store.grantLease(1.5))).toBe('EDVSINVAL');
  });
});

describe('watches', () => {
  it('deliver matching events in revision order, a transaction together', async () => {
    const { store } = make();
    const seen: WatchEvent[] = [];
    const unwatch = await store.watch('/w/', undefined, (e) => seen.push(e));
    await store.put('/w/a', 1);
    await store.put('/elsewhere', 1);
    await store.txn({ compare: [], success: [{ op: 'put', key: '/w/b', value: 2 }, { op: 'delete', key: '/w/a' }, { op: 'put', key: '/z', value: 0 }] });
    unwatch();
    await store.put('/w/c', 3);
    expect(seen).toEqual([
      { type: 'put', key: '/w/a', value: 1, revision: 1, createRevision: 1, version: 1 },
      { type: 'put', key: '/w/b', value: 2, revision: 3, createRevision: 3, version: 1 },
      { type: 'delete', key: '/w/a', revision: 3 },
    ]);
  });

  it('resume from a revision: every event after it, exactly once', async () => {
    const { store } = make();
    for (let i = 0; i < 10; i++) await store.put(`/r/${i % 3}`, i);
    const all: WatchEvent[] = [];
    await store.watch('/r/', 0, (e) => all.push(e));
    expect(all.map((e) => e.revision)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const tail: WatchEvent[] = [];
    await store.watch('/r/', 6, (e) => tail.push(e));
    expect(tail.map((e) => e.revision)).toEqual([7, 8, 9, 10]);
    await store.put('/r/x', 'live');
    expect(tail.map((e) => e.revision)).toEqual([7, 8, 9, 10, 11]);
    // A future revision: nothing until the store gets there.
    const future: WatchEvent[] = [];
    await store.watch('/r/', 12, (e) => future.push(e));
    await store.put('/r/y', 1);
    expect(future).toEqual([]);
    await store.put('/r/z', 1);
    expect(future.map((e) => e.revision)).toEqual([13]);
    expect(await codeOf(store.watch('/r/', -1, () => undefined))).toBe('EDVSINVAL');
  });

  it('refuse to resume from compacted history', async () => {
    const { store } = make({ historyRevisions: 5 });
    for (let i = 0; i < 12; i++) await store.put('/c', i);
    expect(store.compactRevision).toBe(7);
    expect(await codeOf(store.watch('/', 6, () => undefined))).toBe('EDVSRANGE');
    const seen: number[] = [];
    await store.watch('/', 7, (e) => seen.push(e.revision));
    expect(seen).toEqual([8, 9, 10, 11, 12]);
    store.compact(10);
    expect(await codeOf(store.watch('/', 9, () => undefined))).toBe('EDVSRANGE');
  });

  it('keep order for every watcher when a callback writes', async () => {
    const { store } = make();
    const first: number[] = [];
    const second: number[] = [];
    await store.watch('/', undefined, (e) => {
      first.push(e.revision);
      // A write from inside a callback queues behind the current delivery.
      if (e.key === '/trigger') void store.put('/reaction', 1);
    });
    await store.watch('/', undefined, (e) => second.push(e.revision));
    await store.put('/trigger', 1);
    await store.put('/after', 1);
    expect(first).toEqual([1, 2, 3]);
    expect(second).toEqual([1, 2, 3]);
  });

  it('a throwing callback does not stop the others', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const { store } = make();
    const seen: string[] = [];
    await store.watch('/', undefined, () => {
      throw new Error('boom');
    });
    await store.watch('/', undefined, (e) => seen.push(e.key));
    await store.put('/a', 1);
    await store.put('/b', 1);
    expect(seen).toEqual(['/a', '/b']);
    expect(warn).toHaveBeenCalled();
  });

  it('replaying the whole history rebuilds exactly the state (randomised, bounded)', async () => {
    const { store, clock } = make();
    const rng = new Prng(7);
    const leases: number[] = [];
    const live: WatchEvent[] = [];
    await store.watch('/p/', 0, (e) => live.push(e));
    for (let i = 0; i < 400; i++) {
      const key = `/p/${rng.int(0, 20)}`;
      const roll = rng.int(0, 9);
      if (roll < 4) await store.put(key, i);
      else if (roll < 5) await store.delete(key);
      else if (roll < 6) leases.push(await store.grantLease(rng.int(10, 200)));
      else if (roll < 7 && leases.length > 0) await store.put(key, i, { lease: leases[rng.int(0, leases.length - 1)]! }).catch(() => undefined);
      else if (roll < 8) await store.txn({ compare: [{ key, exists: rng.int(0, 1) === 1 }], success: [{ op: 'put', key, value: -i }], failure: [{ op: 'delete', key: '/p/', prefix: true }] });
      else clock.runUntil(clock.now() + rng.int(1, 50));
    }
    const rebuild = (events: WatchEvent[]): Map<string, unknown> => {
      const m = new Map<string, unknown>();
      let last = 0;
      for (const e of events) {
        expect(e.revision).toBeGreaterThanOrEqual(last);
        last = e.revision;
        if (e.type === 'put') m.set(e.key, e.value);
        else m.delete(e.key);
      }
      return m;
    };
    const state = new Map((await store.getPrefix('/p/')).entries.map((e) => [e.key, e.value]));
    expect(rebuild(live)).toEqual(state);
    const replay: WatchEvent[] = [];
    await store.watch('/p/', 0, (e) => replay.push(e));
    expect(replay).toEqual(live);
  });
});

describe('bookkeeping', () => {
  it('counts calls per operation', async () => {
    const { store } = make();
    const hook: string[] = [];
    store.calls.onCall = (op) => hook.push(op);
    await store.put('/a', 1);
    await store.get('/a');
    await store.getPrefix('/');
    await store.txn({ compare: [] });
    const l = await store.grantLease(100);
    await store.keepAlive(l);
    await store.revokeLease(l);
    const u = await store.watch('/', undefined, () => undefined);
    u();
    await store.delete('/a');
    expect(store.calls.total()).toBe(9);
    expect(store.calls.get('put')).toBe(1);
    expect(hook).toEqual(['put', 'get', 'getPrefix', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'watch', 'delete']);
    // Synchronous internals (used by the server) are not counted as client calls.
    store.getSync('/a');
    expect(store.calls.total()).toBe(9);
  });

  it('fails every call once closed', async () => {
    const { store } = make();
    await store.close();
    expect(await codeOf(store.get('/a'))).toBe('EDVSSHUTDOWN');
    expect(codeOfSync(() => store.putSync('/a', 1))).toBe('EDVSSHUTDOWN');
  });
});
