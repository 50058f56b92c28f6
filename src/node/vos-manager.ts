/**
 * This node's share of the VOSes of its DCs (docs/vos/boot.md). The VOS record in the directory
 * says which servers run where; this node starts the ones placed on it (a unikernel server as a
 * coroutine of this daemon, whose kernel its IPC with its neighbours never leaves; a multiserver
 * one as a program of its own under the supervisor), starts again one that ended, and takes over
 * a server whose node is down when it is the DC's lowest live member. The slot's claim in the
 * directory decides who serves it: nobody starts a server whose slot is held, so a server that
 * moved, or one taken over, is never started twice. Driven by directory events only.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DcRecord, Directory } from '../cluster/directory.js';
import type { Endpoint } from '../ipc/endpoint.js';
import type { Logger } from '../runtime/logger.js';
import type { VosUnit } from '../vos/layout.js';
import { replicatedModule, serverArgs, serverModule } from '../vos/servers.js';
import { readVosRecord, unitsOf, type VosBoot } from '../vos/vos-record.js';
import { vosView, type VosView } from '../vos/vos-view.js';
import type { NodeServices } from './node-services.js';
import type { Supervisor } from './supervisor.js';

/** The program a multiserver server runs in (src/client/service-program.ts). */
const SERVICE_PROGRAM = fileURLToPath(new URL('../client/service-program.js', import.meta.url));
/** Backoff of a server that keeps ending or failing to start. */
const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 5000;
const NAME_MAX = 32;
/** A server that ran this long before it ended starts again without backoff. */
const HEALTHY_MS = 30_000;

export interface VosManagerOptions {
  readonly nodeId: number;
  readonly directory: Directory;
  readonly services: NodeServices;
  readonly supervisor: Supervisor;
  readonly dataDir: string;
  /** How a VOS process reaches this daemon (DVS_SOCKET, DVS_TOKEN_FILE). */
  readonly env: Readonly<Record<string, string>>;
  readonly logger: Logger;
}

/** A server this node started. */
interface Started {
  readonly dcid: number;
  readonly unit: VosUnit;
  readonly kind: 'coroutine' | 'program' | 'replica';
  readonly endpoint?: Endpoint;
  readonly run?: number;
  readonly startedAt: number;
}

export class VosManager {
  private readonly started = new Map<string, Started>();
  private readonly starting = new Set<string>();
  private readonly retries = new Map<string, { failures: number; notBefore: number }>();
  private readonly boots = new Map<number, { modRevision: number; boot: VosBoot | undefined }>();
  private readonly unsubscribe: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopped = false;

  /** Cgroups of this daemon's DCs are `<prefix>dc<dcid>-n<node>`: the prefix names the data directory, so daemons sharing a host never touch each other's. */
  private readonly containerPrefix: string;

  constructor(private readonly opts: VosManagerOptions) {
    this.containerPrefix = `dvs-${createHash('sha256').update(path.resolve(opts.dataDir)).digest('hex').slice(0, 8)}-`;
  }

  start(): void {
    const d = this.opts.directory;
    const soon = (): void => this.schedule(0);
    this.unsubscribe.push(
      d.on('vos', soon),
      d.on('dc', soon),
      d.on('node', soon),
      d.on('endpoint', (ev) => {
        // Only a VOS's slots matter: a server's slot freed, or taken elsewhere.
        if (this.boots.has(ev.endpoint.dcid) && this.isVosSlot(ev.endpoint.dcid, ev.endpoint.slot)) soon();
      }),
    );
    this.schedule(0);
  }

  /** Called by the supervisor when a run ends: a multiserver server may have gone. */
  runEnded(run: number): void {
    for (const s of this.started.values()) if (s.run === run) this.schedule(0);
  }

  /** Stops every server this node started (the daemon stops; the VOS lives on in the record). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    for (const u of this.unsubscribe.splice(0)) u();
    await Promise.allSettled([...this.started.keys()].map((k) => this.stopUnit(k)));
  }

  /** The VOS of `dcid` with where its servers run now; EDVSNOENT without one. */
  view(dcid: number): VosView {
    return vosView(this.opts.directory, dcid);
  }

  // ---------------------------------------------------------------- reconciling

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const at = Date.now() + delayMs;
    if (this.timer !== undefined && this.timerAt <= at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.reconcile();
    }, delayMs);
    this.timer.unref?.();
  }

  private isVosSlot(dcid: number, slot: number): boolean {
    const boot = this.boots.get(dcid)?.boot;
    if (boot === undefined) return false;
    return slot < 0 || Object.values(boot.record.slots).includes(slot);
  }

  /** The record of `dcid`, parsed once per revision (a malformed one is logged once). */
  private bootOf(dc: DcRecord): VosBoot | undefined {
    const entry = this.opts.directory.vosRecord(dc.dcid);
    if (entry === undefined) {
      this.boots.delete(dc.dcid);
      return undefined;
    }
    const known = this.boots.get(dc.dcid);
    if (known?.modRevision === entry.modRevision) return known.boot;
    let boot: VosBoot | undefined;
    try {
      boot = readVosRecord(dc.dcid, entry.value);
    } catch (err) {
      this.opts.logger.warn({ dcid: dc.dcid, err: (err as Error).message }, 'ignoring a malformed VOS record');
    }
    this.boots.set(dc.dcid, { modRevision: entry.modRevision, boot });
    return boot;
  }

  private reconcile(): void {
    if (this.stopped) return;
    const me = this.opts.nodeId;
    const d = this.opts.directory;
    const wanted = new Map<string, { dcid: number; unit: VosUnit; dc: DcRecord }>();
    for (const dc of d.dcs()) {
      if (!dc.nodes.includes(me)) continue;
      const boot = this.bootOf(dc);
      if (boot === undefined) continue;
      let units: VosUnit[];
      try {
        units = unitsOf(boot, dc);
      } catch (err) {
        this.opts.logger.warn({ dcid: dc.dcid, err: (err as Error).message }, 'the VOS does not fit its DC now');
        continue;
      }
      for (const unit of units) wanted.set(`${dc.dcid}/${unit.key}`, { dcid: dc.dcid, unit, dc });
    }
    for (const dcid of [...this.boots.keys()]) if (d.dc(dcid) === undefined) this.boots.delete(dcid);

    // Servers that ended (returned, failed, moved away) are forgotten; those no longer in a record stop.
    for (const [key, s] of [...this.started]) {
      if (!this.isRunning(s)) {
        this.started.delete(key);
        if (Date.now() - s.startedAt >= HEALTHY_MS) this.retries.delete(key);
        this.noteFailure(key);
        continue;
      }
      const w = wanted.get(key);
      if (w === undefined || w.unit.slot !== s.unit.slot || w.unit.shape !== s.unit.shape) void this.stopUnit(key);
    }

    let nextRetry = Infinity;
    const now = Date.now();
    for (const [key, w] of wanted) {
      if (this.started.has(key) || this.starting.has(key) || !this.shouldServe(w.dc, w.unit)) continue;
      const r = this.retries.get(key);
      if (r !== undefined && r.notBefore > now) {
        nextRetry = Math.min(nextRetry, r.notBefore);
        continue;
      }
      void this.startUnit(key, w.dcid, w.unit, w.dc);
    }
    if (nextRetry < Infinity) this.schedule(nextRetry - now);
  }

  /** Whether this node should start `unit` now: its slot is free, and it is placed here or taken over here. */
  private shouldServe(dc: DcRecord, unit: VosUnit): boolean {
    const d = this.opts.directory;
    const me = this.opts.nodeId;
    // A replica group's member belongs to its node; the group's election decides who serves the slot.
    if (unit.replicas !== undefined) return unit.node === me;
    if (d.endpointAt(dc.dcid, unit.slot) !== undefined) return false;
    if (unit.node === me) return true;
    if (!unit.failover || d.node(unit.node) !== undefined) return false;
    // Its node is down: the DC's lowest live member serves it meanwhile.
    return dc.nodes.find((n) => d.node(n) !== undefined) === me;
  }

  private isRunning(s: Started): boolean {
    if (s.kind === 'replica') return this.opts.services.replicas.running(s.dcid, s.unit.slot);
    if (s.kind === 'coroutine') return s.endpoint !== undefined && this.opts.services.coroutines.owns(s.dcid, s.endpoint);
    return s.run !== undefined && this.opts.supervisor.get(s.run)?.state === 'running';
  }

  private noteFailure(key: string): void {
    const r = this.retries.get(key) ?? { failures: 0, notBefore: 0 };
    const failures = r.failures + 1;
    this.retries.set(key, { failures, notBefore: Date.now() + Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 1)) });
  }

  private async startUnit(key: string, dcid: number, unit: VosUnit, dc: DcRecord): Promise<void> {
    this.starting.add(key);
    const log = this.opts.logger;
    const where = { dcid, server: unit.key, slot: unit.slot, shape: unit.shape, placed: unit.node };
    try {
      const logDir = path.join(this.opts.dataDir, 'vos', String(dcid), 'logs');
      await mkdir(logDir, { recursive: true, mode: 0o700 });
      const boot = this.boots.get(dcid)?.boot;
      const args = serverArgs(unit, { dcid, node: this.opts.nodeId, nodes: dc.nodes, logDir, env: this.opts.env, dcLimits: dc.limits, containerPrefix: this.containerPrefix, slots: boot?.record.slots ?? {}, dataDir: this.opts.dataDir, ...(boot?.spec.limits === undefined ? {} : { limits: boot.spec.limits }) });
      const module = serverModule(unit);
      const name = (unit.server === 'custom' ? path.basename(unit.module ?? unit.name) : unit.replicas === undefined ? unit.key : unit.name).slice(0, NAME_MAX);
      let s: Started;
      if (unit.replicas !== undefined && unit.memberSlot !== undefined) {
        const r = unit.replicas;
        await this.opts.services.replicas.start(dcid, {
          module: replicatedModule(unit),
          args,
          slot: unit.slot,
          memberSlot: unit.memberSlot,
          name,
          mode: r.mode,
          ...(r.quorum === undefined ? {} : { quorum: r.quorum }),
          ...(r.leaseMs === undefined ? {} : { leaseMs: r.leaseMs }),
          ...(r.failoverMs === undefined ? {} : { failoverMs: r.failoverMs }),
        });
        s = { dcid, unit, kind: 'replica', startedAt: Date.now() };
      } else if (unit.shape === 'unikernel') {
        const h = await this.opts.services.coroutines.start(dcid, { factory: module, args, slot: unit.slot, name });
        s = { dcid, unit, kind: 'coroutine', endpoint: h.endpoint, startedAt: Date.now() };
      } else {
        const info = await this.opts.supervisor.start({ dcid, program: process.execPath, args: [SERVICE_PROGRAM, module], env: { DVS_SERVICE_ARGS: JSON.stringify(args) }, slot: unit.slot, name });
        s = { dcid, unit, kind: 'program', run: info.run, startedAt: Date.now() };
      }
      if (this.stopped) {
        this.started.set(key, s);
        await this.stopUnit(key);
        return;
      }
      this.started.set(key, s);
      log.info({ ...where, ...(s.run === undefined ? {} : { run: s.run }) }, unit.node === this.opts.nodeId ? 'VOS server started' : 'VOS server taken over');
    } catch (err) {
      this.noteFailure(key);
      log.warn({ ...where, err: (err as Error).message }, 'VOS server did not start');
    } finally {
      this.starting.delete(key);
      this.schedule(0);
    }
  }

  private async stopUnit(key: string): Promise<void> {
    const s = this.started.get(key);
    if (s === undefined) return;
    this.started.delete(key);
    this.retries.delete(key);
    try {
      if (s.kind === 'replica') await this.opts.services.replicas.stop(s.dcid, s.unit.slot);
      if (s.kind === 'coroutine' && s.endpoint !== undefined && this.opts.services.coroutines.owns(s.dcid, s.endpoint)) await this.opts.services.coroutines.stop(s.dcid, s.endpoint);
      if (s.kind === 'program' && s.run !== undefined && this.opts.supervisor.get(s.run)?.state === 'running') await this.opts.supervisor.stop(s.run, 'SIGTERM');
      this.opts.logger.info({ dcid: s.dcid, server: s.unit.key }, 'VOS server stopped');
    } catch (err) {
      this.opts.logger.warn({ dcid: s.dcid, server: s.unit.key, err: (err as Error).message }, 'stopping a VOS server');
    }
  }
}
