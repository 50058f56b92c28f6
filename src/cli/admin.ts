/**
 * Cluster administration from the command line: DC management through the directory, and the
 * process table and status gathered from every daemon. Everything waits for what it needs up to the
 * command's timeout, then fails with an UnreachableError saying what could not be reached.
 */
import { connect, type DvsClient } from '../client/index.js';
// Not the cluster barrel: the etcd backend (gRPC, slow to load) is imported only when configured.
import { Directory, type DcDefinition, type DcRecord } from '../cluster/directory.js';
import type { CoordinationStore } from '../cluster/store.js';
import { isDvsError } from '../ipc/errors.js';
import type { ProcInfo } from '../kernel/index.js';
import type { RunInfo } from '../transport/run-spec.js';
import { isAlive, readClusterFile, readClusterKeyFile, readRuntime, type ClusterFile, type ClusterStore } from './cluster-files.js';
import { parseNodeView, type Registration } from './node-view.js';
import { DEFAULT_TIMEOUT_MS, reasonOf, UnreachableError, withDeadline } from './reach.js';
import { openStore } from './store-access.js';

export interface ReachOptions {
  /** How long to wait for the store and for each daemon. Default DEFAULT_TIMEOUT_MS. */
  readonly timeoutMs?: number;
}

function storeName(dir: string, store: ClusterStore): string {
  return `${store.backend === 'etcd' ? 'etcd' : 'the embedded store'} of the cluster in ${dir}`;
}

function storeAddress(store: ClusterStore): string {
  return store.backend === 'etcd' ? store.endpoints.join(',') : `${store.host}:${store.port}`;
}

export async function withDirectory<T>(dir: string, fn: (d: Directory, c: ClusterFile, store: CoordinationStore) => Promise<T>, opts: ReachOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cluster = readClusterFile(dir);
  const key = await readClusterKeyFile(cluster.keyFile);
  const what = storeName(cluster.dir, cluster.store);
  const store = await openStore(cluster.store, key, timeoutMs, what);
  const directory = new Directory(store);
  try {
    await directory.start();
    return await fn(directory, cluster, store);
  } catch (err) {
    // The store was reached, then lost (or stopped answering) in the middle of the command.
    if (isDvsError(err, 'EDVSNOTCONN') && !(err instanceof UnreachableError)) throw new UnreachableError(what, storeAddress(cluster.store), timeoutMs, reasonOf(err));
    throw err;
  } finally {
    await directory.close().catch(() => undefined);
    await store.close().catch(() => undefined);
  }
}

/**
 * Runs `fn` with a client of the daemon using `dataDir`; undefined when no daemon runs there. A
 * daemon that does not answer within the timeout is an UnreachableError.
 */
export async function withNodeClient<T>(nodeId: number, dataDir: string, fn: (c: DvsClient) => Promise<T>, opts: ReachOptions = {}): Promise<T | undefined> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const runtime = readRuntime(dataDir);
  if (runtime === undefined || !isAlive(runtime.pid)) return undefined;
  const what = `the daemon of node ${nodeId} (pid ${runtime.pid})`;
  const deadline = Date.now() + timeoutMs;
  let client: DvsClient;
  try {
    client = await connect({ socketPath: runtime.socket, tokenPath: runtime.token, name: 'dvs-cli', connectTimeoutMs: timeoutMs });
  } catch (err) {
    throw new UnreachableError(what, runtime.socket, timeoutMs, reasonOf(err));
  }
  try {
    return await withDeadline(fn(client), deadline - Date.now(), () => new UnreachableError(what, runtime.socket, timeoutMs, 'no answer'));
  } finally {
    await client.close();
  }
}

export function createDc(dir: string, def: DcDefinition, opts: ReachOptions = {}): Promise<DcRecord> {
  return withDirectory(dir, (d) => d.createDc(def), opts);
}

export function listDcs(dir: string, opts: ReachOptions = {}): Promise<DcRecord[]> {
  return withDirectory(dir, (d) => Promise.resolve(d.dcs()), opts);
}

export function removeDc(dir: string, dcid: number, opts: ReachOptions = {}): Promise<void> {
  return withDirectory(dir, (d) => d.removeDc(dcid), opts);
}

export function addNode(dir: string, dcid: number, node: number, opts: ReachOptions = {}): Promise<DcRecord> {
  return withDirectory(dir, (d) => d.addNode(dcid, node), opts);
}

export function removeNode(dir: string, dcid: number, node: number, opts: ReachOptions = {}): Promise<DcRecord> {
  return withDirectory(dir, (d) => d.removeNode(dcid, node), opts);
}

export interface PsOptions extends ReachOptions {
  /** Told about each live daemon that did not answer (its rows are missing). */
  readonly onUnanswered?: (nodeId: number, err: Error) => void;
}

/** What `dvs ps` gathers from every live daemon: its local endpoints and the programs it runs. */
export interface ClusterProcesses {
  readonly procs: ProcInfo[];
  /** By node, then run; with a DC given, only that DC's runs. */
  readonly runs: RunInfo[];
}

/** A daemon without the run requests (an older one, a bare process server) runs no programs. */
async function runsOf(c: DvsClient): Promise<RunInfo[]> {
  try {
    return await c.runs();
  } catch (err) {
    if (isDvsError(err, 'EDVSNOSYS') || isDvsError(err, 'EDVSBADREQUEST')) return [];
    throw err;
  }
}

/** The process table of every DC (or one) and the runs of every node, gathered from every live daemon. */
export async function clusterProcesses(dir: string, dcid?: number, opts: PsOptions = {}): Promise<ClusterProcesses> {
  const cluster = readClusterFile(dir);
  const dcs = await listDcs(dir, opts);
  const rows: ProcInfo[] = [];
  const runs: RunInfo[] = [];
  await Promise.all(
    cluster.nodes.map(async (n) => {
      const mine = dcs.filter((d) => d.nodes.includes(n.nodeId) && (dcid === undefined || d.dcid === dcid));
      try {
        const got = await withNodeClient(
          n.nodeId,
          n.dataDir,
          async (c) => {
            const out: ProcInfo[] = [];
            for (const d of mine) out.push(...(await c.procs(d.dcid)).filter((p) => p.kind === 'local'));
            return { procs: out, runs: (await runsOf(c)).filter((r) => dcid === undefined || r.dcid === dcid) };
          },
          opts,
        );
        if (got !== undefined) {
          rows.push(...got.procs);
          runs.push(...got.runs);
        }
      } catch (err) {
        opts.onUnanswered?.(n.nodeId, err instanceof Error ? err : new Error(String(err)));
      }
    }),
  );
  return { procs: rows.sort((a, b) => a.dcid - b.dcid || a.slot - b.slot), runs: runs.sort((a, b) => a.node - b.node || a.run - b.run) };
}

/** The process table of every DC (or one), gathered from every live daemon: each reports its local endpoints. */
export async function clusterPs(dir: string, dcid?: number, opts: PsOptions = {}): Promise<ProcInfo[]> {
  return (await clusterProcesses(dir, dcid, opts)).procs;
}

/** What `dvs status` learns of a node without the store: its process, and what its daemon says. */
export interface NodeSelfView {
  readonly nodeId: number;
  readonly pid: number;
  readonly alive: boolean;
  /** As the node reports it; absent when it does not (or did not answer). */
  readonly registration?: Registration;
  /** The whole `node` object of the daemon's `info` result (docs/protocol.md). */
  readonly node?: Readonly<Record<string, unknown>>;
  /** Why a live daemon gave no view. */
  readonly viewError?: string;
}

export interface NodeStatus extends NodeSelfView {
  /** In the directory (the store's view). */
  readonly registered: boolean;
  readonly incarnation?: number;
  readonly link?: string;
  readonly dcs: number[];
}

export interface ClusterStatus {
  readonly store: string;
  readonly nodes: NodeStatus[];
  readonly dcs: DcRecord[];
}

/** The store could not be reached; what the nodes said of themselves is still here. */
export class StatusWithoutStore extends UnreachableError {
  constructor(
    cause: UnreachableError,
    readonly nodes: NodeSelfView[],
  ) {
    super(cause.what, cause.address, cause.timeoutMs, cause.lastError);
  }
}

async function selfView(n: ClusterFile['nodes'][number], opts: ReachOptions): Promise<NodeSelfView> {
  const runtime = readRuntime(n.dataDir);
  const pid = runtime?.pid ?? n.pid;
  const base = { nodeId: n.nodeId, pid, alive: isAlive(pid) };
  try {
    const view = await withNodeClient(n.nodeId, n.dataDir, async (c) => parseNodeView(await c.nodeInfo()), opts);
    if (view === undefined) return base;
    return { ...base, ...(view.registration === undefined ? {} : { registration: view.registration }), node: view.node };
  } catch (err) {
    return { ...base, viewError: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The store's view of every node (registered, incarnation, link, DCs) beside the node's own
 * (registration state, counters), asked of every live daemon while the store is reached. Without
 * the store: StatusWithoutStore, carrying the nodes' own views.
 */
export async function clusterStatus(dir: string, opts: ReachOptions = {}): Promise<ClusterStatus> {
  const cluster = readClusterFile(dir);
  const views = Promise.all(cluster.nodes.map((n) => selfView(n, opts)));
  try {
    return await withDirectory(
      dir,
      async (d) => {
        const registered = new Map(d.nodes().map((n) => [n.nodeId, n]));
        const dcs = d.dcs();
        const nodes = (await views).map((v): NodeStatus => {
          const r = registered.get(v.nodeId);
          return {
            ...v,
            registered: r !== undefined,
            ...(r === undefined ? {} : { incarnation: r.incarnation, link: `${r.host}:${r.port}` }),
            dcs: dcs.filter((dc) => dc.nodes.includes(v.nodeId)).map((dc) => dc.dcid),
          };
        });
        const cs = cluster.store;
        return { store: cs.backend === 'etcd' ? `etcd ${cs.endpoints.join(',')}` : `embedded ${cs.host}:${cs.port}`, nodes, dcs };
      },
      opts,
    );
  } catch (err) {
    if (err instanceof UnreachableError) throw new StatusWithoutStore(err, await views);
    throw err;
  }
}
