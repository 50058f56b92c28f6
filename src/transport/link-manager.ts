/**
 * LinkManager: a daemon's node links. One logical link per peer pair over TCP (or mutual TLS):
 * the node with the lower id dials, the higher one accepts. Connections authenticate (cluster-key
 * HMAC handshake, or the certificate chain) before anything else, then carry kernel frames with
 * sequence numbers, cumulative acks, resend after reconnect, batching and heartbeats.
 * Implements KernelTransport. See docs/link-protocol.md.
 */
import net from 'node:net';
import tls from 'node:tls';
import { DvsError } from '../ipc/errors.js';
import type { KernelFrame, KernelTransport } from '../kernel/frames.js';
import {
  handshakeMac,
  LINK_PROTOCOL_VERSION,
  MAC_BYTES,
  MAX_NODE_ID,
  newNonce,
  NONCE_BYTES,
  ROLE_ACCEPTOR,
  ROLE_DIALER,
  verifyHandshakeMac,
  type HandshakeParams,
} from './auth.js';
import { parseLinkFrame, type HelloFrame, type SessionToken, type WelcomeFrame } from './frame-schema.js';
import { DEFAULT_MAX_FRAME_BYTES, type FramingOptions } from './framing.js';
import { LinkConn, type ConnEnd } from './link-conn.js';
import { encodeLinkFrame } from './link-wire.js';
import { PeerLink, type PeerLinkHost, type PeerLinkStats } from './link.js';
import { SocketReads } from './socket-reads.js';
import { checkPeerNode } from './tls-identity.js';
import { silentLogger, type Logger } from '../runtime/logger.js';

export interface LinkTiming {
  /** A ping goes out after this long without sending anything. */
  readonly heartbeatMs: number;
  /** Nothing heard for this long: 'suspect' (the connection is dropped and re-made). */
  readonly suspectMs: number;
  /** Nothing heard for this long: 'down' (the session and its resend queue are dropped). */
  readonly deadMs: number;
  /** First delay between connection attempts; it doubles up to max(reconnectMs, min(1000, 2 × heartbeatMs)). */
  readonly reconnectMs: number;
  /** Bound on a whole handshake (TCP/TLS connect included). */
  readonly handshakeMs: number;
}

export const DEFAULT_LINK_TIMING: LinkTiming = Object.freeze({ heartbeatMs: 500, suspectMs: 1500, deadMs: 3000, reconnectMs: 100, handshakeMs: 3000 });

/** pino-compatible: `logger.info(fields, message)`. */
export type LinkLogger = Logger;

export interface LinkTlsOptions {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** The cluster CA(s); a peer must present a certificate signed by it that names the node it claims to be (see tls-identity.ts). */
  readonly ca: string | Buffer | ReadonlyArray<string | Buffer>;
}

export interface PeerAddress {
  readonly nodeId: number;
  readonly host: string;
  readonly port: number;
}

export type PeerReport = 'up' | 'suspect' | 'down';

export interface LinkManagerOptions {
  readonly nodeId: number;
  /** Changes on each daemon start (e.g. `Date.now()`); a safe non-negative integer. */
  readonly incarnation: number;
  /** Shared secret of the cluster (at least 16 bytes). Required unless `tls` is given; with both, both are checked. */
  readonly clusterKey?: Uint8Array;
  /** Mutual TLS: the certificate chain authenticates the peer. */
  readonly tls?: LinkTlsOptions;
  readonly listen: { readonly host: string; readonly port: number };
  readonly timing?: Partial<LinkTiming>;
  /** LZ4-compress frame bodies of at least this many bytes (when smaller); undefined = never. */
  readonly compressMinBytes?: number;
  /** Largest frame body accepted or sent. Must be the same on every node. Default 16 MiB. */
  readonly maxFrameBytes?: number;
  /** Kernel frames of one event-loop turn are batched into data frames of up to this size. Default 64 KiB. */
  readonly batchMaxBytes?: number;
  /** Unacknowledged data frames (and bytes) in flight per peer before sending waits. Default 4096 / 32 MiB. */
  readonly windowFrames?: number;
  readonly windowBytes?: number;
  /** Unsent bytes per peer beyond which `backpressure` makes notifiers wait (default 8 MiB). */
  readonly maxQueuedBytes?: number;
  /** Inbound connections still in their handshake, at most. Default 64. */
  readonly maxPendingHandshakes?: number;
  readonly logger?: LinkLogger;
  /** A kernel frame from peer `from`, in order, exactly once per session. */
  readonly onFrame: (from: number, frame: KernelFrame) => void;
  /** A peer's state changed; `incarnation` is the peer's (the old one for 'down'), when known. */
  readonly onPeerState: (node: number, state: PeerReport, incarnation?: number) => void;
}

export interface LinkManagerStats {
  readonly nodeId: number;
  readonly incarnation: number;
  readonly peers: PeerLinkStats[];
  /** Inbound TCP connections accepted. */
  readonly accepted: number;
  /** Connections (either direction) closed before their handshake completed, whatever the reason. */
  readonly handshakeFailures: number;
  /** Wrong key, bad MAC or certificate refused (either direction). */
  readonly authFailures: number;
  /** Protocol violations before authentication (malformed, oversized or unexpected frames). */
  readonly protocolErrors: number;
  readonly handshakeTimeouts: number;
  /** Well-formed but refused: unknown node, wrong dialing direction, wrong version, too many pending. */
  readonly refused: number;
  /** Kernel frames sent to a node that is not a peer (dropped; reported 'down'). */
  readonly unknownPeerDrops: number;
  /** onFrame or onPeerState callbacks that threw (logged and ignored). */
  readonly callbackErrors: number;
  /** Inbound connections currently in their handshake. */
  readonly pendingHandshakes: number;
}

/** Handshake frames are tiny; before authentication nothing bigger is buffered. */
const HANDSHAKE_MAX_FRAME_BYTES = 4096;


function refuse(msg: string): never {
  throw new DvsError('EDVSCONNREFUSED', msg);
}

function violation(msg: string): never {
  throw new DvsError('EDVSBADREQUEST', msg);
}

function isTlsAuthError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /CERT|SSL|UNABLE_TO|SELF_SIGNED|TLS/.test(code);
}

export class LinkManager implements KernelTransport {
  readonly nodeId: number;
  readonly incarnation: number;
  private readonly opts: LinkManagerOptions;
  private readonly timing: LinkTiming;
  private readonly key: Uint8Array | undefined;
  private readonly log: LinkLogger;
  private readonly host: PeerLinkHost;
  private readonly maxFrameBytes: number;
  private readonly peers = new Map<number, PeerLink>();
  private readonly inbound = new Set<LinkConn>();
  private server: net.Server | undefined;
  private tick: NodeJS.Timeout | undefined;
  private tickMs = 0;
  private lastTick = 0;
  private skippedTick = false;
  private started = false;
  private closed = false;
  private address: { host: string; port: number } | undefined;
  private readonly unknownReports = new Set<number>();
  private readonly counters = {
    accepted: 0,
    handshakeFailures: 0,
    authFailures: 0,
    protocolErrors: 0,
    handshakeTimeouts: 0,
    refused: 0,
    unknownPeerDrops: 0,
    callbackErrors: 0,
  };

  constructor(opts: LinkManagerOptions) {
    if (!Number.isSafeInteger(opts.nodeId) || opts.nodeId < 0 || opts.nodeId > MAX_NODE_ID) throw new DvsError('EDVSBADNODEID', `node id ${String(opts.nodeId)} outside 0..${MAX_NODE_ID}`);
    if (!Number.isSafeInteger(opts.incarnation) || opts.incarnation < 0) throw new DvsError('EDVSINVAL', 'incarnation must be a non-negative safe integer');
    if (opts.clusterKey === undefined && opts.tls === undefined) throw new DvsError('EDVSINVAL', 'a node link needs a cluster key or TLS');
    if (opts.clusterKey !== undefined && opts.clusterKey.byteLength < 16) throw new DvsError('EDVSINVAL', 'the cluster key must be at least 16 bytes');
    const timing = { ...DEFAULT_LINK_TIMING, ...opts.timing };
    for (const [k, v] of Object.entries(timing)) if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new DvsError('EDVSINVAL', `timing.${k} must be a positive number`);
    if (!(timing.heartbeatMs < timing.suspectMs && timing.suspectMs < timing.deadMs)) throw new DvsError('EDVSINVAL', 'timing needs heartbeatMs < suspectMs < deadMs');
    this.nodeId = opts.nodeId;
    this.incarnation = opts.incarnation;
    this.opts = opts;
    this.timing = timing;
    this.key = opts.clusterKey === undefined ? undefined : Buffer.from(opts.clusterKey);
    this.log = opts.logger ?? silentLogger;
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    const framing: FramingOptions = { maxFrameBytes: this.maxFrameBytes, compressMinBytes: opts.compressMinBytes };
    this.host = {
      framing,
      maxFrameBytes: this.maxFrameBytes,
      batchMaxBytes: Math.min(opts.batchMaxBytes ?? 64 * 1024, this.maxFrameBytes - 64),
      windowFrames: opts.windowFrames ?? 4096,
      windowBytes: opts.windowBytes ?? 32 * 1024 * 1024,
      maxQueuedBytes: opts.maxQueuedBytes ?? 8 * 1024 * 1024,
      isClosed: () => this.closed,
      deliver: (from, frame) => this.deliver(from, frame),
      report: (node, state, inc) => this.report(node, state, inc),
      log: (level, msg, fields) => this.log[level]({ node: this.nodeId, ...fields }, msg),
    };
  }

  // ---- public API ----------------------------------------------------------------------------

  /** Listens, then starts dialing the peers this node dials. Resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.closed) throw new DvsError('EDVSSHUTDOWN', 'link manager closed');
    if (this.started) throw new DvsError('EDVSALREADY', 'link manager already started');
    this.started = true;
    const server = this.opts.tls === undefined ? net.createServer((s) => this.onInbound(s)) : this.createTlsServer(this.opts.tls);
    this.server = server;
    server.on('error', (err) => this.log.error({ node: this.nodeId, err }, 'link server error'));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new DvsError(err.code === 'EADDRINUSE' ? 'EDVSADDRINUSE' : 'EDVSADDRNOTAVAIL', `cannot listen on ${this.opts.listen.host}:${this.opts.listen.port}: ${err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const addr = server.address() as net.AddressInfo;
    this.address = { host: addr.address, port: addr.port };
    const t = this.timing;
    this.tickMs = Math.max(5, Math.min(250, Math.floor(Math.min(t.heartbeatMs, t.suspectMs) / 4)));
    this.lastTick = Date.now();
    this.tick = setInterval(() => this.onTick(), this.tickMs);
    this.tick.unref();
    const now = Date.now();
    for (const peer of this.peers.values()) {
      if (peer.state === 'connecting') peer.heard(now);
      this.dial(peer);
    }
    this.log.info({ node: this.nodeId, incarnation: this.incarnation, ...this.address, tls: this.opts.tls !== undefined }, 'links listening');
    return this.address;
  }

  /**
   * The whole set of peers: this node dials those with a higher id and accepts only those listed
   * with a lower one. Peers no longer listed are dropped (reported 'down' unless already down).
   */
  setPeers(peers: readonly PeerAddress[]): void {
    if (this.closed) return;
    const wanted = new Map<number, PeerAddress>();
    for (const p of peers) {
      if (!Number.isSafeInteger(p.nodeId) || p.nodeId < 0 || p.nodeId > MAX_NODE_ID) throw new DvsError('EDVSBADNODEID', `peer node id ${String(p.nodeId)}`);
      if (!Number.isInteger(p.port) || p.port < 0 || p.port > 65535 || typeof p.host !== 'string') throw new DvsError('EDVSINVAL', `bad address for peer ${p.nodeId}`);
      if (p.nodeId !== this.nodeId) wanted.set(p.nodeId, p);
    }
    for (const [node, peer] of this.peers) {
      if (wanted.has(node)) continue;
      this.peers.delete(node);
      const state = peer.state;
      peer.shutdown();
      if (state !== 'down') this.report(node, 'down', peer.peer?.inc);
    }
    const now = Date.now();
    for (const [node, addr] of wanted) {
      let peer = this.peers.get(node);
      if (peer === undefined) {
        peer = new PeerLink(node, this.host, now);
        this.peers.set(node, peer);
      }
      peer.host = addr.host;
      peer.port = addr.port;
      if (this.started) this.dial(peer);
    }
  }

  /** KernelTransport: queue a frame for `node`. Dropped (and counted) when the peer is down or unknown. */
  send(node: number, frame: KernelFrame): void {
    if (this.closed) return;
    const peer = this.peers.get(node);
    if (peer === undefined) {
      this.counters.unknownPeerDrops++;
      if (!this.unknownReports.has(node)) {
        this.unknownReports.add(node);
        queueMicrotask(() => {
          this.unknownReports.delete(node);
          if (!this.closed && !this.peers.has(node)) this.report(node, 'down', undefined);
        });
      }
      return;
    }
    peer.send(frame);
  }

  stats(): LinkManagerStats {
    return {
      nodeId: this.nodeId,
      incarnation: this.incarnation,
      peers: [...this.peers.values()].sort((a, b) => a.node - b.node).map((p) => p.stats()),
      ...this.counters,
      pendingHandshakes: this.inbound.size,
    };
  }

  /** KernelTransport.backpressure: a promise while `node`'s unsent frames exceed maxQueuedBytes, until half of that drained. */
  backpressure(node: number): Promise<void> | undefined {
    return this.peers.get(node)?.whenRoom();
  }

  /** The state of one peer, or undefined for a node that is not a peer. */
  peerState(node: number): PeerLinkStats | undefined {
    return this.peers.get(node)?.stats();
  }

  /** Ends every socket and timer; no further callbacks. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.tick !== undefined) clearInterval(this.tick);
    this.tick = undefined;
    for (const peer of this.peers.values()) peer.shutdown();
    for (const conn of this.inbound) conn.end('shutdown');
    this.inbound.clear();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined && server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.log.info({ node: this.nodeId }, 'links closed');
  }

  // ---- callbacks -----------------------------------------------------------------------------

  private deliver(from: number, frame: KernelFrame): void {
    try {
      this.opts.onFrame(from, frame);
    } catch (err) {
      this.counters.callbackErrors++;
      this.log.error({ node: this.nodeId, from, kind: frame.k, err }, 'onFrame threw');
    }
  }

  private report(node: number, state: PeerReport, inc: number | undefined): void {
    if (this.closed) return;
    this.log[state === 'up' ? 'info' : 'warn']({ node: this.nodeId, peer: node, state, incarnation: inc }, `peer ${state}`);
    try {
      this.opts.onPeerState(node, state, inc);
    } catch (err) {
      this.counters.callbackErrors++;
      this.log.error({ node: this.nodeId, peer: node, state, err }, 'onPeerState threw');
    }
  }

  // ---- liveness ------------------------------------------------------------------------------

  private onTick(): void {
    if (this.closed) return;
    const now = Date.now();
    const t = this.timing;
    // After a stall of our own event loop (GC, a long synchronous task) timers run before the
    // input that waited meanwhile: judge the peers one tick later, once that input is read.
    const stalled = now - this.lastTick > 2 * this.tickMs + 100 && !this.skippedTick;
    this.skippedTick = stalled;
    this.lastTick = now;
    for (const peer of [...this.peers.values()]) {
      if (this.closed) return;
      if (!stalled) peer.check(now, t.suspectMs, t.deadMs);
      if (peer.conn !== undefined && now - peer.lastSent >= t.heartbeatMs) peer.ping(now);
    }
  }

  // ---- handshake: shared pieces --------------------------------------------------------------

  private params(dialerNonce: Uint8Array, acceptorNonce: Uint8Array, dialer: number, acceptor: number, dialerInc: number, acceptorInc: number): HandshakeParams {
    return { version: LINK_PROTOCOL_VERSION, dialerNonce, acceptorNonce, dialerNode: dialer, acceptorNode: acceptor, dialerIncarnation: dialerInc, acceptorIncarnation: acceptorInc };
  }

  private proof(role: number, p: HandshakeParams): Buffer {
    return this.key === undefined ? Buffer.alloc(0) : handshakeMac(this.key, role, p);
  }

  private checkProof(role: number, p: HandshakeParams, mac: Uint8Array): void {
    if (this.key === undefined) {
      if (mac.byteLength !== 0) throw new DvsError('EDVSACCES', 'peer sent a MAC but this node has no cluster key');
      return;
    }
    if (!verifyHandshakeMac(this.key, role, p, mac)) throw new DvsError('EDVSACCES', 'handshake MAC does not verify');
  }

  private countFailure(why: ConnEnd, err: unknown, peer: PeerLink | undefined, where: string): void {
    if (why === 'shutdown' || why === 'replaced') return;
    this.counters.handshakeFailures++;
    const authErr = why === 'auth' || isTlsAuthError(err);
    if (authErr) {
      this.counters.authFailures++;
      if (peer !== undefined) peer.counters.authFailures++;
    } else if (why === 'protocol') this.counters.protocolErrors++;
    else if (why === 'timeout') this.counters.handshakeTimeouts++;
    else if (why === 'refused') this.counters.refused++;
    const msg = err instanceof Error ? err.message : undefined;
    this.log[authErr || why === 'protocol' ? 'warn' : 'debug']({ node: this.nodeId, peer: peer?.node, why, err: msg }, `${where} handshake failed`);
  }

  /** Hands an authenticated connection to its peer and routes its traffic there. */
  private adopt(peer: PeerLink, conn: LinkConn, peerToken: SessionToken, resume: boolean, peerAck: number): void {
    conn.onValue = (v) => this.onLinkValue(peer, conn, v);
    conn.onEnd = (why, err) => this.onLinkEnd(peer, conn, why, err);
    conn.trust();
    peer.establish(conn, peerToken, resume, peerAck, Date.now());
    this.log.debug({ node: this.nodeId, peer: peer.node, resume, incarnation: peerToken.inc }, 'link established');
  }

  private onLinkValue(peer: PeerLink, conn: LinkConn, v: unknown): void {
    if (peer.conn !== conn || this.closed) return;
    const f = parseLinkFrame(v, NONCE_BYTES, MAC_BYTES);
    switch (f.t) {
      case 'data':
        peer.onData(f);
        return;
      case 'ack':
        peer.heard(Date.now());
        peer.onAck(f.a);
        return;
      case 'ping':
        peer.heard(Date.now());
        return;
      default:
        violation(`unexpected ${f.t} on an established link`);
    }
  }

  private onLinkEnd(peer: PeerLink, conn: LinkConn, why: ConnEnd, err: unknown): void {
    if (why === 'protocol') this.log.warn({ node: this.nodeId, peer: peer.node, err: err instanceof Error ? err.message : undefined }, 'link protocol violation, connection closed');
    else this.log.debug({ node: this.nodeId, peer: peer.node, why }, 'link connection ended');
    peer.detach(conn, why);
    if (why !== 'replaced' && why !== 'shutdown') this.scheduleDial(peer, true);
  }

  // ---- handshake: dialing side ---------------------------------------------------------------

  private dials(peer: PeerLink): boolean {
    return peer.node > this.nodeId && peer.host !== undefined && peer.port !== undefined && this.peers.get(peer.node) === peer;
  }

  private scheduleDial(peer: PeerLink, soon: boolean): void {
    if (this.closed || !this.dials(peer) || peer.reconnectTimer !== undefined || peer.conn !== undefined || peer.pending !== undefined) return;
    const base = this.timing.reconnectMs;
    const cap = Math.max(base, Math.min(1000, 2 * this.timing.heartbeatMs));
    const delay = soon && peer.reconnectAttempts === 0 ? 0 : Math.min(base * 2 ** Math.min(peer.reconnectAttempts, 16), cap);
    peer.reconnectAttempts++;
    peer.reconnectTimer = setTimeout(() => {
      peer.reconnectTimer = undefined;
      this.dial(peer);
    }, delay);
    peer.reconnectTimer.unref();
  }

  private dial(peer: PeerLink): void {
    if (this.closed || !this.started || !this.dials(peer) || peer.conn !== undefined || peer.pending !== undefined || peer.reconnectTimer !== undefined) return;
    const tlsOpts = this.opts.tls;
    const host = peer.host!;
    const port = peer.port!;
    // A plain TCP socket we dial can read through onread (one reused buffer, no stream event per
    // read); TLS sockets and the sockets we accept cannot.
    const reads = tlsOpts === undefined ? new SocketReads() : undefined;
    const socket =
      tlsOpts === undefined
        ? net.connect({ host, port, onread: reads!.onread })
        : tls.connect({ host, port, key: tlsOpts.key, cert: tlsOpts.cert, ca: tlsOpts.ca as string | Buffer | Array<string | Buffer>, rejectUnauthorized: true, checkServerIdentity: () => undefined });
    const conn = new LinkConn(socket, this.maxFrameBytes, reads);
    peer.pending = conn;
    const timer = setTimeout(() => conn.end('timeout'), this.timing.handshakeMs);
    timer.unref();
    const nonce = newNonce();
    let stage: 'connect' | 'welcome' | 'ready' | 'done' = 'connect';
    let welcome: WelcomeFrame | undefined;
    let snapshot: { epoch: number; view: SessionToken | null; ack: number } | undefined;

    socket.once(tlsOpts === undefined ? 'connect' : 'secureConnect', () => {
      if (!conn.open) return;
      if (tlsOpts !== undefined) {
        try {
          checkPeerNode(socket as tls.TLSSocket, peer.node);
        } catch (err) {
          conn.end('auth', err);
          return;
        }
      }
      stage = 'welcome';
      conn.write(encodeLinkFrame({ t: 'hello', v: LINK_PROTOCOL_VERSION, from: this.nodeId, to: peer.node, inc: this.incarnation, nonce }, this.host.framing));
    });

    conn.onValue = (v) => {
      const f = parseLinkFrame(v, NONCE_BYTES, MAC_BYTES);
      if (stage === 'welcome' && f.t === 'welcome') {
        if (f.v !== LINK_PROTOCOL_VERSION) refuse(`peer speaks link protocol ${f.v}`);
        if (f.from !== peer.node || f.to !== this.nodeId) refuse(`peer at ${host}:${port} is node ${f.from} (expected ${peer.node}) talking to ${f.to}`);
        const p = this.params(nonce, f.nonce, this.nodeId, peer.node, this.incarnation, f.inc);
        this.checkProof(ROLE_ACCEPTOR, p, f.mac);
        welcome = f;
        snapshot = { epoch: peer.epoch, view: peer.view(), ack: peer.lastSeqReceived };
        stage = 'ready';
        conn.write(encodeLinkFrame({ t: 'auth', mac: this.proof(ROLE_DIALER, p), ...snapshot }, this.host.framing));
        return;
      }
      if (stage === 'ready' && f.t === 'ready' && welcome !== undefined && snapshot !== undefined) {
        clearTimeout(timer);
        stage = 'done';
        if (peer.pending === conn) peer.pending = undefined;
        if (this.closed || this.peers.get(peer.node) !== peer || peer.epoch !== snapshot.epoch || peer.lastSeqReceived !== snapshot.ack || peer.view() !== snapshot.view) {
          // The session changed while we were shaking hands: start over.
          conn.end('replaced');
          this.scheduleDial(peer, true);
          return;
        }
        const peerToken = { inc: welcome.inc, epoch: f.epoch };
        const resume = PeerLink.resumes({ inc: this.incarnation, epoch: snapshot.epoch }, snapshot.view, peerToken, f.view);
        this.adopt(peer, conn, peerToken, resume, f.ack);
        return;
      }
      violation(`unexpected ${f.t} while waiting for ${stage}`);
    };

    conn.onEnd = (why, err) => {
      clearTimeout(timer);
      if (peer.pending === conn) peer.pending = undefined;
      if (stage === 'connect' && why === 'closed' && !isTlsAuthError(err)) {
        this.log.debug({ node: this.nodeId, peer: peer.node, err: err instanceof Error ? err.message : undefined }, 'connect failed');
      } else {
        this.countFailure(why, err, peer, 'outbound');
      }
      this.scheduleDial(peer, false);
    };
  }

  // ---- handshake: accepting side -------------------------------------------------------------

  private createTlsServer(o: LinkTlsOptions): tls.Server {
    const server = tls.createServer(
      { key: o.key, cert: o.cert, ca: o.ca as string | Buffer | Array<string | Buffer>, requestCert: true, rejectUnauthorized: true, handshakeTimeout: this.timing.handshakeMs },
      (s) => this.onInbound(s),
    );
    server.on('tlsClientError', (err) => {
      this.counters.accepted++;
      this.countFailure('auth', err, undefined, 'inbound TLS');
    });
    return server;
  }

  private onInbound(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.counters.accepted++;
    if (this.inbound.size >= (this.opts.maxPendingHandshakes ?? 64)) {
      this.counters.refused++;
      this.counters.handshakeFailures++;
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const conn = new LinkConn(socket, HANDSHAKE_MAX_FRAME_BYTES);
    this.inbound.add(conn);
    const timer = setTimeout(() => conn.end('timeout'), this.timing.handshakeMs);
    timer.unref();
    const nonce = newNonce();
    let stage: 'hello' | 'auth' | 'done' = 'hello';
    let hello: HelloFrame | undefined;
    let peerOf: PeerLink | undefined;

    conn.onValue = (v) => {
      const f = parseLinkFrame(v, NONCE_BYTES, MAC_BYTES);
      if (stage === 'hello' && f.t === 'hello') {
        if (f.v !== LINK_PROTOCOL_VERSION) refuse(`link protocol ${f.v} not supported`);
        if (f.to !== this.nodeId) refuse(`hello for node ${f.to}`);
        if (f.from >= this.nodeId) refuse(`node ${f.from} must accept, not dial, node ${this.nodeId}`);
        const peer = this.peers.get(f.from);
        if (peer === undefined) refuse(`node ${f.from} is not a peer`);
        if (this.opts.tls !== undefined) checkPeerNode(conn.socket as tls.TLSSocket, f.from);
        hello = f;
        peerOf = peer;
        stage = 'auth';
        const p = this.params(f.nonce, nonce, f.from, this.nodeId, f.inc, this.incarnation);
        conn.write(encodeLinkFrame({ t: 'welcome', v: LINK_PROTOCOL_VERSION, from: this.nodeId, to: f.from, inc: this.incarnation, nonce, mac: this.proof(ROLE_ACCEPTOR, p) }, this.host.framing));
        return;
      }
      if (stage === 'auth' && f.t === 'auth' && hello !== undefined) {
        const p = this.params(hello.nonce, nonce, hello.from, this.nodeId, hello.inc, this.incarnation);
        this.checkProof(ROLE_DIALER, p, f.mac);
        // The dialer must wait for `ready`: nothing may follow `auth` in what we hold.
        if (!conn.setMaxFrameBytes(this.maxFrameBytes)) violation('data before ready');
        const peer = this.peers.get(hello.from);
        if (peer === undefined || peer !== peerOf) refuse(`node ${hello.from} is no longer a peer`);
        clearTimeout(timer);
        stage = 'done';
        this.inbound.delete(conn);
        const peerToken = { inc: hello.inc, epoch: f.epoch };
        const myToken = { inc: this.incarnation, epoch: peer.epoch };
        const myView = peer.view();
        const resume = PeerLink.resumes(myToken, myView, peerToken, f.view);
        conn.write(encodeLinkFrame({ t: 'ready', epoch: peer.epoch, view: myView, ack: resume ? peer.lastSeqReceived : 0 }, this.host.framing));
        this.adopt(peer, conn, peerToken, resume, f.ack);
        return;
      }
      violation(`unexpected ${f.t} while waiting for ${stage}`);
    };

    conn.onEnd = (why, err) => {
      clearTimeout(timer);
      this.inbound.delete(conn);
      if (stage !== 'done') this.countFailure(why, err, undefined, 'inbound');
    };
  }
}
