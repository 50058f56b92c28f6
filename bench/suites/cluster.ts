/**
 * Suite `cluster`: what the cluster layer costs and how fast it reacts, with every daemon its own
 * OS process (bench/cluster-host.ts) and a real etcd (bench/etcd-process.ts, one member, etcd's
 * default raft timing) as the store unless stated:
 *
 * 1. Failure detection. Three daemons; node 2 serves an endpoint and nodes 0 and 1 each park a
 *    sendrec on it (the server holds the request). After a random pause of up to two heartbeats,
 *    node 2's process is SIGKILLed, and we time, from the kill:
 *    (a) until the parked sendrec failed on every survivor (EDVSNOTCONN once the link declares the
 *        peer down: the figure a user sees),
 *    (b) until every survivor's directory dropped node 2's key (its lease expired in etcd, seen
 *        through the directory's watch).
 *    Node 2 is restarted between repetitions. Run for the default timing (heartbeat 500 / suspect
 *    1500 / dead 3000 ms) and a fast profile (100 / 300 / 600 ms).
 * 2. Bind to reachable: node 0 binds an endpoint in-daemon; time from the bind call until the
 *    kernels of nodes 1 and 2 know it (their directory caches announced it), for a fixed server
 *    slot (one store transaction before bind returns) and a user slot (from the node's reserved
 *    range: bind returns at once, the endpoint is published in the background).
 * 3. Message path: the same cross-daemon sendrec loop between daemon-hosted endpoints (as in the
 *    `ipc` suite) on a 2-node cluster backed by etcd and one backed by the embedded store, both up
 *    at once and run interleaved; the etcd one is the value, the embedded one the baseline.
 *
 * Wall-clock times are compared between processes (performance.timeOrigin + performance.now()).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { nodeConfig, type NodeStoreChoice } from '../../src/cli/cluster.js';
import { writeClusterKey } from '../../src/cli/cluster-files.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';
import { removeOnExit, startEtcdProcess, type EtcdProcess } from '../etcd-process.js';
import { latency, median, percentile, round, type BenchResult, type Suite } from '../harness.js';
import { Worker, type SendrecRun } from '../worker.js';

const SUITE = 'cluster';
const DC = 1;
/** Server slots (system slots: they may receiveRequest and reply). */
const SLOT = { serve: 10, echo: 12, fixed: 20 } as const;
const PAYLOAD = 42;
/** Every wait on a daemon is bounded by this, or by the case's own bound. */
const WAIT_MS = 15_000;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLUSTER_HOST = path.join(HERE, '..', 'cluster-host.js');

interface Timing {
  readonly heartbeatMs: number;
  readonly suspectMs: number;
  readonly deadMs: number;
}

const PROFILES: readonly Timing[] = [
  { heartbeatMs: 500, suspectMs: 1500, deadMs: 3000 },
  { heartbeatMs: 100, suspectMs: 300, deadMs: 600 },
];

const DEFAULT_TIMING = PROFILES[0]!;

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const timingName = (t: Timing): string => `${t.heartbeatMs}/${t.suspectMs}/${t.deadMs}`;

interface HostInfo extends NodeRuntimeInfo {
  readonly lease?: number;
}

/** Resolves once the worker's process has exited, or after `ms`. */
function exited(w: Worker, ms: number): Promise<boolean> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    w.child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Polls `check` every few ms until it holds, at most `ms`. */
async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}

/** One cluster of daemons: their configs (to restart one) and their current host processes. */
class Cluster {
  readonly hosts: Worker[] = [];
  constructor(
    readonly name: string,
    readonly configs: Record<string, unknown>[],
  ) {}

  host(i: number): Worker {
    return this.hosts[i]!;
  }
}

/** Everything the suite starts; `tearDown` stops all of it, whatever state it is in. */
class Env {
  dir = '';
  private forgetDir: (() => void) | undefined;
  etcd: EtcdProcess | undefined;
  etcdClient: Etcd3 | undefined;
  readonly workers: Worker[] = [];

  async setUp(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-bench-cluster-'));
    this.forgetDir = removeOnExit(this.dir);
    this.etcd = await startEtcdProcess();
    this.etcdClient = new Etcd3({ hosts: this.etcd.endpoint });
  }

  async startHost(name: string, config: Record<string, unknown>): Promise<Worker> {
    const w = await Worker.start(name, CLUSTER_HOST, [JSON.stringify(config)], { readyTimeoutMs: 30_000 });
    this.workers.push(w);
    return w;
  }

  /**
   * Starts `n` daemons on etcd (after clearing what earlier clusters left there) or on the embedded
   * store served by node 0, and a DC spanning them all.
   */
  async startCluster(name: string, n: number, backend: 'etcd' | 'embedded', timing: Timing): Promise<Cluster> {
    const dir = path.join(this.dir, name);
    await mkdir(dir, { recursive: true });
    const keyFile = path.join(dir, 'cluster.key');
    await writeClusterKey(keyFile);
    const config = (id: number, store: NodeStoreChoice): Record<string, unknown> => ({ ...nodeConfig(dir, keyFile, id, store, { logLevel: 'error', deadMs: timing.deadMs }), timing });
    const configs: Record<string, unknown>[] = [];
    const cluster = new Cluster(name, configs);
    if (backend === 'etcd') {
      await this.etcdClient!.delete().prefix('/dvs/');
      for (let id = 0; id < n; id++) configs.push(config(id, { etcd: [this.etcd!.endpoint] }));
      cluster.hosts.push(...(await Promise.all(configs.map((c, id) => this.startHost(`${name}-${id}`, c)))));
    } else {
      configs.push(config(0, { serve: true }));
      const h0 = await this.startHost(`${name}-0`, configs[0]!);
      cluster.hosts.push(h0);
      const store = (h0.ready.info as HostInfo).store;
      if (store.backend !== 'embedded') throw new Error('node 0 should serve the embedded store');
      for (let id = 1; id < n; id++) {
        configs.push(config(id, { address: { host: store.host, port: store.port } }));
        cluster.hosts.push(await this.startHost(`${name}-${id}`, configs[id]!));
      }
    }
    await cluster.host(0).request('createDc', { dcid: DC, nodes: configs.map((_, id) => id) });
    await Promise.all(cluster.hosts.map((h) => h.request('waitForDc', { dcid: DC, timeoutMs: WAIT_MS }, WAIT_MS + 5000)));
    return cluster;
  }

  /** Stops a cluster's daemons, node 0 (which may serve the store) last. */
  async stopCluster(c: Cluster): Promise<void> {
    for (const h of [...c.hosts].reverse()) await h.stop(15_000);
  }

  /** The TTL etcd granted a lease (it rounds up to whole seconds and raises it to its minimum). */
  async grantedTtlS(lease: number | undefined): Promise<number | undefined> {
    if (lease === undefined || this.etcdClient === undefined) return undefined;
    try {
      const r = await this.etcdClient.leaseClient.leaseTimeToLive({ ID: lease });
      return Number(r.grantedTTL);
    } catch {
      return undefined;
    }
  }

  async tearDown(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop(10_000)));
    this.etcdClient?.close();
    await this.etcd?.stop();
    if (this.dir !== '') await rm(this.dir, { recursive: true, force: true });
    this.forgetDir?.();
  }
}

/** A median row and a p99 row for one set of samples (ms). */
function distRows(name: string, samples: readonly number[], extra: Record<string, unknown>): BenchResult[] {
  const sorted = [...samples].sort((a, b) => a - b);
  const common = { runs: sorted.length, min: round(sorted[0]!, 1), max: round(sorted[sorted.length - 1]!, 1) };
  return [
    { suite: SUITE, case: `${name} (median)`, value: round(median(sorted), 1), unit: 'ms', ...common, ...extra },
    { suite: SUITE, case: `${name} (p99)`, value: round(percentile(sorted, 99), 1), unit: 'ms', ...common },
  ];
}

function tally(codes: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of codes) out[c] = (out[c] ?? 0) + 1;
  return out;
}

// ---------------------------------------------------------------- 1. failure detection

async function detection(env: Env, timing: Timing, reps: number): Promise<BenchResult[]> {
  const c = await env.startCluster(`detect-${timing.deadMs}`, 3, 'etcd', timing);
  const VICTIM = 2;
  const survivors = [c.host(0), c.host(1)];
  const ttl = await env.grantedTtlS((c.host(VICTIM).ready.info as HostInfo).lease);
  const failSamples: number[] = [];
  const leaseSamples: number[] = [];
  const perSurvivor: number[] = [];
  const codes: string[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      const victim = c.host(VICTIM);
      const ep = await victim.request<number>('serve', { dcid: DC, slot: SLOT.serve });
      for (const s of survivors) {
        await s.request('waitForBind', { dcid: DC, endpoint: ep, timeoutMs: WAIT_MS }, WAIT_MS + 5000);
        await s.request('ping', { dcid: DC, dst: ep, timeoutMs: WAIT_MS }, WAIT_MS + 5000);
      }
      for (const s of survivors) await s.request('park', { dcid: DC, dst: ep });
      await until('parked requests reach the victim', WAIT_MS, async () => (await victim.request<number>('held')) >= survivors.length);
      // A failure strikes at any point of the heartbeat cycle.
      await sleep(Math.random() * 2 * timing.heartbeatMs);
      const tKill = now();
      victim.child.kill('SIGKILL');
      const bound = 10 * timing.deadMs + 30_000;
      const [fails, downs] = await Promise.all([
        Promise.all(survivors.map((s) => s.request<{ code: string; at: number }>('parked', { timeoutMs: bound }, bound + 5000))),
        Promise.all(survivors.map((s) => s.request<{ at: number }>('nodeDown', { node: VICTIM, after: tKill, timeoutMs: bound }, bound + 5000))),
      ]);
      for (const f of fails) {
        codes.push(f.code);
        perSurvivor.push(f.at - tKill);
      }
      failSamples.push(Math.max(...fails.map((f) => f.at)) - tKill);
      leaseSamples.push(Math.max(...downs.map((d) => d.at)) - tKill);
      if (!(await exited(victim, 5000))) throw new Error('the killed node did not exit');
      // Restart it (a new incarnation) for the next repetition.
      if (rep + 1 < reps) c.hosts[VICTIM] = await env.startHost(`${c.name}-${VICTIM}`, c.configs[VICTIM]!);
    }
  } finally {
    await env.stopCluster(c);
  }
  const name = timingName(timing);
  const ps = [...perSurvivor].sort((a, b) => a - b);
  return [
    ...distRows(`kill -> parked sendrec fails on every survivor, timing ${name}`, failSamples, {
      codes: tally(codes),
      perSurvivorMedian: round(median(ps), 1),
      expected: `about deadMs (${timing.deadMs}) minus the silence already elapsed at the kill, plus a link tick`,
    }),
    ...distRows(`kill -> node key gone from every survivor's directory (lease), timing ${name}`, leaseSamples, {
      leaseTtlAskedMs: Math.max(timing.deadMs, 1000),
      leaseTtlGrantedS: ttl,
      expected: 'granted TTL minus the time since the last keepalive (every TTL/3), plus etcd expiry checks (every 500 ms)',
    }),
  ];
}

// ---------------------------------------------------------------- 2. bind -> known everywhere

async function bindToKnown(env: Env, reps: number): Promise<BenchResult[]> {
  const c = await env.startCluster('bind', 3, 'etcd', DEFAULT_TIMING);
  const binder = c.host(0);
  const observers = [c.host(1), c.host(2)];
  const out: BenchResult[] = [];
  try {
    for (const kind of ['fixed server slot', 'user slot'] as const) {
      const fixed = kind === 'fixed server slot';
      const known: number[] = [];
      const calls: number[] = [];
      for (let rep = -1; rep < reps; rep++) {
        const r = await binder.request<{ endpoint: number; t0: number; t1: number }>('bindTimed', fixed ? { dcid: DC, slot: SLOT.fixed } : { dcid: DC });
        const seen = await Promise.all(observers.map((o) => o.request<number>('known', { dcid: DC, endpoint: r.endpoint, timeoutMs: WAIT_MS }, WAIT_MS + 5000)));
        if (rep >= 0) {
          known.push(Math.max(...seen) - r.t0);
          calls.push(r.t1 - r.t0);
        }
        await binder.request('unbind', { dcid: DC, endpoint: r.endpoint, timeoutMs: WAIT_MS }, WAIT_MS + 5000);
        if (fixed) await Promise.all(c.hosts.map((h) => h.request('slotFree', { dcid: DC, slot: SLOT.fixed, timeoutMs: WAIT_MS }, WAIT_MS + 5000)));
      }
      out.push(
        ...distRows(`bind -> known on every other node, ${kind}`, known, {
          bindCallMedianMs: round(median(calls), 2),
          how: fixed ? 'bind claims the slot by one etcd transaction, then the other nodes see it through their watch' : 'bind takes a pre-reserved slot from memory; the endpoint is published by one transaction in the background',
        }),
      );
    }
  } finally {
    await env.stopCluster(c);
  }
  return out;
}

// ---------------------------------------------------------------- 3. message path: etcd vs embedded

async function messagePath(env: Env, scale: number): Promise<BenchResult[]> {
  const n = Math.max(500, Math.round(20_000 * scale));
  const rounds = scale >= 0.5 ? 9 : 5;
  const etcdC = await env.startCluster('path-etcd', 2, 'etcd', DEFAULT_TIMING);
  let embC: Cluster | undefined;
  try {
    embC = await env.startCluster('path-embedded', 2, 'embedded', DEFAULT_TIMING);
    const loops: (() => Promise<SendrecRun>)[] = [];
    for (const c of [etcdC, embC]) {
      const echo = await c.host(1).request<number>('serve', { dcid: DC, slot: SLOT.echo });
      await c.host(0).request('waitForBind', { dcid: DC, endpoint: echo, timeoutMs: WAIT_MS }, WAIT_MS + 5000);
      await c.host(0).request('ping', { dcid: DC, dst: echo, timeoutMs: WAIT_MS }, WAIT_MS + 5000);
      loops.push(() => c.host(0).request<SendrecRun>('sendrec', { dcid: DC, dst: echo, n, payload: PAYLOAD }, 300_000));
    }
    const clusters = [etcdC, embC] as const;
    const cpuOf = async (c: Cluster): Promise<number> => {
      const us = await Promise.all(c.hosts.map((h) => h.request<{ user: number; system: number }>('cpu')));
      return us.reduce((sum, u) => sum + u.user + u.system, 0);
    };
    const samples: [number[], number[]] = [[], []];
    /** CPU µs both daemons of a cluster spent in its measured rounds. */
    const cpu: [number, number] = [0, 0];
    const warm = [true, true];
    const timed = (i: 0 | 1) => async (): Promise<number> => {
      const before = await cpuOf(clusters[i]);
      const r = await loops[i]!();
      const spent = (await cpuOf(clusters[i])) - before;
      if (warm[i]) warm[i] = false;
      else {
        samples[i].push(...r.samples);
        cpu[i] += spent;
      }
      return r.opsPerSec;
    };
    // Interleaved as harness `compare` does, but in ABBA order: neither side always runs second.
    await timed(0)();
    await timed(1)();
    const ops: [number[], number[]] = [[], []];
    for (let i = 0; i < rounds; i++) {
      for (const side of i % 2 === 0 ? ([0, 1] as const) : ([1, 0] as const)) ops[side].push(await timed(side)());
    }
    const r = { ours: median(ops[0]), base: median(ops[1]) };
    // Neighbouring rounds share the machine's state: the ratio within each pair is less exposed to load drift.
    const paired = median(ops[0].map((o, i) => ops[1][i]! / o));
    const etcdSorted = Float64Array.from(samples[0]).sort();
    const embSorted = Float64Array.from(samples[1]).sort();
    const name = 'cross-daemon sendrec per op, etcd-backed vs embedded-store cluster';
    const main = latency(SUITE, name, 1e6 / r.ours, 1e6 / r.base, 'us', {
      iterations: n,
      rounds,
      pairedSlowdown: round(paired, 2),
      target: 'slowdown <= 1.1',
      baselineIs: 'the same loop on a 2-node cluster on the embedded store',
    });
    return [
      { ...main, met: main.slowdown! <= 1.1 },
      latency(SUITE, `${name} p50`, percentile(etcdSorted, 50), percentile(embSorted, 50)),
      latency(SUITE, `${name} p99`, percentile(etcdSorted, 99), percentile(embSorted, 99)),
      latency(SUITE, `cpu/op of both daemons, etcd-backed vs embedded-store cluster`, cpu[0] / (n * rounds), cpu[1] / (n * rounds), 'us/op', { note: 'user + system CPU of the two daemon processes over the measured rounds' }),
    ];
  } finally {
    if (embC !== undefined) await env.stopCluster(embC);
    await env.stopCluster(etcdC);
  }
}

/** `DVS_BENCH_CLUSTER_CASES=bind,detect,path` (any subset) runs only those parts; all by default. */
function only(part: 'bind' | 'detect' | 'path'): boolean {
  const sel = process.env.DVS_BENCH_CLUSTER_CASES;
  return sel === undefined || sel === '' || sel.split(',').includes(part);
}

export const clusterSuite: Suite = {
  name: SUITE,
  description: 'failure detection, bind propagation and the message path on etcd, with daemons as OS processes',
  async run({ scale }): Promise<BenchResult[]> {
    const env = new Env();
    try {
      await env.setUp();
      const out: BenchResult[] = [];
      if (only('bind')) out.push(...(await bindToKnown(env, Math.max(5, Math.round(30 * scale)))));
      if (only('detect')) for (const t of PROFILES) out.push(...(await detection(env, t, Math.max(3, Math.round(15 * scale)))));
      if (only('path')) out.push(...(await messagePath(env, scale)));
      return out;
    } finally {
      await env.tearDown();
    }
  },
};
