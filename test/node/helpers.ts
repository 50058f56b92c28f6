/** Helpers for integration tests against real daemon processes and client processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { clusterDown, clusterUp } from '../../src/cli/cluster.js';
import { isAlive, readRuntime, type ClusterFile } from '../../src/cli/cluster-files.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';

const ACTOR = fileURLToPath(new URL('./fixtures/actor.mjs', import.meta.url));

export interface Actor {
  readonly child: ChildProcess;
  /** Resolves with the endpoint once the process is bound. */
  readonly ready: Promise<{ endpoint: number; pid: number }>;
  /** Resolves with the process's final JSON line. */
  readonly result: Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): void;
}

const actors = new Set<Actor>();

/** Starts a client OS process of `role` against the daemon whose runtime info is given. */
export function startActor(node: NodeRuntimeInfo, role: string, args: Record<string, unknown>, timeoutMs = 60_000): Actor {
  const child = spawn(process.execPath, [ACTOR, role, JSON.stringify(args)], {
    env: { ...process.env, DVS_SOCKET: node.socket, DVS_TOKEN_PATH: node.token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  let onReady!: (v: { endpoint: number; pid: number }) => void;
  let onResult!: (v: Record<string, unknown>) => void;
  let onFail!: (e: Error) => void;
  const ready = new Promise<{ endpoint: number; pid: number }>((res, rej) => {
    onReady = res;
    onFail = rej;
  });
  const result = new Promise<Record<string, unknown>>((res, rej) => {
    onResult = res;
    const prev = onFail;
    onFail = (e) => {
      prev(e);
      rej(e);
    };
  });
  ready.catch(() => undefined);
  result.catch(() => undefined);
  lines.on('line', (line) => {
    const obj = JSON.parse(line) as Record<string, unknown>;
    if (obj.ready === true) onReady(obj as unknown as { endpoint: number; pid: number });
    if (obj.done === true) onResult(obj);
  });
  const timer = setTimeout(() => {
    onFail(new Error(`actor ${role} timed out; stderr: ${stderr}`));
    child.kill('SIGKILL');
  }, timeoutMs);
  child.once('exit', (code, signal) => {
    clearTimeout(timer);
    onFail(new Error(`actor ${role} exited (${code ?? signal}) without a result; stderr: ${stderr}`));
  });
  const actor: Actor = { child, ready, result, kill: (s = 'SIGKILL') => void child.kill(s) };
  actors.add(actor);
  return actor;
}

export function killActors(): void {
  for (const a of actors) if (a.child.exitCode === null) a.child.kill('SIGKILL');
  actors.clear();
}

export interface TestCluster {
  readonly dir: string;
  readonly cluster: ClusterFile;
  runtime(node: number): NodeRuntimeInfo;
  stop(): Promise<void>;
}

export async function startCluster(nodes: number, deadMs = 1500): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-cluster-'));
  const cluster = await clusterUp({ nodes, dir, deadMs, logLevel: 'warn' });
  return {
    dir,
    cluster,
    runtime: (node: number) => {
      const r = readRuntime(cluster.nodes.find((n) => n.nodeId === node)!.dataDir);
      if (r === undefined) throw new Error(`node ${node} is not running`);
      return r;
    },
    stop: async () => {
      killActors();
      await clusterDown(dir).catch(() => undefined);
      // `cluster down` must also stop nodes restarted since `cluster up` (their runtime file names them).
      const leaked = cluster.nodes.map((n) => readRuntime(n.dataDir)?.pid).filter((pid): pid is number => pid !== undefined && isAlive(pid));
      for (const pid of leaked) process.kill(pid, 'SIGKILL');
      for (const n of cluster.nodes) if (isAlive(n.pid)) process.kill(n.pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
      if (leaked.length > 0) throw new Error(`cluster down left daemons running: pids ${leaked.join(', ')}`);
    },
  };
}

/** Polls `check` until it returns a value other than undefined, within `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${last === undefined ? '' : `: ${String(last)}`}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
