/**
 * A local cluster's directory (`dvs cluster up`): `cluster.json` (nodes, their data directories
 * and pids), `cluster.key` (0600) and one `node-<id>/` data directory per daemon.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DvsError } from '../ipc/errors.js';
import type { NodeRuntimeInfo } from '../node/daemon.js';
import { nodePaths } from '../node/config.js';
import { processAlive } from '../node/data-dir-lock.js';

export interface ClusterNodeEntry {
  readonly nodeId: number;
  readonly dataDir: string;
  readonly configFile: string;
  readonly pid: number;
}

export type ClusterStore =
  | { readonly backend: 'embedded'; readonly host: string; readonly port: number }
  | { readonly backend: 'etcd'; readonly endpoints: readonly string[] };

export interface ClusterFile {
  readonly dir: string;
  readonly keyFile: string;
  readonly store: ClusterStore;
  readonly nodes: ClusterNodeEntry[];
}

export function defaultClusterDir(): string {
  return process.env.DVS_CLUSTER_DIR ?? path.join(os.homedir(), '.dvs', 'local');
}

export function clusterFilePath(dir: string): string {
  return path.join(dir, 'cluster.json');
}

export function readClusterFile(dir: string): ClusterFile {
  const file = clusterFilePath(dir);
  if (!existsSync(file)) throw new DvsError('EDVSNOENT', `no cluster in ${dir} (run dvs cluster up, or pass --dir)`);
  return JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
}

export async function writeClusterFile(c: ClusterFile): Promise<void> {
  await writeFile(clusterFilePath(c.dir), JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
}

export { readClusterKeyFile } from '../transport/cluster-key.js';

export async function writeClusterKey(file: string): Promise<void> {
  await writeFile(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
}

/** The runtime info a daemon wrote once started, or undefined while it is not up. */
export function readRuntime(dataDir: string): NodeRuntimeInfo | undefined {
  try {
    return JSON.parse(readFileSync(nodePaths(dataDir).runtime, 'utf8')) as NodeRuntimeInfo;
  } catch {
    return undefined;
  }
}

/** Whether a daemon process runs (a zombie left by a SIGKILL does not). */
export const isAlive = processAlive;
