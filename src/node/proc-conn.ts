/**
 * One client connection of the process socket (docs/protocol.md): its socket, frame decoder and
 * states (hello, open, closing, closed), the requests in flight, and closing. Authentication is
 * proc-hello.ts, the requests proc-ops.ts, the grant requests to the client proc-grant-requests.ts,
 * the outgoing frames proc-writer.ts. Every frame is validated; a frame that breaks the protocol
 * closes the connection; whatever the peer sends, the daemon neither throws nor leaves a promise
 * unobserved. Closing the connection unbinds every endpoint it bound, except those that moved to
 * another node (endpointMoved): they live on there.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { AbortSwitch } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Message } from '../ipc/message.js';
import { IdTable } from '../kernel/id-table.js';
import { FrameDecoder } from '../transport/framing.js';
import { asInt, isPlainMap, optTimeout, toWireError, type Fields } from '../transport/proc-protocol.js';
import type { ConnContext } from './proc-context.js';
import { ConnEndpoints } from './proc-endpoints.js';
import { GrantRequests } from './proc-grant-requests.js';
import { checkHello, HelloRefused, type HelloPeer } from './proc-hello.js';
import type { OpHost } from './proc-op-host.js';
import { opOf } from './proc-ops.js';
import { ConnWriter } from './proc-writer.js';

/** How long a closing connection may take to flush its last frames before it is destroyed. */
const CLOSE_GRACE_MS = 1000;
/** Bytes a connection may send before its hello is accepted. */
export const MAX_PRE_HELLO_BYTES = 64 * 1024;
/**
 * What one connection is served in one turn of the event loop, whichever ends first: a burst of
 * pipelined requests must not hold the loop that also serves the other clients and the links.
 */
const SLICE_MAX_FRAMES = 256;
const SLICE_MAX_MS = 4;
/** Frames waiting beyond this: the socket is not read until they are served. */
const BACKLOG_PAUSE_FRAMES = 4096;

type State = 'hello' | 'open' | 'closing' | 'closed';

function messageResult(m: Message): Fields {
  return m.payload === undefined ? { source: m.source, type: m.type } : { source: m.source, type: m.type, payload: m.payload };
}

/** A request in flight; a cancellable one is the abort switch its blocking call listens to. */
class InFlight extends AbortSwitch {
  constructor(
    readonly id: number,
    readonly cancellable: boolean,
  ) {
    super();
  }
}

export class ProcConnection implements OpHost {
  readonly id: number;
  readonly ctx: ConnContext;
  readonly bound: ConnEndpoints;
  readonly grantRequests: GrantRequests;
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly out: ConnWriter;
  private state: State = 'hello';
  private helloTimer: NodeJS.Timeout | undefined;
  private destroyTimer: NodeJS.Timeout | undefined;
  private peer: HelloPeer = {};
  /** Requests in flight, by id (a ring: no Map churn per request). */
  private pending = new IdTable<InFlight>();
  private releasedFlag = false;
  private preHelloBytes = 0;
  /** Frames decoded and not yet served: [backlogHead, backlog.length), served one slice per turn. */
  private backlog: unknown[] = [];
  private backlogHead = 0;
  private readPaused = false;

  constructor(id: number, socket: Socket, ctx: ConnContext) {
    this.id = id;
    this.socket = socket;
    this.ctx = ctx;
    this.bound = new ConnEndpoints(ctx.maxEndpoints, ctx.maxGrants);
    this.out = new ConnWriter(id, socket, ctx, (sid, err) => this.grantRequests.fail(sid, err));
    this.grantRequests = new GrantRequests((frame) => this.out.write(frame), ctx.grantTimeoutMs);
    this.decoder = new FrameDecoder({ maxFrameBytes: ctx.maxFrameBytes });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.ctx.logger.debug({ conn: this.id, err: err.message }, 'process socket error'));
    socket.on('close', () => this.dispose());
    this.helloTimer = setTimeout(() => {
      this.helloTimer = undefined;
      this.ctx.stats.authFailures++;
      this.shutdown(new DvsError('EDVSTIMEDOUT', `no hello within ${this.ctx.helloTimeoutMs} ms`));
    }, ctx.helloTimeoutMs);
    this.helloTimer.unref();
  }

  /** Endpoints bound by this connection and still alive. */
  get endpoints(): { dcid: number; endpoint: Endpoint; name: string }[] {
    return this.bound.list();
  }

  /** The run the client said in hello it belongs to (docs/protocol.md, "Running programs"). */
  get run(): number | undefined {
    return this.peer.run;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** True once the connection closed: its endpoints are unbound and its calls ended. */
  get released(): boolean {
    return this.releasedFlag;
  }

  // ---------------------------------------------------------------- input

  private onData(chunk: Buffer): void {
    this.ctx.stats.bytesIn += chunk.byteLength;
    if (this.isClosing()) return;
    if (this.state === 'hello') {
      // An unauthenticated peer gets no more than a hello's worth of buffer.
      this.preHelloBytes += chunk.byteLength;
      if (this.preHelloBytes > MAX_PRE_HELLO_BYTES) {
        this.violation(new DvsError('EDVSPACKSIZE', `more than ${MAX_PRE_HELLO_BYTES} bytes before hello was accepted`));
        return;
      }
    }
    let frames: readonly unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.violation(err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', 'undecodable frame'));
      return;
    }
    if (frames.length === 0) return;
    if (this.backlogHead < this.backlog.length) {
      // Earlier frames still wait for their slice: these go after them, in order.
      for (const frame of frames) this.backlog.push(frame);
      this.pauseIfBacklogged();
      return;
    }
    const served = this.serveFrames(frames, 0);
    if (served < frames.length) {
      for (let i = served; i < frames.length; i++) this.backlog.push(frames[i]);
      this.yieldSlice();
      this.pauseIfBacklogged();
    }
  }

  /**
   * Serves frames from `list[from]` on, within one slice's budget (frames and time), and returns
   * the index of the first frame not served; every frame counts as served once the connection closes.
   */
  private serveFrames(list: readonly unknown[], from: number): number {
    const end = Math.min(list.length, from + SLICE_MAX_FRAMES);
    const started = performance.now();
    let i = from;
    while (i < end) {
      if (this.isClosing()) return list.length;
      const frame = list[i++];
      try {
        this.onFrame(frame);
      } catch (err) {
        // A bug, not the peer's fault: log it and drop the connection rather than the daemon.
        this.ctx.logger.error({ conn: this.id, err: err instanceof Error ? err.stack : String(err) }, 'process connection handler failed');
        this.shutdown(new DvsError('EDVSIO', 'internal error'));
      }
      if (performance.now() - started >= SLICE_MAX_MS) break;
    }
    return this.isClosing() ? list.length : i;
  }

  /** The slice's budget is spent and frames wait: the rest is served from a later turn of the event loop. */
  private yieldSlice(): void {
    this.ctx.stats.slicesYielded++;
    setImmediate(this.serveBacklog);
  }

  /** One slice of the backlog; the next one is scheduled while frames are left. */
  private readonly serveBacklog = (): void => {
    const served = this.serveFrames(this.backlog, this.backlogHead);
    if (served < this.backlog.length) {
      this.backlogHead = served;
      this.yieldSlice();
      return;
    }
    this.backlog = [];
    this.backlogHead = 0;
    if (this.readPaused && !this.isClosing()) {
      this.readPaused = false;
      this.socket.resume();
    }
  };

  /** A large backlog: stop reading the socket until it is served, so TCP pushes back on the client. */
  private pauseIfBacklogged(): void {
    if (this.readPaused || this.backlog.length - this.backlogHead <= BACKLOG_PAUSE_FRAMES) return;
    this.readPaused = true;
    this.ctx.stats.readPauses++;
    this.socket.pause();
  }

  private isClosing(): boolean {
    return this.state === 'closing' || this.state === 'closed';
  }

  private onFrame(frame: unknown): void {
    if (!isPlainMap(frame)) {
      this.violation(new DvsError('EDVSBADREQUEST', 'a frame must hold a msgpack map'));
      return;
    }
    if (frame.sid !== undefined) {
      if (this.state !== 'open') this.violation(new DvsError('EDVSBADREQUEST', 'a response before hello'));
      else if (!this.grantRequests.answer(frame)) this.violation(new DvsError('EDVSBADREQUEST', 'sid must be an integer'));
      return;
    }
    const id = asInt(frame.id);
    if (id === undefined || id < 0) {
      this.violation(new DvsError('EDVSBADREQUEST', 'a request needs an integer id >= 0'));
      return;
    }
    if (this.state === 'hello') {
      this.onHello(frame, id);
      return;
    }
    if (this.pending.get(id) !== undefined) {
      this.violation(new DvsError('EDVSBADREQUEST', `request id ${id} is already in flight`));
      return;
    }
    this.ctx.stats.requests++;
    this.onRequest(frame, id);
  }

  private onHello(f: Fields, id: number): void {
    const hello = checkHello(this.ctx, f, this.id);
    if (hello instanceof HelloRefused) {
      this.ctx.stats.authFailures++;
      if (hello.error.code === 'EDVSACCES') this.ctx.logger.warn({ conn: this.id, ...hello.peer }, 'process connection refused: wrong token');
      this.out.error(id, hello.error, true);
      this.shutdown(undefined);
      return;
    }
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.state = 'open';
    this.peer = hello.peer;
    if (hello.lz4) this.out.compress();
    // Authenticated: a large frame may now be given its whole buffer once its header is in.
    this.decoder.assembleLargeFrames = true;
    this.ctx.logger.debug({ conn: this.id, ...this.peer }, 'process connected');
    this.out.ok(id, hello.result);
  }

  // ---------------------------------------------------------------- requests

  private onRequest(f: Fields, id: number): void {
    let outcome: unknown;
    let asMessage = false;
    try {
      const op = opOf(f, this.ctx.ops);
      if (!op.control && this.pending.size >= this.ctx.maxInFlight) throw new DvsError('EDVSAGAIN', `more than ${this.ctx.maxInFlight} requests in flight`);
      asMessage = op.message;
      outcome = op.run(this, f, id);
    } catch (err) {
      this.pending.delete(id);
      this.out.error(id, err);
      return;
    }
    if (outcome instanceof Promise) {
      // One reaction per request: the message shape is applied here rather than by a .then of its own.
      outcome.then(
        (result: unknown) => {
          this.pending.delete(id);
          this.out.ok(id, asMessage ? messageResult(result as Message) : result);
        },
        (err: unknown) => {
          this.pending.delete(id);
          this.out.error(id, err);
        },
      );
    } else {
      // A call that registered itself and then completed at once (a synchronous bind hook).
      if (this.pending.size !== 0) this.pending.delete(id);
      this.out.ok(id, outcome);
    }
  }

  blocking(id: number, f: Fields): { timeoutMs?: number; signal: AbortSwitch } {
    const timeoutMs = optTimeout(f);
    const ac = new InFlight(id, true);
    this.pending.set(ac);
    return timeoutMs === undefined ? { signal: ac } : { timeoutMs, signal: ac };
  }

  tracked<T>(id: number, p: Promise<T>): Promise<T> {
    this.pending.set(new InFlight(id, false));
    return p;
  }

  event(frame: Fields): void {
    this.out.write(frame);
  }

  // ---------------------------------------------------------------- migration (docs/protocol.md, Migration)

  /** True when this connection bound `endpoint` of `dcid` and still holds it (a retired one too, until it moved). */
  holds(dcid: number, endpoint: Endpoint): boolean {
    return !this.releasedFlag && this.bound.get(dcid, endpoint) !== undefined;
  }

  /**
   * Asks the client for the state of its service at `endpoint` (blocked in a receive, its route
   * frozen for a move): the bytes it gave, in pieces concatenated, or undefined for a stateless
   * service. Rejects with the client's refusal (EDVSMIGRATE: not movable now), EDVSTIMEDOUT past
   * `timeoutMs` (default: the server's grant timeout), EDVSSRCDIED when the connection closes,
   * EDVSNOTBIND for an endpoint it does not hold.
   */
  requestSnapshot(dcid: number, endpoint: Endpoint, timeoutMs: number = this.ctx.grantTimeoutMs): Promise<Uint8Array | undefined> {
    if (!this.holds(dcid, endpoint)) return Promise.reject(new DvsError('EDVSNOTBIND', `endpoint ${endpoint} of DC ${dcid} is not bound by this connection`, { details: { endpoint } }));
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) return Promise.reject(new DvsError('EDVSBADVALUE', `a snapshot timeout must be a positive integer, got ${String(timeoutMs)}`));
    return this.grantRequests.snapshot(dcid, endpoint, timeoutMs);
  }

  /**
   * The service at `endpoint` moved to `node` (the kernel already retired it here): the connection
   * forgets it without unbinding, so its closing leaves the slot to its new owner, and tells the
   * client with a `moved` event. The event goes even when the connection no longer holds the
   * endpoint (a request naming the retired endpoint since made it forget it): the client still
   * learns where it went. False when the connection did not hold it, or is closed.
   */
  endpointMoved(dcid: number, endpoint: Endpoint, node: number, epoch: number): boolean {
    if (this.releasedFlag) return false;
    const p = this.bound.get(dcid, endpoint);
    if (p !== undefined) this.bound.forget(p);
    this.ctx.logger.debug({ conn: this.id, dcid, endpoint, node, epoch }, 'process moved');
    this.out.write({ op: 'moved', dcid, endpoint, node, epoch });
    return p !== undefined;
  }

  cancel(target: number): boolean {
    const ac = this.pending.get(target);
    if (ac === undefined || !ac.cancellable) return false;
    ac.abort();
    return true;
  }

  // ---------------------------------------------------------------- closing

  /** The peer broke the protocol: tell it why (best effort) and close. */
  private violation(err: DvsError): void {
    this.ctx.stats.protocolErrors++;
    this.ctx.logger.warn({ conn: this.id, code: err.code, reason: err.message }, 'process connection closed: protocol violation');
    this.shutdown(err);
  }

  /** Closes the connection, optionally telling the peer why with a `bye` frame. */
  shutdown(reason: DvsError | undefined): void {
    if (this.isClosing()) return;
    if (reason !== undefined) this.out.write({ op: 'bye', error: toWireError(reason) });
    this.state = 'closing';
    this.out.gate = 'closing';
    this.release();
    this.out.flush();
    this.socket.end();
    this.destroyTimer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    this.destroyTimer.unref();
  }

  /** The socket is gone. */
  private dispose(): void {
    this.release();
    this.state = 'closed';
    this.out.gate = 'closed';
    if (this.destroyTimer !== undefined) clearTimeout(this.destroyTimer);
    this.destroyTimer = undefined;
    this.ctx.closed(this);
  }

  /** Unbinds every endpoint of the connection (the kernel cascades the errors) and ends its calls. */
  private release(): void {
    if (this.releasedFlag) return;
    const wasOpen = this.state === 'open';
    this.releasedFlag = true;
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.grantRequests.close();
    this.bound.unbindAll(this.ctx.kernel, this.ctx.logger, this.id);
    const inFlight = this.pending.values();
    this.pending = new IdTable<InFlight>();
    for (const ac of inFlight) if (ac.cancellable) ac.abort();
    if (wasOpen) this.ctx.logger.debug({ conn: this.id, ...this.peer }, 'process disconnected');
  }
}
