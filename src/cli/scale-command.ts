/**
 * `dvs scale`: instance groups (docs/instances.md). Setting a group writes its record in the
 * directory (the endpoint, the module its instances run, the nodes they run on); each listed
 * daemon starts its own instance and each daemon no longer listed stops its own. `dvs scale ls`
 * asks every daemon what it runs and what its kernel sent to each member.
 */
import path from 'node:path';
import type { DvsClient } from '../client/index.js';
import type { InstanceGroupRecord } from '../cluster/directory.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { InstanceRow } from '../node/instance-host.js';
import { withDirectory, withNodeClient, type ReachOptions } from './admin.js';
import { readClusterFile } from './cluster-files.js';
import { DEFAULT_TIMEOUT_MS } from './reach.js';

export interface ScaleRequest {
  readonly nodes: readonly number[];
  readonly module?: string;
  readonly name?: string;
  readonly args?: Payload;
}

/** One group as the cluster's daemons see it. */
export interface InstanceGroupView {
  readonly dcid: number;
  readonly slot: number;
  readonly endpoint: number;
  readonly name: string;
  readonly module: string | undefined;
  readonly nodes: readonly number[];
  /** Per node that answered: whether it runs an instance, the requests that instance received, and the calls its kernel sent per member. */
  readonly perNode: readonly { readonly node: number; readonly running: boolean; readonly received: number; readonly sent: Readonly<Record<number, number>>; readonly resent: number }[];
}

async function instancesOf(c: DvsClient, dcid: number | undefined): Promise<InstanceRow[]> {
  return (await c.call('instances', dcid === undefined ? {} : { dcid })) as InstanceRow[];
}

/** What every reachable daemon says of the instance groups (of `dcid`, or of every DC). */
export async function listInstanceGroups(dir: string, dcid: number | undefined, opts: ReachOptions = {}): Promise<InstanceGroupView[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cluster = readClusterFile(dir);
  const groups = new Map<string, { row: InstanceRow; perNode: InstanceGroupView['perNode'][number][] }>();
  for (const n of cluster.nodes) {
    const rows = await withNodeClient(n.nodeId, n.dataDir, (c) => instancesOf(c, dcid), { timeoutMs }).catch(() => undefined);
    for (const r of rows ?? []) {
      const k = `${r.dcid}/${r.slot}`;
      let g = groups.get(k);
      if (g === undefined) groups.set(k, (g = { row: r, perNode: [] }));
      g.perNode.push({ node: n.nodeId, running: r.running, received: r.received, sent: r.sent, resent: r.resent });
    }
  }
  return [...groups.values()]
    .map(({ row, perNode }) => ({ dcid: row.dcid, slot: row.slot, endpoint: row.endpoint, name: row.name, module: row.module, nodes: row.nodes, perNode }))
    .sort((a, b) => a.dcid - b.dcid || a.slot - b.slot);
}

/**
 * Sets the instance group in `slot` of `dcid` to run on `nodes`, then waits (within the timeout)
 * until each listed daemon runs its instance and no other does.
 */
export async function scaleGroup(dir: string, dcid: number, slot: number, req: ScaleRequest, opts: ReachOptions = {}): Promise<InstanceGroupView> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const module = req.module === undefined ? undefined : path.resolve(req.module);
  const rec: InstanceGroupRecord = await withDirectory(
    dir,
    async (d) => {
      if (module === undefined && d.instanceGroup(dcid, slot)?.module === undefined) throw new DvsError('EDVSINVAL', `instance group ${slot} of DC ${dcid} is new: give its --module`);
      return d.putInstanceGroup(dcid, slot, { nodes: req.nodes, ...(module === undefined ? {} : { module }), ...(req.name === undefined ? {} : { name: req.name }), ...(req.args === undefined ? {} : { options: req.args }) });
    },
    { timeoutMs },
  );
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = await listInstanceGroups(dir, dcid, { timeoutMs });
    const v = views.find((g) => g.slot === slot);
    const settled = v !== undefined && v.endpoint === rec.endpoint && v.perNode.every((p) => p.running === rec.nodes.includes(p.node)) && rec.nodes.every((n) => v.perNode.some((p) => p.node === n && p.running));
    if (settled || Date.now() > deadline) {
      if (v === undefined) throw new DvsError('EDVSTIMEDOUT', `no daemon reports instance group ${slot} of DC ${dcid}`);
      if (!settled) throw new DvsError('EDVSTIMEDOUT', `instance group ${slot} of DC ${dcid} did not reach its nodes [${rec.nodes.join(',')}] within ${timeoutMs} ms`, { details: { view: v as unknown as Payload } });
      return v;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Removes the instance group: every daemon stops its instance. False when there was none. */
export async function removeInstanceGroup(dir: string, dcid: number, slot: number, opts: ReachOptions = {}): Promise<boolean> {
  return withDirectory(dir, (d) => d.removeInstanceGroup(dcid, slot), opts);
}

export function formatInstanceGroups(groups: readonly InstanceGroupView[]): string {
  if (groups.length === 0) return 'no instance groups';
  const lines: string[] = [];
  for (const g of groups) {
    lines.push(`DC ${g.dcid} slot ${g.slot}: ${g.name} (endpoint ${g.endpoint}) on nodes [${g.nodes.join(',')}]  ${g.module ?? ''}`);
    lines.push('  node  instance  received  resent  sent by its kernel (member:calls)');
    for (const p of g.perNode) {
      const sent = Object.entries(p.sent).map(([m, n]) => `${m}:${n}`).join(' ');
      lines.push(`  ${String(p.node).padStart(4)}  ${(p.running ? 'running' : '-').padEnd(8)}  ${String(p.received).padStart(8)}  ${String(p.resent).padStart(6)}  ${sent}`);
    }
  }
  return lines.join('\n');
}
