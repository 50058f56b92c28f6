/**
 * The bounds of one directory call: a timeout on the directory's clock and an abort signal. A wait
 * raced against it fails with EDVSTIMEDOUT or EDVSINTR as soon as either fires; the work waited for
 * goes on, and the caller deals with its late outcome.
 */
import type { AbortLike } from '../../ipc/calls.js';
import { DvsError } from '../../ipc/errors.js';
import type { Clock, TimerHandle } from '../../kernel/clock.js';
import { fail, noop } from './failures.js';
import { isInt } from './parse.js';

export class Deadline {
  private reason: DvsError | undefined;
  private readonly fired: Promise<never>;
  private readonly rejectFired: (err: DvsError) => void;
  private timer: TimerHandle | undefined;
  private readonly onAbort = (): void => this.fire(new DvsError('EDVSINTR', `${this.what} aborted`));

  /** `timeoutMs` -1: no timeout. */
  constructor(
    private readonly clock: Clock,
    timeoutMs: number,
    private readonly signal: AbortLike | undefined,
    private readonly what: string,
  ) {
    let reject: (err: DvsError) => void = noop;
    this.fired = new Promise<never>((_resolve, r) => {
      reject = r;
    });
    this.fired.catch(noop);
    this.rejectFired = reject;
    if (signal?.aborted === true) {
      this.onAbort();
      return;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    if (timeoutMs >= 0) this.timer = clock.setTimer(timeoutMs, () => this.fire(new DvsError('EDVSTIMEDOUT', `${what} did not complete within ${timeoutMs} ms`)));
  }

  /** Checks a call's `timeoutMs` (an integer, -1 for none) and `signal` options. */
  static check(timeoutMs: unknown, signal: unknown): void {
    if (timeoutMs !== undefined && !isInt(timeoutMs, -1, 0x7fffffff)) fail('EDVSINVAL', `timeoutMs must be an integer >= -1, got ${String(timeoutMs)}`);
    if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof (signal as AbortLike).addEventListener !== 'function')) {
      fail('EDVSINVAL', 'signal must be an AbortSignal');
    }
  }

  /** Whether the call can end early at all (a timeout or a signal). */
  get bounded(): boolean {
    return this.timer !== undefined || this.signal !== undefined || this.reason !== undefined;
  }

  /** Why the call ended early, once it did. */
  get expired(): DvsError | undefined {
    return this.reason;
  }

  /** Throws once the timeout or the abort fired. */
  check(): void {
    if (this.reason !== undefined) throw this.reason;
  }

  /** `p`, unless the timeout or the abort fires first. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.reason !== undefined) {
      p.catch(noop);
      return Promise.reject(this.reason);
    }
    return Promise.race([p, this.fired]);
  }

  /** Sleeps `ms` on the clock, ending early with the timeout or the abort. */
  sleep(ms: number): Promise<void> {
    return this.race(new Promise<void>((resolve) => this.clock.setTimer(ms, resolve)));
  }

  /** Releases the timer and the abort listener (the call is over). */
  dispose(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  private fire(err: DvsError): void {
    if (this.reason !== undefined) return;
    this.reason = err;
    this.dispose();
    this.rejectFired(err);
  }
}
