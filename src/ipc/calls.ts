/**
 * The M3-IPC contract as one interface: the in-process kernel's `Process` implements it, and so does
 * the client library's `RemoteProcess`, which reaches a node daemon, so server code runs unchanged in
 * either shape.
 */
import type { Endpoint } from './endpoint.js';
import type { Message, OutgoingMessage } from './message.js';

/** Every blocking call takes a timeout and an AbortSignal. */
/**
 * What the calls use of an AbortSignal. A real AbortSignal is one; a host making many calls may
 * pass something lighter (Node's EventTarget costs microseconds per listener).
 */
export interface AbortLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export interface CallOptions {
  /** Milliseconds; -1 or absent waits forever, 0 fails at once with EDVSTIMEDOUT if the call would block. */
  readonly timeoutMs?: number;
  /** Aborting fails the call with EDVSINTR (unless it already completed: delivery wins). */
  readonly signal?: AbortLike;
}

/**
 * A one-shot abort switch implementing AbortLike without EventTarget. One listener (the usual
 * case: the call it was made for) is kept without an array.
 */
export class AbortSwitch implements AbortLike {
  aborted = false;
  private first: (() => void) | undefined;
  private more: (() => void)[] | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return;
    if (this.first === undefined && this.more === undefined) this.first = listener;
    else (this.more ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    if (this.first === listener) {
      this.first = undefined;
      return;
    }
    const l = this.more;
    if (l === undefined) return;
    const i = l.indexOf(listener);
    if (i >= 0) l.splice(i, 1);
  }

  /** Aborts once: every listener runs, in registration order. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const first = this.first;
    const more = this.more;
    this.first = undefined;
    this.more = undefined;
    first?.();
    if (more !== undefined) for (const f of more) f();
  }
}

/** What became of a notify: delivered to a waiting receiver, left pending, coalesced into a pending one, or handed to the link. */
export type NotifyOutcome = 'delivered' | 'pending' | 'overrun' | 'sent';

export interface NotifyOptions {
  /** Bits OR-ed into the pending notification's `arg` (the original's update-pending word). */
  readonly arg?: number;
}

export type GrantAccess = 'read' | 'write' | 'readwrite';

export interface GrantOptions {
  /** Who may copy: one endpoint, or ANY. */
  readonly grantee: Endpoint;
  readonly access: GrantAccess;
  /** Window of the buffer exposed by the grant; defaults to the whole buffer. */
  readonly offset?: number;
  readonly length?: number;
  /**
   * When true (default, the original's rule), copies succeed only while the owner is blocked in IPC
   * with the requester, e.g. inside its sendrec to it; otherwise EDVSPROCSTS.
   */
  readonly whileWaiting?: boolean;
}

/** A place inside someone's grant. `owner` may be SELF. */
export interface GrantRef {
  readonly owner: Endpoint;
  readonly grant: number;
  /** Offset inside the grant's window. */
  readonly offset?: number;
}

export interface CopyFromOptions extends CallOptions {
  readonly intoOffset?: number;
  /** Bytes to copy; defaults to the room left in `into`. */
  readonly length?: number;
}

/** The calls a bound process makes. */
export interface M3Ipc {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  send(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<void>;
  receive(src: Endpoint, opts?: CallOptions): Promise<Message>;
  sendrec(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message>;
  receiveRequest(opts?: CallOptions): Promise<Message>;
  reply(dst: Endpoint, msg: OutgoingMessage): Promise<void>;
  /**
   * A server's loop step as one call: `reply(dst, msg)`, then `receiveRequest(opts)`. When the
   * reply fails, the call fails with the reply's error and receives nothing.
   */
  replyAndReceive(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message>;
  notify(dst: Endpoint, opts?: NotifyOptions): Promise<NotifyOutcome>;
  grant(buffer: Uint8Array, opts: GrantOptions): number;
  revoke(grant: number): void;
  copyFrom(src: GrantRef, into: Uint8Array, opts?: CopyFromOptions): Promise<number>;
  copyTo(dst: GrantRef, data: Uint8Array, opts?: CallOptions): Promise<number>;
  copy(src: GrantRef, dst: GrantRef, length: number, opts?: CallOptions): Promise<number>;
  unbind(): Promise<void>;
}
