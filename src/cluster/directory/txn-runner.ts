/**
 * Runs the directory's transactions against an unreliable store: an attempt whose outcome is
 * unknown (EDVSNOTCONN, EDVSTIMEDOUT) is tried again with backoff. Every transaction of the
 * directory guards against its own re-application with its compares, so a retry of an attempt that
 * did land fails its compares; `lost` tells the caller to read such a failure as its own earlier
 * success.
 */
import type { Clock } from '../../kernel/clock.js';
import type { CoordinationStore, TxnRequest, TxnResult } from '../store.js';
import { asDvsError, isTransient } from './failures.js';

export interface TxnOutcome {
  readonly r: TxnResult;
  /** An earlier attempt's reply was lost: it may have landed. */
  readonly lost: boolean;
}

export class TxnRunner {
  constructor(
    private readonly store: CoordinationStore,
    private readonly clock: Clock,
    private readonly maxRetries: number,
    private readonly isClosed: () => boolean,
  ) {}

  async run(req: TxnRequest): Promise<TxnOutcome> {
    let lost = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return { r: await this.store.txn(req), lost };
      } catch (err) {
        const e = asDvsError(err);
        if (!isTransient(e) || attempt + 1 >= this.maxRetries || this.isClosed()) throw e;
        lost = true;
        await this.sleep(Math.min(1000, 25 * 2 ** attempt));
      }
    }
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }
}
