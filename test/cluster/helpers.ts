/** Shared helpers of the cluster tests: error codes, bounded waits, virtual time. */
import { expect } from 'vitest';
import { DvsError } from '../../src/ipc/errors.js';
import type { SimClock } from '../../src/sim/sim-clock.js';
import type {
  CoordinationStore,
  DeleteResult,
  KeyValue,
  LeaseId,
  PutOptions,
  PutResult,
  RangeResult,
  StoreValue,
  TxnRequest,
  TxnResult,
  Unsubscribe,
  WatchCallback,
  WatchOptions,
} from '../../src/cluster/store.js';
import { StoreCallCounter } from '../../src/cluster/store.js';

/** The DvsError code a promise rejects with (fails the test if it resolves or throws something else). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return (err as DvsError).code;
  }
  throw new Error('expected a DvsError, but the call succeeded');
}

/** Same for a synchronous call. */
export function codeOfSync(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return (err as DvsError).code;
  }
  throw new Error('expected a DvsError, but the call succeeded');
}

/** Lets pending promise callbacks and I/O run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Polls `cond` on real time until it holds; fails after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Advances a SimClock by `ms` in steps of at most `step`, letting promise callbacks run between steps. */
export async function advance(clock: SimClock, ms: number, step = 10): Promise<void> {
  const end = clock.now() + ms;
  while (clock.now() < end) {
    clock.runUntil(Math.min(end, clock.now() + step));
    await tick();
  }
}

/**
 * A store in front of another, for fault injection: delays every call by `delayMs` of real time,
 * fails keepalives while `partitioned`, and can end its watches as a remote backend would.
 */
export class FaultyStore implements CoordinationStore {
  readonly calls = new StoreCallCounter();
  delayMs = 0;
  partitioned = false;
  private readonly watches = new Set<{ unsubscribe: Unsubscribe; onError?: (err: DvsError) => void }>();

  constructor(private readonly inner: CoordinationStore) {}

  private async gate(): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.calls.count('get');
    await this.gate();
    return this.inner.get(key);
  }
  async getPrefix(prefix: string): Promise<RangeResult> {
    this.calls.count('getPrefix');
    await this.gate();
    return this.inner.getPrefix(prefix);
  }
  async put(key: string, value: StoreValue, opts?: PutOptions): Promise<PutResult> {
    this.calls.count('put');
    await this.gate();
    return this.inner.put(key, value, opts);
  }
  async delete(key: string): Promise<DeleteResult> {
    this.calls.count('delete');
    await this.gate();
    return this.inner.delete(key);
  }
  async txn(req: TxnRequest): Promise<TxnResult> {
    this.calls.count('txn');
    await this.gate();
    return this.inner.txn(req);
  }
  async grantLease(ttlMs: number): Promise<LeaseId> {
    this.calls.count('grantLease');
    await this.gate();
    return this.inner.grantLease(ttlMs);
  }
  async keepAlive(lease: LeaseId): Promise<number> {
    this.calls.count('keepAlive');
    if (this.partitioned) throw new DvsError('EDVSNOTCONN', 'partitioned (test)');
    await this.gate();
    return this.inner.keepAlive(lease);
  }
  async revokeLease(lease: LeaseId): Promise<void> {
    this.calls.count('revokeLease');
    if (this.partitioned) throw new DvsError('EDVSNOTCONN', 'partitioned (test)');
    await this.gate();
    return this.inner.revokeLease(lease);
  }
  async watch(prefix: string, fromRevision: number | undefined, onEvent: WatchCallback, opts?: WatchOptions): Promise<Unsubscribe> {
    this.calls.count('watch');
    await this.gate();
    const unsubscribe = await this.inner.watch(prefix, fromRevision, onEvent, opts);
    const w = { unsubscribe, onError: opts?.onError };
    this.watches.add(w);
    return () => {
      this.watches.delete(w);
      unsubscribe();
    };
  }
  /** Ends every watch with `code`, as a backend whose history was compacted would. */
  endWatches(code: 'EDVSRANGE' | 'EDVSCONNRESET' = 'EDVSRANGE'): void {
    for (const w of [...this.watches]) {
      this.watches.delete(w);
      w.unsubscribe();
      w.onError?.(new DvsError(code, 'watch ended (test)'));
    }
  }
  async close(): Promise<void> {}
}
