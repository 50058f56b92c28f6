/** `dvs cluster up|down`: a local cluster of N real daemon processes on loopback. */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, closeSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DvsError } from '../ipc/errors.js';
import type { NodeRuntimeInfo } from '../node/daemon.js';
import { nodePaths } from '../node/config.js';
import { daemonEnv } from './daemon-env.js';
import { clusterFilePath, isAlive, readClusterFile, readRuntime, writeClusterFile, writeClusterKey, type ClusterFile, type ClusterNodeEntry, type ClusterStore } from './cluster-files.js';

/** The compiled CLI; when this module runs from TypeScript sources (tests), the built copy in dist/. */
const HERE = fileURLToPath(import.meta.url);
const CLI_MAIN = HERE.endsWith('.ts') ? path.resolve(path.dirname(HERE), '../../dist/src/cli/main.js') : path.join(path.dirname(HERE), 'main.js');
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

export interface ClusterUpOptions {
  readonly nodes: number;
  readonly dir: string;
  readonly logLevel?: string;
  /** Timing of failure detection for every node. */
  readonly deadMs?: number;
  /** Use this etcd cluster (client URLs) instead of the embedded store. */
  readonly etcd?: readonly string[];
  readonly log?: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Starts one daemon as a detached OS process and waits until it reports itself started. `prefix`
 * runs it through another command, e.g. `ip netns exec <ns>` to place it in a network namespace.
 */
export async function spawnNode(config: Record<string, unknown> & { nodeId: number; dataDir: string }, prefix: readonly string[] = []): Promise<{ entry: ClusterNodeEntry; runtime: NodeRuntimeInfo }> {
  const paths = nodePaths(config.dataDir);
  const configFile = await writeNodeConfig(config);
  await rm(paths.runtime, { force: true });
  const log = openSync(paths.log, 'a');
  const argv = [process.execPath, CLI_MAIN, 'node', 'start', '--config', configFile];
  const child = spawn(prefix[0] ?? argv[0]!, [...prefix.slice(1), ...(prefix.length > 0 ? argv : argv.slice(1))], { detached: true, stdio: ['ignore', log, log], env: daemonEnv() });
  closeSync(log);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new DvsError('EDVSNOEXEC', `could not start node ${config.nodeId}`);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const runtime = readRuntime(config.dataDir);
    if (runtime !== undefined && runtime.pid === pid) return { entry: { nodeId: config.nodeId, dataDir: config.dataDir, configFile, pid }, runtime };
    if (!isAlive(pid)) throw new DvsError('EDVSNOEXEC', `node ${config.nodeId} exited during start; log:\n${tail(paths.log)}`);
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      throw new DvsError('EDVSTIMEDOUT', `node ${config.nodeId} did not start within ${START_TIMEOUT_MS} ms; log:\n${tail(paths.log)}`);
    }
    await sleep(50);
  }
}

/** Writes `<dataDir>/config.json` (what `dvs node start --config` reads) and returns its path. */
export async function writeNodeConfig(config: Record<string, unknown> & { dataDir: string }): Promise<string> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const configFile = path.join(config.dataDir, 'config.json');
  await writeFile(configFile, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  return configFile;
}

/** How a node reaches the coordination store: serving the embedded one, connecting to it, or etcd. */
export type NodeStoreChoice = { readonly serve: true } | { readonly address: { host: string; port: number } } | { readonly etcd: readonly string[] };

export function nodeConfig(dir: string, keyFile: string, nodeId: number, store: NodeStoreChoice, opts: { logLevel?: string; deadMs?: number }): Record<string, unknown> & { nodeId: number; dataDir: string } {
  const deadMs = opts.deadMs ?? 3000;
  return {
    nodeId,
    listen: '127.0.0.1:0',
    dataDir: path.join(dir, `node-${nodeId}`),
    clusterKeyFile: keyFile,
    store:
      'etcd' in store
        ? { backend: 'etcd', endpoints: store.etcd }
        : 'serve' in store
          ? { backend: 'embedded', serve: true, address: '127.0.0.1:0' }
          : { backend: 'embedded', serve: false, address: `${store.address.host}:${store.address.port}` },
    timing: { heartbeatMs: Math.max(10, Math.round(deadMs / 6)), suspectMs: Math.round(deadMs / 2), deadMs },
    logLevel: opts.logLevel ?? 'info',
  };
}

export async function clusterUp(opts: ClusterUpOptions): Promise<ClusterFile> {
  const dir = path.resolve(opts.dir);
  if (existsSync(clusterFilePath(dir))) {
    const old = readClusterFile(dir);
    if (old.nodes.some((n) => isAlive(n.pid))) throw new DvsError('EDVSEXIST', `a cluster is already up in ${dir} (dvs cluster down first)`);
  }
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 32) throw new DvsError('EDVSRANGE', 'nodes must be 1..32');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, 'cluster.key');
  // A directory that held a cluster brings it back: same key, and node 0's store keeps its DCs.
  if (!existsSync(keyFile)) await writeClusterKey(keyFile);
  const log = opts.log ?? (() => undefined);
  const nodes: ClusterNodeEntry[] = [];
  const firstConfig = nodeConfig(dir, keyFile, 0, opts.etcd === undefined ? { serve: true } : { etcd: opts.etcd }, opts);
  const first = await spawnNode(firstConfig);
  nodes.push(first.entry);
  const s0 = first.runtime.store;
  // The other nodes are configured with the port the store got: node 0 must serve there again after a restart.
  if (s0.backend === 'embedded') await writeNodeConfig({ ...firstConfig, store: { backend: 'embedded', serve: true, address: `${s0.host}:${s0.port}` } });
  const store: ClusterStore = s0.backend === 'etcd' ? { backend: 'etcd', endpoints: s0.endpoints } : { backend: 'embedded', host: s0.host, port: s0.port };
  log(`node 0 up (pid ${first.entry.pid}, link port ${first.runtime.link.port}, ${store.backend === 'etcd' ? `etcd at ${store.endpoints.join(',')}` : `embedded store on ${store.host}:${store.port}`})`);
  const others: NodeStoreChoice = store.backend === 'etcd' ? { etcd: store.endpoints } : { address: { host: store.host, port: store.port } };
  try {
    for (let id = 1; id < opts.nodes; id++) {
      const n = await spawnNode(nodeConfig(dir, keyFile, id, others, opts));
      nodes.push(n.entry);
      log(`node ${id} up (pid ${n.entry.pid}, link port ${n.runtime.link.port})`);
    }
  } catch (err) {
    for (const n of nodes) if (isAlive(n.pid)) process.kill(n.pid, 'SIGKILL');
    throw err;
  }
  const cluster: ClusterFile = { dir, keyFile, store, nodes };
  await writeClusterFile(cluster);
  return cluster;
}

/** Stops every daemon of the cluster (SIGTERM, then SIGKILL after a grace) and forgets it. */
export async function clusterDown(dirArg: string, log: (line: string) => void = () => undefined): Promise<number> {
  const dir = path.resolve(dirArg);
  const cluster = readClusterFile(dir);
  // A node restarted since `cluster up` (e.g. `dvs node start` after a crash) runs under another
  // pid: its runtime file names the live one.
  const current = cluster.nodes.map((n) => {
    const live = readRuntime(n.dataDir)?.pid;
    return live !== undefined && live !== n.pid && isAlive(live) ? { ...n, pid: live } : n;
  });
  const alive = current.filter((n) => isAlive(n.pid));
  // The store's host (node 0) last, so the others can deregister cleanly on their way out.
  for (const wave of [alive.filter((n) => n.nodeId !== 0), alive.filter((n) => n.nodeId === 0)]) {
    for (const n of wave) process.kill(n.pid, 'SIGTERM');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (wave.some((n) => isAlive(n.pid)) && Date.now() < deadline) await sleep(25);
  }
  for (const n of alive) {
    if (isAlive(n.pid)) {
      process.kill(n.pid, 'SIGKILL');
      log(`node ${n.nodeId} (pid ${n.pid}) did not stop in time; killed`);
    } else {
      log(`node ${n.nodeId} stopped`);
    }
  }
  await rm(clusterFilePath(dir), { force: true });
  return alive.length;
}
