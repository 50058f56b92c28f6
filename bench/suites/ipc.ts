/**
 * Suite `ipc`: M3-IPC through real node daemons, each its own OS process (bench/node-host.ts),
 * against raw Node sockets between two processes (bench/raw.ts, bench/raw-peer.ts):
 *
 * 1. local sendrec: client OS process -> daemon -> echo-server OS process (the bench process is
 *    the client), against raw Unix-socket ping-pong;
 * 2. remote sendrec: client OS process on node 0 -> daemon 0 -> daemon 1 -> echo-server OS
 *    process on node 1, against raw TCP ping-pong;
 * 3. remote sendrec between endpoints hosted in the daemons (one network hop), against raw TCP
 *    ping-pong;
 * 4. pipelined one-way sends, daemon-hosted senders on node 0 to a daemon-hosted receiver on
 *    node 1, against raw pipelined TCP writes to a counting sink;
 * 5. bulk copyFrom of a large grant across the daemons, against raw bulk TCP.
 *
 * Cases 1 and 2 also run against the same hops with byte-forwarding relays in place of the
 * daemons (the floor of the architecture), and that floor alone against the baseline: how much of
 * the target is left for everything the daemons do.
 *
 * Ours and the baselines run interleaved (harness `compare`). Then each case runs once more,
 * ours and its baseline, to record the CPU time (user + system) every process on the path spent
 * per operation, and the JS-heap bytes allocated per message in each of our processes (an
 * estimate, see AllocMeter in bench/worker.ts).
 * `DVS_BENCH_CASES=local,remote,hosted,pipeline,bulk` picks cases (all by default).
 * `DVS_BENCH_CPU_PROF=<dir>` runs the worker processes under `--cpu-prof` into that directory;
 * `DVS_BENCH_NODE_ARGS="--trace-gc ..."` adds Node flags to them.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeConfig } from '../../src/cli/cluster.js';
import { writeClusterKey } from '../../src/cli/cluster-files.js';
import { connect, type DvsClient, type RemoteProcess } from '../../src/client/index.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';
import { compare, latency, percentile, round, throughput, type BenchResult, type Suite } from '../harness.js';
import { rawBulk, rawPingPong, rawPipelined, startRawPeer, type RawPeer } from '../raw.js';
import { AllocMeter, timedSendrecs, Worker, type SendrecRun } from '../worker.js';

const SUITE = 'ipc';
const DC = 1;
/** Server slots (system slots: they may receiveRequest and reply). */
const SLOT = { localEcho: 10, remoteEcho: 11, hostedEcho: 12, sink: 13, copier: 14, procCopier: 15 } as const;
/** Body bytes of a raw frame, about the size of one of our request frames. */
const RAW_BODY = 64;
const RAW_SEND_BODY = 48;
const BULK_BYTES = 64 * 1024 * 1024;
const PAYLOAD = 42;
const MSG = { type: 7, payload: PAYLOAD };
/** Shapes of the pipelined-send case: senders (endpoints) x sends in flight per sender. */
const PIPE_SHAPES: readonly { senders: number; window: number }[] = [
  { senders: 1, window: 256 },
  { senders: 1, window: 1024 },
  { senders: 1, window: 4096 },
  { senders: 4, window: 256 },
  { senders: 4, window: 1024 },
  { senders: 16, window: 256 },
];

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NODE_HOST = path.join(HERE, '..', 'node-host.js');
const IPC_CLIENT = path.join(HERE, '..', 'ipc-client.js');

interface Alloc {
  allocated: number;
  retained: number;
  gcs: number;
}

function workerNodeArgs(name: string): string[] {
  const args = ['--expose-gc'];
  const prof = process.env.DVS_BENCH_CPU_PROF;
  if (prof !== undefined && prof !== '') args.push('--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${name}.cpuprofile`);
  const extra = process.env.DVS_BENCH_NODE_ARGS;
  if (extra !== undefined && extra.trim() !== '') args.push(...extra.trim().split(/\s+/));
  return args;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

async function stopRawPeer(peer: RawPeer): Promise<void> {
  if (peer.child.exitCode !== null || peer.child.signalCode !== null) return;
  await withTimeout(peer.stop(), 5000, 'raw peer stop').catch(() => {
    peer.child.kill('SIGKILL');
  });
}

/** Everything the suite starts; `tearDown` stops all of it, whatever state it is in. */
class Env {
  dir = '';
  readonly hosts: Worker[] = [];
  readonly nodes: NodeRuntimeInfo[] = [];
  readonly workers: Worker[] = [];
  readonly raw: RawPeer[] = [];
  readonly clients: DvsClient[] = [];

  async setUp(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-bench-ipc-'));
    const keyFile = path.join(this.dir, 'cluster.key');
    await writeClusterKey(keyFile);
    const opts = { logLevel: 'error', deadMs: 10_000 };
    const h0 = await Worker.start('node-host-0', NODE_HOST, [JSON.stringify(nodeConfig(this.dir, keyFile, 0, { serve: true }, opts))], { nodeArgs: workerNodeArgs('node-host-0') });
    this.hosts.push(h0);
    const n0 = h0.ready.info as NodeRuntimeInfo;
    this.nodes.push(n0);
    if (n0.store.backend !== 'embedded') throw new Error('node 0 should serve the embedded store');
    const h1 = await Worker.start('node-host-1', NODE_HOST, [JSON.stringify(nodeConfig(this.dir, keyFile, 1, { address: { host: n0.store.host, port: n0.store.port } }, opts))], { nodeArgs: workerNodeArgs('node-host-1') });
    this.hosts.push(h1);
    this.nodes.push(h1.ready.info as NodeRuntimeInfo);
    await h0.request('createDc', { dcid: DC, nodes: [0, 1] });
    await Promise.all(this.hosts.map((h) => h.request('waitForDc', { dcid: DC, timeoutMs: 10_000 }, 15_000)));
  }

  async clientWorker(node: number, name: string): Promise<Worker> {
    const n = this.nodes[node]!;
    const w = await Worker.start(name, IPC_CLIENT, [JSON.stringify({ socket: n.socket, token: n.token, name })], { nodeArgs: workerNodeArgs(name) });
    this.workers.push(w);
    return w;
  }

  async client(node: number): Promise<DvsClient> {
    const n = this.nodes[node]!;
    const c = await connect({ socketPath: n.socket, tokenPath: n.token, name: 'bench' });
    this.clients.push(c);
    return c;
  }

  async rawPeer(mode: 'echo' | 'sink' | 'relay', where: string, target?: string): Promise<RawPeer> {
    const p = await startRawPeer(mode, where, target);
    this.raw.push(p);
    return p;
  }

  async tearDown(): Promise<void> {
    for (const c of this.clients) await withTimeout(c.close(), 5000, 'client close').catch(() => undefined);
    await Promise.all(this.workers.map((w) => w.stop(5000)));
    // The store's host (node 0) last, so node 1 deregisters cleanly.
    for (const h of [...this.hosts].reverse()) await h.stop(15_000);
    await Promise.all(this.raw.map(stopRawPeer));
    if (this.dir !== '') await rm(this.dir, { recursive: true, force: true });
  }
}

/** compare() for ping-pong loops, keeping the latency samples of the measured (not warm-up) rounds. */
type PingPongRun = { readonly opsPerSec: number; readonly samples: Float64Array | readonly number[] };

async function comparePingPong(rounds: number, ours: () => Promise<PingPongRun>, base: () => Promise<PingPongRun>): Promise<{ ours: number; base: number; oursSamples: Float64Array; baseSamples: Float64Array }> {
  const os: number[] = [];
  const bs: number[] = [];
  let warmOurs = true;
  let warmBase = true;
  const r = await compare(
    rounds,
    async () => {
      const x = await ours();
      if (warmOurs) warmOurs = false;
      else for (const v of x.samples) os.push(v);
      return x.opsPerSec;
    },
    async () => {
      const x = await base();
      if (warmBase) warmBase = false;
      else for (const v of x.samples) bs.push(v);
      return x.opsPerSec;
    },
  );
  return { ...r, oursSamples: Float64Array.from(os).sort(), baseSamples: Float64Array.from(bs).sort() };
}

/**
 * Ours against the same hops with byte-forwarding relays in place of the daemons: how far above
 * the floor of the architecture we are (no target; the targets compare with two processes).
 */
async function floorRow(name: string, ours: () => Promise<PingPongRun>, relayed: () => Promise<PingPongRun>, baselineIs: string): Promise<BenchResult> {
  const r = await comparePingPong(3, ours, relayed);
  return { ...throughput(SUITE, `${name} vs relay floor`, r.ours, r.base, { baselineIs }), p50: round(percentile(r.oursSamples, 50), 1), baselineP50: round(percentile(r.baseSamples, 50), 1) };
}

/**
 * The relay floor itself against the baseline: what the target leaves for everything the
 * daemons do. A floor above the target means no implementation of these hops can meet it here.
 */
async function floorVsBaseRow(name: string, relayed: () => Promise<PingPongRun>, raw: () => Promise<PingPongRun>, target: number, baselineIs: string): Promise<BenchResult> {
  const r = await comparePingPong(3, relayed, raw);
  const row = throughput(SUITE, `${name}: relay floor alone`, r.ours, r.base, { baselineIs, target: `slowdown <= ${target} (the target of the row above)` });
  return { ...row, floorMeetsTarget: row.slowdown! <= target, leftForDaemons: round(target / row.slowdown!, 2) };
}

function pingPongRows(name: string, r: Awaited<ReturnType<typeof comparePingPong>>, target: number, extra: Record<string, unknown>): BenchResult[] {
  const main = throughput(SUITE, name, r.ours, r.base, { ...extra, target: `slowdown <= ${target}` });
  return [
    { ...main, met: main.slowdown! <= target },
    latency(SUITE, `${name} p50`, percentile(r.oursSamples, 50), percentile(r.baseSamples, 50)),
    latency(SUITE, `${name} p99`, percentile(r.oursSamples, 99), percentile(r.baseSamples, 99)),
  ];
}

/** A process on the measured path: the bench process itself, a worker, or a raw peer (seen through /proc). */
interface Probe {
  readonly name: string;
  readonly self?: boolean;
  readonly worker?: Worker;
  readonly pid?: number;
}

interface CpuTime {
  readonly user: number;
  readonly system: number;
}

/** CPU time of a process in µs: process.cpuUsage for ourselves and workers, /proc for other pids. */
async function cpuOf(p: Probe): Promise<CpuTime | undefined> {
  if (p.self === true) return process.cpuUsage();
  if (p.worker !== undefined) return p.worker.request<CpuTime>('cpu');
  try {
    const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { user: Number(f[11]) * 10_000, system: Number(f[12]) * 10_000 }; // clock ticks of 10 ms (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** read + write system calls a process has made (/proc/<pid>/io), or undefined where unreadable. */
function syscallsOf(p: Probe): number | undefined {
  const pid = p.self === true ? process.pid : (p.worker?.pid ?? p.pid);
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const n = (k: string): number => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(io)?.[1]);
    return n('syscr') + n('syscw');
  } catch {
    return undefined;
  }
}

interface Cost {
  /** read + write system calls per operation by probe (where /proc/<pid>/io is readable). */
  readonly syscallsBy: Record<string, number>;
  /** CPU µs per operation over every probe; undefined when some probe could not be read. */
  readonly cpuTotal: number | undefined;
  readonly cpuBy: Record<string, number>;
  /** The part of cpuBy spent in the OS kernel (system time), by probe. */
  readonly systemBy: Record<string, number>;
  /** JS-heap bytes allocated per operation (estimate) by the probes that can measure it. */
  readonly allocBy: Record<string, { perOp: number; retainedPerOp: number; gcs: number }>;
}

/**
 * Runs `run` (which performs `ops` operations) once more with every probe's CPU time and, where
 * the process can measure it (--expose-gc), its JS-heap allocations recorded around it.
 */
async function measureCost(ops: number, probes: readonly Probe[], run: () => Promise<unknown>): Promise<Cost> {
  const canAlloc = AllocMeter.available();
  const local = new AllocMeter();
  for (const p of probes) {
    if (p.worker !== undefined) await p.worker.request('allocStart');
    else if (p.self === true && canAlloc) local.start();
  }
  const callsBefore = probes.map(syscallsOf);
  const before = await Promise.all(probes.map(cpuOf));
  await run();
  const after = await Promise.all(probes.map(cpuOf));
  const callsAfter = probes.map(syscallsOf);
  const syscallsBy: Record<string, number> = {};
  probes.forEach((p, i) => {
    const a = callsAfter[i];
    const b = callsBefore[i];
    if (a !== undefined && b !== undefined) syscallsBy[p.name] = round((a - b) / ops, 4);
  });
  const cpuBy: Record<string, number> = {};
  const systemBy: Record<string, number> = {};
  let cpuTotal: number | undefined = 0;
  probes.forEach((p, i) => {
    const a = after[i];
    const b = before[i];
    if (a === undefined || b === undefined) cpuTotal = undefined;
    else {
      const used = a.user + a.system - b.user - b.system;
      cpuBy[p.name] = round(used / ops, 1);
      systemBy[p.name] = round((a.system - b.system) / ops, 1);
      if (cpuTotal !== undefined) cpuTotal += used / ops;
    }
  });
  const allocBy: Cost['allocBy'] = {};
  for (const p of probes) {
    let a: Alloc | undefined;
    if (p.worker !== undefined) a = await p.worker.request<Alloc>('allocStop');
    else if (p.self === true && canAlloc) a = local.stop();
    if (a !== undefined) allocBy[p.name] = { perOp: a.allocated / ops, retainedPerOp: a.retained / ops, gcs: a.gcs };
  }
  return { syscallsBy, cpuTotal, cpuBy, systemBy, allocBy };
}

const ALLOC_NOTE = 'JS-heap bytes allocated per message: heap growth + bytes freed by every GC during one run (v8.GCProfiler); Buffer contents are not counted';

/**
 * Rows from the cost pass of one case: CPU µs per operation over all processes (ours against the
 * raw baseline's), and allocations per message for each of our processes; `loop` names our process
 * that runs the loop, compared with the raw baseline's client.
 */
function costRows(label: string, unit: string, ops: number, ours: Cost, raw: Cost, loop: string): BenchResult[] {
  const rows: BenchResult[] = [];
  if (ours.cpuTotal !== undefined && raw.cpuTotal !== undefined) {
    rows.push(latency(SUITE, `cpu/${unit} ${label} (all processes)`, ours.cpuTotal, raw.cpuTotal, `us/${unit}`, { ours: ours.cpuBy, raw: raw.cpuBy, systemPart: { ours: ours.systemBy, raw: raw.systemBy }, ops, syscalls: { ours: ours.syscallsBy, raw: raw.syscallsBy } }));
  }
  const sum = (by: Record<string, number>): number => Object.values(by).reduce((a, b) => a + b, 0);
  if (Object.keys(ours.syscallsBy).length > 0 && Object.keys(raw.syscallsBy).length > 0) {
    rows.push(latency(SUITE, `syscalls/${unit} ${label} (reads + writes, all processes)`, round(sum(ours.syscallsBy), 4), round(sum(raw.syscallsBy), 4), `calls/${unit}`, { ours: ours.syscallsBy, raw: raw.syscallsBy }));
  }
  const rawLoop = raw.allocBy['bench process'];
  for (const [name, a] of Object.entries(ours.allocBy)) {
    const extra = { estimate: ALLOC_NOTE, messages: ops, gcs: a.gcs, retainedPerMsg: round(a.retainedPerOp, 1) };
    const rowName = `alloc/msg ${label}: ${name}`;
    if (name === loop && rawLoop !== undefined) rows.push({ ...latency(SUITE, rowName, a.perOp, rawLoop.perOp, 'B/msg', extra), value: round(a.perOp), baseline: round(rawLoop.perOp) });
    else rows.push({ suite: SUITE, case: rowName, value: round(a.perOp), unit: 'B/msg', ...extra });
  }
  return rows;
}

/** CPU µs per operation over all processes, ours against the relay floor's (the same processes, relays forwarding bytes). */
function floorCostRows(label: string, ops: number, ours: Cost, floor: Cost): BenchResult[] {
  if (ours.cpuTotal === undefined || floor.cpuTotal === undefined) return [];
  return [latency(SUITE, `cpu/op ${label} vs relay floor (all processes)`, ours.cpuTotal, floor.cpuTotal, 'us/op', { ours: ours.cpuBy, floor: floor.cpuBy, systemPart: { ours: ours.systemBy, floor: floor.systemBy }, ops, syscalls: { ours: ours.syscallsBy, floor: floor.syscallsBy } })];
}

/** The cases of this suite; `DVS_BENCH_CASES=local,hosted` runs only those (all by default). */
const CASES = ['local', 'remote', 'hosted', 'pipeline', 'bulk'] as const;

function wanted(c: (typeof CASES)[number]): boolean {
  const only = process.env.DVS_BENCH_CASES;
  if (only === undefined || only.trim() === '') return true;
  const list = only.split(',').map((x) => x.trim());
  for (const x of list) if (!(CASES as readonly string[]).includes(x)) throw new Error(`DVS_BENCH_CASES: unknown case ${x}; known: ${CASES.join(', ')}`);
  return list.includes(c);
}

function shapeName(s: { senders: number; window: number }): string {
  return `${s.senders} sender${s.senders > 1 ? 's' : ''} x ${s.window} in flight`;
}

async function run(env: Env, scale: number): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const rounds = 5;
  const nPing = Math.max(500, Math.round(20_000 * scale));
  /** The two-daemon path through client processes is several times slower: fewer round trips. */
  const nRemote = Math.max(500, Math.round(10_000 * scale));
  const nPipe = Math.max(5000, Math.round(200_000 * scale));
  const nRawPipe = Math.max(20_000, Math.round(1_000_000 * scale));
  const bulkRounds = scale >= 0.5 ? 5 : 2;
  const pipeRounds = scale >= 0.5 ? 3 : 2;
  const [host0, host1] = env.hosts as [Worker, Worker];

  // Peers: raw baselines, echo servers as client OS processes, daemon-hosted endpoints.
  const unixPath = path.join(env.dir, 'raw-echo.sock');
  const echoPort = await freePort();
  const sinkPort = await freePort();
  const rawUnixPeer = await env.rawPeer('echo', unixPath);
  const rawTcpPeer = await env.rawPeer('echo', String(echoPort));
  const rawSinkPeer = await env.rawPeer('sink', String(sinkPort));
  // The same hops as ours with nothing but byte forwarding in the routing processes: the floor of
  // the architecture. Local: client -> relay -> echo (Unix sockets); remote: client -> relay A
  // (Unix) -> relay B (TCP) -> echo (Unix).
  const relayLocalPath = path.join(env.dir, 'raw-relay-local.sock');
  const relayRemotePath = path.join(env.dir, 'raw-relay-remote.sock');
  const relayTcpPort = await freePort();
  const relayLocal = await env.rawPeer('relay', relayLocalPath, unixPath);
  const relayB = await env.rawPeer('relay', String(relayTcpPort), unixPath);
  const relayA = await env.rawPeer('relay', relayRemotePath, String(relayTcpPort));
  const server0 = await env.clientWorker(0, 'echo-proc-node0');
  const server1 = await env.clientWorker(1, 'echo-proc-node1');
  const localEcho = await server0.request<number>('echo', { dcid: DC, slot: SLOT.localEcho });
  const remoteEcho = await server1.request<number>('echo', { dcid: DC, slot: SLOT.remoteEcho });
  const hostedEcho = await host1.request<number>('echo', { dcid: DC, slot: SLOT.hostedEcho });
  const sink = await host1.request<number>('sink', { dcid: DC, slot: SLOT.sink });
  const client = await env.client(0);
  const me: RemoteProcess = await client.bind(DC, { name: 'bench-client' });
  for (const ep of [localEcho, remoteEcho, hostedEcho, sink]) {
    await client.waitForBind(DC, ep, { timeoutMs: 10_000 });
    await host0.request('waitForBind', { dcid: DC, endpoint: ep });
  }
  const rawTcp = { host: '127.0.0.1', port: echoPort };
  const rawUnix = { path: unixPath };
  const bench: Probe = { name: 'bench process', self: true };
  const d0: Probe = { name: 'daemon 0', worker: host0 };
  const d1: Probe = { name: 'daemon 1', worker: host1 };
  const peerProbe = (p: RawPeer): Probe => ({ name: 'raw peer', pid: p.child.pid! });

  // 1. Local sendrec through one daemon.
  if (wanted('local')) {
    const name = 'local sendrec (client proc -> daemon -> server proc)';
    const r = await comparePingPong(rounds, () => timedSendrecs(me, localEcho, MSG, nPing), () => rawPingPong(rawUnix, nPing, RAW_BODY));
    out.push(...pingPongRows(name, r, 2.5, { iterations: nPing, rounds, baselineIs: 'raw Unix-socket ping-pong between two processes' }));
    out.push(await floorRow(name, () => timedSendrecs(me, localEcho, MSG, nPing), () => rawPingPong({ path: relayLocalPath }, nPing, RAW_BODY), 'raw ping-pong through a byte-forwarding relay process (Unix sockets): the same three processes'));
    out.push(await floorVsBaseRow(name, () => rawPingPong({ path: relayLocalPath }, nPing, RAW_BODY), () => rawPingPong(rawUnix, nPing, RAW_BODY), 2.5, 'raw Unix-socket ping-pong between two processes'));
    const ours = await measureCost(nPing, [{ ...bench, name: 'client proc' }, { ...d0, name: 'daemon' }, { name: 'server proc', worker: server0 }], () => timedSendrecs(me, localEcho, MSG, nPing));
    const raw = await measureCost(nPing, [bench, peerProbe(rawUnixPeer)], () => rawPingPong(rawUnix, nPing, RAW_BODY));
    out.push(...costRows('local sendrec', 'op', nPing, ours, raw, 'client proc'));
    const floor = await measureCost(nPing, [bench, { name: 'relay', pid: relayLocal.child.pid! }, peerProbe(rawUnixPeer)], () => rawPingPong({ path: relayLocalPath }, nPing, RAW_BODY));
    out.push(...floorCostRows('local sendrec', nPing, ours, floor));
  }

  // 2. Remote sendrec between client processes of two daemons.
  if (wanted('remote')) {
    const name = 'remote sendrec (client proc -> daemon 0 -> daemon 1 -> server proc)';
    const r = await comparePingPong(rounds, () => timedSendrecs(me, remoteEcho, MSG, nRemote), () => rawPingPong(rawTcp, nPing, RAW_BODY));
    out.push(...pingPongRows(name, r, 3, { iterations: nRemote, rawIterations: nPing, rounds, baselineIs: 'raw TCP ping-pong between two processes' }));
    out.push(await floorRow(name, () => timedSendrecs(me, remoteEcho, MSG, nRemote), () => rawPingPong({ path: relayRemotePath }, nRemote, RAW_BODY), 'raw ping-pong through two byte-forwarding relay processes (Unix, TCP, Unix): the same four processes'));
    out.push(await floorVsBaseRow(name, () => rawPingPong({ path: relayRemotePath }, nRemote, RAW_BODY), () => rawPingPong(rawTcp, nPing, RAW_BODY), 3, 'raw TCP ping-pong between two processes'));
    const ours = await measureCost(nRemote, [{ ...bench, name: 'client proc' }, d0, d1, { name: 'server proc', worker: server1 }], () => timedSendrecs(me, remoteEcho, MSG, nRemote));
    const raw = await measureCost(nPing, [bench, peerProbe(rawTcpPeer)], () => rawPingPong(rawTcp, nPing, RAW_BODY));
    out.push(...costRows('remote sendrec via client procs', 'op', nRemote, ours, raw, 'client proc'));
    const floor = await measureCost(nRemote, [bench, { name: 'relay A', pid: relayA.child.pid! }, { name: 'relay B', pid: relayB.child.pid! }, peerProbe(rawUnixPeer)], () => rawPingPong({ path: relayRemotePath }, nRemote, RAW_BODY));
    out.push(...floorCostRows('remote sendrec via client procs', nRemote, ours, floor));
  }

  // 3. Remote sendrec between daemon-hosted endpoints: one network hop.
  if (wanted('hosted')) {
    const name = 'remote sendrec (daemon-hosted: daemon 0 -> daemon 1)';
    const hosted = (): Promise<SendrecRun> => host0.request<SendrecRun>('sendrec', { dcid: DC, dst: hostedEcho, n: nPing, payload: PAYLOAD }, 300_000);
    const r = await comparePingPong(rounds, hosted, () => rawPingPong(rawTcp, nPing, RAW_BODY));
    out.push(...pingPongRows(name, r, 1.5, { iterations: nPing, rounds, baselineIs: 'raw TCP ping-pong between two processes' }));
    const ours = await measureCost(nPing, [d0, d1], hosted);
    const raw = await measureCost(nPing, [bench, peerProbe(rawTcpPeer)], () => rawPingPong(rawTcp, nPing, RAW_BODY));
    out.push(...costRows('daemon-hosted sendrec', 'op', nPing, ours, raw, 'daemon 0'));
  }

  // 4. Pipelined one-way sends across the daemons, in several shapes; the best is the headline.
  if (wanted('pipeline')) {
    const pipeline = (shape: { senders: number; window: number }) => async (): Promise<number> =>
      (await host0.request<{ msgsPerSec: number }>('pipeline', { dcid: DC, dst: sink, n: nPipe, payload: PAYLOAD, ...shape }, 300_000)).msgsPerSec;
    const rawPipe = (): Promise<number> => rawPipelined(sinkPort, nRawPipe, RAW_SEND_BODY);
    const shapes: { shape: { senders: number; window: number }; ours: number; base: number }[] = [];
    for (const shape of PIPE_SHAPES) shapes.push({ shape, ...(await compare(pipeRounds, pipeline(shape), rawPipe)) });
    shapes.sort((a, b) => b.ours - a.ours);
    const best = shapes[0]!;
    const note = { messages: nPipe, rawFrames: nRawPipe, rounds: pipeRounds };
    const main = throughput(SUITE, 'pipelined send across daemons (best shape)', best.ours, best.base, {
      ...note,
      shape: shapeName(best.shape),
      target: '>= 1000000 msgs/s',
      baselineIs: 'raw pipelined TCP writes (corked batches of 256) to a counting sink process',
    });
    out.push({ ...main, unit: 'msgs/s', met: best.ours >= 1_000_000 });
    for (const s of shapes.slice(1)) out.push({ ...throughput(SUITE, `pipelined send, ${shapeName(s.shape)}`, s.ours, s.base, note), unit: 'msgs/s' });
    const ours = await measureCost(nPipe, [{ ...d0, name: 'daemon 0 (senders)' }, { ...d1, name: 'daemon 1 (receiver)' }], pipeline(best.shape));
    const raw = await measureCost(nRawPipe, [bench, peerProbe(rawSinkPeer)], rawPipe);
    out.push(...costRows('pipelined send', 'msg', nPipe, ours, raw, 'daemon 0 (senders)'));
  }

  // 5. Bulk copy across the daemons: node 0's endpoint copies the grant of node 1's, blocked in
  //    sendrec with it; endpoints hosted in the daemons, then client OS processes at both ends.
  if (wanted('bulk')) {
    // A 64 MiB copy takes 40-100 ms here: one GC pause more or less swings a lone copy by half.
    // Each round makes several back to back (and the baseline moves as many bytes), so pauses
    // count in proportion rather than by luck.
    const copies = scale >= 0.5 ? 4 : 1;
    const rawCopy = (): Promise<number> => rawBulk(sinkPort, BULK_BYTES * copies);
    const ends = [
      { label: 'bulk copyFrom 64 MiB across daemons', copier: host0, owner: host1, slot: SLOT.copier, names: ['daemon 0 (copier)', 'daemon 1 (owner)'] },
      { label: 'bulk copyFrom 64 MiB across daemons, client processes at both ends', copier: server0, owner: server1, slot: SLOT.procCopier, names: ['client proc 0 (copier)', 'client proc 1 (owner)'] },
    ];
    for (const e of ends) {
      const copier = await e.copier.request<number>('bulkCopier', { dcid: DC, slot: e.slot });
      await e.owner.request('waitForBind', { dcid: DC, endpoint: copier });
      await e.owner.request('bulkOwner', { dcid: DC, dst: copier, bytes: BULK_BYTES });
      const copy = async (): Promise<number> => (await e.copier.request<{ mbPerSec: number }>('bulkCopy', { slot: e.slot, times: copies }, 300_000)).mbPerSec;
      const b = await compare(bulkRounds, copy, rawCopy);
      const bulk = throughput(SUITE, e.label, b.ours, b.base, {
        rounds: bulkRounds,
        copiesPerRound: copies,
        ...(e.copier === host0 ? { target: 'slowdown <= 2' } : {}),
        baselineIs: 'raw TCP bulk transfer in 64 KiB frames to a sink process',
      });
      out.push({ ...bulk, unit: 'MB/s', ...(e.copier === host0 ? { met: bulk.slowdown! <= 2 } : {}) });
      const mb = (BULK_BYTES * copies) / 1e6;
      const probes = [{ name: e.names[0]!, worker: e.copier }, ...(e.copier === host0 ? [] : [{ name: 'daemon 0', worker: host0 }, { name: 'daemon 1', worker: host1 }]), { name: e.names[1]!, worker: e.owner }];
      const ours = await measureCost(mb, probes, copy);
      const raw = await measureCost(mb, [bench, peerProbe(rawSinkPeer)], rawCopy);
      if (ours.cpuTotal !== undefined && raw.cpuTotal !== undefined) out.push(latency(SUITE, `cpu/MB ${e.label} (all processes)`, ours.cpuTotal, raw.cpuTotal, 'us/MB', { ours: ours.cpuBy, raw: raw.cpuBy }));
      await e.copier.request('bulkRelease', { slot: e.slot });
      await e.owner.request('bulkOwnerWait', {}, 30_000);
    }
  }
  return out;
}

export const ipcSuite: Suite = {
  name: SUITE,
  description: 'sendrec, pipelined send and bulk copy through real daemon processes against raw Node sockets',
  async run({ scale }): Promise<BenchResult[]> {
    const env = new Env();
    try {
      await env.setUp();
      return await run(env, scale);
    } finally {
      await env.tearDown();
    }
  },
};
