/**
 * Suite `replication`: replica groups on three real daemons (`dvs cluster up`, the embedded store
 * on node 0), the register of bench/services/register-service.ts, a client on node 0.
 * - Write latency and throughput with 1, 2 and 3 members in each mode (passive; active with every
 *   member in the quorum), beside the unreplicated register on node 1 in the same run.
 * - Failover: the primary's daemon (node 1 or 2) SIGKILLed while the client writes; the time from
 *   the kill to the first write answered by the new primary, median and p99 over several rounds
 *   (the killed node is started again and rejoins between rounds), with the default candidacy lease
 *   (3 s) and the fast one (1 s).
 *
 * `--scale` shrinks the iteration counts and the number of failover rounds.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createDc } from '../../src/cli/admin.js';
import { clusterDown, clusterUp, spawnNode } from '../../src/cli/cluster.js';
import { readRuntime, type ClusterFile } from '../../src/cli/cluster-files.js';
import { replicas } from '../../src/cli/replicas-command.js';
import { vosStatus, vosUp } from '../../src/cli/vos-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import type { RemoteProcess } from '../../src/client/remote-process.js';
import { DvsError } from '../../src/ipc/errors.js';
import { removeOnExit } from '../etcd-process.js';
import { latency, median, percentile, round, throughput, type BenchResult, type Suite } from '../harness.js';

const SUITE = 'replication';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REGISTER = path.join(HERE, '..', 'services', 'register-service.js');
const SLOT = 9;
const W = 60_000;
const CONCURRENT = 4;

interface Group {
  readonly dc: number;
  readonly label: string;
  readonly replicas?: { readonly nodes: readonly number[]; readonly mode: 'passive' | 'active'; readonly leaseMs?: number };
}

const GROUPS: readonly Group[] = [
  { dc: 1, label: 'unreplicated' },
  { dc: 2, label: 'passive, 1 member', replicas: { nodes: [1], mode: 'passive' } },
  { dc: 3, label: 'passive, 2 members', replicas: { nodes: [1, 2], mode: 'passive' } },
  { dc: 4, label: 'passive, 3 members', replicas: { nodes: [1, 2, 0], mode: 'passive' } },
  { dc: 5, label: 'active, 1 member', replicas: { nodes: [1], mode: 'active' } },
  { dc: 6, label: 'active, 2 members', replicas: { nodes: [1, 2], mode: 'active' } },
  { dc: 7, label: 'active, 3 members', replicas: { nodes: [1, 2, 0], mode: 'active' } },
];
const FAILOVER: readonly Group[] = [
  { dc: 8, label: 'default (lease 3 s)', replicas: { nodes: [1, 2], mode: 'passive' } },
  { dc: 9, label: 'fast (lease 1 s)', replicas: { nodes: [1, 2], mode: 'passive', leaseMs: 1000 } },
];

const RETRY = new Set(['EDVSNOTCONN', 'EDVSDEADSRCDST', 'EDVSDSTDIED', 'EDVSSRCDIED', 'EDVSTIMEDOUT', 'EDVSNOTBIND', 'EDVSNONODE', 'EDVSSHUTDOWN', 'EDVSAGAIN']);

class Env {
  dir = '';
  cluster: ClusterFile | undefined;
  readonly clients: DvsClient[] = [];

  async setUp(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-bench-replication-'));
    removeOnExit(this.dir);
    this.cluster = await clusterUp({ nodes: 3, dir: this.dir, logLevel: process.env.DVS_BENCH_LOG ?? 'error' });
    for (const g of [...GROUPS, ...FAILOVER]) {
      await createDc(this.dir, { dcid: g.dc, name: `rep${g.dc}`, nodes: [0, 1, 2] });
      const server = { name: `custom:${REGISTER}`, node: 1, shape: 'unikernel', slot: SLOT, ...(g.replicas === undefined ? {} : { replicas: g.replicas }) };
      const file = path.join(this.dir, `vos-${g.dc}.json`);
      await writeFile(file, JSON.stringify({ dc: g.dc, servers: [server] }));
      await vosUp(this.dir, file, { timeoutMs: W });
    }
  }

  async client(node: number): Promise<DvsClient> {
    const entry = this.cluster?.nodes.find((n) => n.nodeId === node);
    const r = entry === undefined ? undefined : readRuntime(entry.dataDir);
    if (r === undefined) throw new Error(`node ${node} is not running`);
    const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'bench-replication' });
    this.clients.push(c);
    return c;
  }

  pid(node: number): number {
    const entry = this.cluster?.nodes.find((n) => n.nodeId === node);
    const r = entry === undefined ? undefined : readRuntime(entry.dataDir);
    if (r === undefined) throw new Error(`node ${node} is not running`);
    return r.pid;
  }

  async restart(node: number): Promise<void> {
    const entry = this.cluster?.nodes.find((n) => n.nodeId === node);
    if (entry === undefined) throw new Error(`no node ${node}`);
    await spawnNode(JSON.parse(await readFile(entry.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
  }

  async tearDown(): Promise<void> {
    for (const c of this.clients) await c.close().catch(() => undefined);
    if (this.dir !== '') await clusterDown(this.dir).catch(() => undefined);
  }
}

/** Waits until the group of `dc` has all its members synchronised and its entry at the primary. */
async function settled(env: Env, dc: number, members: number): Promise<{ primary: number; endpoint: number }> {
  const until = Date.now() + W;
  while (Date.now() < until) {
    const g = (await replicas(env.dir, dc, { timeoutMs: 5000 })).find((x) => x.slot === SLOT);
    if (g?.primary !== undefined && g.synced.length === members && g.candidates.length === members && g.servedBy === g.primary) return { primary: g.primary, endpoint: g.endpoint };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the group of DC ${dc} did not settle`);
}

/** The unreplicated register's endpoint. */
async function servedAt(env: Env, dc: number): Promise<number> {
  const ep = (await vosStatus(env.dir, dc, { timeoutMs: 5000 })).servers[0]?.endpoint;
  if (ep === undefined) throw new Error(`the register of DC ${dc} is not bound`);
  return ep;
}

let rid = 0;
async function write(p: RemoteProcess, endpoint: number, value: number): Promise<void> {
  const r = await p.sendrec(endpoint, { type: 1, payload: { rid: ++rid, value } }, { timeoutMs: 10_000 });
  if (r.type !== 0) throw new Error(`write refused: ${JSON.stringify(r.payload)}`);
}

async function writeCases(env: Env, n: number): Promise<BenchResult[]> {
  const c = await env.client(0);
  const setups = [];
  for (const g of GROUPS) {
    const endpoint = g.replicas === undefined ? await servedAt(env, g.dc) : (await settled(env, g.dc, g.replicas.nodes.length)).endpoint;
    const procs = await Promise.all(Array.from({ length: CONCURRENT }, () => c.bind(g.dc)));
    for (let i = 0; i < Math.min(300, n); i++) await write(procs[0]!, endpoint, i);
    setups.push({ g, endpoint, procs, samples: [] as number[], ms: 0, ops: 0 });
  }
  // Round-robin in small batches, so drift over the run (JIT, GC, the machine) hits every case alike.
  const ROUNDS = 10;
  const batch = Math.max(10, Math.round(n / ROUNDS));
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of setups) {
      for (let i = 0; i < batch; i++) {
        const t0 = performance.now();
        await write(s.procs[0]!, s.endpoint, i);
        s.samples.push((performance.now() - t0) * 1000);
      }
      const t0 = performance.now();
      await Promise.all(
        s.procs.map(async (q, k) => {
          for (let i = 0; i < batch; i++) await write(q, s.endpoint, k * batch + i);
        }),
      );
      s.ms += performance.now() - t0;
      s.ops += CONCURRENT * batch;
    }
  }
  const [base, ...rest] = setups.map((s) => ({ label: s.g.label, us: median(s.samples), opsPerSec: (s.ops * 1000) / s.ms }));
  const out: BenchResult[] = [latency(SUITE, 'write latency, unreplicated (node 1)', base!.us, base!.us, 'us', { iterations: batch * ROUNDS })];
  for (const m of rest) {
    out.push(latency(SUITE, `write latency, ${m.label}`, m.us, base!.us, 'us', { iterations: batch * ROUNDS, baselineIs: 'the unreplicated register, same run', ...(m.label === 'passive, 2 members' ? { target: '≤ ×2' } : {}) }));
    out.push(throughput(SUITE, `write throughput (${CONCURRENT} clients), ${m.label}`, m.opsPerSec, base!.opsPerSec, { iterations: batch * ROUNDS * CONCURRENT }));
  }
  return out;
}

async function failoverCases(env: Env, rounds: number): Promise<BenchResult[]> {
  const c = await env.client(0);
  const out: BenchResult[] = [];
  for (const g of FAILOVER) {
    const times: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const { primary, endpoint } = await settled(env, g.dc, 2);
      const p = await c.bind(g.dc);
      await write(p, endpoint, r);
      const killedAt = performance.now();
      process.kill(env.pid(primary), 'SIGKILL');
      for (let attempt = 0; ; attempt++) {
        try {
          await write(p, endpoint, r);
          break;
        } catch (err) {
          if (!(err instanceof DvsError) || !RETRY.has(err.code) || attempt > 10_000) throw err;
          await new Promise((res) => setTimeout(res, 5));
        }
      }
      times.push(performance.now() - killedAt);
      await p.unbind().catch(() => undefined);
      await env.restart(primary);
    }
    const sorted = [...times].sort((a, b) => a - b);
    out.push({ suite: SUITE, case: `failover, ${g.label}, median`, value: round(median(times)), unit: 'ms', rounds });
    out.push({ suite: SUITE, case: `failover, ${g.label}, p99`, value: round(percentile(sorted, 99)), unit: 'ms', rounds, ...(g.label.startsWith('fast') ? { target: '< 2000 ms' } : {}) });
  }
  return out;
}

export const replicationSuite: Suite = {
  name: SUITE,
  description: 'replica groups: write latency and throughput by mode and members beside the unreplicated service; failover time',
  async run({ scale }): Promise<BenchResult[]> {
    const env = new Env();
    try {
      await env.setUp();
      const n = Math.max(50, Math.round(2000 * scale));
      const rounds = Math.max(2, Math.round(8 * scale));
      return [...(await writeCases(env, n)), ...(await failoverCases(env, rounds))];
    } finally {
      await env.tearDown();
    }
  },
};
