/**
 * `Election` on a real etcd: the shared checks (election-suite.ts), each candidate on its own etcd
 * client, plus a leader whose lease really expires on etcd (no revoke) being deposed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Election } from '../../src/cluster/election.js';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import { startEtcd, type EtcdCluster } from '../support/etcd.js';
import { electionSuite } from './election-suite.js';
import { until } from './helpers.js';

let etcd: EtcdCluster;
const stores: EtcdStore[] = [];
let roots = 0;

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  for (const s of stores) await s.close();
  await etcd?.stop();
});

function client(): EtcdStore {
  const s = new EtcdStore({ endpoints: etcd.endpoints });
  stores.push(s);
  return s;
}

electionSuite('etcd', () => ({ client, root: () => `/e${++roots}` }));

describe('Election on etcd, real expiry', () => {
  it('a leader that stops refreshing its lease is deposed when etcd expires it', async () => {
    const root = `/e${++roots}`;
    const sa = client();
    const lease = await sa.grantLease(1000); // never kept alive: expires after ~1 s
    const a = await new Election(sa, 'expiry', { root }).campaign('a', { lease });
    const lost: string[] = [];
    a.on('lost', (err) => lost.push(err.code));
    const b = await new Election(client(), 'expiry', { root }).campaign('b', { ttlMs: 5000, timeoutMs: 8000 });
    expect(b.epoch).toBeGreaterThan(a.epoch);
    await until(() => lost.length === 1, 3000, 'a learns it lost');
    expect((await a.fencedTxn({ compare: [], success: [{ op: 'put', key: `${root}/x`, value: 1 }] })).succeeded).toBe(false);
    await b.resign();
  });
});
