/**
 * A service: code over the M3-IPC interface that can move between nodes (DESIGN.md, "Moving
 * endpoints"). Its optional hooks carry its own state across a move: `snapshot` is called while
 * the service is blocked in a receive with its endpoint frozen, `restore` on the new node before it
 * serves again. A service without hooks moves as stateless; `movable` lets it refuse a move for
 * now (busy in a transaction: the original's NOMIGRATE). See docs/migration.md.
 */
import type { M3Ipc } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import type { Payload } from '../ipc/payload.js';

export interface ServiceContext {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  /** The node it runs on now. */
  readonly node: number;
  /** Whether this incarnation continues one that moved here (restore was given its state, if any). */
  readonly migrated: boolean;
  /** Aborted when this incarnation stops: it moved away or its host stops it. */
  readonly signal: AbortSignal;
}

export interface Service {
  /** Serves until it returns or its incarnation stops; calls on `ipc` after a move never settle here. */
  run(ipc: M3Ipc, ctx: ServiceContext): Promise<void>;
  /** Its state, taken at a receive with the endpoint frozen; undefined: nothing to carry. */
  snapshot?(): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** The state a previous incarnation's snapshot gave, before `run` starts on the new node. */
  restore?(state: Uint8Array): void | Promise<void>;
  /** True, or the reason it cannot move now (the move fails with EDVSMIGRATE, nothing changes). */
  movable?(): true | string;
  /**
   * Its host stops it for good (not a move): the last moment it may still call through its
   * endpoint, which is unbound once this settles or its deadline (STOP_GRACE_MS) passes. A server
   * with unwritten state writes it here.
   */
  stop?(): Promise<void>;
}

/** How long a host waits for a service's `stop` hook before it unbinds the endpoint anyway. */
export const STOP_GRACE_MS = 10_000;

/** What a service module exports (default export or `createService`): a service from its arguments. */
export type ServiceFactory = (args: Payload) => Service | Promise<Service>;
