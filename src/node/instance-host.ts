/**
 * This daemon's instances of instance groups (docs/instances.md): it follows the groups' records in
 * the directory and runs, as a coroutine service from the record's module, an instance of every
 * group that lists this node, and stops the instance of a group that no longer does (or is gone).
 * `dvs scale` only writes the record; each listed daemon starts its own instance.
 */
import path from 'node:path';
import type { Directory, InstanceGroupRecord } from '../cluster/directory.js';
import type { Reconciler } from '../cluster/reconciler.js';
import type { Endpoint } from '../ipc/endpoint.js';
import type { Payload } from '../ipc/payload.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Logger } from '../runtime/logger.js';
import type { CoroutineHost } from '../services/coroutine-host.js';

export interface InstanceHostOptions {
  readonly nodeId: number;
  readonly kernel: Kernel;
  readonly directory: Directory;
  readonly reconciler: Reconciler;
  readonly coroutines: CoroutineHost;
  readonly logger: Logger;
}

/** One instance of a group on some node, with the calls its node's kernel saw. */
export interface InstanceRow {
  readonly dcid: number;
  readonly slot: number;
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly module: string | undefined;
  /** Nodes the record lists. */
  readonly nodes: readonly number[];
  /** Whether this node runs its instance now. */
  readonly running: boolean;
  /** Requests this node's instance received. */
  readonly received: number;
  /** Calls this node's kernel sent to each member. */
  readonly sent: Readonly<Record<number, number>>;
  /** Members this node's kernel calls now. */
  readonly live: readonly number[];
  /** Calls this node's kernel sent again to another member after theirs failed. */
  readonly resent: number;
}

const key = (dcid: number, slot: number): string => `${dcid}/${slot}`;

export class InstanceHost {
  /** The endpoint each running instance is bound at, by `dcid/slot`. */
  private readonly running = new Map<string, Endpoint>();
  /** One change at a time per group. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly offs: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly opts: InstanceHostOptions) {}

  start(): void {
    const d = this.opts.directory;
    this.offs.push(
      d.on('instances', (e) => this.follow(e.group.dcid, e.group.slot)),
      d.on('dc', (e) => {
        for (const g of d.instanceGroups(e.dc.dcid)) this.follow(g.dcid, g.slot);
      }),
    );
    for (const dc of d.dcs()) for (const g of d.instanceGroups(dc.dcid)) this.follow(g.dcid, g.slot);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const off of this.offs.splice(0)) off();
    await Promise.all([...this.chains.values()]);
  }

  /** The groups of `dcid` (every DC without one) as this node sees them. */
  list(dcid?: number): InstanceRow[] {
    const d = this.opts.directory;
    const rows: InstanceRow[] = [];
    for (const dc of d.dcs()) {
      if (dcid !== undefined && dc.dcid !== dcid) continue;
      for (const g of d.instanceGroups(dc.dcid)) {
        let info;
        try {
          info = this.opts.kernel.instanceInfo(g.dcid, g.endpoint);
        } catch {
          info = undefined;
        }
        let received = 0;
        try {
          received = this.opts.kernel.procs(g.dcid).find((p) => p.kind === 'local' && p.endpoint === g.endpoint)?.counters.received ?? 0;
        } catch {
          // DC not run here
        }
        rows.push({ dcid: g.dcid, slot: g.slot, endpoint: g.endpoint, name: g.name, module: g.module, nodes: g.nodes, running: this.running.get(key(g.dcid, g.slot)) === g.endpoint, received, sent: info?.sent ?? {}, live: info?.live ?? [], resent: info?.resent ?? 0 });
      }
    }
    return rows;
  }

  /** Brings this node's instance of the group in `dcid/slot` in line with its record. */
  private follow(dcid: number, slot: number): void {
    const k = key(dcid, slot);
    const prev = this.chains.get(k) ?? Promise.resolve();
    const next = prev.then(() => this.apply(dcid, slot)).catch((err: unknown) => this.opts.logger.warn({ err, dcid, slot }, 'instance group: could not follow its record'));
    this.chains.set(k, next);
    void next.then(() => {
      if (this.chains.get(k) === next) this.chains.delete(k);
    });
  }

  private async apply(dcid: number, slot: number): Promise<void> {
    if (this.stopped) return;
    const { nodeId, directory, coroutines, reconciler, kernel, logger } = this.opts;
    const k = key(dcid, slot);
    const g: InstanceGroupRecord | undefined = directory.instanceGroup(dcid, slot);
    const runsDc = kernel.listDcs().some((dc) => dc.dcid === dcid);
    const want = g !== undefined && runsDc && g.nodes.includes(nodeId) && g.module !== undefined;
    // An instance whose service ended by itself is started again.
    const ended = this.running.get(k);
    if (ended !== undefined && !coroutines.owns(dcid, ended)) this.running.delete(k);
    const have = this.running.get(k);
    if (have !== undefined && (!want || have !== g?.endpoint)) {
      this.running.delete(k);
      if (coroutines.owns(dcid, have)) await coroutines.stop(dcid, have).catch(() => undefined);
      logger.info({ dcid, slot, endpoint: have }, 'instance stopped');
    }
    if (!want || this.running.get(k) !== undefined || g.module === undefined) return;
    if (!path.isAbsolute(g.module)) {
      logger.warn({ dcid, slot, module: g.module }, 'instance group: its module is not an absolute path');
      return;
    }
    const h = await coroutines.start(dcid, { factory: g.module, args: (g.options ?? null) as Payload, name: g.name }, () => reconciler.bindInstance(dcid, slot));
    this.running.set(k, h.endpoint);
    logger.info({ dcid, slot, endpoint: h.endpoint, module: g.module }, 'instance started');
  }
}
