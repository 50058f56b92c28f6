/**
 * Suite `vos`: the Virtual Operating System on three real daemons (`dvs cluster up` in a temp dir,
 * the embedded store on node 0).
 * - Server-to-server IPC: an echo server and a pinger server (bench/services/) booted as a VOS in
 *   the unikernel shape (coroutines of node 0's daemon) and in the multiserver shape (a process
 *   each); the pinger makes sendrecs to the echo and, in its own process, a bare promise
 *   ping-pong and sendrecs through a bare kernel of its own (the floor of the unikernel pair: the
 *   same kernel calls in the same daemon process): µs per call of each. Beside them, this
 *   process's bare kernel sendrec against the same ping-pong.
 * - Spawn through PM: a VOS with SYSTASK on every node and PM on node 0; a client on node 0 spawns
 *   /bin/true on node 0 (local) and on node 1 (remote) and waits for its exit, beside
 *   child_process.spawn of the same program from this process, and one remote sendrec from node 0
 *   to an echo server on node 1 (the extra a remote spawn pays at least).
 *
 * `--scale` shrinks the iteration counts.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createDc } from '../../src/cli/admin.js';
import { clusterDown, clusterUp } from '../../src/cli/cluster.js';
import { readRuntime, type ClusterFile } from '../../src/cli/cluster-files.js';
import { vosUp } from '../../src/cli/vos-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { Vos } from '../../src/client/vos.js';
import type { VosView } from '../../src/vos/vos-view.js';
import { removeOnExit } from '../etcd-process.js';
import { latency, median, round, type BenchResult, type Suite } from '../harness.js';
import { kernelPingPong } from '../kernel-ping.js';
import { promisePingPong, usPerCall } from '../ping-pong.js';

const SUITE = 'vos';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ECHO = path.join(HERE, '..', 'services', 'echo-service.js');
const PINGER = path.join(HERE, '..', 'services', 'pinger-service.js');
const DC_UNI = 1;
const DC_MULTI = 2;
const DC_PM = 3;
const CALL_TIMEOUT_MS = 120_000;

class Env {
  dir = '';
  cluster: ClusterFile | undefined;
  private forget: (() => void) | undefined;
  readonly clients: DvsClient[] = [];

  async setUp(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-bench-vos-'));
    this.forget = removeOnExit(this.dir);
    this.cluster = await clusterUp({ nodes: 3, dir: this.dir, logLevel: process.env.DVS_BENCH_LOG ?? 'error' });
    for (const dcid of [DC_UNI, DC_MULTI, DC_PM]) await createDc(this.dir, { dcid, name: `vos${dcid}`, nodes: [0, 1, 2] });
  }

  async client(node: number): Promise<DvsClient> {
    const entry = this.cluster?.nodes.find((n) => n.nodeId === node);
    const r = entry === undefined ? undefined : readRuntime(entry.dataDir);
    if (r === undefined) throw new Error(`node ${node} is not running`);
    const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'bench-vos' });
    this.clients.push(c);
    return c;
  }

  async boot(name: string, spec: unknown): Promise<VosView> {
    const file = path.join(this.dir, name);
    await writeFile(file, JSON.stringify(spec));
    return vosUp(this.dir, file, { timeoutMs: 30_000 });
  }

  async tearDown(): Promise<void> {
    for (const c of this.clients) await c.close().catch(() => undefined);
    if (this.dir !== '') {
      await clusterDown(this.dir).catch(() => undefined);
      await rm(this.dir, { recursive: true, force: true });
    }
    this.forget?.();
  }
}

function endpointOf(view: VosView, key: string): number {
  const ep = view.servers.find((s) => s.key === key)?.endpoint;
  if (ep === undefined) throw new Error(`${key} is not bound`);
  return ep;
}

/** The pinger's figures for one shape, the median of `rounds`. */
async function pairFigures(env: Env, dcid: number, view: VosView, n: number, rounds: number): Promise<{ sendrecUs: number; promiseUs: number; kernelUs: number }> {
  const c = await env.client(0);
  const p = await c.bind(dcid, { name: 'bench' });
  const peer = endpointOf(view, `custom:${ECHO}`);
  const pinger = endpointOf(view, `custom:${PINGER}`);
  const s: number[] = [];
  const b: number[] = [];
  const k: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const m = await p.sendrec(pinger, { type: 1, payload: { n, peer } }, { timeoutMs: CALL_TIMEOUT_MS });
    const r = m.payload as { sendrecUs?: number; promiseUs?: number; kernelUs?: number; error?: string };
    if (r.error !== undefined || r.sendrecUs === undefined || r.promiseUs === undefined || r.kernelUs === undefined) throw new Error(`pinger: ${r.error ?? 'malformed answer'}`);
    s.push(r.sendrecUs);
    b.push(r.promiseUs);
    k.push(r.kernelUs);
  }
  await p.unbind();
  return { sendrecUs: median(s), promiseUs: median(b), kernelUs: median(k) };
}

/** The in-process kernel's sendrec and the bare ping-pong in this process, µs per call. */
async function inProcess(n: number): Promise<{ sendrecUs: number; promiseUs: number }> {
  const kp = kernelPingPong();
  const sendrecUs = await usPerCall(n, (i) => kp.call(i));
  kp.stop();
  const pp = promisePingPong();
  const promiseUs = await usPerCall(n, (i) => pp.call(i));
  pp.stop();
  return { sendrecUs, promiseUs };
}

export const vosSuite: Suite = {
  name: SUITE,
  description: 'VOS server-to-server sendrec in the unikernel and multiserver shapes against a promise ping-pong; spawn through PM, local and remote, against child_process.spawn',
  async run({ scale }): Promise<BenchResult[]> {
    const n = Math.max(500, Math.round(50_000 * scale));
    // Unikernel rounds are short and the daemon's timers and GC scatter them: more of them.
    const rounds = 5;
    const uniRounds = 15;
    const env = new Env();
    try {
      await env.setUp();
      const servers = (shape: string): unknown[] => [
        { name: `custom:${ECHO}`, node: 0, shape },
        { name: `custom:${PINGER}`, node: 0, shape },
      ];
      const uniView = await env.boot('uni.json', { dc: DC_UNI, servers: servers('unikernel') });
      const multiView = await env.boot('multi.json', { dc: DC_MULTI, servers: servers('multiserver') });
      const uni = await pairFigures(env, DC_UNI, uniView, n, uniRounds);
      const multi = await pairFigures(env, DC_MULTI, multiView, Math.max(200, Math.round(n / 5)), rounds);
      const local = await inProcess(n);
      const note = { iterations: n, rounds, baselineIs: 'a promise ping-pong in the same process' };
      return [
        latency(SUITE, 'unikernel server-to-server sendrec', uni.sendrecUs, uni.promiseUs, 'us', { ...note, rounds: uniRounds, target: 'x3' }),
        latency(SUITE, 'bare kernel sendrec in the unikernel daemon (floor)', uni.kernelUs, uni.promiseUs, 'us', { ...note, rounds: uniRounds }),
        { suite: SUITE, case: 'unikernel pair against the bare kernel in its daemon', value: round(uni.sendrecUs / uni.kernelUs, 2), unit: 'x' },
        latency(SUITE, 'multiserver server-to-server sendrec', multi.sendrecUs, multi.promiseUs, 'us', { ...note, iterations: Math.max(200, Math.round(n / 5)) }),
        latency(SUITE, 'bare kernel sendrec in the bench process', local.sendrecUs, local.promiseUs, 'us', note),
        { suite: SUITE, case: 'unikernel against multiserver', value: round(multi.sendrecUs / uni.sendrecUs, 2), unit: 'x' },
        ...(await spawnCases(env, Math.max(20, Math.round(200 * scale)))),
      ];
    } finally {
      await env.tearDown();
    }
  },
};

/** µs samples of `n` sequential runs of `op`, after `warm` unmeasured ones. */
async function samples(n: number, warm: number, op: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < warm; i++) await op();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op();
    out.push((performance.now() - t0) * 1000);
  }
  return out;
}

/** child_process.spawn of `program`, resolved once it runs (its spawn event) or once it exited. */
function spawnPlain(program: string, untilExit: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, [], { stdio: 'ignore' });
    child.once('error', reject);
    if (untilExit) child.once('exit', () => resolve());
    else child.once('spawn', () => resolve());
  });
}

/**
 * Spawn through PM from a client on node 0: to node 0 (local) and node 1 (remote), the time of
 * the spawn call alone (PM's answer: SYSTASK started it) and of spawn + wait (its exit reported),
 * beside child_process.spawn of the same program from this process; and one sendrec from node 0
 * to an echo server on node 1, the least a remote spawn adds.
 */
async function spawnCases(env: Env, n: number): Promise<BenchResult[]> {
  const PROGRAM = '/bin/true';
  const view = await env.boot('pm.json', {
    dc: DC_PM,
    servers: [
      { name: 'systask', shape: 'unikernel' },
      { name: 'pm', node: 0, shape: 'unikernel' },
      { name: `custom:${ECHO}`, node: 1, shape: 'unikernel', host: 'echo' },
    ],
  });
  const c = await env.client(0);
  const vos = await Vos.open(c, { dcid: DC_PM, name: 'bench-pm' });
  try {
    const spawnOnly = (node: number) => () => vos.pm(async (pm) => {
      const { pid } = await pm.spawn(PROGRAM, [], { node });
      return pid;
    });
    const pids: number[] = [];
    const spawnAndWait = (node: number) => () =>
      vos.pm(async (pm) => {
        const { pid } = await pm.spawn(PROGRAM, [], { node });
        await pm.wait({ pid, timeoutMs: 30_000 });
      });
    const warm = 5;
    const localSpawn = await samples(n, warm, async () => pids.push(await spawnOnly(0)()));
    const remoteSpawn = await samples(n, warm, async () => pids.push(await spawnOnly(1)()));
    // Reap what spawnOnly left.
    for (const pid of pids) await vos.pm((pm) => pm.wait({ pid, timeoutMs: 30_000 }));
    const localRun = await samples(n, warm, spawnAndWait(0));
    const remoteRun = await samples(n, warm, spawnAndWait(1));
    const plainSpawn = await samples(n, warm, () => spawnPlain(PROGRAM, false));
    const plainRun = await samples(n, warm, () => spawnPlain(PROGRAM, true));
    const echo = endpointOf(view, `custom:${ECHO}`);
    const msg = { type: 1, payload: 1 };
    const rsr = await samples(Math.max(200, n * 5), 50, () => vos.process.sendrec(echo, msg));
    const m = (v: number[]): number => median(v) / 1000;
    const note = { spawns: n, program: PROGRAM, statistic: 'median' };
    const budget = m(localSpawn) + m(rsr);
    return [
      latency(SUITE, 'spawn through PM, local node', m(localSpawn), m(plainSpawn), 'ms', { ...note, baselineIs: 'child_process.spawn until its spawn event' }),
      latency(SUITE, 'spawn through PM, remote node', m(remoteSpawn), m(plainSpawn), 'ms', { ...note, baselineIs: 'child_process.spawn until its spawn event' }),
      latency(SUITE, 'spawn + wait through PM, local node', m(localRun), m(plainRun), 'ms', { ...note, baselineIs: 'child_process.spawn until its exit' }),
      latency(SUITE, 'spawn + wait through PM, remote node', m(remoteRun), m(plainRun), 'ms', { ...note, baselineIs: 'child_process.spawn until its exit' }),
      { suite: SUITE, case: 'remote sendrec node 0 -> 1 (median)', value: round(m(rsr), 3), unit: 'ms', calls: rsr.length },
      latency(SUITE, 'remote spawn against local spawn + one remote sendrec', m(remoteSpawn), budget, 'ms', { target: 'x2' }),
    ];
  } finally {
    await vos.close();
  }
}
