/**
 * The node serving the embedded store is down for longer than the other nodes' leases (about 9 s
 * here, five times their TTL): they lose their registrations, keep trying with backoff the whole
 * time, register again once the store is back, publish their endpoints again, and fixed-slot
 * binds work on them again. Each node's own view of its registration shows in `dvs status`.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterStatus, createDc } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { connect } from '../../src/client/index.js';
import { eventually, startCluster, type TestCluster } from './helpers.js';

let tc: TestCluster;

beforeAll(async () => {
  tc = await startCluster(3, 1500);
  await createDc(tc.dir, { dcid: 1, name: 'outage', nodes: [0, 1, 2] });
}, 60_000);

afterAll(async () => {
  await tc?.stop();
}, 30_000);

interface Registration {
  readonly state: string;
  readonly since: string;
  readonly attempts: number;
}

async function registrationOf(node: number): Promise<Registration> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'outage-test' });
  try {
    const info = (await c.nodeInfo()) as unknown as { node?: { registration?: Registration } };
    const reg = info.node?.registration;
    if (reg === undefined) throw new Error(`node ${node} reports no registration`);
    return reg;
  } finally {
    await c.close();
  }
}

async function bindFixed(node: number, slot: number, timeoutMs = 5000): Promise<number> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'outage-test' });
  try {
    const p = await c.bind(1, { slot, timeoutMs });
    return p.endpoint;
  } finally {
    await c.close();
  }
}

describe('a store outage longer than the leases', () => {
  it('every node registers again once the store is back, and fixed-slot binds work again', async () => {
    // A server on node 1 that lives through the outage.
    const r1 = tc.runtime(1);
    const server = await connect({ socketPath: r1.socket, tokenPath: r1.token, name: 'survivor' });
    const survivor = await eventually(() => server.bind(1, { slot: 6, timeoutMs: 5000 }).catch(() => undefined));
    expect((await registrationOf(1)).state).toBe('registered');

    const store = tc.cluster.nodes.find((n) => n.nodeId === 0)!;
    process.kill(tc.runtime(0).pid, 'SIGKILL');
    const outageStart = Date.now();
    // A fixed-slot bind needs the store: with it gone, the bind ends at its timeout (it used to block for ~42 s).
    await expect(bindFixed(2, 7, 400)).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(Date.now() - outageStart).toBeLessThan(5000);
    // The leases run out and the nodes know it: registering, attempt after attempt.
    const during = await eventually(async () => {
      const reg = await registrationOf(1);
      return reg.state === 'registering' && reg.attempts >= 3 ? reg : undefined;
    }, 15_000, 100);
    expect(Date.parse(during.since)).toBeGreaterThanOrEqual(outageStart - 1000);
    await expect(bindFixed(2, 8)).rejects.toMatchObject({ code: expect.stringMatching(/^EDVS(NONODE|TIMEDOUT|NOTCONN)$/) });
    // Keep the store down well past the leases' TTL (about 9 s in all), then bring it back.
    await eventually(() => (Date.now() - outageStart >= 9000 ? true : undefined), 15_000, 200);
    await spawnNode(JSON.parse(await readFile(store.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
    const back = Date.now();

    for (const n of [1, 2]) {
      const reg = await eventually(async () => {
        const x = await registrationOf(n);
        return x.state === 'registered' ? x : undefined;
      }, 20_000, 100);
      expect(Date.parse(reg.since)).toBeGreaterThanOrEqual(back - 1000);
    }
    // Fixed slots bind again on both, and the survivor's endpoint is published again as node 1's.
    expect(await eventually(() => bindFixed(2, 8).catch(() => undefined), 10_000, 100)).toBeGreaterThan(0);
    expect(await eventually(() => bindFixed(1, 9).catch(() => undefined), 10_000, 100)).toBeGreaterThan(0);
    // The survivor's slot is still node 1's in the directory: another node cannot take it.
    await expect(bindFixed(2, 6)).rejects.toMatchObject({ code: 'EDVSSLOTUSED' });
    const status = await eventually(async () => {
      const s = await clusterStatus(tc.dir);
      return s.nodes.every((n) => n.registered && n.registration?.state === 'registered') ? s : undefined;
    }, 10_000, 200);
    expect(status.nodes.map((n) => n.nodeId)).toEqual([0, 1, 2]);
    await server.close();
    expect(survivor.endpoint).toBe(6);
  }, 90_000);
});
