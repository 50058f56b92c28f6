/**
 * What the dialer's and the acceptor's handshakes need from their LinkManager: the node's
 * identity, proofs and limits, its peers, and where an authenticated connection (or a failed
 * handshake) goes. See docs/link-protocol.md ("Handshake and authentication").
 */
import type { Clock } from '../kernel/clock.js';
import type { HandshakeProofs } from './auth.js';
import type { SessionToken } from './frame-schema.js';
import type { FramingOptions } from './framing.js';
import type { ByteCounters, ConnEnd, LinkConn } from './link-conn.js';
import type { LinkLogger, LinkTiming, LinkTlsOptions } from './link-options.js';
import type { PeerLink } from './peer-link.js';

export interface HandshakeContext {
  readonly nodeId: number;
  readonly incarnation: number;
  /** The kernel protocol version this node speaks; a peer must speak the same. */
  readonly kernelVersion: number;
  readonly timing: LinkTiming;
  readonly proofs: HandshakeProofs;
  readonly framing: FramingOptions;
  /** Largest frame body of an established link. */
  readonly maxFrameBytes: number;
  readonly tls: LinkTlsOptions | undefined;
  /**
   * Cluster-key mode without TLS: every frame after the handshake carries a tag (frame-mac.ts);
   * the cluster key then, else undefined (TLS protects the frames).
   */
  readonly frameKey: Uint8Array | undefined;
  readonly log: LinkLogger;
  readonly clock: Clock;
  /** The node's byte counters of all link connections. */
  readonly totals: ByteCounters;
  isClosed(): boolean;
  /** The link of `node` while it is a peer. */
  peerOf(node: number): PeerLink | undefined;
  /** Hands an authenticated connection to its peer. */
  adopt(peer: PeerLink, conn: LinkConn, peerToken: SessionToken, resume: boolean, peerAck: number): void;
  /** A handshake ended without a link (counted and logged); `peer` when known. */
  handshakeFailed(why: ConnEnd, err: unknown, peer: PeerLink | undefined, where: string): void;
  /** The dialer's next attempt for `peer`: at once when `soon` and nothing failed since the last link. */
  redial(peer: PeerLink, soon: boolean): void;
  /** A dial reached the peer's listener (TCP connected), or was refused by its host: see Liveness. */
  dialAnswered(peer: PeerLink): void;
  dialRefused(peer: PeerLink): void;
}

/** Handshake frames are tiny; before authentication nothing bigger is buffered. */
export const HANDSHAKE_MAX_FRAME_BYTES = 4096;

/** Frames each side sends before its frames are sealed: hello and auth, welcome and ready. */
export const HANDSHAKE_FRAMES = 2;

export function isTlsAuthError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /CERT|SSL|UNABLE_TO|SELF_SIGNED|TLS/.test(code);
}
