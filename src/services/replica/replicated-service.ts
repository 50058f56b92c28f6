/**
 * What a service gives a replica group (docs/replication.md): its requests split into a prepared
 * update and its application, and its state as bytes a joining member can compare and copy. The
 * group runs the receive loop: the primary prepares each request, every synchronised member
 * applies the update in the primary's order, and the answer goes out once enough members applied
 * it. Reads (no update) are answered by the primary alone.
 */
import type { M3Ipc } from '../../ipc/calls.js';
import type { Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';

/** A request's answer: a reply type and payload. */
export interface ReplicaAnswer {
  readonly type: number;
  readonly payload: Payload;
}

/** What the primary made of one request. */
export interface Prepared {
  /** The answer; for an update, what applying it answered replaces it when given. */
  readonly answer: ReplicaAnswer;
  /** The state change every member applies in order; absent: a read, nothing to replicate. */
  readonly update?: Uint8Array;
}

export interface ReplicatedService {
  /** Opens its state (the member starts; as a backup or as the primary). */
  open(): Promise<void>;
  /**
   * The primary turns a request into its answer and update (copying the request's data in through
   * `ipc`); it changes no state: the update does, at every member.
   */
  prepare(ipc: M3Ipc, m: Message): Promise<Prepared>;
  /** Applies an update (every member, in the primary's order); may give the answer for it. */
  apply(update: Uint8Array): Promise<ReplicaAnswer | undefined>;
  /** Sends the answer (default: a reply); a service answering some requests by a send does it here. */
  answer?(ipc: M3Ipc, m: Message, answer: ReplicaAnswer): Promise<void>;
  /** Size of its state in bytes, for a joining member's comparison. */
  stateSize(): Promise<number>;
  readState(offset: number, length: number): Promise<Uint8Array>;
  /** Writes a piece of the primary's state over this member's own (a joining member); `size` is the primary's whole state size: the state takes that size. */
  writeState(offset: number, data: Uint8Array, size: number): Promise<void>;
  /** Makes applied updates durable (before a member reports itself synchronised, and at stop). */
  flush?(): Promise<void>;
  close(): Promise<void>;
}

export function isReplicatedService(x: unknown): x is ReplicatedService {
  if (typeof x !== 'object' || x === null) return false;
  const s = x as Record<string, unknown>;
  return typeof s.prepare === 'function' && typeof s.apply === 'function' && typeof s.readState === 'function' && typeof s.writeState === 'function' && typeof s.stateSize === 'function' && typeof s.open === 'function';
}
