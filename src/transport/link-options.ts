/**
 * What a LinkManager is configured with: its identity, how peers authenticate, its timers and
 * limits, and the callbacks that receive frames and peer states. See docs/link-protocol.md.
 */
import type { Clock } from '../kernel/clock.js';
import type { KernelFrame } from '../kernel/frames.js';
import type { Logger } from '../runtime/logger.js';

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
  /** An inbound connection's first frame (hello) must arrive this soon after it was accepted (at most handshakeMs). */
  readonly helloMs: number;
}

/**
 * The delay before connection attempt number `attempt` (from 0): none for the first one when
 * `soon`, else reconnectMs doubling up to max(reconnectMs, min(1000, 2 × heartbeatMs)).
 */
export function reconnectDelayMs(timing: LinkTiming, attempt: number, soon: boolean): number {
  if (soon && attempt === 0) return 0;
  const base = timing.reconnectMs;
  const cap = Math.max(base, Math.min(1000, 2 * timing.heartbeatMs));
  return Math.min(base * 2 ** Math.min(attempt, 16), cap);
}

export const DEFAULT_LINK_TIMING: LinkTiming = Object.freeze({ heartbeatMs: 500, suspectMs: 1500, deadMs: 3000, reconnectMs: 100, handshakeMs: 3000, helloMs: 1000 });

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
  /** The kernel protocol version this node speaks (default 1): nodes of different versions refuse to link. */
  readonly kernelVersion?: number;
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
  /**
   * Inbound connections that have not sent their hello yet, at most (default 64); a newcomer evicts
   * the oldest of them (see docs/link-protocol.md, "Before authentication").
   */
  readonly maxPendingHandshakes?: number;
  readonly logger?: LinkLogger;
  /** Time and timers of every link timer (heartbeats, backoff, handshake deadlines, the delayed ack). Default: the system clock. */
  readonly clock?: Clock;
  /** A kernel frame from peer `from`, in order, exactly once per session. */
  readonly onFrame: (from: number, frame: KernelFrame) => void;
  /** A peer's state changed; `incarnation` is the peer's (the old one for 'down'), when known. */
  readonly onPeerState: (node: number, state: PeerReport, incarnation?: number) => void;
}
