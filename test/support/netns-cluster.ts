/**
 * A cluster of real DVS daemons, one per network namespace (test/support/netns.ts): node i listens on
 * host i's address, node 0 serves the embedded store on its address and the others use it. The
 * cluster file and key are written to a fresh temporary directory, so the CLI functions (createDc,
 * vosUp, replicas, ...) reach the cluster with that directory as for a real one. Shared by the
 * tests that need daemons on separate hosts, so they start and tear down the cluster the same way.
 *
 *   const cluster = await startNetnsCluster({ count: 3, tmpPrefix: 'dvs-netns-', dcid: 1 });
 *   cluster.net.hosts[1].cut();   // partition node 1
 *   await cluster.stop();          // kills the daemons, removes the namespaces and the directory
 *
 * Needs root (like createTestNetwork). If the start fails part way, what was started is removed
 * before the error is thrown.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDc } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { isAlive, writeClusterFile, type ClusterNodeEntry } from '../../src/cli/cluster-files.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';
import { createTestNetwork, type TestNetwork } from './netns.js';

export interface NetnsClusterOptions {
  /** How many daemons (and namespaces); node ids 0..count-1, node i on host i. */
  readonly count: number;
  /** Prefix of the temporary cluster directory, e.g. 'dvs-netns-'. */
  readonly tmpPrefix: string;
  /** When given, a DC with this id is created over all the nodes once the cluster is up. */
  readonly dcid?: number;
}

export interface NetnsCluster {
  readonly net: TestNetwork;
  /** The cluster directory (cluster file, key, and node-<i> as node i's data directory). */
  readonly dir: string;
  readonly keyFile: string;
  /** Index i is node i. */
  readonly nodes: readonly ClusterNodeEntry[];
  readonly runtimes: readonly NodeRuntimeInfo[];
  /** SIGKILLs every daemon still alive, removes the namespaces and the directory. */
  stop(): Promise<void>;
}

export async function startNetnsCluster(opts: NetnsClusterOptions): Promise<NetnsCluster> {
  const net = createTestNetwork(opts.count);
  const nodes: ClusterNodeEntry[] = [];
  const runtimes: NodeRuntimeInfo[] = [];
  let dir: string | undefined;
  const stop = async (): Promise<void> => {
    for (const n of nodes) if (isAlive(n.pid)) process.kill(n.pid, 'SIGKILL');
    net.remove();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  };
  try {
    const root = await mkdtemp(path.join(os.tmpdir(), opts.tmpPrefix));
    dir = root;
    const keyFile = path.join(root, 'cluster.key');
    await writeFile(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const config = (i: number, store: Record<string, unknown>): Record<string, unknown> & { nodeId: number; dataDir: string } => ({
      nodeId: i,
      listen: `${net.hosts[i]!.address}:0`,
      dataDir: path.join(root, `node-${i}`),
      clusterKeyFile: keyFile,
      store,
      timing: { heartbeatMs: 250, suspectMs: 750, deadMs: 1500 },
      logLevel: 'warn',
    });
    const first = await spawnNode(config(0, { backend: 'embedded', serve: true, address: `${net.hosts[0]!.address}:0` }), net.hosts[0]!.prefix);
    nodes.push(first.entry);
    runtimes.push(first.runtime);
    const s = first.runtime.store;
    if (s.backend !== 'embedded') throw new Error('expected the embedded store');
    for (let i = 1; i < opts.count; i++) {
      const n = await spawnNode(config(i, { backend: 'embedded', serve: false, address: `${s.host}:${s.port}` }), net.hosts[i]!.prefix);
      nodes.push(n.entry);
      runtimes.push(n.runtime);
    }
    await writeClusterFile({ dir: root, keyFile, store: { backend: 'embedded', host: s.host, port: s.port }, nodes });
    if (opts.dcid !== undefined) await createDc(root, { dcid: opts.dcid, nodes: nodes.map((n) => n.nodeId) });
    return { net, dir: root, keyFile, nodes, runtimes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
