/**
 * One blocked call: a promise plus the timeout and abort wiring of its options. On timeout or abort
 * the waiter does not settle by itself: it asks its owner (`onExpire`), which withdraws the call if it
 * can and settles accordingly; a call already delivered reports success (delivery wins).
 */
import type { AbortLike, CallOptions } from '../ipc/calls.js';
import { DvsError } from '../ipc/errors.js';
import type { Clock, TimerHandle } from './clock.js';

export type ExpireReason = 'EDVSTIMEDOUT' | 'EDVSINTR';

const ONCE = { once: true } as const;

export class Waiter<T> {
  readonly promise: Promise<T>;
  private res!: (value: T) => void;
  private rej!: (err: DvsError) => void;
  private timer: TimerHandle | undefined;
  private signal: AbortLike | undefined;
  private abortListener: (() => void) | undefined;
  private clock: Clock | undefined;
  settled = false;
  /** Set once a timeout or abort fired; the call is being withdrawn. */
  expired: ExpireReason | undefined;
  onExpire: ((reason: ExpireReason) => void) | undefined;

  constructor() {
    this.promise = new Promise<T>((res, rej) => {
      this.res = res;
      this.rej = rej;
    });
  }

  /** Starts the timeout and abort wiring. Call after the waiter is registered where `onExpire` can find it. */
  arm(clock: Clock, opts: CallOptions | undefined, onExpire: (reason: ExpireReason) => void): void {
    this.onExpire = onExpire;
    this.start(clock, opts);
  }

  /**
   * Starts the timeout and abort wiring with the `onExpire` already set; whoever holds the call
   * later may replace `onExpire` (a parked call released elsewhere withdraws from there).
   */
  start(clock: Clock, opts: CallOptions | undefined): void {
    if (opts === undefined) return;
    const timeoutMs = opts.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs >= 0) {
      this.clock = clock;
      this.timer = clock.setTimer(timeoutMs, () => {
        this.timer = undefined;
        this.expire('EDVSTIMEDOUT');
      });
    }
    const signal = opts.signal;
    if (signal !== undefined) {
      this.signal = signal;
      this.abortListener = () => this.expire('EDVSINTR');
      signal.addEventListener('abort', this.abortListener, ONCE);
    }
  }

  private expire(reason: ExpireReason): void {
    if (this.settled || this.expired !== undefined) return;
    this.expired = reason;
    this.disarm();
    this.onExpire?.(reason);
  }

  private disarm(): void {
    if (this.timer !== undefined) {
      this.clock?.clearTimer(this.timer);
      this.timer = undefined;
    }
    if (this.abortListener !== undefined) {
      this.signal?.removeEventListener('abort', this.abortListener);
      this.abortListener = undefined;
    }
  }

  resolve(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.disarm();
    this.res(value);
  }

  reject(err: DvsError): void {
    if (this.settled) return;
    this.settled = true;
    this.disarm();
    this.rej(err);
  }

  /** Rejects with the expiry reason (timeout or abort). */
  rejectExpired(details?: Readonly<Record<string, unknown>>): void {
    this.reject(new DvsError(this.expired ?? 'EDVSTIMEDOUT', undefined, details === undefined ? {} : { details }));
  }
}

/** Fails fast for an already-aborted signal, before any state changes. */
export function checkNotAborted(opts: CallOptions | undefined): void {
  if (opts?.signal?.aborted === true) throw new DvsError('EDVSINTR');
}

/** Longest finite timeout: what a Node timer can hold (about 24.8 days); use -1 for longer. */
export const MAX_TIMEOUT_MS = 0x7fffffff;

/** Validates a timeout option. */
export function checkTimeout(opts: CallOptions | undefined): void {
  const t = opts?.timeoutMs;
  if (t !== undefined && (typeof t !== 'number' || Number.isNaN(t) || (t < 0 && t !== -1) || t > MAX_TIMEOUT_MS)) {
    throw new DvsError('EDVSBADVALUE', `timeoutMs must be -1 or in 0..${MAX_TIMEOUT_MS}, got ${String(t)}`);
  }
}
