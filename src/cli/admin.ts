/**
 * Cluster administration from the command line: DC management through the directory, and the
 * process table and status gathered from every daemon.
 */
import { readFile } from 'node:fs/promises';
import { connect, type DvsClient } from '../client/index.js';
// Not the cluster barrel: the etcd backend (gRPC, slow to load) is imported only when configured.
import { Directory, type DcDefinition, type DcRecord } from '../cluster/directory.js';
import type { CoordinationStore } from '../cluster/store.js';
import { StoreClient } from '../cluster/store-client.js';
import type { ProcInfo } from '../kernel/index.js';
import { isAlive, readClusterFile, readRuntime, type ClusterFile } from './cluster-files.js';

export async function withDirectory<T>(dir: string, fn: (d: Directory, c: ClusterFile) => Promise<T>): Promise<T> {
  const cluster = readClusterFile(dir);
  const key = Buffer.from((await readFile(cluster.keyFile, 'utf8')).trim(), 'hex');
  const cs = cluster.store;
  const store: CoordinationStore = cs.backend === 'etcd' ? new (await import('../cluster/etcd-store.js')).EtcdStore({ endpoints: cs.endpoints }) : await StoreClient.connect({ host: cs.host, port: cs.port, clusterKey: key });
  const directory = new Directory(store);
  try {
    await directory.start();
    return await fn(directory, cluster);
  } finally {
    await directory.close().catch(() => undefined);
    await store.close().catch(() => undefined);
  }
}

export async function withNodeClient<T>(dataDir: string, fn: (c: DvsClient) => Promise<T>): Promise<T | undefined> {
  const runtime = readRuntime(dataDir);
  if (runtime === undefined || !isAlive(runtime.pid)) return undefined;
  const client = await connect({ socketPath: runtime.socket, tokenPath: runtime.token, name: 'dvs-cli' });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export function createDc(dir: string, def: DcDefinition): Promise<DcRecord> {
  return withDirectory(dir, (d) => d.createDc(def));
}

export function listDcs(dir: string): Promise<DcRecord[]> {
  return withDirectory(dir, (d) => Promise.resolve(d.dcs()));
}

export function removeDc(dir: string, dcid: number): Promise<void> {
  return withDirectory(dir, (d) => d.removeDc(dcid));
}

export function addNode(dir: string, dcid: number, node: number): Promise<DcRecord> {
  return withDirectory(dir, (d) => d.addNode(dcid, node));
}

export function removeNode(dir: string, dcid: number, node: number): Promise<DcRecord> {
  return withDirectory(dir, (d) => d.removeNode(dcid, node));
}

/** The process table of every DC (or one), gathered from every live daemon: each reports its local endpoints. */
export async function clusterPs(dir: string, dcid?: number): Promise<ProcInfo[]> {
  const cluster = readClusterFile(dir);
  const dcs = await listDcs(dir);
  const rows: ProcInfo[] = [];
  for (const n of cluster.nodes) {
    const mine = dcs.filter((d) => d.nodes.includes(n.nodeId) && (dcid === undefined || d.dcid === dcid));
    const got = await withNodeClient(n.dataDir, async (c) => {
      const out: ProcInfo[] = [];
      for (const d of mine) out.push(...(await c.procs(d.dcid)).filter((p) => p.kind === 'local'));
      return out;
    }).catch(() => undefined);
    if (got !== undefined) rows.push(...got);
  }
  return rows.sort((a, b) => a.dcid - b.dcid || a.slot - b.slot);
}

export interface NodeStatus {
  readonly nodeId: number;
  readonly pid: number;
  readonly alive: boolean;
  readonly registered: boolean;
  readonly incarnation?: number;
  readonly link?: string;
  readonly dcs: number[];
}

export async function clusterStatus(dir: string): Promise<{ store: string; nodes: NodeStatus[]; dcs: DcRecord[] }> {
  return withDirectory(dir, (d, cluster) => {
    const registered = new Map(d.nodes().map((n) => [n.nodeId, n]));
    const dcs = d.dcs();
    const nodes = cluster.nodes.map((n): NodeStatus => {
      const r = registered.get(n.nodeId);
      const runtime = readRuntime(n.dataDir);
      return {
        nodeId: n.nodeId,
        pid: runtime?.pid ?? n.pid,
        alive: isAlive(runtime?.pid ?? n.pid),
        registered: r !== undefined,
        ...(r === undefined ? {} : { incarnation: r.incarnation, link: `${r.host}:${r.port}` }),
        dcs: dcs.filter((dc) => dc.nodes.includes(n.nodeId)).map((dc) => dc.dcid),
      };
    });
    const cs = cluster.store;
    return Promise.resolve({ store: cs.backend === 'etcd' ? `etcd ${cs.endpoints.join(',')}` : `embedded ${cs.host}:${cs.port}`, nodes, dcs });
  });
}
