/**
 * The reliable link to one peer node, across however many TCP connections it takes: it composes
 * the outbox (frames not yet sent), the resend queue (sent, not yet acknowledged), the delayed
 * ack and the liveness judgement, and holds the session with the peer's incarnation and the
 * up/suspect/down state. Connections are made and authenticated by the handshakes and handed over
 * here once established. See docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { KernelFrame } from '../kernel/frames.js';
import type { AckFrame, DataFrame, SessionToken } from './frame-schema.js';
import type { FramingOptions } from './framing.js';
import { DelayedAck } from './delayed-ack.js';
import type { ConnEnd, LinkConn } from './link-conn.js';
import { connFailure, newPeerCounters, type ConnFailure, type PeerLinkStats, type PeerState } from './link-stats.js';
import { encodeDataFrame, encodeLinkFrame, wireBytes, type Wire } from './link-wire.js';
import { Liveness } from './liveness.js';
import type { LivenessProbe } from './liveness-probe.js';
import { Outbox } from './outbox.js';
import { ResendQueue } from './resend-queue.js';

export type { PeerLinkStats, PeerState } from './link-stats.js';

/** What a PeerLink needs from its manager. */
export interface PeerLinkHost {
  readonly framing: FramingOptions;
  readonly maxFrameBytes: number;
  readonly batchMaxBytes: number;
  readonly windowFrames: number;
  readonly windowBytes: number;
  /** Unsent bytes beyond which backpressure() makes one-way senders wait. */
  readonly maxQueuedBytes: number;
  /** Room left after each frame for its tag: FRAME_TAG_BYTES when connections are sealed, else 0. */
  readonly tagBytes: number;
  readonly clock: Clock;
  readonly isClosed: () => boolean;
  readonly deliver: (from: number, frame: KernelFrame) => void;
  readonly report: (node: number, state: 'up' | 'suspect' | 'down', incarnation: number | undefined) => void;
  readonly log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** Protocol errors in a row (without a data frame accepted in between) before the peer is dropped. */
const MAX_CONSECUTIVE_ERRORS = 3;

export class PeerLink {
  readonly node: number;
  host: string | undefined;
  port: number | undefined;
  state: PeerState = 'connecting';
  /** The established connection, if any. */
  conn: LinkConn | undefined;
  /** A connection being dialled or authenticated for this peer (dialing side only). */
  pending: LinkConn | undefined;
  /** The peer's session token (incarnation, epoch) of the current session; undefined before the first. */
  peer: SessionToken | undefined;
  /** Our epoch towards this peer: bumped whenever we drop the session (peer declared down). */
  epoch = 0;
  lastSeqSent = 0;
  lastSeqReceived = 0;
  readonly liveness: Liveness;
  private readonly clock: Clock;
  private readonly outbox: Outbox;
  private readonly resend = new ResendQueue();
  private readonly ack: DelayedAck;
  /** One-way senders waiting for the outbox to drain (see whenRoom). */
  private roomWaiters: (() => void)[] | undefined;
  /** A flush is scheduled (process.nextTick) and has not run yet. */
  private flushScheduled = false;
  /** A flush is running: what it queues (the open run, the ack group) it sends itself. */
  private flushing = false;
  private consecutiveErrors = 0;
  reconnectTimer: TimerHandle | undefined;
  reconnectAttempts = 0;
  /** Accepting side: probes the peer's listener after the peer closed the link (liveness-probe.ts). */
  probe: LivenessProbe | undefined;
  private established = 0;
  readonly counters = newPeerCounters();
  private lastFailure: ConnFailure | undefined;

  constructor(
    node: number,
    private readonly hostApi: PeerLinkHost,
    now: number,
  ) {
    this.node = node;
    this.liveness = new Liveness(now);
    this.outbox = new Outbox(node, hostApi.maxFrameBytes, hostApi.batchMaxBytes);
    this.clock = hostApi.clock;
    this.ack = new DelayedAck(hostApi.clock, () => this.flushGuarded());
  }

  // ---- sending -------------------------------------------------------------------------------

  /** Queues a kernel frame; it leaves with the other frames queued during this callback. */
  send(frame: KernelFrame): void {
    if (this.state === 'down') {
      this.counters.dropped++;
      return;
    }
    this.outbox.add(frame);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing || this.conn === undefined) return;
    this.flushScheduled = true;
    process.nextTick(this.flushNow);
  }

  /**
   * The scheduled flush: the frames queued during one callback of the event loop (its synchronous
   * part and the promise reactions it starts) leave together, right after it.
   */
  private readonly flushNow = (): void => {
    if (!this.flushScheduled) return;
    this.flushScheduled = false;
    this.flushGuarded();
  };

  /** flush() from a callback: an error (not reachable with frames checked at send) never escapes into the event loop. */
  private flushGuarded(): void {
    try {
      this.flush();
    } catch (err) {
      this.hostApi.log('error', 'link flush failed', { peer: this.node, err: err instanceof Error ? err.message : String(err) });
      this.conn?.end('protocol', err);
    }
  }

  /** Sends what the window allows, in batches of up to batchMaxBytes, then any pending ack. */
  flush(): void {
    const conn = this.conn;
    if (conn === undefined || !conn.open || this.hostApi.isClosed()) return;
    this.flushing = true;
    try {
      this.sendQueued(conn);
    } finally {
      this.flushing = false;
    }
    this.releaseRoomWaiters(false);
  }

  private sendQueued(conn: LinkConn): void {
    const h = this.hostApi;
    const outbox = this.outbox;
    const resend = this.resend;
    outbox.closeOpen();
    const n = outbox.length;
    let i = 0;
    let sentBytes = 0;
    while (i < n && resend.count < h.windowFrames && resend.inFlightBytes < h.windowBytes) {
      const start = i;
      i = outbox.measureBatch(start, h.batchMaxBytes);
      this.counters.framesOut += outbox.batchFrames;
      const seq = ++this.lastSeqSent;
      // encodeDataFrame copies what it needs of the entries (bulk bytes are referenced, not copied).
      const wire = encodeDataFrame(seq, this.lastSeqReceived, outbox.entries, outbox.batchBytes, h.framing, outbox.batchElements, start, i, h.tagBytes);
      resend.push(seq, wire, wireBytes(wire));
      sentBytes += outbox.batchBytes;
      this.counters.batchesOut++;
      this.ack.sent();
      this.writeNow(conn, wire);
    }
    outbox.sent(i, sentBytes);
    if (this.ack.wanted) {
      this.ack.sent();
      this.counters.acksOut++;
      this.writeNow(conn, encodeLinkFrame({ t: 'ack', a: this.lastSeqReceived }, h.framing, h.tagBytes));
    }
  }

  /**
   * While more than `maxQueuedBytes` wait unsent (the peer does not acknowledge fast enough, or the
   * link is reconnecting): a promise resolved once half of that has drained, or the session ends
   * (the peer is declared down, the manager closes); undefined when there is room.
   */
  whenRoom(): Promise<void> | undefined {
    if (this.state === 'down' || this.outbox.bytes <= this.hostApi.maxQueuedBytes) return undefined;
    return new Promise<void>((resolve) => (this.roomWaiters ??= []).push(resolve));
  }

  private releaseRoomWaiters(always: boolean): void {
    const waiters = this.roomWaiters;
    if (waiters === undefined || (!always && this.outbox.bytes > this.hostApi.maxQueuedBytes / 2)) return;
    this.roomWaiters = undefined;
    for (const resolve of waiters) resolve();
  }

  private writeNow(conn: LinkConn, wire: Wire): void {
    conn.write(wire);
    this.liveness.lastSent = this.clock.now();
  }

  /** A heartbeat when nothing was sent for a while. */
  ping(now: number): void {
    if (this.conn === undefined) return;
    this.conn.write(encodeLinkFrame({ t: 'ping' }, this.hostApi.framing, this.hostApi.tagBytes));
    this.liveness.lastSent = now;
  }

  // ---- receiving -----------------------------------------------------------------------------

  /** A data frame from the established connection (already validated). */
  onData(f: DataFrame): void {
    const now = this.clock.now();
    this.liveness.heard(now);
    if (f.s <= this.lastSeqReceived) {
      this.counters.duplicatesDropped += f.f.length;
      this.onAck(f.a);
      return;
    }
    if (f.s !== this.lastSeqReceived + 1) {
      throw new DvsError('EDVSBADREQUEST', `sequence gap: got ${f.s}, expected ${this.lastSeqReceived + 1}`);
    }
    this.onAck(f.a);
    this.lastSeqReceived = f.s;
    this.consecutiveErrors = 0;
    this.counters.framesIn += f.f.length;
    this.counters.batchesIn++;
    if (this.ack.batchReceived(now)) this.scheduleFlush();
    for (const k of f.f) {
      if (this.hostApi.isClosed()) return;
      this.hostApi.deliver(this.node, k);
    }
  }

  onAck(a: number | AckFrame): void {
    const ack = typeof a === 'number' ? a : a.a;
    if (ack > this.lastSeqSent) throw new DvsError('EDVSBADREQUEST', `ack ${ack} beyond the last sequence sent (${this.lastSeqSent})`);
    if (!this.resend.ackUpTo(ack)) return;
    if (this.outbox.length > 0) this.scheduleFlush();
  }

  heard(now: number): void {
    this.liveness.heard(now);
  }

  // ---- sessions and connections --------------------------------------------------------------

  /** Our view of the peer's token, as sent in the handshake. */
  view(): SessionToken | null {
    return this.peer ?? null;
  }

  /**
   * Takes over an authenticated connection. `resume` is the handshake's verdict; `peerAck` the
   * last sequence the peer says it received (meaningful only when resuming).
   */
  establish(conn: LinkConn, peerToken: SessionToken, resume: boolean, peerAck: number, now: number): void {
    if (resume && peerAck > this.lastSeqSent) throw new DvsError('EDVSBADREQUEST', `handshake ack ${peerAck} beyond the last sequence sent (${this.lastSeqSent})`);
    const old = this.conn;
    this.conn = undefined;
    if (old !== undefined && old !== conn) old.end('replaced');
    const before = this.state;
    if (resume) {
      this.onAck(peerAck);
    } else {
      const hadSession = this.peer !== undefined;
      // Frames queued before a first session are for it; frames of an ended session die with it.
      this.resetSession(hadSession);
      if (hadSession && (before === 'up' || before === 'suspect')) {
        this.state = 'down'; // frames the kernel sends from inside the report are dropped
        this.hostApi.report(this.node, 'down', this.peer?.inc);
      }
    }
    this.peer = peerToken;
    this.conn = conn;
    conn.counters = this.counters;
    this.liveness.heard(now);
    this.liveness.linked();
    this.probe?.stop();
    this.reconnectAttempts = 0;
    if (this.established++ > 0) this.counters.reconnects++;
    this.state = 'up';
    // Resend, in order and with their original sequence numbers, the frames the peer has not seen.
    const resend = this.resend;
    for (let k = 0; k < resend.count; k++) {
      this.counters.resent++;
      this.writeNow(conn, resend.wireAt(k));
    }
    if (resume && before === 'up') this.hostApi.log('debug', 'link resumed', { node: this.node });
    else this.hostApi.report(this.node, 'up', peerToken.inc);
    this.flush();
    if (this.outbox.length > 0) this.scheduleFlush();
  }

  /** The established connection ended. The session lives on until the peer is declared down. */
  detach(conn: LinkConn, why: ConnEnd, err?: unknown): void {
    if (this.conn === conn) this.conn = undefined;
    if (why !== 'replaced' && why !== 'shutdown' && why !== 'suspect' && why !== 'down') this.lastFailure = connFailure(why, err);
    // A frame that fails its MAC is someone else's doing (the peer never sends one): the
    // connection is re-made and the session resumes, however often that happens.
    if (why === 'mac') this.counters.macFailures++;
    if (why === 'protocol') {
      this.counters.protocolErrors++;
      if (++this.consecutiveErrors >= MAX_CONSECUTIVE_ERRORS) this.goDown('repeated protocol errors');
    }
  }

  private resetSession(dropOutbox: boolean): void {
    this.counters.dropped += this.resend.clear();
    this.lastSeqSent = 0;
    this.lastSeqReceived = 0;
    this.ack.sent();
    if (dropOutbox) {
      this.counters.dropped += this.outbox.clear();
      this.releaseRoomWaiters(true);
    }
  }

  /** Liveness: suspect, then down, after silence. Returns true when the peer just went down. */
  check(now: number, suspectMs: number, deadMs: number): boolean {
    if (this.state === 'down') return false;
    const verdict = this.liveness.judge(now, suspectMs, deadMs);
    if (verdict === 'dead') {
      this.goDown(`nothing heard for ${now - this.liveness.lastHeard} ms`);
      return true;
    }
    if (verdict === 'suspect' && this.state === 'up') {
      this.state = 'suspect';
      this.hostApi.report(this.node, 'suspect', this.peer?.inc);
      this.conn?.end('suspect');
    }
    return false;
  }

  /** Declares the peer down: its session, resend queue and outbox are dropped. */
  goDown(reason: string): void {
    if (this.state === 'down') return;
    this.hostApi.log('warn', 'peer down', { node: this.node, reason });
    this.state = 'down';
    this.epoch++;
    this.probe?.stop();
    this.resetSession(true);
    this.conn?.end('down');
    this.conn = undefined;
    this.hostApi.report(this.node, 'down', this.peer?.inc);
  }

  /** Stops everything this peer holds (timers, sockets); no report. */
  shutdown(): void {
    this.flushScheduled = false;
    this.ack.stop();
    if (this.reconnectTimer !== undefined) this.clock.clearTimer(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.conn?.end('shutdown');
    this.conn = undefined;
    this.pending?.end('shutdown');
    this.pending = undefined;
    this.probe?.stop();
    // Nobody may wait on a link that will never flush again.
    this.releaseRoomWaiters(true);
  }

  stats(): PeerLinkStats {
    return {
      node: this.node,
      state: this.state,
      incarnation: this.peer?.inc,
      connected: this.conn !== undefined,
      ...this.counters,
      handshakeFailuresBy: { ...this.counters.handshakeFailuresBy },
      queued: this.outbox.queued,
      queuedBytes: this.outbox.bytes,
      unacked: this.resend.count,
      lastSeqSent: this.lastSeqSent,
      lastSeqReceived: this.lastSeqReceived,
      lastFailure: this.lastFailure,
    };
  }
}
