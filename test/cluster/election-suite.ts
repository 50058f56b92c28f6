/**
 * The behaviour checks of `Election`, run on every backend (election.test.ts: MemoryStore;
 * etcd-election.test.ts: a real etcd). Each candidate gets its own store client from `client()`.
 * Real time, bounded: every wait has a timeout.
 */
import { describe, expect, it } from 'vitest';
import { Election, type LeaderInfo, type Leadership } from '../../src/cluster/election.js';
import type { CoordinationStore } from '../../src/cluster/store.js';
import { codeOf, until } from './helpers.js';

export interface ElectionWorld {
  /** A store client of its own (the same store underneath). */
  client(): CoordinationStore;
  /** A fresh key root for one test. */
  root(): string;
}

export function electionSuite(label: string, world: () => ElectionWorld): void {
  describe(`Election on ${label}`, () => {
    it('a lone candidate leads at once, with its key’s createRevision as epoch; resign ends it', async () => {
      const w = world();
      const store = w.client();
      const e = new Election(store, 'solo', { root: w.root() });
      expect(await e.leader()).toBeUndefined();
      const seen: (LeaderInfo | undefined)[] = [];
      const stop = await e.observe((l) => seen.push(l));
      const me = await e.campaign({ id: 'a' }, { ttlMs: 5000 });
      expect(me.epoch).toBe((await store.get(me.key))!.createRevision);
      expect(await me.isLeader()).toBe(true);
      expect(await e.leader()).toMatchObject({ key: me.key, epoch: me.epoch, value: { id: 'a' }, lease: me.lease });
      await me.proclaim({ id: 'a', ready: true });
      await until(() => seen.length === 3, 3000, 'observer: none, leader, proclaimed value');
      expect(seen[0]).toBeUndefined();
      expect(seen[1]).toMatchObject({ epoch: me.epoch, value: { id: 'a' } });
      expect(seen[2]).toMatchObject({ epoch: me.epoch, value: { id: 'a', ready: true } });
      await me.resign();
      expect(me.over).toBe(true);
      expect(await e.leader()).toBeUndefined();
      await until(() => seen.length === 4, 3000, 'observer sees no leader');
      expect(seen[3]).toBeUndefined();
      expect(await codeOf(me.proclaim('late'))).toBe('EDVSGRPLEADER');
      stop();
    });

    it('contending candidates: one leader at a time, every epoch above the last, fenced writes only by the leader', async () => {
      const w = world();
      const root = w.root();
      const candidates = 4;
      const audit = w.client();
      let current: string | undefined;
      const epochs: number[] = [];
      const order: string[] = [];
      const stale: Leadership[] = [];
      const run = async (id: string): Promise<void> => {
        const e = new Election(w.client(), 'contended', { root });
        const me = await e.campaign(id, { ttlMs: 10_000, timeoutMs: 20_000 });
        // At most one leader at any moment.
        expect(current).toBeUndefined();
        current = id;
        epochs.push(me.epoch);
        order.push(id);
        // Earlier leaders' fences no longer hold; ours does.
        for (const old of stale) {
          const r = await old.fencedTxn({ compare: [], success: [{ op: 'put', key: `${root}/owner`, value: `stale:${id}` }] });
          expect(r.succeeded).toBe(false);
        }
        const r = await me.fencedTxn({ compare: [], success: [{ op: 'put', key: `${root}/owner`, value: { id, epoch: me.epoch } }] });
        expect(r.succeeded).toBe(true);
        await new Promise((res) => setTimeout(res, 20));
        current = undefined;
        stale.push(me);
        await me.resign();
      };
      await Promise.all(Array.from({ length: candidates }, (_, i) => run(`c${i}`)));
      expect(order).toHaveLength(candidates);
      expect(new Set(order).size).toBe(candidates);
      for (let i = 1; i < epochs.length; i++) expect(epochs[i]!).toBeGreaterThan(epochs[i - 1]!);
      expect((await audit.get(`${root}/owner`))!.value).toEqual({ id: order.at(-1), epoch: epochs.at(-1) });
    });

    it('a leader whose lease ends is deposed: it learns it lost, its fence fails, the next leader’s epoch is higher', async () => {
      const w = world();
      const root = w.root();
      const sa = w.client();
      const sb = w.client();
      const lease = await sa.grantLease(10_000); // the caller's lease (e.g. the node's)
      const a = await new Election(sa, 'fenced', { root }).campaign('a', { lease });
      const lost: string[] = [];
      a.on('lost', (err) => lost.push(err.code));
      const bWins = new Election(sb, 'fenced', { root }).campaign('b', { ttlMs: 10_000, timeoutMs: 10_000 });
      await new Promise((r) => setTimeout(r, 100));
      // a's lease ends as if it expired (a crashed, or was cut off for a TTL).
      await sa.revokeLease(lease);
      const b = await bWins;
      expect(b.epoch).toBeGreaterThan(a.epoch);
      await until(() => lost.length === 1, 3000, 'a learns it lost');
      expect(a.over).toBe(true);
      expect(await a.isLeader()).toBe(false);
      expect((await a.fencedTxn({ compare: [], success: [{ op: 'put', key: `${root}/data`, value: 'from a' }] })).succeeded).toBe(false);
      expect(await codeOf(a.proclaim('a again'))).toBe('EDVSGRPLEADER');
      expect((await b.fencedTxn({ compare: [], success: [{ op: 'put', key: `${root}/data`, value: 'from b' }] })).succeeded).toBe(true);
      expect((await sb.get(`${root}/data`))!.value).toBe('from b');
      await b.resign();
    });

    it('campaigning again with the same lease keeps the candidacy and its epoch', async () => {
      const w = world();
      const root = w.root();
      const s = w.client();
      const lease = await s.grantLease(10_000);
      const e = new Election(s, 'again', { root });
      const first = await e.campaign('v1', { lease });
      const second = await e.campaign('v2', { lease });
      expect(second.epoch).toBe(first.epoch);
      expect(second.key).toBe(first.key);
      expect(await e.leader()).toMatchObject({ epoch: first.epoch, value: 'v2' });
      await second.resign();
      await s.revokeLease(lease);
    });

    it('a campaign that times out or is aborted withdraws its candidacy', async () => {
      const w = world();
      const root = w.root();
      const leader = await new Election(w.client(), 'busy', { root }).campaign('holder', { ttlMs: 10_000 });
      const s = w.client();
      const e = new Election(s, 'busy', { root });
      expect(await codeOf(e.campaign('late', { ttlMs: 10_000, timeoutMs: 150 }))).toBe('EDVSTIMEDOUT');
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      expect(await codeOf(e.campaign('aborted', { ttlMs: 10_000, signal: ac.signal }))).toBe('EDVSINTR');
      const keys = (await s.getPrefix(e.prefix)).entries.map((kv) => kv.key);
      expect(keys).toEqual([leader.key]);
      await leader.resign();
      expect(await codeOf(Promise.resolve().then(() => new Election(s, 'bad name!')))).toBe('EDVSINVAL');
    });
  });
}
