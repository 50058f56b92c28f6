/**
 * EtcdStore against a real single-member etcd (Debian's etcd-server, started by test/support/etcd.ts):
 * the behaviour checks of the MemoryStore and the embedded client — revisions, reads, every compare
 * target, atomic branches, lease TTLs (rounded up to seconds), expiry and revoke deleting keys in one
 * revision, watches in order and resumed from a revision, compaction (EDVSRANGE), call counting — plus
 * what only a remote store has: an unreachable endpoint (EDVSNOTCONN) and a member restart that the
 * watches and leases ride out.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { EtcdStore, type EtcdStoreOptions } from '../../src/cluster/etcd-store.js';
import type { WatchEvent } from '../../src/cluster/store.js';
import type { DvsError } from '../../src/ipc/errors.js';
import { startEtcd, type EtcdCluster } from '../support/etcd.js';
import { codeOf, until } from './helpers.js';

let etcd: EtcdCluster;
const stores: EtcdStore[] = [];
let n = 0;

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  vi.restoreAllMocks();
});

function open(opts: Partial<EtcdStoreOptions> = {}): EtcdStore {
  const s = new EtcdStore({ endpoints: etcd.endpoints, requestTimeoutMs: 3000, ...opts });
  stores.push(s);
  return s;
}

/** A key prefix of its own for each test (one etcd serves the whole file). */
function space(): string {
  return `/t${++n}/`;
}

describe('revisions and reads', () => {
  it('bumps one global revision per write and tracks create/mod revision and version', async () => {
    const s = open();
    const p = space();
    const base = await s.revision();
    expect(await s.put(`${p}a`, 1)).toEqual({ revision: base + 1 });
    expect(await s.put(`${p}b`, { x: [1, 'two'] })).toEqual({ revision: base + 2 });
    expect(await s.put(`${p}a`, 3)).toEqual({ revision: base + 3 });
    expect(await s.get(`${p}a`)).toEqual({ key: `${p}a`, value: 3, createRevision: base + 1, modRevision: base + 3, version: 2 });
    expect(await s.get(`${p}b`)).toMatchObject({ value: { x: [1, 'two'] }, createRevision: base + 2, version: 1 });
    expect(await s.get(`${p}missing`)).toBeUndefined();
    // Deleting nothing makes no revision.
    expect(await s.delete(`${p}missing`)).toEqual({ revision: base + 3, deleted: 0 });
    expect(await s.delete(`${p}a`)).toEqual({ revision: base + 4, deleted: 1 });
    await s.put(`${p}a`, 'again');
    expect(await s.get(`${p}a`)).toMatchObject({ createRevision: base + 5, modRevision: base + 5, version: 1 });
  });

  it('reads a prefix sorted by key with the revision of the read', async () => {
    const s = open();
    const p = space();
    for (const k of ['x/3', 'x/1', 'y/1', 'x/2', 'x']) await s.put(p + k, k);
    const r = await s.getPrefix(`${p}x/`);
    expect(r.revision).toBe(await s.revision());
    expect(r.entries.map((e) => e.key)).toEqual([`${p}x/1`, `${p}x/2`, `${p}x/3`]);
    expect((await s.getPrefix(p)).entries).toHaveLength(5);
    expect((await s.getPrefix(`${p}none`)).entries).toEqual([]);
    expect((await s.getPrefix('')).entries.length).toBeGreaterThanOrEqual(5);
  });

  it('keeps values msgpack-exact and checks them before sending', async () => {
    const s = open();
    const p = space();
    const v = { list: [1, 2], nested: { ok: true, n: null }, big: 2 ** 40, neg: -7.5, text: 'héllo' };
    await s.put(`${p}v`, v);
    expect((await s.get(`${p}v`))!.value).toEqual(v);
    await s.put(`${p}bin`, new Uint8Array([1, 2, 3]));
    const bin = (await s.get(`${p}bin`))!.value;
    expect(bin).toBeInstanceOf(Uint8Array);
    expect([...(bin as Uint8Array)]).toEqual([1, 2, 3]);
    const before = await s.revision();
    expect(await codeOf(s.put(`${p}bad`, new Map() as never))).toBe('EDVSBADVALUE');
    expect(await codeOf(s.put(`${p}bad`, (() => 1) as never))).toBe('EDVSBADVALUE');
    expect(await codeOf(s.put('', 1))).toBe('EDVSINVAL');
    expect(await codeOf(s.put('k'.repeat(5000), 1))).toBe('EDVSINVAL');
    expect(await codeOf(s.put(`${p}l`, 1, { lease: -3 }))).toBe('EDVSINVAL');
    const small = open({ limits: { maxValueBytes: 100 } });
    expect(await codeOf(small.put(`${p}big`, 'x'.repeat(200)))).toBe('EDVSMSGSIZE');
    expect(await s.revision()).toBe(before);
  });
});

describe('transactions', () => {
  it('evaluates every compare target and op', async () => {
    const s = open();
    const p = space();
    const k = `${p}k`;
    const r1 = (await s.put(k, 'v')).revision;
    const r2 = (await s.put(k, 'w')).revision;
    const holds = async (c: object): Promise<boolean> => (await s.txn({ compare: [{ key: k, ...c } as never] })).succeeded;
    expect(await holds({ createRevision: r1 })).toBe(true);
    expect(await holds({ createRevision: r1, op: '!=' })).toBe(false);
    expect(await holds({ modRevision: r2 })).toBe(true);
    expect(await holds({ modRevision: r2 + 1, op: '<' })).toBe(true);
    expect(await holds({ modRevision: r1, op: '>' })).toBe(true);
    expect(await holds({ modRevision: r2, op: '>' })).toBe(false);
    expect(await holds({ version: 2 })).toBe(true);
    expect(await holds({ version: 1, op: '>' })).toBe(true);
    expect(await holds({ value: 'w' })).toBe(true);
    expect(await holds({ value: 'v' })).toBe(false);
    expect(await holds({ value: 'v', op: '!=' })).toBe(true);
    expect(await holds({ value: new Set() })).toBe(false); // unencodable operand: never holds
    expect(await holds({ exists: true })).toBe(true);
    expect(await holds({ exists: false })).toBe(false);
    expect(await holds({ exists: false, op: '!=' })).toBe(true);
    expect(await holds({ exists: true, op: '!=' })).toBe(false);
    expect(await holds({ lease: 0 })).toBe(true);
    const lease = await s.grantLease(10_000);
    await s.put(`${p}leased`, 1, { lease });
    expect((await s.txn({ compare: [{ key: `${p}leased`, lease }] })).succeeded).toBe(true);
    expect((await s.txn({ compare: [{ key: `${p}leased`, lease: 0 }] })).succeeded).toBe(false);
    await s.revokeLease(lease);
    // A missing key: revisions, version and lease 0; a value compare is false whatever the op.
    const missing = async (c: object): Promise<boolean> => (await s.txn({ compare: [{ key: `${p}nope`, ...c } as never] })).succeeded;
    expect(await missing({ createRevision: 0 })).toBe(true);
    expect(await missing({ modRevision: 0 })).toBe(true);
    expect(await missing({ version: 0 })).toBe(true);
    expect(await missing({ lease: 0 })).toBe(true);
    expect(await missing({ exists: false })).toBe(true);
    expect(await missing({ value: 'v' })).toBe(false);
    expect(await missing({ value: 'v', op: '!=' })).toBe(false);
    // Read-only transactions make no revision.
    const rev = await s.revision();
    await s.txn({ compare: [], success: [{ op: 'get', key: k }] });
    expect(await s.revision()).toBe(rev);
  });

  it('runs the success or failure branch atomically at one revision', async () => {
    const s = open();
    const p = space();
    await s.put(`${p}dir/a`, 1);
    await s.put(`${p}dir/b`, 2);
    const base = (await s.put(`${p}other`, 0)).revision;
    const ok = await s.txn({
      compare: [{ key: `${p}other`, value: 0 }],
      success: [
        { op: 'put', key: `${p}dir/c`, value: 3 },
        { op: 'get', key: `${p}dir/`, prefix: true },
        { op: 'delete', key: `${p}other` },
      ],
      failure: [{ op: 'put', key: `${p}never`, value: 1 }],
    });
    expect(ok.succeeded).toBe(true);
    expect(ok.revision).toBe(base + 1);
    expect(ok.results[0]).toEqual({ op: 'put', revision: base + 1 });
    // A get sees the earlier writes of its own transaction.
    expect(ok.results[1]).toMatchObject({ op: 'get', entries: [{ key: `${p}dir/a` }, { key: `${p}dir/b` }, { key: `${p}dir/c`, modRevision: base + 1 }] });
    expect(ok.results[2]).toEqual({ op: 'delete', deleted: 1 });
    const failed = await s.txn({
      compare: [{ key: `${p}other`, exists: true }],
      success: [{ op: 'put', key: `${p}never`, value: 1 }],
      failure: [{ op: 'delete', key: `${p}dir/`, prefix: true }, { op: 'get', key: `${p}dir/a` }],
    });
    expect(failed.succeeded).toBe(false);
    expect(failed.revision).toBe(base + 2);
    expect(failed.results).toEqual([{ op: 'delete', deleted: 3 }, { op: 'get', entries: [] }]);
    expect(await s.get(`${p}never`)).toBeUndefined();
  });

  it('refuses malformed transactions without writing anything', async () => {
    const s = open();
    const p = space();
    await s.put(`${p}k`, 1);
    const rev = await s.revision();
    const bad = async (req: object): Promise<string> => codeOf(s.txn(req as never));
    expect(await bad({ compare: [{ key: `${p}k` }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [{ key: `${p}k`, modRevision: 1, version: 1 }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [{ key: `${p}k`, value: 1, op: '<' }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: [{ op: 'put', key: `${p}d`, value: 1 }, { op: 'put', key: `${p}d`, value: 2 }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: [{ op: 'delete', key: `${p}d`, prefix: true }, { op: 'put', key: `${p}d/x`, value: 2 }] })).toBe('EDVSINVAL');
    expect(await bad({ compare: [], success: Array.from({ length: 129 }, (_, i) => ({ op: 'get', key: `${p}g${i}` })) })).toBe('EDVSINVAL');
    // A put on a lease that does not exist fails the whole branch (etcd checks it).
    expect(await bad({ compare: [], success: [{ op: 'put', key: `${p}a`, value: 1 }, { op: 'put', key: `${p}b`, value: 1, lease: 12345 }] })).toBe('EDVSNOENT');
    expect(await bad({ compare: [], success: [{ op: 'put', key: `${p}a`, value: new Set() }] })).toBe('EDVSBADVALUE');
    expect(await s.revision()).toBe(rev);
    expect(await s.get(`${p}a`)).toBeUndefined();
  });

  it('carries the directory’s largest transaction (49 compares, 32 puts) within etcd’s limits', async () => {
    const s = open();
    const p = space();
    const compare = Array.from({ length: 49 }, (_, i) => ({ key: `${p}c${i}`, exists: false }));
    const success = Array.from({ length: 32 }, (_, i) => ({ op: 'put' as const, key: `${p}p${i}`, value: { node: 1, generation: i } }));
    const r = await s.txn({ compare, success });
    expect(r.succeeded).toBe(true);
    expect((await s.getPrefix(p)).entries).toHaveLength(32);
  });
});

describe('leases', () => {
  it('round TTLs up to whole seconds (at etcd’s minimum) and keep keys until revoked', async () => {
    const s = open();
    const p = space();
    const a = await s.grantLease(1); // etcd's minimum here: 1 s (1.5 election timeouts of 500 ms, rounded up)
    expect(await s.keepAlive(a)).toBe(1000);
    const b = await s.grantLease(1500);
    expect(await s.keepAlive(b)).toBe(2000);
    expect(Number.isSafeInteger(a) && a > 0).toBe(true);
    await s.put(`${p}k1`, 1, { lease: b });
    await s.put(`${p}k2`, 2, { lease: b });
    await s.put(`${p}k2`, 2); // detached
    await s.put(`${p}k3`, 3, { lease: b });
    await s.put(`${p}k3`, 3, { lease: a }); // moved to a
    expect((await s.get(`${p}k1`))!.lease).toBe(b);
    await s.revokeLease(b);
    expect((await s.getPrefix(p)).entries.map((e) => [e.key, e.lease])).toEqual([
      [`${p}k2`, undefined],
      [`${p}k3`, a],
    ]);
    await s.revokeLease(a);
    expect((await s.getPrefix(p)).entries.map((e) => e.key)).toEqual([`${p}k2`]);
    expect(await codeOf(s.revokeLease(a))).toBe('EDVSNOENT');
    expect(await codeOf(s.keepAlive(a))).toBe('EDVSNOENT');
    expect(await codeOf(s.grantLease(0))).toBe('EDVSINVAL');
    expect(await codeOf(s.grantLease(1.5))).toBe('EDVSINVAL');
    expect(await codeOf(s.keepAlive(0))).toBe('EDVSINVAL');
  });

  it('expire after their TTL unless kept alive, deleting their keys in one revision', async () => {
    const s = open();
    const p = space();
    const kept = await s.grantLease(3000);
    const dying = await s.grantLease(1000);
    await s.put(`${p}kept`, 0, { lease: kept });
    await s.put(`${p}n/1`, 'a', { lease: dying });
    await s.put(`${p}n/2`, 'b', { lease: dying });
    await s.put(`${p}n/3`, 'c');
    const events: WatchEvent[] = [];
    await s.watch(p, undefined, (e) => events.push(e));
    const started = Date.now();
    // Keep one alive for well over its TTL; the other runs out.
    while (Date.now() - started < 2600) {
      await s.keepAlive(kept);
      await new Promise((r) => setTimeout(r, 300));
    }
    await until(() => events.length >= 2, 5000, 'expiry events');
    expect(events).toHaveLength(2);
    expect(events.map((e) => [e.type, e.key])).toEqual([
      ['delete', `${p}n/1`],
      ['delete', `${p}n/2`],
    ]);
    expect(events[0]!.revision).toBe(events[1]!.revision);
    expect((await s.getPrefix(p)).entries.map((e) => e.key)).toEqual([`${p}kept`, `${p}n/3`]);
    expect(await codeOf(s.keepAlive(dying))).toBe('EDVSNOENT');
    expect(await codeOf(s.put(`${p}n/4`, 1, { lease: dying }))).toBe('EDVSNOENT');
    await s.revokeLease(kept);
  });
});

describe('watches', () => {
  it('deliver matching events in revision order, a transaction together', async () => {
    const s = open();
    const p = space();
    const seen: WatchEvent[] = [];
    const unwatch = await s.watch(`${p}w/`, undefined, (e) => seen.push(e));
    const r1 = (await s.put(`${p}w/a`, 1)).revision;
    await s.put(`${p}elsewhere`, 1);
    const r3 = (await s.txn({ compare: [], success: [{ op: 'put', key: `${p}w/b`, value: 2 }, { op: 'delete', key: `${p}w/a` }, { op: 'put', key: `${p}z`, value: 0 }] })).revision;
    await until(() => seen.length === 3, 3000, 'three events');
    unwatch();
    await s.put(`${p}w/c`, 3);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([
      { type: 'put', key: `${p}w/a`, value: 1, revision: r1, createRevision: r1, version: 1 },
      { type: 'put', key: `${p}w/b`, value: 2, revision: r3, createRevision: r3, version: 1 },
      { type: 'delete', key: `${p}w/a`, revision: r3 },
    ]);
  });

  it('resume from a revision: every event after it, exactly once; a future revision waits', async () => {
    const s = open();
    const p = space();
    const revs: number[] = [];
    for (let i = 0; i < 10; i++) revs.push((await s.put(`${p}${i % 3}`, i)).revision);
    const all: WatchEvent[] = [];
    await s.watch(p, revs[0]! - 1, (e) => all.push(e));
    await until(() => all.length === 10, 3000, 'replay');
    expect(all.map((e) => e.revision)).toEqual(revs);
    expect(all.map((e) => (e.type === 'put' ? e.value : null))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const tail: WatchEvent[] = [];
    await s.watch(p, revs[5]!, (e) => tail.push(e));
    const live = (await s.put(`${p}x`, 'live')).revision;
    await until(() => tail.length === 5, 3000, 'tail');
    expect(tail.map((e) => e.revision)).toEqual([...revs.slice(6), live]);
    const future: WatchEvent[] = [];
    await s.watch(p, live + 1, (e) => future.push(e));
    await s.put(`${p}y`, 1);
    const last = (await s.put(`${p}z`, 1)).revision;
    await until(() => future.length === 1, 3000, 'future');
    await new Promise((r) => setTimeout(r, 100));
    expect(future.map((e) => e.revision)).toEqual([last]);
    expect(await codeOf(s.watch(p, -1, () => undefined))).toBe('EDVSINVAL');
  });

  it('a throwing callback does not stop the watch or the others', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const s = open();
    const p = space();
    const seen: string[] = [];
    let thrown = 0;
    await s.watch(p, undefined, () => {
      thrown++;
      throw new Error('boom');
    });
    await s.watch(p, undefined, (e) => seen.push(e.key));
    await s.put(`${p}a`, 1);
    await s.put(`${p}b`, 1);
    await until(() => seen.length === 2 && thrown === 2, 3000, 'events');
    expect(seen).toEqual([`${p}a`, `${p}b`]);
    expect(warn).toHaveBeenCalled();
  });

  it('refuse to resume from compacted history (EDVSRANGE)', async () => {
    const s = open();
    const p = space();
    const revs: number[] = [];
    for (let i = 0; i < 6; i++) revs.push((await s.put(`${p}c`, i)).revision);
    await etcd.compact(revs[3]!);
    expect(await codeOf(s.watch(p, revs[1]!, () => undefined))).toBe('EDVSRANGE');
    // From the compaction point on is still fine.
    const seen: number[] = [];
    await s.watch(p, revs[3]!, (e) => seen.push(e.revision));
    await until(() => seen.length === 2, 3000, 'events after the compaction point');
    expect(seen).toEqual(revs.slice(4));
  });
});

describe('bookkeeping and failures', () => {
  it('counts calls per operation, once per call whatever the retries', async () => {
    const s = open();
    const p = space();
    const hook: string[] = [];
    s.calls.onCall = (op) => hook.push(op);
    await s.put(`${p}a`, 1);
    await s.get(`${p}a`);
    await s.getPrefix(p);
    await s.txn({ compare: [] });
    const l = await s.grantLease(1000);
    await s.keepAlive(l);
    await s.revokeLease(l);
    const u = await s.watch(p, undefined, () => undefined);
    u();
    await s.delete(`${p}a`);
    expect(s.calls.total()).toBe(9);
    expect(hook).toEqual(['put', 'get', 'getPrefix', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'watch', 'delete']);
    await s.revision(); // the extras are not store calls
    expect(s.calls.total()).toBe(9);
  });

  it('fails every call once closed, and refuses bad options', async () => {
    const s = open();
    await s.close();
    expect(await codeOf(s.get('/a'))).toBe('EDVSSHUTDOWN');
    expect(await codeOf(s.watch('/', undefined, () => undefined))).toBe('EDVSSHUTDOWN');
    const bad = (o: object): string => {
      try {
        new EtcdStore(o as EtcdStoreOptions);
      } catch (err) {
        return (err as DvsError).code;
      }
      return 'ok';
    };
    expect(bad({ endpoints: [] })).toBe('EDVSINVAL');
    expect(bad({ endpoints: ['127.0.0.1:2379'] })).toBe('EDVSINVAL');
    expect(bad({ endpoints: ['http://127.0.0.1:2379'], requestTimeoutMs: 0 })).toBe('EDVSINVAL');
  });

  it('an unreachable cluster: EDVSNOTCONN within requestTimeoutMs', async () => {
    const s = open({ endpoints: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], requestTimeoutMs: 600, dialTimeoutMs: 200 });
    const started = Date.now();
    expect(await codeOf(s.get('/a'))).toBe('EDVSNOTCONN');
    expect(await codeOf(s.put('/a', 1))).toBe('EDVSNOTCONN');
    expect(await codeOf(s.watch('/', undefined, () => undefined))).toBe('EDVSNOTCONN');
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('a dead endpoint listed first: calls go on to the live one', async () => {
    const s = open({ endpoints: ['http://127.0.0.1:1', ...etcd.endpoints] });
    const p = space();
    await s.put(`${p}a`, 1);
    expect((await s.get(`${p}a`))?.value).toBe(1);
    expect(s.currentEndpoint).toBe(etcd.endpoints[0]);
  });
});

describe('a member restart', () => {
  it('watches resume from the last revision seen and leases survive', async () => {
    const s = open({ requestTimeoutMs: 1500 });
    const p = space();
    const seen: WatchEvent[] = [];
    const errors: DvsError[] = [];
    await s.watch(p, undefined, (e) => seen.push(e), { onError: (e) => errors.push(e) });
    const lease = await s.grantLease(10_000);
    await s.put(`${p}leased`, 'x', { lease });
    await s.put(`${p}before`, 1);
    await until(() => seen.length === 2, 3000, 'events before the restart');
    const member = etcd.members[0]!;
    await member.stop();
    expect(await codeOf(s.put(`${p}down`, 1))).toBe('EDVSNOTCONN');
    await member.restart();
    // Another client writes right away: the watch must deliver it, and nothing twice.
    const other = open();
    const after = (await other.put(`${p}after`, 2)).revision;
    await until(() => seen.length === 3, 8000, 'the event written after the restart');
    expect(seen.map((e) => e.key)).toEqual([`${p}leased`, `${p}before`, `${p}after`]);
    expect(seen[2]!.revision).toBe(after);
    expect(errors).toEqual([]);
    expect(await s.keepAlive(lease)).toBe(10_000);
    expect((await s.get(`${p}leased`))?.lease).toBe(lease);
    await s.revokeLease(lease);
  });
});

describe('authentication', () => {
  it('passes etcd user credentials through; a wrong password is EDVSACCES', async () => {
    const secured = await startEtcd();
    try {
      const admin = new Etcd3({ hosts: secured.endpoints });
      try {
        await admin.role('root').create();
        await admin.user('root').create('root-pw');
        await admin.user('root').addRole('root');
        await admin.auth.authEnable();
      } finally {
        admin.close();
      }
      const good = open({ endpoints: secured.endpoints, auth: { username: 'root', password: 'root-pw' } });
      await good.put('/auth/k', 'v');
      expect((await good.get('/auth/k'))?.value).toBe('v');
      const bad = open({ endpoints: secured.endpoints, auth: { username: 'root', password: 'wrong' } });
      expect(await codeOf(bad.get('/auth/k'))).toBe('EDVSACCES');
      const anonymous = open({ endpoints: secured.endpoints });
      expect(await codeOf(anonymous.get('/auth/k'))).toBe('EDVSACCES');
    } finally {
      await secured.stop();
    }
  });
});
