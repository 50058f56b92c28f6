/**
 * Suite `migration`: how long a service endpoint answers nothing while it moves, and what its
 * callers see. Three daemons, each its own OS process (bench/migration-host.ts) on the embedded
 * store served by node 0. A service whose state is N bytes (bench/services/state-service.ts) is
 * hosted by node 0's daemon; this process, as a client of node 2's daemon, keeps sendrecs going to
 * it and records each call's start and end; node 2's daemon coordinates moves back and forth
 * between nodes 0 and 1. Per state size (1 KiB, 1 MiB, 64 MiB):
 * - blackout (the source's report: from its freeze until the target served) and total time (the
 *   coordinator's report: from its directory freeze until the directory names the target), median
 *   and p99 over the moves;
 * - the callers' latency during a move (calls overlapping it) against the calls just before it,
 *   p50 and p99, and the longest call across each move (the blackout as a caller lives it);
 * - for 64 MiB, the total against 64 MiB at the bulk copy rate between the same two daemons (a
 *   daemon-hosted copyFrom of a 64 MiB grant, as the `ipc` suite measures it) in the same run, and
 *   the total split into the state's transfer (against the same rate) and the rest of the move.
 * And the floor of every move: a directory freeze and thaw alone from nodes 1 and 2, the store
 * round trips a move's coordinator and target make.
 *
 * `--scale` (or DVS_BENCH_QUICK=1, a scale of 0.2) shrinks the move counts;
 * `DVS_BENCH_MIGRATION_SIZES=1KiB,1MiB,64MiB` (any subset) picks sizes; `DVS_BENCH_LOG=info` lets
 * the daemons log (each move's start, drain and end, on stderr).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { nodeConfig } from '../../src/cli/cluster.js';
import { writeClusterKey } from '../../src/cli/cluster-files.js';
import { connect, isDvsError, type DvsClient } from '../../src/client/index.js';
import type { RemoteProcess } from '../../src/client/remote-process.js';
import { migrate, serveModule, type MigrationResult } from '../../src/client/services.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';
import { removeOnExit } from '../etcd-process.js';
import { latency, median, percentile, round, type BenchResult, type Suite } from '../harness.js';
import { Worker } from '../worker.js';

const SUITE = 'migration';
const DC = 1;
const HOME = 0;
const AWAY = 1;
const CALLER_NODE = 2;
/** System slots: the moving services (one per size), a copier, per node an endpoint only ever frozen and thawed. */
const SLOT = { service: 10, copier: 14, frozen: { [AWAY]: 13, [CALLER_NODE]: 15 } } as const;
const CALLERS = 2;
const BULK_BYTES = 64 * 1024 * 1024;
const WAIT_MS = 15_000;
/** Bound on one caller's sendrec: far above any move, so a lost reply shows as an error. */
const CALL_TIMEOUT_MS = 60_000;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HOST = path.join(HERE, '..', 'migration-host.js');
const SERVICE_MODULE = path.join(HERE, '..', 'services', 'state-service.js');

interface SizeCase {
  readonly label: string;
  readonly bytes: number;
  readonly moves: number;
  /** Calm before each move: the calls in it are the "before" sample. */
  readonly quietMs: number;
}

const SIZES: readonly SizeCase[] = [
  { label: '1 KiB', bytes: 1024, moves: 40, quietMs: 150 },
  { label: '1 MiB', bytes: 1024 * 1024, moves: 20, quietMs: 200 },
  { label: '64 MiB', bytes: BULK_BYTES, moves: 5, quietMs: 400 },
];

const LOG_LEVEL = process.env.DVS_BENCH_LOG ?? 'error';

function wantedSize(c: SizeCase): boolean {
  const sel = process.env.DVS_BENCH_MIGRATION_SIZES;
  return sel === undefined || sel === '' || sel.split(',').includes(c.label.replace(' ', ''));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Call {
  readonly t0: number;
  readonly t1: number;
}

/** Callers keeping sendrecs going to one endpoint until stopped, every call's start and end kept. */
class CallLoad {
  readonly calls: Call[] = [];
  readonly errors: string[] = [];
  /** Replies whose count did not grow or whose state had another size: the state did not move whole. */
  bad = 0;
  private stopped = false;
  private readonly loops: Promise<void>[];

  constructor(procs: readonly RemoteProcess[], dst: number, stateBytes: number) {
    this.loops = procs.map(async (p) => {
      let last = 0;
      while (!this.stopped && this.errors.length < 20) {
        const t0 = performance.now();
        try {
          const m = await p.sendrec(dst, { type: 1, payload: 0 }, { timeoutMs: CALL_TIMEOUT_MS });
          const t1 = performance.now();
          const { n, bytes } = m.payload as { n: number; bytes: number };
          if (!(n > last) || bytes !== stateBytes) this.bad++;
          last = n;
          this.calls.push({ t0, t1 });
        } catch (err) {
          this.errors.push(isDvsError(err) ? err.code : String(err));
        }
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

/** Everything the suite starts; `tearDown` stops all of it, whatever state it is in. */
class Env {
  dir = '';
  private forgetDir: (() => void) | undefined;
  readonly hosts: Worker[] = [];
  readonly clients: DvsClient[] = [];

  async setUp(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-bench-migration-'));
    this.forgetDir = removeOnExit(this.dir);
    await mkdir(this.dir, { recursive: true });
    const keyFile = path.join(this.dir, 'cluster.key');
    await writeClusterKey(keyFile);
    const h0 = await this.startHost(0, nodeConfig(this.dir, keyFile, 0, { serve: true }, { logLevel: LOG_LEVEL }));
    const store = (h0.ready.info as NodeRuntimeInfo).store;
    if (store.backend !== 'embedded') throw new Error('node 0 should serve the embedded store');
    for (const id of [1, 2]) await this.startHost(id, nodeConfig(this.dir, keyFile, id, { address: { host: store.host, port: store.port } }, { logLevel: LOG_LEVEL }));
    await h0.request('createDc', { dcid: DC, nodes: [0, 1, 2] });
    await Promise.all(this.hosts.map((h) => h.request('waitForDc', { dcid: DC, timeoutMs: WAIT_MS }, WAIT_MS + 5000)));
  }

  private async startHost(id: number, config: Record<string, unknown>): Promise<Worker> {
    const w = await Worker.start(`migration-${id}`, HOST, [JSON.stringify(config)], { readyTimeoutMs: 30_000 });
    this.hosts.push(w);
    return w;
  }

  host(id: number): Worker {
    const h = this.hosts[id];
    if (h === undefined) throw new Error(`no node ${id}`);
    return h;
  }

  /** A new client connection to node `id`'s daemon. */
  async client(id: number, name: string): Promise<DvsClient> {
    const info = this.host(id).ready.info as NodeRuntimeInfo;
    const c = await connect({ socketPath: info.socket, tokenPath: info.token, name });
    this.clients.push(c);
    return c;
  }

  async tearDown(): Promise<void> {
    for (const c of this.clients) await c.close().catch(() => undefined);
    // Node 0 serves the store: stopped last.
    for (const h of [...this.hosts].reverse()) await h.stop(15_000).catch(() => undefined);
    if (this.dir !== '') await rm(this.dir, { recursive: true, force: true });
    this.forgetDir?.();
  }
}

function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** A median row and a p99 row for samples in ms. */
function distRows(name: string, samples: readonly number[], extra: Record<string, unknown> = {}, p99Extra: Record<string, unknown> = {}): BenchResult[] {
  const s = sorted(samples);
  const common = { runs: s.length, min: round(s[0] ?? NaN, 2), max: round(s[s.length - 1] ?? NaN, 2) };
  return [
    { suite: SUITE, case: `${name} (median)`, value: round(median(s), 2), unit: 'ms', ...common, ...extra },
    { suite: SUITE, case: `${name} (p99)`, value: round(percentile(s, 99), 2), unit: 'ms', ...common, ...p99Extra },
  ];
}

/** MB/s (10^6 bytes) of `rounds` daemon-hosted copies of a 64 MiB grant from node AWAY to node HOME. */
async function bulkRates(env: Env, rounds: number): Promise<number[]> {
  const copier = env.host(HOME);
  const owner = env.host(AWAY);
  const dst = await copier.request<number>('bulkCopier', { dcid: DC, slot: SLOT.copier });
  await owner.request('waitForBind', { dcid: DC, endpoint: dst, timeoutMs: WAIT_MS }, WAIT_MS + 5000);
  await owner.request('bulkOwner', { dcid: DC, dst, bytes: BULK_BYTES });
  const rates: number[] = [];
  try {
    // The first copy warms the path (and checks the bytes); the rest are the sample.
    await copier.request('bulkCopy', { slot: SLOT.copier, times: 1 }, 300_000);
    for (let i = 0; i < rounds; i++) rates.push((await copier.request<{ mbPerSec: number }>('bulkCopy', { slot: SLOT.copier, times: 1 }, 300_000)).mbPerSec);
  } finally {
    await copier.request('bulkRelease', { slot: SLOT.copier });
    await owner.request('bulkOwnerWait', {}, 30_000);
  }
  return rates;
}

interface SizeRun {
  readonly reports: MigrationResult[];
  readonly before: number[];
  readonly during: number[];
  /** Per move, the longest call overlapping it. */
  readonly longest: number[];
  readonly errors: string[];
  readonly bad: number;
  readonly calls: number;
}

/** Serves a service of `c.bytes` of state on node HOME and moves it `moves` times between HOME and AWAY under the callers' load. */
async function moveRepeatedly(env: Env, c: SizeCase, index: number, moves: number, caller: DvsClient, coordinator: DvsClient): Promise<SizeRun> {
  const server = await env.client(HOME, `bench-serve-${index}`);
  const svc = await serveModule(server, DC, SERVICE_MODULE, { slot: SLOT.service + index, name: `state-${index}`, args: { stateBytes: c.bytes } });
  await caller.waitForBind(DC, svc.endpoint, { timeoutMs: WAIT_MS });
  const procs: RemoteProcess[] = [];
  for (let i = 0; i < CALLERS; i++) procs.push(await caller.bind(DC, { name: `bench-caller-${index}-${i}` }));
  const load = new CallLoad(procs, svc.endpoint, c.bytes);
  const windows: { start: number; end: number }[] = [];
  const reports: MigrationResult[] = [];
  const freezeMs = 30_000;
  try {
    await sleep(c.quietMs); // warm-up calls, not counted
    let at = HOME;
    for (let i = 0; i < moves; i++) {
      await sleep(c.quietMs);
      const to = at === HOME ? AWAY : HOME;
      const start = performance.now();
      reports.push(await migrate(coordinator, DC, svc.endpoint, to, { freezeMs, timeoutMs: freezeMs + 10_000 }));
      windows.push({ start, end: performance.now() });
      at = to;
    }
    await sleep(c.quietMs);
  } finally {
    await load.stop();
    for (const p of procs) await p.unbind().catch(() => undefined);
  }
  const before: number[] = [];
  const during: number[] = [];
  const longest = windows.map(() => 0);
  for (const call of load.calls) {
    const ms = call.t1 - call.t0;
    const w = windows.findIndex((x) => call.t0 < x.end && call.t1 > x.start);
    if (w >= 0) {
      during.push(ms);
      longest[w] = Math.max(longest[w] ?? 0, ms);
    } else if (windows.some((x) => call.t0 >= x.start - c.quietMs && call.t1 <= x.start)) before.push(ms);
  }
  return { reports, before, during, longest, errors: load.errors, bad: load.bad, calls: load.calls.length };
}

function sizeRows(c: SizeCase, r: SizeRun): BenchResult[] {
  const blackout = r.reports.map((x) => x.blackoutMs);
  const total = r.reports.map((x) => x.totalMs);
  const b = sorted(r.before);
  const d = sorted(r.during);
  const health = { calls: r.calls, errors: r.errors.length, errorCodes: [...new Set(r.errors)], badReplies: r.bad, stateBytes: r.reports[0]?.stateBytes, handoverBytes: median(r.reports.map((x) => x.handoverBytes)) };
  const small = c.bytes === 1024;
  const bs = sorted(blackout);
  const rows: BenchResult[] = [
    ...distRows(`blackout, state ${c.label}`, blackout, { ...health, ...(small ? { target: 'p50 < 20 ms', met: median(bs) < 20 } : {}) }, small ? { target: 'p99 < 50 ms', met: percentile(bs, 99) < 50 } : {}),
    ...distRows(`longest caller's call across a move, state ${c.label}`, r.longest, { note: 'a caller\'s view of the blackout: its call overlapping the move that waited longest' }),
    ...distRows(`total, state ${c.label}`, total),
    latency(SUITE, `caller latency during a move vs before it, state ${c.label} p50`, percentile(d, 50), percentile(b, 50), 'ms', { callsDuring: d.length, callsBefore: b.length }),
    latency(SUITE, `caller latency during a move vs before it, state ${c.label} p99`, percentile(d, 99), percentile(b, 99), 'ms'),
  ];
  return rows;
}

/** The quick look's scale: DVS_BENCH_QUICK=1 runs a fifth of the moves. */
function effectiveScale(scale: number): number {
  const quick = process.env.DVS_BENCH_QUICK;
  return quick !== undefined && quick !== '' && quick !== '0' ? Math.min(scale, 0.2) : scale;
}

export const migrationSuite: Suite = {
  name: SUITE,
  description: 'blackout and total time of moving a service of 1 KiB, 1 MiB and 64 MiB of state between daemons under calls, against the bulk copy rate',
  async run(opts): Promise<BenchResult[]> {
    const scale = effectiveScale(opts.scale);
    const env = new Env();
    try {
      await env.setUp();
      const out: BenchResult[] = [];
      const caller = await env.client(CALLER_NODE, 'bench-caller');
      const coordinator = await env.client(CALLER_NODE, 'bench-coordinator');
      const bulkRounds = scale >= 0.5 ? 5 : 2;
      const rates: number[] = [];
      for (const [i, c] of SIZES.entries()) {
        if (!wantedSize(c)) continue;
        const moves = Math.max(2, Math.round(c.moves * scale));
        if (c.bytes === BULK_BYTES) rates.push(...(await bulkRates(env, bulkRounds)));
        const r = await moveRepeatedly(env, c, i, moves, caller, coordinator);
        out.push(...sizeRows(c, r));
        if (c.bytes === BULK_BYTES) {
          rates.push(...(await bulkRates(env, bulkRounds)));
          const rate = median(rates);
          const atBulkRateMs = (BULK_BYTES / 1e6 / rate) * 1000;
          const row = latency(SUITE, 'total, state 64 MiB vs 64 MiB at the bulk copy rate', median(r.reports.map((x) => x.totalMs)), atBulkRateMs, 'ms', {
            bulkMBps: round(rate, 1),
            bulkRounds: rates.length,
            target: 'slowdown <= 2',
            baselineIs: 'a daemon-hosted copyFrom of a 64 MiB grant between the same two daemons, before and after the moves',
          });
          out.push({ ...row, met: (row.slowdown ?? Infinity) <= 2 });
          // Where the total goes: the state's transfer (snapshot sent, received whole, incarnation
          // started) against the same bytes at the bulk copy rate, and the rest of the move
          // (freeze, quiescence, drain, handover, flip), which does not grow with the state.
          out.push(
            latency(SUITE, 'state transfer of a move, 64 MiB vs 64 MiB at the bulk copy rate', median(r.reports.map((x) => x.transferMs)), atBulkRateMs, 'ms', {
              note: 'measured at the source: from its snapshot until the target was prepared',
            }),
            ...distRows('total minus state transfer, state 64 MiB', r.reports.map((x) => x.totalMs - x.transferMs), { note: 'what a move costs beside its state' }),
          );
        }
      }
      // The floor under every move: the store round trips of a freeze and a thaw, alone.
      const floorRounds = Math.max(5, Math.round(30 * scale));
      for (const node of [AWAY, CALLER_NODE] as const) {
        const rounds = await env.host(node).request<{ freezeMs: number; thawMs: number }[]>('freezeThaw', { dcid: DC, slot: SLOT.frozen[node], n: floorRounds }, 120_000);
        out.push(
          ...distRows(`directory freeze + thaw alone, from node ${node}`, rounds.map((x) => x.freezeMs + x.thawMs), {
            freezeMedianMs: round(median(rounds.map((x) => x.freezeMs)), 2),
            thawMedianMs: round(median(rounds.map((x) => x.thawMs)), 2),
            note: 'store served by node 0; a move freezes from its coordinator and flips from its target',
          }),
        );
      }
      return out;
    } finally {
      await env.tearDown();
    }
  },
};
