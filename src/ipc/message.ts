/** The message type (reference §2.1, re-imagined): a typed record with a plain-value payload. */
import type { Endpoint } from './endpoint.js';
import { DvsError } from './errors.js';
import type { Payload } from './payload.js';

/** What a caller hands to send/sendrec/reply. `source` is never taken from the caller. */
export interface OutgoingMessage {
  readonly type: number;
  readonly payload?: Payload;
}

/** A delivered message; `source` is stamped by the system from the sender's binding. */
export interface Message {
  readonly source: Endpoint;
  readonly type: number;
  readonly payload: Payload;
}

/** Notification messages have type NOTIFY_MESSAGE | privId(source), like MINIX's NOTIFY_FROM. */
export const NOTIFY_MESSAGE = 0x1000;

/** Payload of a notification message. */
export interface NotifyPayload {
  /** OR of the `arg` bits of every coalesced notify from this source. */
  readonly arg: number;
  /** Kernel clock time when the notification was delivered. */
  readonly timestamp: number;
}

export function isNotification(msg: Message): boolean {
  return (msg.type & ~0xfff) === NOTIFY_MESSAGE;
}

export function checkMessageType(type: unknown): number {
  if (typeof type !== 'number' || !Number.isInteger(type) || type < -0x80000000 || type > 0x7fffffff) {
    throw new DvsError('EDVSBADVALUE', `message type must be a 32-bit integer, got ${String(type)}`);
  }
  return type;
}
