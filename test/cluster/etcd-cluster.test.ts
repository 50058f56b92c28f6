/**
 * The etcd backend on a real three-member etcd cluster, through leader failures: directories keep
 * registering, claiming and following each other's changes by watch while the etcd leader is stopped
 * and restarted, then killed and restarted (no watch event lost or repeated, leases kept, no
 * leaseLost, an election's leadership kept with its epoch); a watch on the leader fails over with no
 * gap while a writer keeps writing; and a watch whose only member comes back after a compaction ends
 * with EDVSRANGE.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Directory, type EndpointEvent } from '../../src/cluster/directory.js';
import { Election } from '../../src/cluster/election.js';
import { EtcdStore, type EtcdStoreOptions } from '../../src/cluster/etcd-store.js';
import type { WatchEvent } from '../../src/cluster/store.js';
import type { DvsError } from '../../src/ipc/errors.js';
import { startEtcdCluster, type EtcdCluster, type EtcdMember } from '../support/etcd.js';
import { until } from './helpers.js';

let etcd: EtcdCluster;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  etcd = await startEtcdCluster(3);
});

afterAll(async () => {
  await etcd?.stop();
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  // Every member back up for the next test.
  for (const m of etcd.members) if (!m.running) await m.restart();
  await etcd.waitHealthy();
});

function store(endpoints: string[], opts: Partial<EtcdStoreOptions> = {}): EtcdStore {
  const s = new EtcdStore({ endpoints, requestTimeoutMs: 3000, ...opts });
  closers.push(() => s.close());
  return s;
}

/** Endpoints with `first` in front: a client that starts on that member. */
function startingAt(first: EtcdMember): string[] {
  return [first.endpoint, ...etcd.members.filter((m) => m !== first).map((m) => m.endpoint)];
}

function node(id: number): { nodeId: number; host: string; port: number } {
  return { nodeId: id, host: '127.0.0.1', port: 7000 + id };
}

describe('a three-member etcd cluster', () => {
  it('directories keep working through a stopped and a killed etcd leader: no lost event, leases and leadership kept', async () => {
    const first = await etcd.leader();
    // Both daemons talk to the leader first, so its failures hit their calls and their watches.
    const sa = store(startingAt(first));
    const sb = store(startingAt(first));
    const a = new Directory(sa, { root: '/c1' });
    const b = new Directory(sb, { root: '/c1' });
    closers.push(() => a.close(), () => b.close());
    const bBound: EndpointEvent[] = [];
    b.on('endpoint', (e) => {
      if (e.type === 'bound') bBound.push(e);
    });
    const lost: number[] = [];
    a.on('leaseLost', (e) => lost.push(e.nodeId));
    b.on('leaseLost', (e) => lost.push(e.nodeId));
    const n1 = await a.registerNode(node(1), 3000);
    const n2 = await b.registerNode(node(2), 3000);
    await a.createDc({ dcid: 0, nodes: [1, 2, 3] });
    const claimed: number[] = [await a.claimEndpoint(0, 1, { slot: 1, name: 's1' })];
    const leadership = await new Election(sa, 'daemon', { root: '/c1' }).campaign({ node: 1 }, { ttlMs: 3000 });
    const leadershipLost: string[] = [];
    leadership.on('lost', (e) => leadershipLost.push(e.code));

    // The etcd leader stops (SIGTERM): registration and claims go on, and b sees them by watch.
    await first.stop();
    for (let slot = 10; slot < 15; slot++) claimed.push(await a.claimEndpoint(0, 1, { slot, name: `s${slot}` }));
    expect(sa.currentEndpoint).not.toBe(first.endpoint); // the calls moved to another member
    const n3 = await a.registerNode(node(3), 3000);
    const users: number[] = [];
    for (let i = 0; i < 5; i++) users.push(await b.claimEndpoint(0, 2, { name: `u${i}` }));
    await b.flush();
    await until(() => claimed.every((ep) => b.lookup(0, ep) !== undefined) && b.node(3) !== undefined, 10_000, 'b sees the claims made without the leader');
    await first.restart();

    // Then the new leader is killed (SIGKILL) and comes back.
    const second = await etcd.leader();
    expect(second).not.toBe(first);
    await second.kill();
    for (let slot = 20; slot < 25; slot++) claimed.push(await a.claimEndpoint(0, 1, { slot, name: `s${slot}` }));
    await until(() => claimed.every((ep) => b.lookup(0, ep) !== undefined), 10_000, 'b sees the claims made after the kill');
    await second.restart();
    await until(() => users.every((ep) => a.lookup(0, ep) !== undefined), 10_000, 'a sees b’s claims');

    // No watch event lost or repeated: b saw each of a's endpoints bound exactly once.
    for (const ep of claimed) expect(bBound.filter((e) => e.endpoint.endpoint === ep)).toHaveLength(1);
    // Caches agree with etcd.
    const truth = (await sa.getPrefix('/c1/dcs/0/eps/')).entries.map((kv) => (kv.value as { endpoint: number }).endpoint).sort((x, y) => x - y);
    await until(() => a.endpoints(0).length === truth.length && b.endpoints(0).length === truth.length, 5000, 'caches complete');
    expect(a.endpoints(0).map((e) => e.endpoint).sort((x, y) => x - y)).toEqual(truth);
    expect(b.endpoints(0).map((e) => e.endpoint).sort((x, y) => x - y)).toEqual(truth);
    // Leases kept: the same leases as at registration, never reported lost.
    expect(lost).toEqual([]);
    for (const n of [n1, n2, n3]) expect(b.node(n.nodeId)?.lease).toBe(n.lease);
    expect(await sa.keepAlive(n1.lease)).toBe(3000);
    // The election's leadership outlived both etcd leaders, at the same epoch.
    expect(leadershipLost).toEqual([]);
    expect(await leadership.isLeader()).toBe(true);
    expect((await leadership.fencedTxn({ compare: [], success: [{ op: 'put', key: '/c1/fenced', value: leadership.epoch }] })).succeeded).toBe(true);
    await leadership.resign();
  });

  it('a watch on the leader fails over without a gap while a writer keeps writing', async () => {
    const leader = await etcd.leader();
    const watcher = store(startingAt(leader));
    const follower = etcd.members.find((m) => m !== leader)!;
    const writer = store(startingAt(follower));
    const seen: WatchEvent[] = [];
    const errors: DvsError[] = [];
    await watcher.watch('/c2/', undefined, (e) => seen.push(e), { onError: (e) => errors.push(e) });
    const total = 60;
    const write = async (i: number): Promise<void> => {
      // Create-if-absent, retried when the outcome is unknown: each key is created exactly once.
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          await writer.txn({ compare: [{ key: `/c2/${String(i).padStart(3, '0')}`, exists: false }], success: [{ op: 'put', key: `/c2/${String(i).padStart(3, '0')}`, value: i }] });
          return;
        } catch (err) {
          if ((err as DvsError).code !== 'EDVSNOTCONN' && (err as DvsError).code !== 'EDVSTIMEDOUT') throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      throw new Error(`write ${i} kept failing`);
    };
    for (let i = 0; i < total; i++) {
      if (i === 20) await leader.kill();
      if (i === 40) await leader.restart();
      await write(i);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(watcher.currentEndpoint).not.toBe(leader.endpoint); // the watch moved to another member
    await until(() => seen.length >= total, 10_000, 'every event');
    await new Promise((r) => setTimeout(r, 200));
    expect(errors).toEqual([]);
    expect(seen.map((e) => (e.type === 'put' ? e.value : 'delete'))).toEqual(Array.from({ length: total }, (_, i) => i));
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.revision).toBeGreaterThan(seen[i - 1]!.revision);
  });

  it('a watch whose member comes back after a compaction of what it missed ends with EDVSRANGE', async () => {
    const leader = await etcd.leader();
    const lone = etcd.members.find((m) => m !== leader)!;
    const watcher = store([lone.endpoint], { watchRetryMaxMs: 200 });
    const writer = store(etcd.members.filter((m) => m !== lone).map((m) => m.endpoint));
    const seen: WatchEvent[] = [];
    const errors: DvsError[] = [];
    await watcher.watch('/c3/', undefined, (e) => seen.push(e), { onError: (e) => errors.push(e) });
    await writer.put('/c3/a', 1);
    await until(() => seen.length === 1, 3000, 'first event');
    await lone.stop();
    await writer.put('/c3/b', 2);
    const last = (await writer.put('/c3/c', 3)).revision;
    await etcd.compact(last);
    await lone.restart();
    await until(() => errors.length === 1, 10_000, 'the watch ends');
    expect(errors[0]!.code).toBe('EDVSRANGE');
    expect(seen).toHaveLength(1);
  });
});
