/**
 * `dvs migrate`, `dvs node drain` and `dvs service`: moving endpoints and hosting coroutine
 * services, through the daemons (docs/migration.md). A move is coordinated by the daemon of the
 * node the endpoint lives on; a drain moves every local endpoint of a node, one at a time, each to
 * the least loaded other live member of its DC, and reports what could not move and why.
 */
import path from 'node:path';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import { hostedServices, migrate, serveModule, type HostedServiceInfo, type MigrationResult } from '../client/services.js';
import { withDirectory, withNodeClient, type ReachOptions } from './admin.js';
import { readClusterFile, type ClusterNodeEntry } from './cluster-files.js';
import { DEFAULT_TIMEOUT_MS, UnreachableError } from './reach.js';

/** How long one move may take, past the command's timeout to reach the store and the daemon. */
const MOVE_FREEZE_MS = 30_000;

function nodeEntry(dir: string, nodeId: number): ClusterNodeEntry {
  const cluster = readClusterFile(dir);
  const entry = cluster.nodes.find((n) => n.nodeId === nodeId);
  if (entry === undefined) throw new DvsError('EDVSBADNODEID', `node ${nodeId} is not in the cluster in ${cluster.dir}`);
  return entry;
}

/** Runs `fn` with the daemon of `nodeId`; an UnreachableError when none runs there. */
async function onNode<T>(dir: string, nodeId: number, fn: Parameters<typeof withNodeClient<T>>[2], timeoutMs: number): Promise<T> {
  const entry = nodeEntry(dir, nodeId);
  const got = await withNodeClient(nodeId, entry.dataDir, fn, { timeoutMs });
  if (got === undefined) throw new UnreachableError(`the daemon of node ${nodeId}`, entry.dataDir, timeoutMs, 'no daemon runs there');
  return got;
}

/** Moves `endpoint` of `dcid` to `to`, coordinated by the daemon of the node it lives on. */
export async function migrateEndpoint(dir: string, dcid: number, endpoint: Endpoint, to: number, opts: ReachOptions & { onStart?: (from: number) => void } = {}): Promise<MigrationResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const rec = await withDirectory(dir, (d) => Promise.resolve(d.lookup(dcid, endpoint)), { timeoutMs });
  if (rec === undefined && endpoint < 0) throw new DvsError('EDVSBADPROC', `endpoint ${endpoint} is a task: tasks do not move`, { details: { dcid, endpoint } });
  if (rec === undefined) throw new DvsError('EDVSENDPOINT', `endpoint ${endpoint} of DC ${dcid} is not bound anywhere`, { details: { dcid, endpoint } });
  opts.onStart?.(rec.node);
  return onNode(dir, rec.node, (c) => migrate(c, dcid, endpoint, to, { freezeMs: MOVE_FREEZE_MS }), timeoutMs + MOVE_FREEZE_MS);
}

export interface DrainOutcome {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly to?: number;
  readonly moved: boolean;
  readonly report?: MigrationResult;
  /** Why it did not move: a code and a message. */
  readonly error?: { readonly code: string; readonly message: string };
}

/** Moves every endpoint bound on `nodeId` off it, each to the least loaded other live member of its DC. */
export async function drainNode(dir: string, nodeId: number, opts: ReachOptions & { onOutcome?: (o: DrainOutcome) => void } = {}): Promise<DrainOutcome[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const plan = await withDirectory(
    dir,
    (d) => {
      const live = new Set(d.nodes().map((n) => n.nodeId));
      return Promise.resolve(
        d.dcs()
          .filter((dc) => dc.nodes.includes(nodeId))
          .map((dc) => ({ dcid: dc.dcid, targets: dc.nodes.filter((n) => n !== nodeId && live.has(n)), endpoints: d.endpoints(dc.dcid) })),
      );
    },
    { timeoutMs },
  );
  const outcomes: DrainOutcome[] = [];
  const note = (o: DrainOutcome): void => {
    outcomes.push(o);
    opts.onOutcome?.(o);
  };
  await onNode(
    dir,
    nodeId,
    async (c) => {
      for (const dc of plan) {
        const load = new Map(dc.targets.map((n) => [n, dc.endpoints.filter((e) => e.node === n).length]));
        for (const rec of dc.endpoints.filter((e) => e.node === nodeId)) {
          const to = [...load.entries()].sort((a, b) => a[1] - b[1] || a[0] - b[0])[0]?.[0];
          if (to === undefined) {
            note({ dcid: dc.dcid, endpoint: rec.endpoint, name: rec.name, moved: false, error: { code: 'EDVSNONODE', message: `no other live node in DC ${dc.dcid}` } });
            continue;
          }
          try {
            const report = await migrate(c, dc.dcid, rec.endpoint, to, { freezeMs: MOVE_FREEZE_MS });
            load.set(to, (load.get(to) ?? 0) + 1);
            note({ dcid: dc.dcid, endpoint: rec.endpoint, name: rec.name, to, moved: true, report });
          } catch (err) {
            const e = err instanceof DvsError ? err : new DvsError('EDVSIO', String(err));
            note({ dcid: dc.dcid, endpoint: rec.endpoint, name: rec.name, to, moved: false, error: { code: e.code, message: e.message } });
          }
        }
      }
      return outcomes;
    },
    timeoutMs + 10 * MOVE_FREEZE_MS,
  );
  return outcomes;
}

/** Starts the service a module exports as a coroutine in node `nodeId`'s daemon. */
export function startService(dir: string, nodeId: number, dcid: number, module: string, o: { slot?: number; name?: string; args?: Payload }, opts: ReachOptions = {}): Promise<HostedServiceInfo> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return onNode(dir, nodeId, (c) => serveModule(c, dcid, path.resolve(module), o), timeoutMs);
}

/** The coroutine services every live daemon hosts, with their node. */
export async function listServices(dir: string, opts: ReachOptions = {}): Promise<(HostedServiceInfo & { node: number })[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cluster = readClusterFile(dir);
  const rows: (HostedServiceInfo & { node: number })[] = [];
  for (const n of cluster.nodes) {
    const got = await withNodeClient(n.nodeId, n.dataDir, (c) => hostedServices(c), { timeoutMs });
    if (got !== undefined) rows.push(...got.map((s) => ({ ...s, node: n.nodeId })));
  }
  return rows.sort((a, b) => a.dcid - b.dcid || a.endpoint - b.endpoint);
}

export function formatMigration(r: MigrationResult): string {
  return `endpoint ${r.endpoint} of DC ${r.dcid} moved from node ${r.from} to node ${r.to} (epoch ${r.epoch}): blackout ${r.blackoutMs.toFixed(1)} ms, total ${r.totalMs.toFixed(1)} ms, ${r.stateBytes + r.handoverBytes} bytes moved (state ${r.stateBytes}, mailbox ${r.handoverBytes})`;
}

export function formatDrainOutcome(o: DrainOutcome): string {
  if (o.moved && o.report !== undefined) return `moved  ${o.name} (endpoint ${o.endpoint} of DC ${o.dcid}) to node ${o.to ?? '-'}: blackout ${o.report.blackoutMs.toFixed(1)} ms`;
  return `stayed ${o.name} (endpoint ${o.endpoint} of DC ${o.dcid}): ${o.error?.code ?? ''} ${o.error?.message.replace(/^EDVS[A-Z0-9]+: /, '') ?? ''}`;
}
