/**
 * Migration of a service endpoint between nodes, as one directory transaction (DESIGN.md, "Moving
 * endpoints"; docs/migration.md). Every node runs one agent, which plays whichever parts a move
 * gives it:
 * - the **coordinator** freezes the endpoint in the directory at its epoch, starts the move at the
 *   source and reports the outcome (and rolls the directory back when the move fails before the
 *   drain);
 * - the **source** freezes its own route, waits until the service is quiescent at a receive, takes
 *   its snapshot, sends spec and state to the target, and once the target is ready drains the
 *   mailbox to it and retires the old incarnation;
 * - the **target** starts the new incarnation from the spec with the state, absorbs the mailbox,
 *   and flips the directory entry to itself at the next epoch (compare-and-swap).
 * Before the drain any failure rolls back: the source thaws and its incarnation goes on serving.
 * A coordinator that dies leaves nothing frozen: its directory freeze and the kernels' freezes
 * expire. After the drain the move completes forward: the target flips the directory itself.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { Kernel, Quiescence } from '../kernel/kernel.js';
import type { Handover } from '../kernel/mailbox.js';
import type { Logger } from '../runtime/logger.js';
import { silentLogger } from '../runtime/logger.js';
import { encodeValue } from '../transport/codec.js';
import type { EndpointRecord, ThawOptions } from '../cluster/directory.js';
import { parseMigrationMsg, type MigrationMsg, type MigrationStage, type PrepareMsg, type StartMsg } from './migration-messages.js';

/** What the agent needs of the directory (the cluster's Directory). */
export interface MigrationDirectory {
  lookup(dcid: number, endpoint: Endpoint): EndpointRecord | undefined;
  /** A registered node (undefined when its lease is gone). */
  node(nodeId: number): object | undefined;
  freezeEndpoint(dcid: number, endpoint: Endpoint, epoch: number, freezeMs: number): Promise<EndpointRecord>;
  thawEndpoint(dcid: number, endpoint: Endpoint, epoch: number, opts?: ThawOptions): Promise<EndpointRecord>;
}

/** A new incarnation started on the target, waiting for the mailbox. */
export interface IncomingIncarnation {
  /** Binds the handed-over endpoint here (kernel.absorb) and starts serving. */
  absorb(handover: Handover): void;
  /** The move failed: stop what was started. */
  abort(reason: DvsError): void;
}

export interface PrepareRequest {
  readonly mid: string;
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly from: number;
  readonly spec: Payload;
  readonly state: Uint8Array | undefined;
}

/** How a node runs services: what the agent asks of the code bound at an endpoint. */
export interface ServiceHosting {
  /** How to start the service at `endpoint` on another node (plain data); undefined when this node cannot move it. */
  spec(dcid: number, endpoint: Endpoint): Payload | undefined;
  /** Its state, asked while it is blocked in a receive with its route frozen. EDVSMIGRATE: it refuses to move now. */
  snapshot(dcid: number, endpoint: Endpoint, timeoutMs: number): Promise<Uint8Array | undefined>;
  /** Starts an incarnation from `spec` with `state`; resolves once it can take the endpoint. */
  prepare(req: PrepareRequest): Promise<IncomingIncarnation>;
  /**
   * The endpoint is being drained to `toNode`, where it lives at `epoch`: its code here stops
   * without seeing the drain. Called synchronously just before the drain, which then cannot fail.
   */
  retire(dcid: number, endpoint: Endpoint, toNode: number, epoch: number): void;
}

export interface MigrateOptions {
  /** How long the endpoint may stay frozen: the bound of the whole move (default 30 s). */
  readonly freezeMs?: number;
  /** How long the source waits for the service to be quiescent at a receive (default 5 s). */
  readonly quiesceMs?: number;
  readonly onProgress?: (stage: MigrationStage) => void;
}

export interface MigrationReport {
  readonly mid: string;
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly from: number;
  readonly to: number;
  /** The endpoint's epoch at its new node. */
  readonly epoch: number;
  /** From the freeze at the source until the target served, measured at the source. */
  readonly blackoutMs: number;
  readonly totalMs: number;
  readonly stateBytes: number;
  readonly handoverBytes: number;
  /** The state's part of the move, measured at the source: from its snapshot until the target was prepared (state received, incarnation started). */
  readonly transferMs: number;
}

export interface MigrationAgentOptions {
  readonly nodeId: number;
  readonly kernel: Kernel;
  readonly directory: MigrationDirectory;
  readonly hosting: ServiceHosting;
  readonly clock: Clock;
  readonly logger?: Logger;
  /** Bytes of state per `state` message. */
  readonly chunkBytes?: number;
}

const DEFAULT_FREEZE_MS = 30_000;
const DEFAULT_QUIESCE_MS = 5_000;
const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** How often the source looks whether the service reached a receive. */
const QUIESCE_POLL_MS = 1;
/** How often the source sends the handover again until the target acknowledges it. */
const HANDOVER_RESEND_MS = 100;
/**
 * After the drain the handover is the service's only copy: the source sends it again until the
 * target takes it, and a prepared target waits for it, this long, however long the link between
 * them is cut (a live source that rolled back says so at once).
 */
const HANDOVER_KEEP_MS = 5 * 60_000;
/** How long a target that absorbed the service keeps trying to flip the directory to itself. */
const FLIP_RETRY_MS = 5 * 60_000;
const FLIP_BACKOFF_MS = 50;
const FLIP_BACKOFF_MAX_MS = 1000;
/** Errors of a flip that a later attempt may not meet: the store out of reach, this node not registered (yet), contention. */
const FLIP_TRANSIENT = ['EDVSNONODE', 'EDVSNOTCONN', 'EDVSTIMEDOUT', 'EDVSBUSY'] as const;

interface Coordination {
  readonly mid: string;
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly from: number;
  readonly to: number;
  readonly epoch: number;
  readonly startedAt: number;
  readonly onProgress: ((stage: MigrationStage) => void) | undefined;
  drained: boolean;
  flipped: boolean;
  /** It failed because its source or target went down: the directory is left to them and the freeze's deadline. */
  nodeLost: boolean;
  blackoutMs: number | undefined;
  stateBytes: number;
  handoverBytes: number;
  transferMs: number;
  settle: (err: DvsError | undefined) => void;
}

interface Outgoing {
  readonly msg: StartMsg;
  readonly dcid: number;
  readonly frozenAt: number;
  stage: 'preparing' | 'drained' | 'done' | 'failed';
  prepared: (() => void) | undefined;
  failed: ((err: DvsError) => void) | undefined;
  /** The source's own bound on the move: past the freeze it rolls back whatever the others do. */
  deadline: TimerHandle | undefined;
}

interface Incoming {
  readonly msg: PrepareMsg;
  readonly dcid: number;
  readonly from: number;
  /** The state, filled piece by piece (a piece may be a view of a link's receive buffer: copied at once). */
  readonly state: Buffer | undefined;
  got: number;
  incarnation: IncomingIncarnation | undefined;
  /** Its directory name, to publish it under should its entry vanish during the move. */
  readonly name: string;
  aborted: boolean;
  absorbed: boolean;
}

export class MigrationAgent {
  private readonly me: number;
  private readonly kernel: Kernel;
  private readonly directory: MigrationDirectory;
  private readonly hosting: ServiceHosting;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly chunkBytes: number;
  private readonly coordinating = new Map<string, Coordination>();
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly incoming = new Map<string, Incoming>();
  private seq = 0;

  constructor(opts: MigrationAgentOptions) {
    this.me = opts.nodeId;
    this.kernel = opts.kernel;
    this.directory = opts.directory;
    this.hosting = opts.hosting;
    this.clock = opts.clock;
    this.log = opts.logger ?? silentLogger;
    this.chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  }

  /** Endpoints with a move under way on this node, in any part. */
  moving(dcid: number, endpoint: Endpoint): boolean {
    for (const c of this.coordinating.values()) if (c.dcid === dcid && c.endpoint === endpoint) return true;
    for (const o of this.outgoing.values()) if (o.dcid === dcid && o.msg.ep === endpoint && o.stage === 'preparing') return true;
    return false;
  }

  // ---------------------------------------------------------------- coordinator

  /**
   * Moves `endpoint` of `dcid` to node `to` while its clients keep calling. Bad requests change
   * nothing: EDVSENDPOINT (unknown endpoint), EDVSBADPROC (a task endpoint), EDVSNODCNODE (target
   * outside the DC), EDVSNONODE (target down or not registered), EDVSINVAL (already there),
   * EDVSBUSY (already moving). A move that fails rolls back and rejects with the cause.
   */
  async migrate(dcid: number, endpoint: Endpoint, to: number, opts: MigrateOptions = {}): Promise<MigrationReport> {
    const freezeMs = opts.freezeMs ?? DEFAULT_FREEZE_MS;
    const quiesceMs = opts.quiesceMs ?? DEFAULT_QUIESCE_MS;
    if (!Number.isInteger(freezeMs) || freezeMs < 10) throw new DvsError('EDVSINVAL', `freezeMs must be an integer ≥ 10, got ${String(freezeMs)}`);
    if (!Number.isInteger(quiesceMs) || quiesceMs < 1 || quiesceMs >= freezeMs) throw new DvsError('EDVSINVAL', `quiesceMs must be an integer in 1..freezeMs-1, got ${String(quiesceMs)}`);
    const info = this.kernel.dcInfo(dcid);
    const rec = this.directory.lookup(dcid, endpoint);
    if (rec === undefined || rec.endpoint !== endpoint) throw new DvsError('EDVSENDPOINT', `endpoint ${endpoint} of DC ${dcid} is not bound anywhere`, { details: { dcid, endpoint } });
    if (this.kernel.slotOf(dcid, endpoint) < 0) throw new DvsError('EDVSBADPROC', `endpoint ${endpoint} is a task: tasks do not move`, { details: { dcid, endpoint } });
    if (!Number.isInteger(to) || !info.nodes.includes(to)) throw new DvsError('EDVSNODCNODE', `node ${String(to)} is not a member of DC ${dcid}`, { details: { dcid, node: to } });
    if (to === rec.node) throw new DvsError('EDVSINVAL', `endpoint ${endpoint} already lives on node ${to}`, { details: { dcid, endpoint, node: to } });
    if (this.isDown(to) || this.directory.node(to) === undefined) throw new DvsError('EDVSNONODE', `node ${to} is down or not registered`, { details: { node: to } });
    if (this.isDown(rec.node)) throw new DvsError('EDVSNONODE', `node ${rec.node}, where endpoint ${endpoint} lives, is down`, { details: { node: rec.node } });
    if (rec.frozen || this.moving(dcid, endpoint)) throw new DvsError('EDVSBUSY', `endpoint ${endpoint} of DC ${dcid} is already moving`, { details: { dcid, endpoint } });
    const mid = `${this.me}.${this.clock.now().toFixed(0)}.${++this.seq}`;
    const startedAt = this.clock.now();
    this.log.info({ mid, dcid, endpoint, from: rec.node, to, epoch: rec.epoch }, 'migration: start');
    await this.directory.freezeEndpoint(dcid, endpoint, rec.epoch, freezeMs);
    return new Promise<MigrationReport>((resolve, reject) => {
      const deadline = this.clock.setTimer(freezeMs + 1000, () => c.settle(new DvsError('EDVSTIMEDOUT', `migration ${mid} did not complete within ${freezeMs} ms`)));
      const c: Coordination = {
        mid,
        dcid,
        endpoint,
        from: rec.node,
        to,
        epoch: rec.epoch,
        startedAt,
        onProgress: opts.onProgress,
        drained: false,
        flipped: false,
        nodeLost: false,
        blackoutMs: undefined,
        stateBytes: 0,
        handoverBytes: 0,
        transferMs: 0,
        settle: (err) => {
          if (this.coordinating.get(mid) !== c) return;
          this.coordinating.delete(mid);
          this.clock.clearTimer(deadline);
          if (err === undefined) {
            const report: MigrationReport = { mid, dcid, endpoint, from: c.from, to, epoch: c.epoch + 1, blackoutMs: c.blackoutMs ?? 0, totalMs: this.clock.now() - startedAt, stateBytes: c.stateBytes, handoverBytes: c.handoverBytes, transferMs: c.transferMs };
            this.log.info({ ...report }, 'migration: done');
            resolve(report);
            return;
          }
          this.log.warn({ mid, dcid, endpoint, from: c.from, to, code: err.code, err: err.message, drained: c.drained }, 'migration: failed');
          if (!c.drained) {
            // Source and target roll back too (a failure they reported themselves is no news to them).
            const body = { t: 'failed', mid, code: err.code, message: err.message } as const;
            this.post(c.from, dcid, body);
            this.post(to, dcid, body);
          }
          // Nothing moved yet: the freeze goes, the endpoint stays where it was. Not when a node of
          // the move went down: the source may have drained unheard (its handover on the way), and
          // a thaw would send callers back to it; a live source thaws as it rolls back, else the
          // freeze's deadline does.
          const undo = c.drained || c.nodeLost ? Promise.resolve() : this.directory.thawEndpoint(dcid, endpoint, c.epoch).then(noop, noop);
          void undo.then(() => reject(err));
        },
      };
      this.coordinating.set(mid, c);
      this.progress(c, 'frozen');
      this.post(rec.node, dcid, { t: 'start', mid, ep: endpoint, epoch: rec.epoch, to, coord: this.me, freezeMs, quiesceMs } satisfies StartMsg);
    });
  }

  private progress(c: Coordination, stage: MigrationStage): void {
    try {
      c.onProgress?.(stage);
    } catch {
      // A progress listener's failure is its own.
    }
  }

  private onCoordinatorMsg(c: Coordination, from: number, m: MigrationMsg): void {
    switch (m.t) {
      case 'progress':
        if (from !== c.from) return;
        if (m.stateBytes !== undefined) c.stateBytes = m.stateBytes;
        if (m.handoverBytes !== undefined) c.handoverBytes = m.handoverBytes;
        if (m.stage === 'drained') c.drained = true;
        if (m.blackoutMs !== undefined) c.blackoutMs = m.blackoutMs;
        if (m.transferMs !== undefined) c.transferMs = m.transferMs;
        this.progress(c, m.stage);
        break;
      case 'absorbed':
        if (from !== c.to || !m.flipped) return;
        c.flipped = true;
        c.drained = true;
        this.progress(c, 'flipped');
        break;
      case 'failed':
        c.settle(new DvsError(m.code, m.message));
        return;
      default:
        return;
    }
    // Done once the directory names the target and the source reported the blackout.
    if (c.flipped && c.blackoutMs !== undefined) {
      this.progress(c, 'done');
      c.settle(undefined);
    }
  }

  // ---------------------------------------------------------------- source

  private async onStart(from: number, dcid: number, m: StartMsg): Promise<void> {
    const fail = (err: DvsError): void => this.post(m.coord, dcid, { t: 'failed', mid: m.mid, code: err.code, message: err.message });
    let spec: Payload | undefined;
    try {
      if (from !== m.coord) throw new DvsError('EDVSPERM', 'a migration starts from its coordinator');
      const route = this.kernel.route(dcid, m.ep);
      if (route.kind !== 'local' && route.kind !== 'frozen') throw new DvsError('EDVSRMTPROC', `endpoint ${m.ep} is not bound on node ${this.me}`);
      spec = this.hosting.spec(dcid, m.ep);
      if (spec === undefined) throw new DvsError('EDVSMIGRATE', `endpoint ${m.ep} is not a movable service: node ${this.me} cannot start its code elsewhere`);
      if (!this.kernel.freeze(dcid, m.ep, m.epoch, m.freezeMs)) throw new DvsError('EDVSENDPOINT', `endpoint ${m.ep} is not at epoch ${m.epoch} here`);
    } catch (err) {
      fail(asDvsError(err));
      return;
    }
    const o: Outgoing = { msg: m, dcid, frozenAt: this.clock.now(), stage: 'preparing', prepared: undefined, failed: undefined, deadline: undefined };
    this.outgoing.set(m.mid, o);
    o.deadline = this.clock.setTimer(m.freezeMs, () => this.rollBack(o, new DvsError('EDVSTIMEDOUT', `migration ${m.mid} did not reach its drain within ${m.freezeMs} ms`)));
    const failed = new Promise<never>((_, reject) => (o.failed = reject));
    failed.catch(noop);
    try {
      this.report(o, { stage: 'frozen' });
      // Quiescent at a receive, and still in that same receive once the snapshot is taken.
      const until = o.frozenAt + m.quiesceMs;
      let mark: Quiescence | undefined;
      let state: Uint8Array | undefined;
      for (;;) {
        if (o.stage !== 'preparing') return;
        const q = this.kernel.quiescence(dcid, m.ep);
        if (q !== undefined) {
          this.report(o, { stage: 'quiescent' });
          state = await Promise.race([this.hosting.snapshot(dcid, m.ep, Math.max(1, until - this.clock.now())), failed]);
          if (this.kernel.quiescence(dcid, m.ep)?.recv === q.recv) {
            mark = q;
            break;
          }
        }
        if (this.clock.now() >= until) throw new DvsError('EDVSBUSY', `endpoint ${m.ep} was not quiescent at a receive within ${m.quiesceMs} ms`);
        await Promise.race([this.sleep(QUIESCE_POLL_MS), failed]);
      }
      const size = state?.byteLength ?? 0;
      this.report(o, { stage: 'snapshot', stateBytes: size });
      const snapshotAt = this.clock.now();
      const prepared = new Promise<void>((resolve) => (o.prepared = resolve));
      this.post(m.to, dcid, { t: 'prepare', mid: m.mid, ep: m.ep, epoch: m.epoch, coord: m.coord, spec, size, freezeMs: m.freezeMs } satisfies PrepareMsg);
      if (state !== undefined) await Promise.race([this.sendState(m.to, dcid, m.mid, state), failed]);
      await Promise.race([prepared, failed]);
      if (o.stage !== 'preparing') return;
      this.report(o, { stage: 'prepared', transferMs: this.clock.now() - snapshotAt });
      // The old incarnation's code lets go first (it must not see the drain end its receive), so
      // the drain must not fail after it: the endpoint is still in the receive of its snapshot.
      if (this.kernel.quiescence(dcid, m.ep)?.recv !== mark.recv) throw new DvsError('EDVSBUSY', `endpoint ${m.ep} received something since its state was taken`);
      this.hosting.retire(dcid, m.ep, m.to, m.epoch + 1);
      const handover = this.kernel.drain(dcid, m.ep, m.to, mark);
      o.stage = 'drained';
      if (o.deadline !== undefined) this.clock.clearTimer(o.deadline);
      const handoverBytes = encodeValue(handover).byteLength;
      this.report(o, { stage: 'drained', handoverBytes });
      this.post(m.to, dcid, { t: 'handover', mid: m.mid, handover });
      void this.resendHandover(o, handover);
      this.log.info({ mid: m.mid, dcid, endpoint: m.ep, to: m.to, queued: handover.queued.length, notifies: handover.notifies.length, owed: handover.owed.length }, 'migration: drained');
    } catch (err) {
      const e = asDvsError(err);
      if (o.stage === 'preparing') this.rollBack(o, e);
      else if (o.stage === 'drained') this.log.error({ mid: m.mid, err: e.message }, 'migration: failed after the drain');
    }
  }

  /** Before the drain: the endpoint thaws here, its incarnation serves on; target and coordinator hear why. */
  private rollBack(o: Outgoing, err: DvsError): void {
    if (o.stage !== 'preparing') return;
    o.stage = 'failed';
    this.outgoing.delete(o.msg.mid);
    if (o.deadline !== undefined) this.clock.clearTimer(o.deadline);
    this.kernel.thaw(o.dcid, o.msg.ep, o.msg.epoch);
    // The directory too, so nodes that parked callers release them now, not at the freeze's
    // expiry (a coordinator that died cannot); the coordinator's own thaw then finds nothing to do.
    void this.directory.thawEndpoint(o.dcid, o.msg.ep, o.msg.epoch).catch(noop);
    o.failed?.(err);
    this.log.warn({ mid: o.msg.mid, dcid: o.dcid, endpoint: o.msg.ep, code: err.code, err: err.message }, 'migration: rolled back at the source');
    const body = { t: 'failed', mid: o.msg.mid, code: err.code, message: err.message } as const;
    this.post(o.msg.to, o.dcid, body);
    this.post(o.msg.coord, o.dcid, body);
  }

  /**
   * After the drain the service lives only in the handover: a link that breaks with it in flight
   * would lose it. Until the target acknowledges it (or HANDOVER_KEEP_MS passed), it goes again;
   * the target takes the first copy and ignores the rest.
   */
  private async resendHandover(o: Outgoing, handover: Handover): Promise<void> {
    const until = this.clock.now() + HANDOVER_KEEP_MS;
    for (;;) {
      await this.sleep(HANDOVER_RESEND_MS);
      if (o.stage !== 'drained' || this.clock.now() >= until) return;
      if (!this.isDown(o.msg.to)) this.post(o.msg.to, o.dcid, { t: 'handover', mid: o.msg.mid, handover });
    }
  }

  private report(o: Outgoing, p: { stage: MigrationStage; stateBytes?: number; handoverBytes?: number; blackoutMs?: number; transferMs?: number }): void {
    this.post(o.msg.coord, o.dcid, { t: 'progress', mid: o.msg.mid, ...p });
  }

  private async sendState(to: number, dcid: number, mid: string, state: Uint8Array): Promise<void> {
    for (let at = 0; at < state.byteLength; at += this.chunkBytes) {
      this.post(to, dcid, { t: 'state', mid, data: state.subarray(at, Math.min(state.byteLength, at + this.chunkBytes)) });
      const wait = this.kernel.serviceBackpressure(to);
      if (wait !== undefined) await wait;
    }
  }

  private onSourceMsg(o: Outgoing, from: number, m: MigrationMsg): void {
    if (m.t === 'prepared' && from === o.msg.to) o.prepared?.();
    else if (m.t === 'failed' && (from === o.msg.to || from === o.msg.coord)) this.rollBack(o, new DvsError(m.code, m.message));
    else if (m.t === 'absorbed' && from === o.msg.to && !m.flipped && o.stage === 'drained') {
      o.stage = 'done';
      this.outgoing.delete(o.msg.mid);
      this.report(o, { stage: 'absorbed', blackoutMs: this.clock.now() - o.frozenAt });
    }
  }

  // ---------------------------------------------------------------- target

  private onPrepare(from: number, dcid: number, m: PrepareMsg): void {
    const inc: Incoming = { msg: m, dcid, from, state: m.size === 0 ? undefined : Buffer.allocUnsafe(m.size), got: 0, incarnation: undefined, name: this.directory.lookup(dcid, m.ep)?.name ?? '', aborted: false, absorbed: false };
    this.incoming.set(m.mid, inc);
    // Calls that reach this node for the endpoint before its mailbox does (the source drained and
    // routes to us; this node's cache has not seen the freeze) park here until the absorb.
    try {
      this.kernel.freeze(dcid, m.ep, m.epoch, m.freezeMs);
    } catch (err) {
      this.log.warn({ mid: m.mid, err: asDvsError(err).message }, 'migration: the target could not freeze its route');
    }
    if (m.size === 0) void this.startIncoming(inc);
  }

  private onState(inc: Incoming, data: Uint8Array): void {
    if (inc.aborted) return;
    if (inc.state === undefined || inc.got + data.byteLength > inc.msg.size) {
      this.abortIncoming(inc, new DvsError('EDVSPACKSIZE', 'more state arrived than announced'), true);
      return;
    }
    inc.state.set(data, inc.got);
    inc.got += data.byteLength;
    if (inc.got === inc.msg.size) void this.startIncoming(inc);
  }

  private async startIncoming(inc: Incoming): Promise<void> {
    const m = inc.msg;
    try {
      const incarnation = await this.hosting.prepare({ mid: m.mid, dcid: inc.dcid, endpoint: m.ep, from: inc.from, spec: m.spec, state: inc.state });
      if (inc.aborted) {
        incarnation.abort(new DvsError('EDVSMIGRATE', 'the migration was abandoned'));
        return;
      }
      inc.incarnation = incarnation;
      this.post(inc.from, inc.dcid, { t: 'prepared', mid: m.mid });
    } catch (err) {
      this.abortIncoming(inc, asDvsError(err), true);
    }
  }

  private abortIncoming(inc: Incoming, err: DvsError, tell: boolean): void {
    if (inc.aborted || inc.absorbed) return;
    inc.aborted = true;
    this.incoming.delete(inc.msg.mid);
    inc.incarnation?.abort(err);
    try {
      this.kernel.thaw(inc.dcid, inc.msg.ep, inc.msg.epoch);
    } catch {
      // The DC is gone here: nothing to thaw.
    }
    this.log.warn({ mid: inc.msg.mid, dcid: inc.dcid, endpoint: inc.msg.ep, code: err.code, err: err.message }, 'migration: abandoned at the target');
    if (tell) this.post(inc.from, inc.dcid, { t: 'failed', mid: inc.msg.mid, code: err.code, message: err.message });
  }

  private async onHandover(inc: Incoming, h: Handover): Promise<void> {
    const m = inc.msg;
    // A copy the source sent again before it heard of the first.
    if (inc.absorbed) return;
    if (inc.aborted || inc.incarnation === undefined || h.dcid !== inc.dcid || h.endpoint !== m.ep || h.epoch !== m.epoch + 1) {
      this.log.error({ mid: m.mid }, 'migration: a handover that does not match the move');
      return;
    }
    inc.absorbed = true;
    try {
      inc.incarnation.absorb(h);
    } catch (err) {
      this.log.error({ mid: m.mid, err: asDvsError(err).message }, 'migration: the handover could not be absorbed');
      this.post(m.coord, inc.dcid, { t: 'failed', mid: m.mid, code: asDvsError(err).code, message: asDvsError(err).message });
      this.incoming.delete(m.mid);
      return;
    }
    this.post(inc.from, inc.dcid, { t: 'absorbed', mid: m.mid, flipped: false });
    try {
      await this.flip(inc.dcid, m.ep, m.epoch, m.freezeMs, inc.name);
      this.post(m.coord, inc.dcid, { t: 'absorbed', mid: m.mid, flipped: true });
    } catch (err) {
      const e = asDvsError(err);
      this.log.error({ mid: m.mid, err: e.message }, 'migration: the directory could not be moved to this node');
      this.post(m.coord, inc.dcid, { t: 'failed', mid: m.mid, code: e.code, message: e.message });
    } finally {
      this.incoming.delete(m.mid);
    }
  }

  /**
   * The directory entry moves here at the next epoch; when the freeze already expired, freeze again
   * and move. The live incarnation is here now: an entry that vanished with its old owner's lease
   * (the source cut off from the store during the move) is published here afresh.
   */
  private async flip(dcid: number, endpoint: Endpoint, epoch: number, freezeMs: number, name: string): Promise<void> {
    const opts = { toNode: this.me, adoptAs: name };
    const until = this.clock.now() + FLIP_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        try {
          await this.directory.thawEndpoint(dcid, endpoint, epoch, opts);
        } catch (err) {
          if (!isDvsError(err, 'EDVSPROCSTS')) throw err;
          await this.directory.freezeEndpoint(dcid, endpoint, epoch, freezeMs);
          await this.directory.thawEndpoint(dcid, endpoint, epoch, opts);
        }
        return;
      } catch (err) {
        // The service lives only here now: a store out of reach, or this node not registered again
        // yet after losing its lease, is waited out; a refusal that names a newer owner is final.
        const transient = FLIP_TRANSIENT.some((code) => isDvsError(err, code));
        if (!transient || this.clock.now() >= until || this.kernel.procs(dcid).every((p) => p.endpoint !== endpoint || p.kind !== 'local')) throw err;
        this.log.warn({ dcid, endpoint, attempt, err: asDvsError(err).message }, 'migration: the directory could not be flipped yet; retrying');
        await this.sleep(Math.min(FLIP_BACKOFF_MAX_MS, FLIP_BACKOFF_MS * 2 ** Math.min(attempt, 10)));
      }
    }
  }

  // ---------------------------------------------------------------- dispatch

  /** The kernel's `svc` frames (Kernel.onServiceFrame). */
  handle(from: number, dcid: number, body: Payload, data?: Uint8Array): void {
    let m: MigrationMsg;
    try {
      m = parseMigrationMsg(body, data);
    } catch (err) {
      this.log.warn({ from, err: asDvsError(err).message }, 'migration: a malformed message refused');
      return;
    }
    this.dispatch(from, dcid, m);
  }

  private dispatch(from: number, dcid: number, m: MigrationMsg): void {
    if (m.t === 'start') {
      void this.onStart(from, dcid, m);
      return;
    }
    if (m.t === 'prepare') {
      if (!this.incoming.has(m.mid)) this.onPrepare(from, dcid, m);
      return;
    }
    const inc = this.incoming.get(m.mid);
    if (inc !== undefined && from === inc.from) {
      if (m.t === 'state') this.onState(inc, m.data);
      else if (m.t === 'handover') void this.onHandover(inc, m.handover);
      else if (m.t === 'failed') this.abortIncoming(inc, new DvsError(m.code, m.message), false);
    } else if (inc !== undefined && from === inc.msg.coord && m.t === 'failed') {
      // Once prepared, only the source knows whether it drained (the coordinator may not have heard):
      // a live source rolls back on the coordinator's word and says so; else HANDOVER_KEEP_MS ends the wait.
      const err = new DvsError(m.code, m.message);
      if (inc.incarnation === undefined) this.abortIncoming(inc, err, false);
      else this.clock.setTimer(HANDOVER_KEEP_MS, () => this.abortIncoming(inc, err, false));
    }
    const o = this.outgoing.get(m.mid);
    if (o !== undefined) this.onSourceMsg(o, from, m);
    const c = this.coordinating.get(m.mid);
    if (c !== undefined) this.onCoordinatorMsg(c, from, m);
  }

  /** A node was declared down: every move it took part in and that can still roll back does. */
  nodeDown(node: number): void {
    const err = new DvsError('EDVSNONODE', `node ${node} went down during the migration`, { details: { node } });
    for (const o of [...this.outgoing.values()]) if (o.msg.to === node || o.msg.coord === node) this.rollBack(o, err);
    for (const inc of [...this.incoming.values()]) {
      if (inc.from !== node && inc.msg.coord !== node) continue;
      if (inc.incarnation === undefined) {
        // Not prepared: the source cannot drain to it; a live source hears why and rolls back.
        this.abortIncoming(inc, err, inc.from !== node);
        continue;
      }
      // Prepared: the source may have drained already, its handover on the way (or coming again once
      // the link is back); only the source's verdict, or HANDOVER_KEEP_MS, ends the wait.
      this.clock.setTimer(HANDOVER_KEEP_MS, () => this.abortIncoming(inc, err, false));
    }
    for (const c of [...this.coordinating.values()]) {
      if (c.from !== node && (c.to !== node || c.flipped)) continue;
      c.nodeLost = true;
      c.settle(err);
    }
  }

  private post(node: number, dcid: number, body: MigrationMsg): void {
    if (node === this.me) {
      queueMicrotask(() => this.dispatch(this.me, dcid, body));
      return;
    }
    try {
      // A state piece's bytes travel as the frame's bulk data, not inside the encoded body.
      if (body.t === 'state') this.kernel.sendServiceFrame(node, dcid, { t: 'state', mid: body.mid }, body.data);
      else this.kernel.sendServiceFrame(node, dcid, body as unknown as Payload);
    } catch (err) {
      this.log.warn({ node, t: body.t, err: asDvsError(err).message }, 'migration: a message could not be sent');
    }
  }

  private isDown(node: number): boolean {
    return this.kernel.info().downNodes.includes(node);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }
}

function noop(): void {}

function asDvsError(err: unknown): DvsError {
  return err instanceof DvsError ? err : new DvsError('EDVSIO', err instanceof Error ? err.message : String(err));
}
