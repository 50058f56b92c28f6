/**
 * `CoordinationStore` over TCP to a `StoreServer` (the embedded backend). The client authenticates
 * with the cluster key, reconnects with backoff after a loss, re-establishes every watch from the
 * last revision it delivered (so no event is missed or repeated), and refreshes the leases granted
 * through it as soon as it is back. Calls made while the server is unreachable wait for it and fail
 * with EDVSNOTCONN after `requestTimeoutMs`; a write whose reply was lost with the connection fails
 * with EDVSNOTCONN too (its outcome is unknown), reads are resent. Protocol: docs/coordination.md.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { DvsError } from '../ipc/errors.js';
import { checkPayload } from '../ipc/payload.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { systemClock } from '../runtime/system-clock.js';
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from '../transport/framing.js';
import { Emitter } from './emitter.js';
import {
  clientProof,
  clusterKeyBytes,
  fromWireError,
  isRecord,
  NONCE_BYTES,
  proofMatches,
  serverProof,
  STORE_PROTOCOL,
  STORE_PROTOCOL_VERSION,
  type StoreWireOp,
} from './store-protocol.js';
import {
  StoreCallCounter,
  type CoordinationStore,
  type DeleteResult,
  type KeyValue,
  type LeaseId,
  type PutOptions,
  type PutResult,
  type RangeResult,
  type StoreValue,
  type TxnRequest,
  type TxnResult,
  type Unsubscribe,
  type WatchCallback,
  type WatchEvent,
  type WatchOptions,
} from './store.js';

export interface StoreClientOptions {
  readonly host?: string;
  readonly port: number;
  readonly clusterKey: string | Uint8Array;
  /** Timers (timeouts, backoff, pings). Default: the system clock. */
  readonly clock?: Clock;
  /** How long `StoreClient.connect` waits for the first connection. Default 5000 ms. */
  readonly connectTimeoutMs?: number;
  /** How long a call waits for a connection and then for its reply. Default 5000 ms. */
  readonly requestTimeoutMs?: number;
  /** Reconnect backoff, doubling from min to max. Defaults 50 and 2000 ms. */
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /** A ping every this often while connected; a connection whose ping goes unanswered for 2 intervals (at least 1 s) is cut. Default 1000 ms. */
  readonly pingIntervalMs?: number;
  readonly maxFrameBytes?: number;
}

export interface StoreClientEvents {
  /** Authenticated to a server (first time or after a reconnect). */
  connected: { storeId: string; revision: number };
  disconnected: { error: DvsError };
  /** The server now serves a different store (it restarted empty): watches ended with EDVSCONNRESET, leases are gone. */
  reset: { storeId: string };
  /** A lease granted through this client no longer exists on the server. */
  leaseLost: { lease: LeaseId };
  error: DvsError;
}

type State = 'connecting' | 'handshake' | 'ready' | 'failed' | 'closed';

interface Call {
  readonly id: number;
  readonly op: StoreWireOp;
  readonly bytes: Buffer;
  /** Safe to resend after a lost connection. */
  readonly idempotent: boolean;
  /** Internal calls of one connection (re-watches, pings): dropped rather than resent. */
  readonly connectionBound: boolean;
  readonly onReply: ((result: unknown) => void) | undefined;
  readonly resolve: (result: unknown) => void;
  readonly reject: (err: DvsError) => void;
  timer: TimerHandle | undefined;
  sent: boolean;
  attempts: number;
}

interface ClientWatch {
  readonly wid: number;
  readonly prefix: string;
  readonly onEvent: WatchCallback;
  readonly onError: ((err: DvsError) => void) | undefined;
  /** Every event up to this revision was delivered (undefined until established "from now"). */
  lastRevision: number | undefined;
  established: boolean;
  cancelled: boolean;
  /** A revision split over several frames, in progress: how many of its events were delivered in all, and on this connection. */
  partialRevision: number | undefined;
  partialDelivered: number;
  partialSeenOnConn: number;
}

const noop = (): void => undefined;

export class StoreClient extends Emitter<StoreClientEvents> implements CoordinationStore {
  readonly calls = new StoreCallCounter();
  private readonly host: string;
  private readonly port: number;
  private readonly key: Buffer;
  private readonly clock: Clock;
  private readonly connectTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly pingIntervalMs: number;
  private readonly maxFrameBytes: number;

  private state: State = 'connecting';
  private fatal: DvsError | undefined;
  private socket: Socket | undefined;
  private decoder: FrameDecoder | undefined;
  private clientNonce: Buffer | undefined;
  private serverNonce: Uint8Array | undefined;
  private pendingStoreId: string | undefined;
  private handshakeTimer: TimerHandle | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private pingTimer: TimerHandle | undefined;
  private attempt = 0;
  private nextId = 1;
  private nextWatch = 1;
  private readonly queue: Call[] = [];
  private readonly inflight = new Map<number, Call>();
  private readonly watches = new Map<number, ClientWatch>();
  private readonly leases = new Map<LeaseId, number>();
  private readyWaiters: { resolve: () => void; reject: (err: DvsError) => void }[] = [];
  /** Why the last connection attempt failed, for the message of a call that gives up waiting. */
  private lastError: string | undefined;
  /** Referenced while a caller waits for a connection (see holdProcess). */
  private holdTimer: NodeJS.Timeout | undefined;
  /** The store instance this client talks to, once known. */
  storeId: string | undefined;
  /** Reconnections so far. */
  reconnects = 0;

  /** Connects and authenticates; rejects with EDVSACCES (wrong key) or EDVSNOTCONN (unreachable within connectTimeoutMs). */
  static async connect(opts: StoreClientOptions): Promise<StoreClient> {
    const c = new StoreClient(opts);
    try {
      await c.whenReady(c.connectTimeoutMs);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  constructor(opts: StoreClientOptions) {
    super();
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port;
    this.key = clusterKeyBytes(opts.clusterKey);
    this.clock = opts.clock ?? systemClock;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
    this.reconnectMinMs = opts.reconnectMinMs ?? 50;
    this.reconnectMaxMs = opts.reconnectMaxMs ?? 2000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 1000;
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.open();
  }

  get connected(): boolean {
    return this.state === 'ready';
  }

  /** Resolves once connected; EDVSNOTCONN after `timeoutMs`, the fatal error if authentication failed. */
  whenReady(timeoutMs = this.connectTimeoutMs): Promise<void> {
    if (this.state === 'ready') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(new DvsError('EDVSSHUTDOWN', 'store client closed'));
    if (this.fatal !== undefined) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
        this.holdProcess();
        reject(this.unreachable(timeoutMs));
      });
      const waiter = {
        resolve: () => {
          this.clock.clearTimer(timer);
          resolve();
        },
        reject: (err: DvsError) => {
          this.clock.clearTimer(timer);
          reject(err);
        },
      };
      this.readyWaiters.push(waiter);
      this.holdProcess();
    });
  }

  /** Cuts the current connection, as a network failure would (for tests and for operators). */
  dropConnection(): void {
    this.socket?.destroy();
  }

  // ---------------------------------------------------------------- CoordinationStore

  async get(key: string): Promise<KeyValue | undefined> {
    this.calls.count('get');
    const r = await this.request('get', { key }, { idempotent: true });
    return r === null ? undefined : (r as KeyValue);
  }

  async getPrefix(prefix: string): Promise<RangeResult> {
    this.calls.count('getPrefix');
    return (await this.request('getPrefix', { prefix }, { idempotent: true })) as RangeResult;
  }

  async put(key: string, value: StoreValue, opts: PutOptions = {}): Promise<PutResult> {
    this.calls.count('put');
    checkPayload(value, Number.MAX_SAFE_INTEGER);
    return (await this.request('put', opts.lease === undefined ? { key, value } : { key, value, lease: opts.lease }, { idempotent: false })) as PutResult;
  }

  async delete(key: string): Promise<DeleteResult> {
    this.calls.count('delete');
    return (await this.request('delete', { key }, { idempotent: false })) as DeleteResult;
  }

  async txn(req: TxnRequest): Promise<TxnResult> {
    this.calls.count('txn');
    // Values msgpack would silently mangle (functions, Maps, class instances) are refused here, as the in-memory store does.
    for (const branch of [req.success, req.failure]) for (const o of branch ?? []) if (o?.op === 'put') checkPayload(o.value, Number.MAX_SAFE_INTEGER);
    return (await this.request('txn', { compare: req.compare, success: req.success ?? [], failure: req.failure ?? [] }, { idempotent: false })) as TxnResult;
  }

  async grantLease(ttlMs: number): Promise<LeaseId> {
    this.calls.count('grantLease');
    // Resent if the reply is lost: the orphan lease of a lost reply expires on its own.
    const r = (await this.request('grantLease', { ttlMs }, { idempotent: true })) as { lease: LeaseId };
    if (this.state !== 'closed') this.leases.set(r.lease, ttlMs);
    return r.lease;
  }

  async keepAlive(lease: LeaseId): Promise<number> {
    this.calls.count('keepAlive');
    try {
      const r = (await this.request('keepAlive', { lease }, { idempotent: true })) as { ttlMs: number };
      return r.ttlMs;
    } catch (err) {
      if (err instanceof DvsError && err.code === 'EDVSNOENT') this.leases.delete(lease);
      throw err;
    }
  }

  async revokeLease(lease: LeaseId): Promise<void> {
    this.calls.count('revokeLease');
    this.leases.delete(lease);
    // Resent if the reply is lost; EDVSNOENT on a resend means the first attempt did it.
    await this.request('revokeLease', { lease }, { idempotent: true, resentNoEntIsOk: true });
  }

  async watch(prefix: string, fromRevision: number | undefined, onEvent: WatchCallback, opts: WatchOptions = {}): Promise<Unsubscribe> {
    this.calls.count('watch');
    const w: ClientWatch = {
      wid: this.nextWatch++,
      prefix,
      onEvent,
      onError: opts.onError,
      lastRevision: fromRevision,
      established: false,
      cancelled: false,
      partialRevision: undefined,
      partialDelivered: 0,
      partialSeenOnConn: 0,
    };
    this.watches.set(w.wid, w);
    const body = fromRevision === undefined ? { watch: w.wid, prefix } : { watch: w.wid, prefix, fromRevision };
    try {
      await this.request('watch', body, {
        idempotent: true,
        onReply: (r) => {
          const rev = isRecord(r) && typeof r.revision === 'number' ? r.revision : 0;
          if (w.lastRevision === undefined) w.lastRevision = rev;
          w.established = true;
        },
      });
    } catch (err) {
      this.watches.delete(w.wid);
      throw err;
    }
    return () => {
      if (w.cancelled) return;
      w.cancelled = true;
      this.watches.delete(w.wid);
      if (this.state === 'ready') this.request('unwatch', { watch: w.wid }, { idempotent: false, connectionBound: true }).catch(noop);
    };
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const err = new DvsError('EDVSSHUTDOWN', 'store client closed');
    for (const t of [this.handshakeTimer, this.reconnectTimer, this.pingTimer]) if (t !== undefined) this.clock.clearTimer(t);
    this.handshakeTimer = this.reconnectTimer = this.pingTimer = undefined;
    for (const c of [...this.queue, ...this.inflight.values()]) this.settle(c, err);
    this.queue.length = 0;
    this.inflight.clear();
    for (const w of this.watches.values()) w.cancelled = true;
    this.watches.clear();
    this.leases.clear();
    for (const w of this.readyWaiters.splice(0)) w.reject(err);
    this.holdProcess();
    this.socket?.destroy();
    this.socket = undefined;
  }

  // ---------------------------------------------------------------- requests

  private request(
    op: StoreWireOp,
    body: Record<string, unknown>,
    o: { idempotent: boolean; connectionBound?: boolean; onReply?: (r: unknown) => void; timeoutMs?: number; resentNoEntIsOk?: boolean },
  ): Promise<unknown> {
    if (this.state === 'closed') return Promise.reject(new DvsError('EDVSSHUTDOWN', 'store client closed'));
    if (this.fatal !== undefined) return Promise.reject(this.fatal);
    const id = this.nextId++;
    let bytes: Buffer;
    try {
      bytes = encodeFrame({ ...body, id, op }, { maxFrameBytes: this.maxFrameBytes });
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const call: Call = {
        id,
        op,
        bytes,
        idempotent: o.idempotent,
        connectionBound: o.connectionBound ?? false,
        onReply: o.onReply,
        resolve,
        reject: (err) => {
          if (o.resentNoEntIsOk === true && err.code === 'EDVSNOENT' && call.attempts > 1) resolve(null);
          else reject(err);
        },
        timer: undefined,
        sent: false,
        attempts: 0,
      };
      const timeoutMs = o.timeoutMs ?? this.requestTimeoutMs;
      call.timer = this.clock.setTimer(timeoutMs, () => {
        call.timer = undefined;
        if (call.sent) {
          this.inflight.delete(call.id);
          this.settle(call, new DvsError('EDVSTIMEDOUT', `store server gave no reply to ${op} within ${timeoutMs} ms`));
        } else {
          const i = this.queue.indexOf(call);
          if (i >= 0) this.queue.splice(i, 1);
          this.holdProcess();
          this.settle(call, this.unreachable(timeoutMs));
        }
      });
      if (this.state === 'ready') this.transmit(call);
      else if (call.connectionBound) this.settle(call, new DvsError('EDVSNOTCONN', 'not connected'));
      else {
        this.queue.push(call);
        this.holdProcess();
      }
    });
  }

  /** EDVSNOTCONN naming the server and the last error; `details` carries them for callers that phrase their own message. */
  private unreachable(timeoutMs: number): DvsError {
    const address = `${this.host}:${this.port}`;
    const why = this.lastError === undefined ? '' : ` (last error: ${this.lastError})`;
    return new DvsError('EDVSNOTCONN', `store server ${address} unreachable for ${timeoutMs} ms${why}`, {
      details: this.lastError === undefined ? { address, timeoutMs } : { address, timeoutMs, lastError: this.lastError },
    });
  }

  /**
   * Keeps the process alive while a caller waits for a connection. The clock's timers (backoff,
   * timeouts) do not hold a process open, so without this a program whose only work is waiting for
   * the store would exit with the caller's promise pending, printing nothing.
   */
  private holdProcess(): void {
    const waiting = this.state !== 'closed' && (this.readyWaiters.length > 0 || this.queue.length > 0);
    if (waiting && this.holdTimer === undefined) this.holdTimer = setInterval(noop, 2 ** 30);
    else if (!waiting && this.holdTimer !== undefined) {
      clearInterval(this.holdTimer);
      this.holdTimer = undefined;
    }
  }

  private transmit(call: Call): void {
    call.sent = true;
    call.attempts++;
    this.inflight.set(call.id, call);
    this.socket!.write(call.bytes);
  }

  private settle(call: Call, outcome: DvsError | { result: unknown }): void {
    if (call.timer !== undefined) this.clock.clearTimer(call.timer);
    call.timer = undefined;
    if (outcome instanceof DvsError) call.reject(outcome);
    else call.resolve(outcome.result);
  }

  // ---------------------------------------------------------------- connection

  private open(): void {
    if (this.state === 'closed' || this.fatal !== undefined) return;
    this.state = 'connecting';
    const socket = netConnect({ host: this.host, port: this.port });
    this.socket = socket;
    this.decoder = new FrameDecoder({ maxFrameBytes: this.maxFrameBytes });
    this.clientNonce = randomBytes(NONCE_BYTES);
    socket.setNoDelay(true);
    socket.on('connect', () => {
      if (this.socket === socket) this.state = 'handshake';
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.socket === socket) this.onData(chunk);
    });
    socket.on('error', (err: Error) => {
      if (this.socket === socket) this.lastError = err.message;
    });
    socket.on('close', () => {
      if (this.socket === socket) this.onClose();
    });
    this.handshakeTimer = this.clock.setTimer(this.connectTimeoutMs, () => {
      this.handshakeTimer = undefined;
      if (this.socket === socket && this.state !== 'ready') {
        this.lastError = `no handshake within ${this.connectTimeoutMs} ms`;
        socket.destroy();
      }
    });
  }

  private onData(chunk: Buffer): void {
    let frames: readonly unknown[];
    try {
      frames = this.decoder!.push(chunk);
    } catch (err) {
      this.emit('error', err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', String(err)));
      this.socket?.destroy();
      return;
    }
    const socket = this.socket;
    for (const f of frames) {
      // After a cut, frames not yet processed are dropped, as if never received.
      if (this.socket !== socket || socket?.destroyed === true || this.state === 'closed') return;
      try {
        this.onFrame(f);
      } catch (err) {
        this.emit('error', err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', `bad frame from the store server: ${(err as Error).message}`));
        this.socket?.destroy();
        return;
      }
    }
  }

  private onFrame(f: unknown): void {
    if (!isRecord(f)) throw new DvsError('EDVSBADREQUEST', 'frame is not a map');
    if (f.t === 'error') {
      const err = fromWireError(f.error);
      if (err.code === 'EDVSACCES') this.failFatal(err);
      else if (this.state !== 'ready') this.lastError = `the server closed the handshake: ${err.message}`; // e.g. EDVSAGAIN: retried with backoff
      else this.emit('error', err);
      return;
    }
    if (this.state !== 'ready') return this.onHandshake(f);
    if (typeof f.id === 'number') return this.onReply(f);
    if (typeof f.watch === 'number') return this.onWatchFrame(f);
    throw new DvsError('EDVSBADREQUEST', 'unexpected frame');
  }

  private onHandshake(f: Record<string, unknown>): void {
    if (f.t === 'hello' && this.serverNonce === undefined) {
      if (f.proto !== STORE_PROTOCOL || f.v !== STORE_PROTOCOL_VERSION || !(f.nonce instanceof Uint8Array) || f.nonce.byteLength !== NONCE_BYTES || typeof f.storeId !== 'string') {
        throw new DvsError('EDVSPROTONOSUPPORT', `server speaks ${String(f.proto)}/${String(f.v)}, not ${STORE_PROTOCOL}/${STORE_PROTOCOL_VERSION}`);
      }
      this.serverNonce = f.nonce;
      this.pendingStoreId = f.storeId;
      this.socket!.write(encodeFrame({ t: 'auth', proto: STORE_PROTOCOL, v: STORE_PROTOCOL_VERSION, nonce: this.clientNonce, mac: clientProof(this.key, f.nonce, this.clientNonce!) }));
      return;
    }
    if (f.t === 'welcome' && this.serverNonce !== undefined) {
      if (!proofMatches(serverProof(this.key, this.serverNonce, this.clientNonce!), f.mac)) {
        this.failFatal(new DvsError('EDVSACCES', 'the store server did not prove the cluster key'));
        return;
      }
      this.onReady(this.pendingStoreId!, typeof f.revision === 'number' ? f.revision : 0);
      return;
    }
    throw new DvsError('EDVSBADREQUEST', 'unexpected frame during the handshake');
  }

  private onReady(storeId: string, revision: number): void {
    if (this.handshakeTimer !== undefined) this.clock.clearTimer(this.handshakeTimer);
    this.handshakeTimer = undefined;
    if (this.storeId !== undefined && this.storeId !== storeId) this.onReset(storeId);
    if (this.storeId !== undefined) this.reconnects++;
    this.storeId = storeId;
    this.state = 'ready';
    this.attempt = 0;
    this.lastError = undefined;
    // Watches first, each from the last revision it delivered; then whatever waited; then leases.
    for (const w of this.watches.values()) {
      w.partialSeenOnConn = 0;
      if (w.established) this.rewatch(w);
    }
    for (const c of this.queue.splice(0)) this.transmit(c);
    for (const lease of this.leases.keys()) {
      this.request('keepAlive', { lease }, { idempotent: false, connectionBound: true }).catch((err: DvsError) => {
        if (err.code === 'EDVSNOENT' && this.leases.delete(lease)) this.emit('leaseLost', { lease });
      });
    }
    this.schedulePing();
    for (const w of this.readyWaiters.splice(0)) w.resolve();
    this.holdProcess();
    this.emit('connected', { storeId, revision });
  }

  private onReset(storeId: string): void {
    const err = new DvsError('EDVSCONNRESET', `the store server now serves another store (${storeId}): resynchronise`);
    for (const w of [...this.watches.values()]) {
      if (!w.established) continue; // its request is still queued and will be served by the new store
      this.watches.delete(w.wid);
      w.cancelled = true;
      this.tellWatch(w, err);
    }
    const lost = [...this.leases.keys()];
    this.leases.clear();
    this.emit('reset', { storeId });
    for (const lease of lost) this.emit('leaseLost', { lease });
  }

  private rewatch(w: ClientWatch): void {
    this.request(
      'watch',
      { watch: w.wid, prefix: w.prefix, fromRevision: w.lastRevision ?? 0 },
      { idempotent: false, connectionBound: true },
    ).catch((err: DvsError) => {
      // A lost connection retries on the next one; anything else ends the watch.
      if (err.code === 'EDVSNOTCONN' || err.code === 'EDVSSHUTDOWN' || w.cancelled) return;
      if (err.code === 'EDVSTIMEDOUT') {
        this.socket?.destroy();
        return;
      }
      this.watches.delete(w.wid);
      w.cancelled = true;
      this.tellWatch(w, err);
    });
  }

  private onReply(f: Record<string, unknown>): void {
    const call = this.inflight.get(f.id as number);
    if (call === undefined) return; // timed out already
    this.inflight.delete(call.id);
    if (f.ok === true) {
      try {
        call.onReply?.(f.result);
      } finally {
        this.settle(call, { result: f.result });
      }
    } else {
      this.settle(call, fromWireError(f.error));
    }
  }

  private onWatchFrame(f: Record<string, unknown>): void {
    const w = this.watches.get(f.watch as number);
    if (w === undefined || w.cancelled) return;
    if (f.error !== undefined) {
      this.watches.delete(w.wid);
      w.cancelled = true;
      this.tellWatch(w, fromWireError(f.error));
      return;
    }
    const revision = f.revision;
    const events = f.events;
    if (typeof revision !== 'number' || !Array.isArray(events)) throw new DvsError('EDVSBADREQUEST', 'malformed watch frame');
    if (w.lastRevision !== undefined && revision <= w.lastRevision) return; // already delivered
    if (w.partialRevision !== revision) {
      w.partialRevision = revision;
      w.partialDelivered = 0;
      w.partialSeenOnConn = 0;
    }
    // Events of this revision before index `partialDelivered` were delivered on an earlier connection.
    const start = w.partialSeenOnConn;
    w.partialSeenOnConn += events.length;
    for (let i = Math.max(0, w.partialDelivered - start); i < events.length; i++) {
      if (w.cancelled) return;
      w.partialDelivered = start + i + 1;
      try {
        w.onEvent(events[i] as WatchEvent);
      } catch (err) {
        // The watch goes on: the callback's fault is reported, not the watch ended.
        this.emit('error', err instanceof DvsError ? err : new DvsError('EDVSINVAL', `watch callback threw: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      }
    }
    if (f.partial !== true) {
      w.lastRevision = revision;
      w.partialRevision = undefined;
      w.partialDelivered = 0;
      w.partialSeenOnConn = 0;
    }
  }

  private tellWatch(w: ClientWatch, err: DvsError): void {
    if (w.onError === undefined) {
      this.emit('error', err);
      return;
    }
    try {
      w.onError(err);
    } catch (e) {
      this.emit('error', e instanceof DvsError ? e : new DvsError('EDVSINVAL', String(e)));
    }
  }

  private schedulePing(): void {
    if (this.pingTimer !== undefined) this.clock.clearTimer(this.pingTimer);
    const socket = this.socket;
    this.pingTimer = this.clock.setTimer(this.pingIntervalMs, () => {
      this.pingTimer = undefined;
      if (this.state !== 'ready' || this.socket !== socket) return;
      const timeoutMs = Math.max(2 * this.pingIntervalMs, 1000);
      this.request('ping', {}, { idempotent: false, connectionBound: true, timeoutMs }).then(
        () => {
          if (this.socket === socket) this.schedulePing();
        },
        (err: DvsError) => {
          if (this.socket === socket && err.code === 'EDVSTIMEDOUT') socket?.destroy();
        },
      );
    });
  }

  private onClose(): void {
    const wasReady = this.state === 'ready';
    if (!wasReady && this.state === 'handshake') this.lastError ??= 'the server closed the connection during the handshake';
    this.socket = undefined;
    this.decoder = undefined;
    this.serverNonce = undefined;
    for (const t of [this.handshakeTimer, this.pingTimer]) if (t !== undefined) this.clock.clearTimer(t);
    this.handshakeTimer = this.pingTimer = undefined;
    if (this.state === 'closed') return;
    const lost = new DvsError('EDVSNOTCONN', 'connection to the store server lost before the reply: the outcome is unknown');
    const resend: Call[] = [];
    for (const c of this.inflight.values()) {
      if (c.idempotent && !c.connectionBound) {
        c.sent = false;
        resend.push(c);
      } else {
        this.settle(c, lost);
      }
    }
    this.inflight.clear();
    this.queue.unshift(...resend.sort((a, b) => a.id - b.id));
    this.holdProcess();
    if (this.fatal !== undefined) {
      this.state = 'failed';
      return;
    }
    this.state = 'connecting';
    if (wasReady) this.emit('disconnected', { error: new DvsError('EDVSNOTCONN', `connection to ${this.host}:${this.port} lost`) });
    const base = Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.reconnectTimer = this.clock.setTimer(delay, () => {
      this.reconnectTimer = undefined;
      this.open();
    });
  }

  /** Authentication failed: nothing will fix that by retrying. Every call fails with `err` from now on. */
  private failFatal(err: DvsError): void {
    this.fatal = err;
    for (const c of [...this.queue, ...this.inflight.values()]) this.settle(c, err);
    this.queue.length = 0;
    this.inflight.clear();
    for (const w of this.readyWaiters.splice(0)) w.reject(err);
    this.holdProcess();
    this.socket?.destroy();
  }
}
