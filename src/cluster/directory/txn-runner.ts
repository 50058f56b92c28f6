/**
 * Runs the directory's transactions against an unreliable store: an attempt whose outcome is
 * unknown (EDVSNOTCONN, EDVSTIMEDOUT) is tried again with backoff. Every transaction of the
 * directory guards against its own re-application with its compares, so a retry of an attempt that
 * did land fails its compares; `lost` tells the caller to read such a failure as its own earlier
 * success. Under a `Deadline`, attempts go on until it fires (then the call fails with its error,
 * and `TxnTrail` tells whether an attempt may still land); without one, `maxRetries` bounds them.
 */
import type { Clock } from '../../kernel/clock.js';
import type { CoordinationStore, TxnRequest, TxnResult } from '../store.js';
import type { Deadline } from './deadline.js';
import { asDvsError, isTransient, noop } from './failures.js';

export interface TxnOutcome {
  readonly r: TxnResult;
  /** An earlier attempt's reply was lost: it may have landed. */
  readonly lost: boolean;
}

/** What a call's attempts left behind: whether one of them may have landed without the call knowing. */
export class TxnTrail {
  private uncertain = false;
  private last: Promise<void> = Promise.resolve();

  /** An attempt was lost (no reply), or is still in flight while its call gave up. */
  get maybeLanded(): boolean {
    return this.uncertain;
  }

  /** Resolves once the last attempt settled (a write in flight can still land until then). */
  settled(): Promise<void> {
    return this.last;
  }

  /** @internal */
  sent(attempt: Promise<unknown>): void {
    this.last = attempt.then(noop, noop);
  }

  /** @internal */
  markUncertain(): void {
    this.uncertain = true;
  }
}

export class TxnRunner {
  constructor(
    private readonly store: CoordinationStore,
    private readonly clock: Clock,
    private readonly maxRetries: number,
    private readonly isClosed: () => boolean,
  ) {}

  async run(req: TxnRequest, deadline?: Deadline, trail?: TxnTrail): Promise<TxnOutcome> {
    let lost = false;
    for (let attempt = 0; ; attempt++) {
      deadline?.check();
      const sent = this.store.txn(req);
      trail?.sent(sent);
      try {
        return { r: await (deadline === undefined ? sent : deadline.race(sent)), lost };
      } catch (err) {
        if (deadline?.expired !== undefined && err === deadline.expired) {
          // Given up with the attempt in flight: it may still land.
          trail?.markUncertain();
          throw err;
        }
        const e = asDvsError(err);
        if (!isTransient(e)) throw e;
        lost = true;
        trail?.markUncertain();
        if ((deadline === undefined && attempt + 1 >= this.maxRetries) || this.isClosed()) throw e;
        const backoff = Math.min(1000, 25 * 2 ** attempt);
        await (deadline === undefined ? this.sleep(backoff) : deadline.sleep(backoff));
      }
    }
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }
}
