/**
 * The embedded coordination backend: one daemon of a single-machine cluster serves its
 * `MemoryStore` over TCP (loopback by default) to the `StoreClient`s of the others. Peers
 * authenticate with an HMAC-SHA256 challenge on the cluster key; requests are answered in order;
 * watch events are pushed one revision per frame. Anything malformed gets a typed error, and a peer
 * that breaks the framing or the handshake gets a closed connection: never a crash or a hang.
 * Connections not yet authenticated live in a small pool of their own, with a short deadline and the
 * oldest evicted for a newcomer, so a flood of silent connections cannot lock authenticated clients
 * out (their cap is separate). Protocol and admission policy: docs/coordination.md.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { DvsError } from '../ipc/errors.js';
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from '../transport/framing.js';
import { MemoryStore, type WatchHandle } from './memory-store.js';
import { checkRevision } from './store-checks.js';
import {
  clientProof,
  clusterKeyBytes,
  isRecord,
  MAX_PREAUTH_BYTES,
  NONCE_BYTES,
  proofMatches,
  serverProof,
  STORE_PROTOCOL,
  STORE_PROTOCOL_VERSION,
  toWireError,
} from './store-protocol.js';
import type { WatchEvent } from './store.js';

export interface StoreServerOptions {
  /** Shared secret of the cluster (at least 16 bytes). */
  readonly clusterKey: string | Uint8Array;
  /** The store to serve; default a new MemoryStore. The hosting daemon uses it directly. */
  readonly store?: MemoryStore;
  /** Default 127.0.0.1: the embedded backend serves one machine. */
  readonly host?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Largest frame body in either direction. Default 16 MiB. */
  readonly maxFrameBytes?: number;
  /** A peer that has not authenticated within this time is disconnected. Default 3000 ms. */
  readonly handshakeTimeoutMs?: number;
  /** Connections not yet authenticated held at once; a newcomer beyond this evicts the oldest of them. Default 128. */
  readonly maxPendingConnections?: number;
  /** Authenticated connections held at once; one more that authenticates is refused with EDVSAGAIN. Default 1024. */
  readonly maxConnections?: number;
  /** Watches one connection may hold. Default 1024. */
  readonly maxWatchesPerConnection?: number;
  /** Unsent output a connection may accumulate before it is cut as too slow (it reconnects and resumes). Default 64 MiB. */
  readonly maxBufferedBytes?: number;
}

/** Counters for operators; `StoreServer.stats` returns a fresh copy. */
export interface StoreServerStats {
  /** Open now: authenticated, and pending (not yet authenticated). */
  readonly connections: { readonly open: number; readonly authenticated: number; readonly pending: number };
  /** Connections taken into the pending pool. */
  readonly accepted: number;
  /** Connections turned away: the server was closing, or the authenticated cap was reached. */
  readonly refused: number;
  /** Pending connections closed to make room for a newcomer. */
  readonly evicted: number;
  /** Handshakes that failed: a wrong proof, or no authentication within the deadline. */
  readonly handshakesFailed: { readonly auth: number; readonly timeout: number };
  /** Protocol errors that closed a connection: broken framing, a malformed frame, too many bytes before authentication. */
  readonly framesRefused: number;
  /** Connections cut because their unsent output exceeded `maxBufferedBytes`. */
  readonly overruns: number;
  /** Requests answered (successfully or with an error). */
  readonly requests: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

type Counters = { -readonly [K in Exclude<keyof StoreServerStats, 'connections' | 'handshakesFailed'>]: number } & {
  authFailures: number;
  handshakeTimeouts: number;
};

type ServerConfig = Required<Omit<StoreServerOptions, 'clusterKey' | 'store' | 'host' | 'port'>>;

const noop = (): void => undefined;

function checkWatchId(v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new DvsError('EDVSINVAL', `watch id must be a positive integer, got ${String(v)}`);
  return v;
}

interface ConnWatch {
  ready: boolean;
  readonly pending: [number, WatchEvent[]][];
  handle: WatchHandle | undefined;
}

class Connection {
  private readonly decoder: FrameDecoder;
  private readonly nonce = randomBytes(NONCE_BYTES);
  /** Authenticated; until then the connection belongs to the server's pending pool. */
  authed = false;
  private preauthBytes = 0;
  private closed = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly watches = new Map<number, ConnWatch>();

  constructor(
    private readonly server: StoreServer,
    readonly socket: Socket,
    private readonly key: Buffer,
    private readonly cfg: ServerConfig,
    private readonly counters: Counters,
  ) {
    this.decoder = new FrameDecoder({ maxFrameBytes: cfg.maxFrameBytes });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', noop);
    socket.on('close', () => this.teardown());
    this.handshakeTimer = setTimeout(() => {
      this.counters.handshakeTimeouts++;
      this.fail(new DvsError('EDVSTIMEDOUT', 'no authentication within the handshake timeout'));
    }, cfg.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  /** Sends the challenge; the peer answers with its proof. */
  start(): void {
    this.send({ t: 'hello', proto: STORE_PROTOCOL, v: STORE_PROTOCOL_VERSION, nonce: this.nonce, storeId: this.server.storeId });
  }

  /** Cuts the connection at once (the client reconnects and resumes). */
  destroy(): void {
    this.socket.destroy();
    this.teardown();
  }

  /** Closes a pending connection to make room for a newcomer; its socket goes as soon as the reason is written. */
  evict(): void {
    if (this.closed) return;
    this.counters.evicted++;
    this.say({ t: 'error', error: toWireError(new DvsError('EDVSAGAIN', 'evicted: too many connections awaiting authentication')) });
    this.teardown();
    this.socket.end(() => this.socket.destroy());
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.counters.bytesIn += chunk.byteLength;
    if (!this.authed) {
      this.preauthBytes += chunk.byteLength;
      if (this.preauthBytes > MAX_PREAUTH_BYTES) {
        this.counters.framesRefused++;
        this.fail(new DvsError('EDVSBADREQUEST', `more than ${MAX_PREAUTH_BYTES} bytes before authentication`));
        return;
      }
    }
    let frames: readonly unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.counters.framesRefused++;
      this.fail(err);
      return;
    }
    try {
      for (const f of frames) {
        if (this.closed) return;
        if (this.authed) this.onRequest(f);
        else this.onAuth(f);
      }
    } catch (err) {
      // Not expected (every request error is answered); still never let it escape the socket handler.
      this.counters.framesRefused++;
      this.fail(err);
    }
  }

  private onAuth(f: unknown): void {
    if (!isRecord(f) || f.t !== 'auth' || f.proto !== STORE_PROTOCOL || f.v !== STORE_PROTOCOL_VERSION || !(f.nonce instanceof Uint8Array) || f.nonce.byteLength !== NONCE_BYTES) {
      this.counters.framesRefused++;
      this.fail(new DvsError('EDVSBADREQUEST', `expected an auth frame of ${STORE_PROTOCOL}/${STORE_PROTOCOL_VERSION}`));
      return;
    }
    if (!proofMatches(clientProof(this.key, this.nonce, f.nonce), f.mac)) {
      this.counters.authFailures++;
      this.fail(new DvsError('EDVSACCES', 'authentication failed: wrong cluster key'));
      return;
    }
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    if (!this.server.promote(this)) {
      this.counters.refused++;
      this.fail(new DvsError('EDVSAGAIN', `the store server holds its maximum of ${this.cfg.maxConnections} authenticated connections`));
      return;
    }
    this.authed = true;
    this.send({ t: 'welcome', mac: serverProof(this.key, this.nonce, f.nonce), revision: this.server.store.revision });
  }

  private onRequest(f: unknown): void {
    const id = isRecord(f) ? f.id : undefined;
    if (!isRecord(f) || typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      // Without an id nothing can be answered: the peer broke the protocol.
      this.counters.framesRefused++;
      this.fail(new DvsError('EDVSBADREQUEST', 'a request must be a map with a non-negative integer id'));
      return;
    }
    this.counters.requests++;
    let after: (() => void) | undefined;
    let reply: Record<string, unknown>;
    try {
      const [result, then] = this.dispatch(f);
      after = then;
      reply = { id, ok: true, result: result === undefined ? null : result };
    } catch (err) {
      reply = { id, ok: false, error: toWireError(err) };
    }
    if (!this.send(reply) && reply.ok === true) {
      // The result does not fit in a frame (e.g. a huge getPrefix): answer with the reason instead.
      after = undefined;
      this.send({ id, ok: false, error: toWireError(new DvsError('EDVSMSGSIZE', `the result exceeds the frame limit of ${this.cfg.maxFrameBytes} bytes`)) });
    }
    after?.();
  }

  /** Runs one request; returns its result and, for a watch, what to do once the reply is sent. */
  private dispatch(f: Record<string, unknown>): [unknown, (() => void) | undefined] {
    const store = this.server.store;
    switch (f.op) {
      case 'ping':
        return [{ revision: store.revision }, undefined];
      case 'get':
        return [store.getSync(f.key as string) ?? null, undefined];
      case 'getPrefix':
        return [store.rangeSync(f.prefix as string), undefined];
      case 'put':
        return [store.putSync(f.key as string, f.value as never, { lease: f.lease as number }), undefined];
      case 'delete':
        return [store.deleteSync(f.key as string), undefined];
      case 'txn':
        return [store.txnSync({ compare: f.compare as never, success: f.success as never, failure: f.failure as never }), undefined];
      case 'grantLease':
        return [{ lease: store.grantSync(f.ttlMs as number) }, undefined];
      case 'keepAlive':
        return [{ ttlMs: store.keepAliveSync(f.lease as number) }, undefined];
      case 'revokeLease':
        store.revokeSync(f.lease as number);
        return [null, undefined];
      case 'watch':
        return this.watch(f);
      case 'unwatch': {
        const wid = checkWatchId(f.watch);
        const w = this.watches.get(wid);
        if (w === undefined) throw new DvsError('EDVSNOENT', `no watch ${wid} on this connection`);
        w.handle?.cancel();
        this.watches.delete(wid);
        return [null, undefined];
      }
      default:
        throw new DvsError('EDVSNOSYS', `unknown op ${typeof f.op === 'string' ? f.op.slice(0, 64) : String(f.op)}`);
    }
  }

  private watch(f: Record<string, unknown>): [unknown, () => void] {
    const wid = checkWatchId(f.watch);
    if (this.watches.has(wid)) throw new DvsError('EDVSEXIST', `watch ${wid} already exists on this connection`);
    if (this.watches.size >= this.cfg.maxWatchesPerConnection) throw new DvsError('EDVSNOSPC', `at most ${this.cfg.maxWatchesPerConnection} watches per connection`);
    const from = f.fromRevision === undefined || f.fromRevision === null ? undefined : checkRevision(f.fromRevision, 'fromRevision');
    const w: ConnWatch = { ready: false, pending: [], handle: undefined };
    this.watches.set(wid, w);
    try {
      // Replayed history arrives synchronously, before the reply: hold it until the reply is out.
      w.handle = this.server.store.watchBatches(f.prefix as string, from, (rev, events) => {
        if (w.ready) this.sendEvents(wid, rev, events);
        else w.pending.push([rev, events]);
      });
    } catch (err) {
      this.watches.delete(wid);
      throw err;
    }
    const revision = w.handle.revision;
    return [
      { watch: wid, revision },
      () => {
        w.ready = true;
        for (const [rev, events] of w.pending.splice(0)) this.sendEvents(wid, rev, events);
      },
    ];
  }

  /** One revision per frame; a revision too big for one frame is split, the last part unmarked. */
  private sendEvents(wid: number, revision: number, events: WatchEvent[]): void {
    if (this.closed || !this.watches.has(wid)) return;
    if (this.send({ watch: wid, revision, events })) return;
    let part: WatchEvent[] = [];
    let bytes = 0;
    const budget = Math.floor(this.cfg.maxFrameBytes / 2);
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      const size = encodeFrame(ev, { maxFrameBytes: Number.MAX_SAFE_INTEGER }).byteLength;
      if (part.length > 0 && bytes + size > budget) {
        if (!this.send({ watch: wid, revision, events: part, partial: true })) return this.cut('a watch event exceeds the frame limit');
        part = [];
        bytes = 0;
      }
      part.push(ev);
      bytes += size;
    }
    if (!this.send({ watch: wid, revision, events: part })) this.cut('a watch event exceeds the frame limit');
  }

  /** Writes one frame; false if it exceeds the frame limit (nothing written). */
  private send(frame: Record<string, unknown>): boolean {
    if (this.closed) return true;
    let bytes: Buffer;
    try {
      bytes = encodeFrame(frame, { maxFrameBytes: this.cfg.maxFrameBytes });
    } catch (err) {
      if (err instanceof DvsError && err.code === 'EDVSMSGSIZE') return false;
      throw err;
    }
    this.socket.write(bytes);
    this.counters.bytesOut += bytes.byteLength;
    if (this.socket.writableLength > this.cfg.maxBufferedBytes) this.cut(`more than ${this.cfg.maxBufferedBytes} bytes of output pending`);
    return true;
  }

  private cut(reason: string): void {
    this.counters.overruns++;
    this.fail(new DvsError('EDVSOVERRUN', reason));
  }

  /** Writes a last frame before closing, best effort. */
  private say(frame: Record<string, unknown>): void {
    try {
      this.send(frame);
    } catch {
      // nothing more to say
    }
  }

  /** Tells the peer why (best effort) and closes the connection. */
  private fail(err: unknown): void {
    if (this.closed) return;
    this.say({ t: 'error', error: toWireError(err) });
    this.teardown();
    this.socket.end();
    // A peer that does not read must not keep the socket open.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    for (const w of this.watches.values()) w.handle?.cancel();
    this.watches.clear();
    this.server.forget(this);
  }
}

export class StoreServer {
  readonly store: MemoryStore;
  /** Identifies the store served (its data); a client that reconnects to a different one resynchronises. */
  readonly storeId: string;
  private readonly key: Buffer;
  private readonly host: string;
  private readonly port: number;
  private readonly cfg: ServerConfig;
  private readonly server: Server;
  /** Not yet authenticated, oldest first (a Set keeps insertion order). */
  private readonly pending = new Set<Connection>();
  private readonly authed = new Set<Connection>();
  private readonly counters: Counters = {
    accepted: 0,
    refused: 0,
    evicted: 0,
    authFailures: 0,
    handshakeTimeouts: 0,
    framesRefused: 0,
    overruns: 0,
    requests: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  private readonly ownsStore: boolean;
  private listening = false;
  private closed = false;

  constructor(opts: StoreServerOptions) {
    this.key = clusterKeyBytes(opts.clusterKey);
    this.store = opts.store ?? new MemoryStore();
    this.ownsStore = opts.store === undefined;
    this.storeId = this.store.storeId;
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? 0;
    const maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (maxFrameBytes < this.store.limits.maxValueBytes + 2 * this.store.limits.maxKeyBytes + 1024) {
      throw new DvsError('EDVSINVAL', `maxFrameBytes (${maxFrameBytes}) must hold the largest value and key of the store`);
    }
    this.cfg = {
      maxFrameBytes,
      handshakeTimeoutMs: positive('handshakeTimeoutMs', opts.handshakeTimeoutMs, 3000),
      maxPendingConnections: positive('maxPendingConnections', opts.maxPendingConnections, 128),
      maxConnections: positive('maxConnections', opts.maxConnections, 1024),
      maxWatchesPerConnection: opts.maxWatchesPerConnection ?? 1024,
      maxBufferedBytes: opts.maxBufferedBytes ?? 64 * 1024 * 1024,
    };
    this.server = createServer((socket) => this.accept(socket));
    this.server.on('error', noop);
  }

  /** Starts listening; resolves with the bound address (the port when 0 was asked). */
  listen(): Promise<{ host: string; port: number }> {
    if (this.closed) return Promise.reject(new DvsError('EDVSSHUTDOWN', 'store server closed'));
    if (this.listening) return Promise.resolve(this.address());
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new DvsError('EDVSADDRINUSE', `cannot listen on ${this.host}:${this.port}: ${err.message}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen(this.port, this.host, () => {
        this.server.off('error', onError);
        this.listening = true;
        resolve(this.address());
      });
    });
  }

  address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo | null;
    if (a === null) throw new DvsError('EDVSNOTCONN', 'store server is not listening');
    return { host: a.address, port: a.port };
  }

  get connectionCount(): number {
    return this.pending.size + this.authed.size;
  }

  /** A snapshot of the counters. */
  get stats(): StoreServerStats {
    const { authFailures, handshakeTimeouts, ...rest } = this.counters;
    return {
      connections: { open: this.connectionCount, authenticated: this.authed.size, pending: this.pending.size },
      ...rest,
      handshakesFailed: { auth: authFailures, timeout: handshakeTimeouts },
    };
  }

  /** Cuts every connection (clients reconnect and resume their watches). Returns how many. */
  dropConnections(): number {
    const all = [...this.pending, ...this.authed];
    for (const c of all) c.destroy();
    return all.length;
  }

  /** Stops listening, closes every connection and, if the server created its store, closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.dropConnections();
    if (this.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.ownsStore) this.store.closeSync();
  }

  /** @internal A pending connection authenticated: moves it to the authenticated set, false if that is full. */
  promote(c: Connection): boolean {
    if (!this.pending.has(c) || this.authed.size >= this.cfg.maxConnections) return false;
    this.pending.delete(c);
    this.authed.add(c);
    return true;
  }

  /** @internal */
  forget(c: Connection): void {
    if (!this.pending.delete(c)) this.authed.delete(c);
  }

  private accept(socket: Socket): void {
    if (this.closed) {
      this.counters.refused++;
      socket.on('error', noop);
      socket.destroy();
      return;
    }
    // A newcomer always gets its chance: the connection that has waited longest without
    // authenticating makes room. An honest client authenticates within a round trip of its hello.
    if (this.pending.size >= this.cfg.maxPendingConnections) this.pending.values().next().value?.evict();
    this.counters.accepted++;
    const c = new Connection(this, socket, this.key, this.cfg, this.counters);
    this.pending.add(c);
    c.start();
  }
}

function positive(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new DvsError('EDVSINVAL', `${name} must be a positive integer, got ${String(v)}`);
  return v;
}
