/**
 * Daemons coordinated through a real 3-member etcd cluster: failure detection of a SIGKILLed
 * daemon, its rejoin as a new incarnation with stale generations refused, and an etcd leader
 * restart under traffic that loses no message and drops no endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterStatus, createDc, withDirectory } from '../../src/cli/admin.js';
import { clusterDown, clusterUp, spawnNode } from '../../src/cli/cluster.js';
import { isAlive, type ClusterFile } from '../../src/cli/cluster-files.js';
import { connect } from '../../src/client/index.js';
import { readRuntime } from '../../src/cli/cluster-files.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd.js';
import { eventually, killActors, startActor } from './helpers.js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const DEAD_MS = 1500;
let etcd: EtcdCluster;
let dir: string;
let cluster: ClusterFile;

function runtime(node: number): NonNullable<ReturnType<typeof readRuntime>> {
  const r = readRuntime(cluster.nodes.find((n) => n.nodeId === node)!.dataDir);
  if (r === undefined) throw new Error(`node ${node} is not running`);
  return r;
}

beforeAll(async () => {
  etcd = await startEtcdCluster(3);
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-etcd-cluster-'));
  cluster = await clusterUp({ nodes: 3, dir, deadMs: DEAD_MS, etcd: etcd.endpoints, logLevel: 'warn' });
  await createDc(dir, { dcid: 1, nodes: [0, 1, 2] });
}, 90_000);

afterAll(async () => {
  killActors();
  await clusterDown(dir).catch(() => undefined);
  for (const n of cluster?.nodes ?? []) if (isAlive(n.pid)) process.kill(n.pid, 'SIGKILL');
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('daemons on etcd', () => {
  it('register every node and serve remote request/reply', async () => {
    const s = await clusterStatus(dir);
    expect(s.store).toMatch(/^etcd /);
    expect(s.nodes.every((n) => n.alive && n.registered)).toBe(true);
    const server = startActor(runtime(1), 'echo-server', { dcid: 1, slot: 5 });
    const { endpoint } = await server.ready;
    const r = await startActor(runtime(0), 'loop-client', { dcid: 1, dst: endpoint, loops: 100 }).result;
    expect(r.ok).toBe(100);
    server.kill();
  }, 60_000);

  it('loses no message and drops no endpoint while the etcd leader restarts under traffic', async () => {
    const server = startActor(runtime(1), 'echo-server', { dcid: 1, slot: 6 });
    const { endpoint } = await server.ready;
    const before = await withDirectory(dir, (d) => Promise.resolve(d.endpoints(1).map((e) => e.endpoint).sort()));
    expect(before).toContain(endpoint);
    const traffic = startActor(runtime(2), 'loop-client', { dcid: 1, dst: endpoint, loops: 400, pauseMs: 5, timeoutMs: 10_000 });
    await traffic.ready;
    await new Promise((r) => setTimeout(r, 300));
    const leader = await etcd.leader();
    await leader.stop();
    await new Promise((r) => setTimeout(r, 1000));
    await leader.restart();
    const r = await traffic.result;
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(400);
    // Every endpoint registered before is still there (leases kept or re-established).
    const after = await eventually(async () => {
      const eps = await withDirectory(dir, (d) => Promise.resolve(d.endpoints(1).map((e) => e.endpoint)));
      return before.every((e) => eps.includes(e)) ? eps : undefined;
    }, 10_000, 200);
    expect(after).toEqual(expect.arrayContaining(before));
    server.kill();
  }, 90_000);

  it('marks a SIGKILLed daemon dead within the timeout, and its restart rejoins as a new incarnation', async () => {
    const victim = cluster.nodes.find((n) => n.nodeId === 2)!;
    const old = await clusterStatus(dir);
    const oldIncarnation = old.nodes.find((n) => n.nodeId === 2)!.incarnation!;
    const server = startActor(runtime(2), 'echo-server', { dcid: 1, slot: 7 });
    const { endpoint: oldEndpoint } = await server.ready;
    const waiting = startActor(runtime(0), 'loop-client', { dcid: 1, dst: oldEndpoint, loops: 100_000, pauseMs: 5, stopOnError: true, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    server.kill();
    const r = await waiting.result;
    expect(['EDVSNOTCONN', 'EDVSDSTDIED', 'EDVSDEADSRCDST']).toContain((r.errors as { code: string }[])[0]?.code);
    // The cluster forgets the node once its lease runs out (TTL rounded up to whole seconds).
    await eventually(async () => ((await clusterStatus(dir)).nodes.find((n) => n.nodeId === 2)?.registered === false ? true : undefined), 10_000, 100);
    const detectedMs = Date.now() - killedAt;
    expect(detectedMs).toBeLessThan(10_000);
    // Restart: a new incarnation; the old endpoint is stale and refused.
    await spawnNode(JSON.parse(await readFile(victim.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
    const now = await eventually(async () => {
      const s = await clusterStatus(dir);
      const n = s.nodes.find((x) => x.nodeId === 2);
      return n?.registered === true ? n : undefined;
    }, 15_000, 100);
    expect(now.incarnation).toBeGreaterThan(oldIncarnation);
    const reborn = startActor(runtime(2), 'echo-server', { dcid: 1, slot: 7 });
    const { endpoint: newEndpoint } = await reborn.ready;
    expect(newEndpoint).not.toBe(oldEndpoint);
    const c = await connect({ socketPath: runtime(0).socket, tokenPath: runtime(0).token });
    try {
      const p = await c.bind(1, { name: 'probe' });
      await eventually(() => c.waitForBind(1, newEndpoint, { timeoutMs: 200 }).then(() => true, () => undefined), 10_000, 100);
      await expect(p.sendrec(oldEndpoint, { type: 1 }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: expect.stringMatching(/^EDVS(ENDPOINT|DSTDIED)$/) as unknown as string });
      const ok = await p.sendrec(newEndpoint, { type: 1, payload: { i: 0 } }, { timeoutMs: 5000 });
      expect(ok.source).toBe(newEndpoint);
    } finally {
      await c.close();
    }
    reborn.kill();
  }, 90_000);
});
