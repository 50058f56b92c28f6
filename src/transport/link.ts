/**
 * The reliable link to one peer node, across however many TCP connections it takes: sequence
 * numbers, cumulative acknowledgements, the resend queue, batching, the session with the peer's
 * incarnation and the up/suspect/down state. Connections are made and authenticated by the
 * LinkManager and handed over here once established. See docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import type { KernelFrame } from '../kernel/frames.js';
import type { FramingOptions } from './framing.js';
import type { ConnEnd, LinkConn } from './link-conn.js';
import { encodeValueView } from './codec.js';
import { bulkOf, kernelFrameToWire, MAX_GROUPED_ACKS, sizeWireArray, writeWireArray } from './kernel-wire.js';
import { BULK_MIN_BYTES, DATA_FRAME_OVERHEAD, encodeDataFrame, encodedBytes, encodeKernelFrame, encodeLinkFrame, encodeSendAcks, wireBytes, type EncodedFrame, type Wire } from './link-wire.js';
import type { AckFrame, DataFrame, SessionToken } from './frame-schema.js';

/** What the link reports about a peer: 'connecting' until the first session (reported as nothing). */
export type PeerState = 'connecting' | 'up' | 'suspect' | 'down';

export interface PeerLinkStats {
  readonly node: number;
  readonly state: PeerState;
  /** The peer's incarnation in the current (or last) session. */
  readonly incarnation: number | undefined;
  readonly connected: boolean;
  /** Kernel frames sent (first transmissions) and delivered. */
  readonly framesOut: number;
  readonly framesIn: number;
  /** Data frames (batches) sent for the first time and accepted. */
  readonly batchesOut: number;
  readonly batchesIn: number;
  /** Standalone ack frames sent (an ack that could not ride on a data frame). */
  readonly acksOut: number;
  readonly bytesOut: number;
  readonly bytesIn: number;
  /** Data frames sent again after a reconnect. */
  readonly resent: number;
  /** Kernel frames received again (sequence already delivered) and discarded. */
  readonly duplicatesDropped: number;
  /** Kernel frames discarded because the peer was or went down. */
  readonly dropped: number;
  /** Connections established after the first one. */
  readonly reconnects: number;
  /** Authenticated connections closed for breaking the protocol. */
  readonly protocolErrors: number;
  /** Handshakes with this peer that failed authentication (dialing side). */
  readonly authFailures: number;
  /** Kernel frames waiting to be sent, and sent but not yet acknowledged (in batches). */
  readonly queued: number;
  readonly queuedBytes: number;
  readonly unacked: number;
  readonly lastSeqSent: number;
  readonly lastSeqReceived: number;
}

/** What a PeerLink needs from its manager. */
export interface PeerLinkHost {
  readonly framing: FramingOptions;
  readonly maxFrameBytes: number;
  readonly batchMaxBytes: number;
  readonly windowFrames: number;
  readonly windowBytes: number;
  /** Unsent bytes beyond which backpressure() makes one-way senders wait. */
  readonly maxQueuedBytes: number;
  readonly isClosed: () => boolean;
  readonly deliver: (from: number, frame: KernelFrame) => void;
  readonly report: (node: number, state: 'up' | 'suspect' | 'down', incarnation: number | undefined) => void;
  readonly log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** Outbox lists longer than this are emptied for good once drained (see dropSent). */
const KEEP_OUTBOX_ENTRIES = 1024;

/** What a removed outbox entry is overwritten with, so the list keeps no bytes alive. */
const SENT: EncodedFrame = Buffer.alloc(0);

/** Bytes of a run buffer (see PeerLink.run). */
const RUN_BYTES = 64 * 1024;

/** How long a standalone ack waits for outgoing data to carry it instead. */
const ACK_DELAY_MS = 5;
/** Received batches after which an ack goes out at once. */
const ACK_EVERY_BATCHES = 32;

interface Unacked {
  readonly seq: number;
  /** The frame's bytes; dropped (null) once acknowledged, so acked bulk data is not kept alive. */
  wire: Wire | null;
  readonly bytes: number;
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
  /** Highest sequence the peer acknowledged. */
  private acked = 0;
  private readonly unacked: Unacked[] = [];
  private unackedHead = 0;
  private inFlightBytes = 0;
  /**
   * The elements queued and not yet sent: entries [0, outboxLen) of three parallel lists kept
   * across flushes. Emptying a JS array (`length = 0`) frees its storage, and the next push would
   * allocate it again: three allocations per flush, a tenth of a daemon-hosted sendrec's bytes.
   */
  private readonly outbox: EncodedFrame[] = [];
  /** How many kernel frames each outbox entry stands for (a send-acks element or a run, several). */
  private readonly outboxFrames: number[] = [];
  /** How many elements of a data frame's `f` each outbox entry holds (a run, several). */
  private readonly outboxElements: number[] = [];
  private outboxLen = 0;
  /** Successful send-acks queued since the last other frame, not yet encoded. */
  private ackGroup: { dc: number; ids: number[] } | undefined;
  /**
   * The run: consecutive small kernel frames encoded back to back into `run` from `runStart` to
   * `runAt`, queued as one outbox element when another kind of element comes or at flush. Its
   * bytes are copied into the data frame, so the buffer is reused once the outbox is empty.
   */
  private run: Buffer | undefined;
  private runStart = 0;
  private runAt = 0;
  private runFrames = 0;
  private outboxBytes = 0;
  /** One-way senders waiting for the outbox to drain (see whenRoom). */
  private roomWaiters: (() => void)[] | undefined;
  private ackDirty = false;
  /** When the oldest data batch not yet acknowledged arrived (meaningful while ackDirty). */
  private ackDirtySince = 0;
  /** Data batches received since our last acknowledgement went out. */
  private receivedSinceAck = 0;
  /** Bounds how long a standalone ack waits for outgoing data to ride on (see scheduleAck). */
  private ackTimer: NodeJS.Timeout | undefined;
  /** The wait is over: the next flush sends the ack even without data. */
  private ackDue = false;
  /** A flush is scheduled (process.nextTick) and has not run yet. */
  private flushScheduled = false;
  /** A flush is running: what it queues (the open run, the ack group) it sends itself. */
  private flushing = false;
  lastHeard: number;
  lastSent = 0;
  private consecutiveErrors = 0;
  reconnectTimer: NodeJS.Timeout | undefined;
  reconnectAttempts = 0;
  private established = 0;

  readonly counters = {
    framesOut: 0,
    framesIn: 0,
    batchesOut: 0,
    batchesIn: 0,
    acksOut: 0,
    bytesOut: 0,
    bytesIn: 0,
    resent: 0,
    duplicatesDropped: 0,
    dropped: 0,
    reconnects: 0,
    protocolErrors: 0,
    authFailures: 0,
  };

  constructor(
    node: number,
    private readonly hostApi: PeerLinkHost,
    now: number,
  ) {
    this.node = node;
    this.lastHeard = now;
  }

  // ---- sending -------------------------------------------------------------------------------

  /** Queues a kernel frame; it leaves with the other frames queued during this callback. */
  send(frame: KernelFrame): void {
    if (this.state === 'down') {
      this.counters.dropped++;
      return;
    }
    if (frame.k === 'send-ack' && frame.rc === 0 && frame.node === undefined) {
      // Successful send-acks that follow each other travel as one element (kernel-wire.ts).
      this.closeRun();
      const g = this.ackGroup;
      if (g !== undefined && g.dc === frame.dc && g.ids.length < MAX_GROUPED_ACKS) g.ids.push(frame.id);
      else {
        this.closeAckGroup();
        this.ackGroup = { dc: frame.dc, ids: [frame.id] };
      }
      this.scheduleFlush();
      return;
    }
    this.closeAckGroup();
    const bulk = bulkOf(frame);
    if (bulk !== undefined && bulk.byteLength >= BULK_MIN_BYTES) {
      this.closeRun();
      const buf = encodeKernelFrame(frame);
      this.checkSize(encodedBytes(buf));
      this.queue(buf, encodedBytes(buf), 1);
      return;
    }
    // Small frames are written straight into the open run: no buffer of their own. Nothing may
    // encode between sizeWireArray and writeWireArray (the measured payload lives in msgpackr's
    // scratch buffer), hence the ack group is closed above.
    const wire = kernelFrameToWire(frame);
    const size = sizeWireArray(wire, encodeValueView);
    this.checkSize(size);
    const h = this.hostApi;
    if (size > RUN_BYTES / 2) {
      this.closeRun();
      const buf = Buffer.allocUnsafe(size);
      writeWireArray(buf, 0, wire);
      this.queue(buf, size, 1);
      return;
    }
    if (this.runAt - this.runStart + size > h.batchMaxBytes) this.closeRun();
    if (this.run === undefined || this.runAt + size > this.run.byteLength) {
      this.closeRun();
      // The old buffer may still back queued runs: start a new one rather than overwrite it.
      this.run = Buffer.allocUnsafe(RUN_BYTES);
      this.runStart = 0;
      this.runAt = 0;
    }
    this.runAt = writeWireArray(this.run, this.runAt, wire);
    this.runFrames++;
    this.scheduleFlush();
  }

  private checkSize(bytes: number): void {
    if (bytes + DATA_FRAME_OVERHEAD > this.hostApi.maxFrameBytes) {
      throw new DvsError('EDVSMSGSIZE', `kernel frame of ${bytes} bytes exceeds the link frame limit`, { details: { node: this.node, limit: this.hostApi.maxFrameBytes } });
    }
  }

  /** Queues the open run of small frames, if any, in its place among the other frames. */
  private closeRun(): void {
    if (this.runFrames === 0) return;
    this.queue(this.run!.subarray(this.runStart, this.runAt), this.runAt - this.runStart, this.runFrames);
    this.runStart = this.runAt;
    this.runFrames = 0;
  }

  /** Queues encoded bytes holding `elements` elements of a data frame's `f`, standing for `frames` kernel frames. */
  private queue(buf: EncodedFrame, bytes: number, frames: number, elements = frames): void {
    const n = this.outboxLen++;
    this.outbox[n] = buf;
    this.outboxFrames[n] = frames;
    this.outboxElements[n] = elements;
    this.outboxBytes += bytes;
    this.scheduleFlush();
  }

  /** Removes the first `count` outbox entries (sent, or dropped with the session), keeping the lists' storage and no reference to their bytes. */
  private dropFirst(count: number): void {
    const len = this.outboxLen;
    const out = this.outbox;
    for (let k = count; k < len; k++) {
      out[k - count] = out[k]!;
      this.outboxFrames[k - count] = this.outboxFrames[k]!;
      this.outboxElements[k - count] = this.outboxElements[k]!;
    }
    for (let k = len - count; k < len; k++) out[k] = SENT;
    this.outboxLen = len - count;
    if (this.outboxLen === 0 && out.length > KEEP_OUTBOX_ENTRIES) {
      // After a burst (a peer that did not keep up): give the storage back.
      out.length = 0;
      this.outboxFrames.length = 0;
      this.outboxElements.length = 0;
    }
  }

  /** Queues the open group of send-acks, if any, in its place among the other frames. */
  private closeAckGroup(): void {
    const g = this.ackGroup;
    if (g === undefined) return;
    this.ackGroup = undefined;
    const buf = g.ids.length === 1 ? encodeKernelFrame({ k: 'send-ack', dc: g.dc, id: g.ids[0]!, rc: 0 }) : encodeSendAcks(g.dc, g.ids);
    this.queue(buf, encodedBytes(buf), g.ids.length, 1);
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
    this.closeAckGroup();
    this.closeRun();
    const h = this.hostApi;
    const n = this.outboxLen;
    let i = 0;
    while (i < n && this.unacked.length - this.unackedHead < h.windowFrames && this.inFlightBytes < h.windowBytes) {
      const start = i;
      let bytes = 0;
      let frames = 0;
      let elements = 0;
      while (i < n) {
        const size = encodedBytes(this.outbox[i]!);
        if (i > start && bytes + size > h.batchMaxBytes) break;
        bytes += size;
        frames += this.outboxFrames[i]!;
        elements += this.outboxElements[i]!;
        i++;
      }
      this.counters.framesOut += frames;
      const seq = ++this.lastSeqSent;
      // encodeDataFrame copies what it needs of the entries (bulk bytes are referenced, not copied).
      const wire = encodeDataFrame(seq, this.lastSeqReceived, this.outbox, bytes, h.framing, elements, start, i);
      const wireLength = wireBytes(wire);
      this.unacked.push({ seq, wire, bytes: wireLength });
      this.inFlightBytes += wireLength;
      this.outboxBytes -= bytes;
      this.counters.batchesOut++;
      this.ackSent();
      this.writeNow(conn, wire);
    }
    if (i > 0) this.dropFirst(i);
    if (this.outboxLen === 0) {
      // Every run's bytes were copied into data frames: the run buffer is free again.
      this.runStart = 0;
      this.runAt = 0;
    }
    if (this.ackDirty && (this.ackDue || this.receivedSinceAck >= ACK_EVERY_BATCHES)) {
      this.ackSent();
      this.counters.acksOut++;
      this.writeNow(conn, encodeLinkFrame({ t: 'ack', a: this.lastSeqReceived }, h.framing));
    }
  }

  /**
   * While more than `maxQueuedBytes` wait unsent (the peer does not acknowledge fast enough, or the
   * link is reconnecting): a promise resolved once half of that has drained, or the session ends
   * (the peer is declared down, the manager closes); undefined when there is room.
   */
  whenRoom(): Promise<void> | undefined {
    if (this.state === 'down' || this.outboxBytes <= this.hostApi.maxQueuedBytes) return undefined;
    return new Promise<void>((resolve) => (this.roomWaiters ??= []).push(resolve));
  }

  private releaseRoomWaiters(always: boolean): void {
    const waiters = this.roomWaiters;
    if (waiters === undefined || (!always && this.outboxBytes > this.hostApi.maxQueuedBytes / 2)) return;
    this.roomWaiters = undefined;
    for (const resolve of waiters) resolve();
  }

  private ackSent(): void {
    this.ackDirty = false;
    this.ackDue = false;
    this.receivedSinceAck = 0;
  }

  /**
   * Delays a standalone ack until a batch has waited ACK_DELAY_MS unacknowledged, so it can ride on
   * the next data frame (a request is usually answered within that time: one write per message
   * instead of two). Under one-way load an ack still goes out every ACK_EVERY_BATCHES batches, well
   * inside the sender's window. The timer is left running when an ack rides on data (arming and
   * clearing one per message costs more than an idle expiry every few milliseconds); when it fires
   * on a batch younger than the delay it waits out the rest rather than ack at once, which under
   * request/response traffic would add a write (and a wake-up of the peer) every few milliseconds.
   */
  private scheduleAck(): void {
    if (this.receivedSinceAck >= ACK_EVERY_BATCHES) {
      this.scheduleFlush();
      return;
    }
    if (this.ackTimer === undefined) this.armAckTimer(ACK_DELAY_MS);
  }

  private armAckTimer(ms: number): void {
    this.ackTimer = setTimeout(this.onAckTimer, ms);
    this.ackTimer.unref();
  }

  private readonly onAckTimer = (): void => {
    this.ackTimer = undefined;
    if (!this.ackDirty) return;
    const wait = this.ackDirtySince + ACK_DELAY_MS - Date.now();
    if (wait > 0) {
      this.armAckTimer(wait);
      return;
    }
    this.ackDue = true;
    this.flushGuarded();
  };

  private writeNow(conn: LinkConn, wire: Wire): void {
    conn.write(wire);
    this.lastSent = Date.now();
  }

  /** A heartbeat when nothing was sent for a while. */
  ping(now: number): void {
    if (this.conn === undefined) return;
    this.conn.write(encodeLinkFrame({ t: 'ping' }, this.hostApi.framing));
    this.lastSent = now;
  }

  // ---- receiving -----------------------------------------------------------------------------

  /** A data frame from the established connection `conn` (already validated). */
  onData(f: DataFrame): void {
    const now = Date.now();
    this.lastHeard = now;
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
    if (!this.ackDirty) this.ackDirtySince = now;
    this.ackDirty = true;
    this.receivedSinceAck++;
    this.scheduleAck();
    for (const k of f.f) {
      if (this.hostApi.isClosed()) return;
      this.hostApi.deliver(this.node, k);
    }
  }

  onAck(a: number | AckFrame): void {
    const ack = typeof a === 'number' ? a : a.a;
    if (ack > this.lastSeqSent) throw new DvsError('EDVSBADREQUEST', `ack ${ack} beyond the last sequence sent (${this.lastSeqSent})`);
    if (ack <= this.acked) return;
    this.acked = ack;
    while (this.unackedHead < this.unacked.length && this.unacked[this.unackedHead]!.seq <= ack) {
      const u = this.unacked[this.unackedHead]!;
      this.inFlightBytes -= u.bytes;
      // The slot itself goes only when the queue is compacted below; its bytes (up to a copy chunk
      // each) must not wait for that.
      u.wire = null;
      this.unackedHead++;
    }
    if (this.unackedHead > 1024 && this.unackedHead * 2 > this.unacked.length) {
      this.unacked.splice(0, this.unackedHead);
      this.unackedHead = 0;
    }
    if (this.outboxLen > 0) this.scheduleFlush();
  }

  heard(now: number): void {
    this.lastHeard = now;
  }

  // ---- sessions and connections --------------------------------------------------------------

  /**
   * Both sides decide the same way whether the previous session goes on: only when each side's
   * view of the other equals the other's current token. See docs/link-protocol.md ("Sessions").
   */
  static resumes(myToken: SessionToken, myViewOfPeer: SessionToken | null, peerToken: SessionToken, peerViewOfMe: SessionToken | null): boolean {
    return sameToken(myViewOfPeer, peerToken) && sameToken(peerViewOfMe, myToken);
  }

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
    this.lastHeard = now;
    this.reconnectAttempts = 0;
    if (this.established++ > 0) this.counters.reconnects++;
    this.state = 'up';
    // Resend, in order and with their original sequence numbers, the frames the peer has not seen.
    for (let i = this.unackedHead; i < this.unacked.length; i++) {
      this.counters.resent++;
      this.writeNow(conn, this.unacked[i]!.wire!); // entries from unackedHead on are unacknowledged: their bytes are kept
    }
    if (resume && before === 'up') this.hostApi.log('debug', 'link resumed', { node: this.node });
    else this.hostApi.report(this.node, 'up', peerToken.inc);
    this.flush();
    if (this.outboxLen > 0) this.scheduleFlush();
  }

  /** The established connection ended. The session lives on until the peer is declared down. */
  detach(conn: LinkConn, why: ConnEnd): void {
    if (this.conn === conn) this.conn = undefined;
    if (why === 'protocol') {
      this.counters.protocolErrors++;
      if (++this.consecutiveErrors >= MAX_CONSECUTIVE_ERRORS) this.goDown('repeated protocol errors');
    }
  }

  private resetSession(dropOutbox: boolean): void {
    this.counters.dropped += this.unacked.length - this.unackedHead;
    this.unacked.length = 0;
    this.unackedHead = 0;
    this.inFlightBytes = 0;
    this.lastSeqSent = 0;
    this.lastSeqReceived = 0;
    this.acked = 0;
    this.ackSent();
    if (dropOutbox) {
      for (let k = 0; k < this.outboxLen; k++) this.counters.dropped += this.outboxFrames[k]!;
      this.counters.dropped += (this.ackGroup?.ids.length ?? 0) + this.runFrames;
      this.dropFirst(this.outboxLen);
      this.runStart = 0;
      this.runAt = 0;
      this.runFrames = 0;
      this.outboxBytes = 0;
      this.ackGroup = undefined;
      this.releaseRoomWaiters(true);
    }
  }

  /** Liveness: suspect, then down, after silence. Returns true when the peer just went down. */
  check(now: number, suspectMs: number, deadMs: number): boolean {
    if (this.state === 'down') return false;
    const silent = now - this.lastHeard;
    if (silent >= deadMs) {
      this.goDown(`nothing heard for ${silent} ms`);
      return true;
    }
    if (silent >= suspectMs && this.state === 'up') {
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
    this.resetSession(true);
    this.conn?.end('down');
    this.conn = undefined;
    this.hostApi.report(this.node, 'down', this.peer?.inc);
  }

  /** Stops everything this peer holds (timers, sockets); no report. */
  shutdown(): void {
    this.flushScheduled = false;
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.conn?.end('shutdown');
    this.conn = undefined;
    this.pending?.end('shutdown');
    this.pending = undefined;
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
      queued: this.outboxLen + (this.ackGroup === undefined ? 0 : 1) + (this.runFrames === 0 ? 0 : 1),
      queuedBytes: this.outboxBytes,
      unacked: this.unacked.length - this.unackedHead,
      lastSeqSent: this.lastSeqSent,
      lastSeqReceived: this.lastSeqReceived,
    };
  }
}

function sameToken(a: SessionToken | null, b: SessionToken | null): boolean {
  if (a === null || b === null) return false;
  return a.inc === b.inc && a.epoch === b.epoch;
}
