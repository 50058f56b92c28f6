/**
 * What LinkManager.stats() tells an operator, per peer and per node, and the counters behind it.
 * See docs/link-protocol.md ("Validation and counters").
 */

import type { ConnEnd } from './link-conn.js';

/** What the link reports about a peer: 'connecting' until the first session (reported as nothing). */
export type PeerState = 'connecting' | 'up' | 'suspect' | 'down';

/** Why a connection ended other than by our own choice: its reason, and the error's code (a DvsError's, or the socket's) and message. */
export interface ConnFailure {
  readonly reason: ConnEnd;
  readonly code: string | undefined;
  readonly message: string | undefined;
}

export function connFailure(reason: ConnEnd, err: unknown): ConnFailure {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return { reason, code: typeof code === 'string' ? code : undefined, message: err instanceof Error ? err.message : undefined };
}

/** Why handshakes failed: by the way their connections ended ('auth': a key or certificate refused). */
export type HandshakeFailureReason = 'auth' | 'protocol' | 'timeout' | 'refused' | 'version' | 'evicted' | 'closed';

export type HandshakeFailures = Record<HandshakeFailureReason, number>;

export function newHandshakeFailures(): HandshakeFailures {
  return { auth: 0, protocol: 0, timeout: 0, refused: 0, version: 0, evicted: 0, closed: 0 };
}

/** The reason a handshake that ended with `why` failed for (undefined: it did not fail, it was ended by us for good). */
export function handshakeFailureReason(why: ConnEnd): HandshakeFailureReason | undefined {
  switch (why) {
    case 'auth':
    case 'protocol':
    case 'timeout':
    case 'refused':
    case 'version':
    case 'evicted':
    case 'closed':
      return why;
    case 'mac':
      return 'protocol';
    default:
      return undefined;
  }
}

/** The counters a peer link keeps (its stats without the state fields). */
export interface PeerCounters {
  /** Kernel frames sent (first transmissions) and delivered. */
  framesOut: number;
  framesIn: number;
  /** Data frames (batches) sent for the first time and accepted. */
  batchesOut: number;
  batchesIn: number;
  /** Standalone ack frames sent (an ack that could not ride on a data frame). */
  acksOut: number;
  bytesOut: number;
  bytesIn: number;
  /** Data frames sent again after a reconnect. */
  resent: number;
  /** Kernel frames received again (sequence already delivered) and discarded. */
  duplicatesDropped: number;
  /** Kernel frames discarded because the peer was or went down. */
  dropped: number;
  /** Connections established after the first one. */
  reconnects: number;
  /** Authenticated connections closed for breaking the protocol. */
  protocolErrors: number;
  /** Handshakes with this peer that failed authentication (either side; accepting: those whose hello named this peer). */
  authFailures: number;
  /** Inbound connections whose hello named this peer (whether it was this peer or not). */
  accepted: number;
  /** Handshakes with this peer that failed, whatever the reason (either side, as for authFailures). */
  handshakeFailures: number;
  /** The same, by reason ('evicted': a newer handshake in its name took its place; 'refused' and 'version': refused). */
  handshakeFailuresBy: HandshakeFailures;
  /** Frames from this peer whose tag did not verify (each closed its connection). */
  macFailures: number;
  /** Connection attempts to the peer's listener (dials, or the accepting side's probes) refused: nothing listened. */
  connectsRefused: number;
}

export function newPeerCounters(): PeerCounters {
  return {
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
    accepted: 0,
    handshakeFailures: 0,
    handshakeFailuresBy: newHandshakeFailures(),
    macFailures: 0,
    connectsRefused: 0,
  };
}

export interface PeerLinkStats extends Readonly<PeerCounters> {
  readonly node: number;
  readonly state: PeerState;
  /** The peer's incarnation in the current (or last) session. */
  readonly incarnation: number | undefined;
  readonly connected: boolean;
  /** Kernel frames waiting to be sent, and sent but not yet acknowledged (in batches). */
  readonly queued: number;
  readonly queuedBytes: number;
  readonly unacked: number;
  readonly lastSeqSent: number;
  readonly lastSeqReceived: number;
  /** How the last established connection that ended abnormally ended (a MAC failure: 'mac', EDVSACCES). */
  readonly lastFailure: ConnFailure | undefined;
}

/** The counters of a whole LinkManager (its stats without the peers and identity). */
export interface ManagerCounters {
  /** Inbound TCP connections accepted. */
  accepted: number;
  /** Connections (either direction) closed before their handshake completed, whatever the reason. */
  handshakeFailures: number;
  /** The same, by reason (evicted connections are also in evictedBeforeAuth, refused and version ones in refused). */
  handshakeFailuresBy: HandshakeFailures;
  /** Wrong key, bad MAC or certificate refused (either direction). */
  authFailures: number;
  /** Protocol violations before authentication (malformed, oversized or unexpected frames). */
  protocolErrors: number;
  handshakeTimeouts: number;
  /** Well-formed but refused: unknown node, wrong dialing direction, wrong version, too many pending. */
  refused: number;
  /** Kernel frames sent to a node that is not a peer (dropped; reported 'down'). */
  unknownPeerDrops: number;
  /** onFrame or onPeerState callbacks that threw (logged and ignored). */
  callbackErrors: number;
  /** Handshakes refused because the peer speaks another link or kernel protocol version (also in refused). */
  versionMismatches: number;
  /** Frames after a handshake whose tag did not verify, all peers together (each closed its connection). */
  macFailures: number;
  /** Established connections closed for breaking the protocol, all peers together (frames refused, with macFailures). */
  linkProtocolErrors: number;
  /** Bytes read and written on every link connection, handshakes included. */
  bytesIn: number;
  bytesOut: number;
  /** Inbound connections closed before authentication to make room for a newer one (also in handshakeFailures). */
  evictedBeforeAuth: number;
  /** Inbound connections closed by the other side before sending anything (a liveness probe; not a failure). */
  probes: number;
}

export function newManagerCounters(): ManagerCounters {
  return {
    accepted: 0,
    handshakeFailures: 0,
    handshakeFailuresBy: newHandshakeFailures(),
    authFailures: 0,
    protocolErrors: 0,
    handshakeTimeouts: 0,
    refused: 0,
    unknownPeerDrops: 0,
    callbackErrors: 0,
    versionMismatches: 0,
    macFailures: 0,
    linkProtocolErrors: 0,
    bytesIn: 0,
    bytesOut: 0,
    evictedBeforeAuth: 0,
    probes: 0,
  };
}

export interface LinkManagerStats extends Readonly<ManagerCounters> {
  readonly nodeId: number;
  readonly incarnation: number;
  readonly peers: PeerLinkStats[];
  /** Inbound connections currently in their handshake. */
  readonly pendingHandshakes: number;
}
