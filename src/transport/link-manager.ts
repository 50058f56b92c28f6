/**
 * LinkManager: a daemon's node links. One logical link per peer pair over TCP (or mutual TLS):
 * the node with the lower id dials, the higher one accepts. Connections authenticate (cluster-key
 * HMAC handshake, or the certificate chain) before anything else, then carry kernel frames with
 * sequence numbers, cumulative acks, resend after reconnect, batching and heartbeats.
 * The manager holds the set of peers, routes each established connection's frames to its peer
 * link, redials, and runs the periodic check. Implements KernelTransport. See docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import type { Clock } from '../kernel/clock.js';
import type { KernelFrame, KernelTransport } from '../kernel/frames.js';
import { systemClock } from '../runtime/system-clock.js';
import { silentLogger } from '../runtime/logger.js';
import { HandshakeProofs, MAC_BYTES, MAX_KERNEL_VERSION, MAX_NODE_ID, NONCE_BYTES } from './auth.js';
import { dialPeer } from './dialer-handshake.js';
import { FRAME_TAG_BYTES } from './frame-mac.js';
import { parseLinkFrame, type SessionToken } from './frame-schema.js';
import { DEFAULT_MAX_FRAME_BYTES, type FramingOptions } from './framing.js';
import { isTlsAuthError, type HandshakeContext } from './handshake-context.js';
import type { ConnEnd, LinkConn } from './link-conn.js';
import { LinkListener } from './link-listener.js';
import { DEFAULT_LINK_TIMING, reconnectDelayMs, type LinkLogger, type LinkManagerOptions, type LinkTiming, type PeerAddress, type PeerReport } from './link-options.js';
import { handshakeFailureReason, newManagerCounters, type LinkManagerStats, type PeerLinkStats } from './link-stats.js';
import { LinkTicker } from './link-ticker.js';
import { LivenessProbe, type ProbeOutcome } from './liveness-probe.js';
import { PeerLink, type PeerLinkHost } from './peer-link.js';
import { plainAddress } from './preauth-pool.js';

export { DEFAULT_LINK_TIMING, type LinkLogger, type LinkManagerOptions, type LinkTiming, type LinkTlsOptions, type PeerAddress, type PeerReport } from './link-options.js';
export type { LinkManagerStats } from './link-stats.js';

export class LinkManager implements KernelTransport {
  readonly nodeId: number;
  readonly incarnation: number;
  private readonly opts: LinkManagerOptions;
  private readonly timing: LinkTiming;
  private readonly log: LinkLogger;
  private readonly clock: Clock;
  private readonly host: PeerLinkHost;
  private readonly ctx: HandshakeContext;
  private readonly listener: LinkListener;
  private readonly ticker: LinkTicker;
  private readonly peers = new Map<number, PeerLink>();
  /** The listed hosts of the peers (see PreAuthPool: an address that is no peer's gets a smaller share). */
  private readonly peerAddresses = new Set<string>();
  private started = false;
  private closed = false;
  private address: { host: string; port: number } | undefined;
  private readonly unknownReports = new Set<number>();
  private readonly counters = newManagerCounters();

  constructor(opts: LinkManagerOptions) {
    if (!Number.isSafeInteger(opts.nodeId) || opts.nodeId < 0 || opts.nodeId > MAX_NODE_ID) throw new DvsError('EDVSBADNODEID', `node id ${String(opts.nodeId)} outside 0..${MAX_NODE_ID}`);
    if (!Number.isSafeInteger(opts.incarnation) || opts.incarnation < 0) throw new DvsError('EDVSINVAL', 'incarnation must be a non-negative safe integer');
    if (opts.clusterKey === undefined && opts.tls === undefined) throw new DvsError('EDVSINVAL', 'a node link needs a cluster key or TLS');
    if (opts.clusterKey !== undefined && opts.clusterKey.byteLength < 16) throw new DvsError('EDVSINVAL', 'the cluster key must be at least 16 bytes');
    const kernelVersion = opts.kernelVersion ?? 1;
    if (!Number.isSafeInteger(kernelVersion) || kernelVersion < 0 || kernelVersion > MAX_KERNEL_VERSION) throw new DvsError('EDVSINVAL', `kernel version ${String(kernelVersion)} outside 0..${MAX_KERNEL_VERSION}`);
    const timing = { ...DEFAULT_LINK_TIMING, ...opts.timing };
    for (const [k, v] of Object.entries(timing)) if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new DvsError('EDVSINVAL', `timing.${k} must be a positive number`);
    if (!(timing.heartbeatMs < timing.suspectMs && timing.suspectMs < timing.deadMs)) throw new DvsError('EDVSINVAL', 'timing needs heartbeatMs < suspectMs < deadMs');
    this.nodeId = opts.nodeId;
    this.incarnation = opts.incarnation;
    this.opts = opts;
    this.timing = timing;
    this.log = opts.logger ?? silentLogger;
    const clock = (this.clock = opts.clock ?? systemClock);
    const maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    const framing: FramingOptions = { maxFrameBytes, compressMinBytes: opts.compressMinBytes };
    // TLS protects the frames it carries; without it, the cluster key seals every frame (frame-mac.ts).
    const frameKey = opts.tls === undefined ? opts.clusterKey : undefined;
    this.host = {
      framing,
      maxFrameBytes,
      batchMaxBytes: Math.min(opts.batchMaxBytes ?? 64 * 1024, maxFrameBytes - 64),
      windowFrames: opts.windowFrames ?? 4096,
      windowBytes: opts.windowBytes ?? 32 * 1024 * 1024,
      maxQueuedBytes: opts.maxQueuedBytes ?? 8 * 1024 * 1024,
      tagBytes: frameKey === undefined ? 0 : FRAME_TAG_BYTES,
      clock,
      isClosed: () => this.closed,
      deliver: (from, frame) => this.deliver(from, frame),
      report: (node, state, inc) => this.report(node, state, inc),
      log: (level, msg, fields) => this.log[level]({ node: this.nodeId, ...fields }, msg),
    };
    this.ctx = {
      nodeId: this.nodeId,
      incarnation: this.incarnation,
      kernelVersion,
      timing,
      proofs: new HandshakeProofs(opts.clusterKey),
      framing,
      maxFrameBytes,
      tls: opts.tls,
      frameKey,
      log: this.log,
      clock,
      totals: this.counters,
      isClosed: () => this.closed,
      peerOf: (node) => this.peers.get(node),
      adopt: (peer, conn, peerToken, resume, peerAck) => this.adopt(peer, conn, peerToken, resume, peerAck),
      handshakeFailed: (why, err, peer, where) => this.countFailure(why, err, peer, where),
      redial: (peer, soon) => this.scheduleDial(peer, soon),
      dialAnswered: (peer) => peer.liveness.answered(),
      dialRefused: (peer) => this.connectRefused(peer),
    };
    this.listener = new LinkListener(this.ctx, this.counters, opts.maxPendingHandshakes ?? 64, (address) => this.peerAddresses.has(address));
    this.ticker = new LinkTicker(clock, timing, (now, judge) => this.onTick(now, judge));
  }

  // ---- public API ----------------------------------------------------------------------------

  /** Listens, then starts dialing the peers this node dials. Resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.closed) throw new DvsError('EDVSSHUTDOWN', 'link manager closed');
    if (this.started) throw new DvsError('EDVSALREADY', 'link manager already started');
    this.started = true;
    this.address = await this.listener.listen(this.opts.listen.host, this.opts.listen.port);
    this.ticker.start();
    const now = this.clock.now();
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
    const now = this.clock.now();
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
    this.peerAddresses.clear();
    for (const addr of wanted.values()) this.peerAddresses.add(plainAddress(addr.host));
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
      handshakeFailuresBy: { ...this.counters.handshakeFailuresBy },
      pendingHandshakes: this.listener.pending,
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
    this.ticker.stop();
    for (const peer of this.peers.values()) peer.shutdown();
    await this.listener.close();
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

  private onTick(now: number, judge: boolean): void {
    if (this.closed) return;
    const t = this.timing;
    for (const peer of [...this.peers.values()]) {
      if (this.closed) return;
      if (judge) peer.check(now, t.suspectMs, t.deadMs);
      if (peer.conn !== undefined && peer.liveness.idle(now, t.heartbeatMs)) peer.ping(now);
    }
  }

  // ---- established connections ---------------------------------------------------------------

  private countFailure(why: ConnEnd, err: unknown, peer: PeerLink | undefined, where: string): void {
    const authErr = why === 'auth' || isTlsAuthError(err);
    const reason = authErr ? 'auth' : handshakeFailureReason(why);
    if (reason === undefined) return;
    this.counters.handshakeFailures++;
    this.counters.handshakeFailuresBy[reason]++;
    if (peer !== undefined) {
      peer.counters.handshakeFailures++;
      peer.counters.handshakeFailuresBy[reason]++;
    }
    if (authErr) {
      this.counters.authFailures++;
      if (peer !== undefined) peer.counters.authFailures++;
    } else if (why === 'protocol') this.counters.protocolErrors++;
    else if (why === 'timeout') this.counters.handshakeTimeouts++;
    else if (why === 'refused') this.counters.refused++;
    else if (why === 'evicted') this.counters.evictedBeforeAuth++;
    else if (why === 'version') {
      this.counters.refused++;
      this.counters.versionMismatches++;
    }
    const msg = err instanceof Error ? err.message : undefined;
    this.log[authErr || why === 'protocol' ? 'warn' : 'debug']({ node: this.nodeId, peer: peer?.node, why, err: msg }, `${where} handshake failed`);
  }

  /** Hands an authenticated connection to its peer and routes its traffic there. */
  private adopt(peer: PeerLink, conn: LinkConn, peerToken: SessionToken, resume: boolean, peerAck: number): void {
    conn.onValue = (v) => this.onLinkValue(peer, conn, v);
    conn.onEnd = (why, err) => this.onLinkEnd(peer, conn, why, err);
    conn.trust();
    peer.establish(conn, peerToken, resume, peerAck, this.clock.now());
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
        peer.heard(this.clock.now());
        peer.onAck(f.a);
        return;
      case 'ping':
        peer.heard(this.clock.now());
        return;
      default:
        throw new DvsError('EDVSBADREQUEST', `unexpected ${f.t} on an established link`);
    }
  }

  private onLinkEnd(peer: PeerLink, conn: LinkConn, why: ConnEnd, err: unknown): void {
    if (why === 'protocol') {
      this.counters.linkProtocolErrors++;
      this.log.warn({ node: this.nodeId, peer: peer.node, err: err instanceof Error ? err.message : undefined }, 'link protocol violation, connection closed');
    } else if (why === 'mac') {
      this.counters.macFailures++;
      this.log.warn({ node: this.nodeId, peer: peer.node }, 'link frame failed its MAC, connection closed');
    }
    else this.log.debug({ node: this.nodeId, peer: peer.node, why }, 'link connection ended');
    peer.detach(conn, why, err);
    if (why === 'closed' && peer.state !== 'down' && this.peers.get(peer.node) === peer) {
      // Closed or reset from the peer's side: if its listener now refuses us, its process is gone.
      peer.liveness.lostByPeer();
      if (!this.dials(peer)) this.probe(peer);
    }
    if (why !== 'replaced' && why !== 'shutdown') this.scheduleDial(peer, true);
  }

  // ---- crash detection -----------------------------------------------------------------------

  /** The accepting side probes the peer's listener (liveness-probe.ts); the dialing side learns from its dials. */
  private probe(peer: PeerLink): void {
    const { host, port } = peer;
    if (this.closed || host === undefined || port === undefined || port === 0) return;
    peer.probe ??= new LivenessProbe(this.clock, this.timing, (o) => this.onProbe(peer, o));
    peer.probe.start(host, port);
  }

  private onProbe(peer: PeerLink, outcome: ProbeOutcome): void {
    if (this.closed || this.peers.get(peer.node) !== peer) return;
    if (outcome === 'answered') peer.liveness.answered();
    else if (outcome === 'refused') this.connectRefused(peer);
  }

  private connectRefused(peer: PeerLink): void {
    peer.counters.connectsRefused++;
    if (peer.state !== 'down' && peer.liveness.refused()) peer.goDown('its connection was closed and its listener refuses connections: the process is gone');
  }

  // ---- dialing -------------------------------------------------------------------------------

  private dials(peer: PeerLink): boolean {
    return peer.node > this.nodeId && peer.host !== undefined && peer.port !== undefined && this.peers.get(peer.node) === peer;
  }

  private scheduleDial(peer: PeerLink, soon: boolean): void {
    if (this.closed || !this.dials(peer) || peer.reconnectTimer !== undefined || peer.conn !== undefined || peer.pending !== undefined) return;
    const delay = reconnectDelayMs(this.timing, peer.reconnectAttempts, soon);
    peer.reconnectAttempts++;
    peer.reconnectTimer = this.clock.setTimer(delay, () => {
      peer.reconnectTimer = undefined;
      this.dial(peer);
    });
  }

  private dial(peer: PeerLink): void {
    if (this.closed || !this.started || !this.dials(peer) || peer.conn !== undefined || peer.pending !== undefined || peer.reconnectTimer !== undefined) return;
    const { host, port } = peer;
    if (host === undefined || port === undefined) return;
    dialPeer(this.ctx, peer, host, port);
  }
}
