/**
 * One simulated node's connection to the shared in-memory coordination store: every call takes a
 * virtual round trip, and while the node is cut off from the store (a crash, a store outage, a
 * partition) calls fail with EDVSNOTCONN and its watches end (the directory then resynchronises,
 * as over a real connection). A reply lost on the way back fails with EDVSTIMEDOUT though the call
 * took effect, which the directory's transactions are written to survive.
 */
import { DvsError } from '../ipc/errors.js';
import type { MemoryStore } from '../cluster/memory-store.js';
import {
  StoreCallCounter,
  type CoordinationStore,
  type DeleteResult,
  type KeyValue,
  type LeaseId,
  type PutOptions,
  type PutResult,
  type RangeResult,
  type StoreOp,
  type StoreValue,
  type TxnRequest,
  type TxnResult,
  type Unsubscribe,
  type WatchCallback,
  type WatchOptions,
} from '../cluster/store.js';
import type { SimClock } from './sim-clock.js';

interface LinkedWatch {
  unsubscribe: Unsubscribe | undefined;
  readonly onError: ((err: DvsError) => void) | undefined;
}

export class SimStoreLink implements CoordinationStore {
  readonly calls = new StoreCallCounter();
  private reachable = true;
  private closed = false;
  private readonly watches = new Set<LinkedWatch>();

  constructor(
    private readonly store: MemoryStore,
    private readonly clock: SimClock,
    /** One-way latency of a store call, virtual ms. */
    private readonly latencyMs: number,
  ) {}

  get connected(): boolean {
    return this.reachable;
  }

  /** Cuts the node off from the store (its watches end) or reconnects it. */
  setReachable(reachable: boolean): void {
    if (this.reachable === reachable) return;
    this.reachable = reachable;
    if (reachable) return;
    for (const w of [...this.watches]) {
      this.watches.delete(w);
      w.unsubscribe?.();
      w.onError?.(new DvsError('EDVSNOTCONN', 'the store is unreachable'));
    }
  }

  private call<T>(op: StoreOp, fn: () => Promise<T>): Promise<T> {
    this.calls.count(op);
    if (this.closed) return Promise.reject(new DvsError('EDVSSHUTDOWN', 'store link closed'));
    return new Promise<T>((resolve, reject) => {
      this.clock.setTimer(this.latencyMs, () => {
        if (!this.reachable) {
          reject(new DvsError('EDVSNOTCONN', 'the store is unreachable'));
          return;
        }
        fn().then(
          (v) =>
            this.clock.setTimer(this.latencyMs, () => {
              if (this.reachable) resolve(v);
              else reject(new DvsError('EDVSTIMEDOUT', 'the store did not answer'));
            }),
          (err: unknown) => this.clock.setTimer(this.latencyMs, () => reject(err as Error)),
        );
      });
    });
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.call('get', () => this.store.get(key));
  }

  getPrefix(prefix: string): Promise<RangeResult> {
    return this.call('getPrefix', () => this.store.getPrefix(prefix));
  }

  put(key: string, value: StoreValue, opts?: PutOptions): Promise<PutResult> {
    return this.call('put', () => this.store.put(key, value, opts));
  }

  delete(key: string): Promise<DeleteResult> {
    return this.call('delete', () => this.store.delete(key));
  }

  txn(req: TxnRequest): Promise<TxnResult> {
    return this.call('txn', () => this.store.txn(req));
  }

  grantLease(ttlMs: number): Promise<LeaseId> {
    return this.call('grantLease', () => this.store.grantLease(ttlMs));
  }

  keepAlive(lease: LeaseId): Promise<number> {
    return this.call('keepAlive', () => this.store.keepAlive(lease));
  }

  revokeLease(lease: LeaseId): Promise<void> {
    return this.call('revokeLease', () => this.store.revokeLease(lease));
  }

  watch(prefix: string, fromRevision: number | undefined, onEvent: WatchCallback, opts?: WatchOptions): Promise<Unsubscribe> {
    const w: LinkedWatch = { unsubscribe: undefined, onError: opts?.onError };
    return this.call('watch', async () => {
      // Registered before the store replays history into it (during the call itself).
      this.watches.add(w);
      let unsubscribe: Unsubscribe;
      try {
        unsubscribe = await this.store.watch(prefix, fromRevision, (ev) => {
          if (this.reachable && this.watches.has(w)) onEvent(ev);
        }, opts);
      } catch (err) {
        this.watches.delete(w);
        throw err;
      }
      w.unsubscribe = unsubscribe;
      return () => {
        this.watches.delete(w);
        unsubscribe();
      };
    });
  }

  close(): Promise<void> {
    this.closed = true;
    for (const w of this.watches) w.unsubscribe?.();
    this.watches.clear();
    return Promise.resolve();
  }
}
