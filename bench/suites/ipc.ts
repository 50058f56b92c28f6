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
 * Plus JS-heap bytes allocated per message in each process on the path (an estimate, see
 * AllocMeter in bench/worker.ts). Ours and the baselines run interleaved (harness `compare`).
 * `DVS_BENCH_CPU_PROF=<dir>` runs the worker processes under `--cpu-prof` into that directory.
 */
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
const SLOT = { localEcho: 10, remoteEcho: 11, hostedEcho: 12, sink: 13, copier: 14 } as const;
/** Body bytes of a raw frame, about the size of one of our request frames. */
const RAW_BODY = 64;
const RAW_SEND_BODY = 48;
const BULK_BYTES = 64 * 1024 * 1024;
const PAYLOAD = 42;
const MSG = { type: 7, payload: PAYLOAD };
/** Shapes of the pipelined-send case: senders (endpoints) x sends in flight per sender. */
const PIPE_SHAPES: readonly { senders: number; window: number }[] = [
  { senders: 1, window: 64 },
  { senders: 1, window: 256 },
  { senders: 1, window: 1024 },
  { senders: 4, window: 256 },
  { senders: 16, window: 64 },
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

  async rawPeer(mode: 'echo' | 'sink', where: string): Promise<RawPeer> {
    const p = await startRawPeer(mode, where);
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
async function comparePingPong(rounds: number, ours: () => Promise<SendrecRun>, base: () => Promise<{ opsPerSec: number; samples: Float64Array | number[] }>): Promise<{ ours: number; base: number; oursSamples: Float64Array; baseSamples: Float64Array }> {
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

function pingPongRows(name: string, r: Awaited<ReturnType<typeof comparePingPong>>, target: number, extra: Record<string, unknown>): BenchResult[] {
  const main = throughput(SUITE, name, r.ours, r.base, { ...extra, target: `slowdown <= ${target}` });
  return [
    { ...main, met: main.slowdown! <= target },
    latency(SUITE, `${name} p50`, percentile(r.oursSamples, 50), percentile(r.baseSamples, 50)),
    latency(SUITE, `${name} p99`, percentile(r.oursSamples, 99), percentile(r.baseSamples, 99)),
  ];
}

/** Allocation rows: bytes per message in each named process, from meters started around `run`. */
async function measureAlloc(label: string, ops: number, meters: { name: string; worker?: Worker; local?: AllocMeter }[], run: () => Promise<unknown>, baseline?: number): Promise<BenchResult[]> {
  for (const m of meters) {
    if (m.worker !== undefined) await m.worker.request('allocStart');
    else m.local!.start();
  }
  await run();
  const rows: BenchResult[] = [];
  for (const m of meters) {
    const a: Alloc = m.worker !== undefined ? await m.worker.request<Alloc>('allocStop') : m.local!.stop();
    const perOp = a.allocated / ops;
    const extra = { estimate: 'JS heap bytes allocated per message (heap growth + bytes freed by GCs; Buffer contents not counted)', messages: ops, gcs: a.gcs, retainedPerMsg: round(a.retained / ops, 1) };
    const name = `alloc/msg ${label}: ${m.name}`;
    if (baseline !== undefined && m.local !== undefined) rows.push(latency(SUITE, name, perOp, baseline, 'B/msg', extra));
    else rows.push({ suite: SUITE, case: name, value: round(perOp), unit: 'B/msg', ...extra });
  }
  return rows;
}

async function rawPingPongAlloc(opts: net.NetConnectOpts, n: number): Promise<number> {
  const m = new AllocMeter();
  m.start();
  await rawPingPong(opts, n, RAW_BODY);
  return m.stop().allocated / n;
}

async function run(env: Env, scale: number): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const rounds = 5;
  const nPing = Math.max(500, Math.round(20_000 * scale));
  const nPipe = Math.max(5000, Math.round(200_000 * scale));
  const nRawPipe = Math.max(20_000, Math.round(1_000_000 * scale));
  const bulkRounds = scale >= 0.5 ? 5 : 2;
  const canAlloc = AllocMeter.available();
  const [host0, host1] = env.hosts as [Worker, Worker];

  // Peers: raw baselines, echo servers as client OS processes, daemon-hosted endpoints.
  const unixPath = path.join(env.dir, 'raw-echo.sock');
  const echoPort = await freePort();
  const sinkPort = await freePort();
  await env.rawPeer('echo', unixPath);
  await env.rawPeer('echo', String(echoPort));
  await env.rawPeer('sink', String(sinkPort));
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
  const common = { iterations: nPing, rounds };

  // 1. Local sendrec through one daemon.
  {
    const name = 'local sendrec (client proc -> daemon -> server proc)';
    const r = await comparePingPong(rounds, () => timedSendrecs(me, localEcho, MSG, nPing), () => rawPingPong(rawUnix, nPing, RAW_BODY));
    out.push(...pingPongRows(name, r, 2.5, { ...common, baselineIs: 'raw Unix-socket ping-pong between two processes' }));
  }

  // 2. Remote sendrec between client processes of two daemons.
  {
    const name = 'remote sendrec (client proc -> daemon 0 -> daemon 1 -> server proc)';
    const r = await comparePingPong(rounds, () => timedSendrecs(me, remoteEcho, MSG, nPing), () => rawPingPong(rawTcp, nPing, RAW_BODY));
    out.push(...pingPongRows(name, r, 3, { ...common, baselineIs: 'raw TCP ping-pong between two processes' }));
  }

  // 3. Remote sendrec between daemon-hosted endpoints: one network hop.
  {
    const name = 'remote sendrec (daemon-hosted: daemon 0 -> daemon 1)';
    const r = await comparePingPong(rounds, () => host0.request<SendrecRun>('sendrec', { dcid: DC, dst: hostedEcho, n: nPing, payload: PAYLOAD }, 300_000), () => rawPingPong(rawTcp, nPing, RAW_BODY));
    out.push(...pingPongRows(name, r, 1.5, { ...common, baselineIs: 'raw TCP ping-pong between two processes' }));
  }

  // 4. Pipelined one-way sends across the daemons, several shapes.
  {
    const shapes: { shape: { senders: number; window: number }; ours: number; base: number }[] = [];
    for (const shape of PIPE_SHAPES) {
      const r = await compare(
        3,
        async () => (await host0.request<{ msgsPerSec: number }>('pipeline', { dcid: DC, dst: sink, n: nPipe, payload: PAYLOAD, ...shape }, 300_000)).msgsPerSec,
        () => rawPipelined(sinkPort, nRawPipe, RAW_SEND_BODY),
      );
      shapes.push({ shape, ...r });
    }
    shapes.sort((a, b) => b.ours - a.ours);
    const best = shapes[0]!;
    const shapeName = (s: { senders: number; window: number }): string => `${s.senders} sender${s.senders > 1 ? 's' : ''} x ${s.window} in flight`;
    // The best shape again with full rounds, for the headline figure.
    const r = await compare(
      rounds,
      async () => (await host0.request<{ msgsPerSec: number }>('pipeline', { dcid: DC, dst: sink, n: nPipe, payload: PAYLOAD, ...best.shape }, 300_000)).msgsPerSec,
      () => rawPipelined(sinkPort, nRawPipe, RAW_SEND_BODY),
    );
    const main = throughput(SUITE, 'pipelined send across daemons (best shape)', r.ours, r.base, {
      shape: shapeName(best.shape),
      messages: nPipe,
      rawFrames: nRawPipe,
      rounds,
      target: '>= 1000000 msgs/s',
      baselineIs: 'raw pipelined TCP writes (corked batches of 256) to a counting sink process',
    });
    out.push({ ...main, unit: 'msgs/s', met: r.ours >= 1_000_000 });
    for (const s of shapes) out.push({ ...throughput(SUITE, `pipelined send, ${shapeName(s.shape)}`, s.ours, s.base, { messages: nPipe, rounds: 3 }), unit: 'msgs/s' });

    // 5. Bulk copy across the daemons.
    const copier = await host0.request<number>('bulkCopier', { dcid: DC, slot: SLOT.copier });
    await host1.request('waitForBind', { dcid: DC, endpoint: copier });
    await host1.request('bulkOwner', { dcid: DC, dst: copier, bytes: BULK_BYTES });
    const b = await compare(
      bulkRounds,
      async () => (await host0.request<{ mbPerSec: number }>('bulkCopy', { slot: SLOT.copier }, 300_000)).mbPerSec,
      () => rawBulk(sinkPort, BULK_BYTES),
    );
    await host0.request('bulkRelease', { slot: SLOT.copier });
    await host1.request('bulkOwnerWait', {}, 30_000);
    const bulk = throughput(SUITE, 'bulk copyFrom 64 MiB across daemons', b.ours, b.base, {
      rounds: bulkRounds,
      target: 'slowdown <= 2',
      baselineIs: 'raw TCP bulk transfer in 64 KiB frames to a sink process',
    });
    out.push({ ...bulk, unit: 'MB/s', met: bulk.slowdown! <= 2 });

    // Allocations, each process on the path measured around one more run.
    if (canAlloc) {
      const nA = nPing;
      const rawBase = await rawPingPongAlloc(rawUnix, nA);
      out.push(
        ...(await measureAlloc(
          'local sendrec',
          nA,
          [{ name: 'client proc', local: new AllocMeter() }, { name: 'daemon', worker: host0 }, { name: 'server proc', worker: server0 }],
          () => timedSendrecs(me, localEcho, MSG, nA),
          rawBase,
        )),
      );
      out.push(
        ...(await measureAlloc(
          'remote sendrec via client procs',
          nA,
          [{ name: 'client proc', local: new AllocMeter() }, { name: 'daemon 0', worker: host0 }, { name: 'daemon 1', worker: host1 }, { name: 'server proc', worker: server1 }],
          () => timedSendrecs(me, remoteEcho, MSG, nA),
        )),
      );
      out.push(
        ...(await measureAlloc('daemon-hosted sendrec', nA, [{ name: 'daemon 0 (client)', worker: host0 }, { name: 'daemon 1 (echo)', worker: host1 }], () =>
          host0.request('sendrec', { dcid: DC, dst: hostedEcho, n: nA, payload: PAYLOAD }, 300_000),
        )),
      );
      out.push(
        ...(await measureAlloc('pipelined send', nPipe, [{ name: 'daemon 0 (senders)', worker: host0 }, { name: 'daemon 1 (receiver)', worker: host1 }], () =>
          host0.request('pipeline', { dcid: DC, dst: sink, n: nPipe, payload: PAYLOAD, ...best.shape }, 300_000),
        )),
      );
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
