/**
 * The coordination store: the one interface behind which the cluster directory (nodes, DCs,
 * endpoint locations, leases) lives. Shaped after etcd's model so the etcd backend is a thin
 * mapping: string keys with plain values, one global revision bumped by every write, leases whose
 * expiry deletes their keys, prefix watches that resume from a revision, and transactions with
 * compares. Backends: `MemoryStore` (in process), `StoreClient` (the embedded server over TCP),
 * etcd (etcd-store.ts). Semantics are specified in docs/coordination.md.
 *
 * The message path never calls a store: daemons keep caches fed by watches. Every backend counts its
 * calls in `calls` so tests can assert that.
 */
import type { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';

/** A value a key may hold: a plain msgpack-encodable value (the rules of message payloads). */
export type StoreValue = Payload;

/** A lease id: a positive safe integer chosen by the store. */
export type LeaseId = number;

export interface KeyValue {
  readonly key: string;
  readonly value: StoreValue;
  /** Revision of the write that created the key (since it last did not exist). */
  readonly createRevision: number;
  /** Revision of the last write to the key. */
  readonly modRevision: number;
  /** Writes to the key since it was created (1 after the creating put). */
  readonly version: number;
  /** The lease the key is attached to, if any. */
  readonly lease?: LeaseId;
}

/** A read of several keys, consistent at `revision`. */
export interface RangeResult {
  /** The store's revision when the read was taken. */
  readonly revision: number;
  /** Matching keys, sorted by key (UTF-16 code unit order). */
  readonly entries: KeyValue[];
}

export interface PutOptions {
  /** Attach the key to this lease (it is deleted when the lease expires or is revoked). A put without a lease detaches the key from any lease. */
  readonly lease?: LeaseId;
}

export interface PutResult {
  readonly revision: number;
}

export interface DeleteResult {
  /** The store's revision after the call (unchanged when nothing was deleted). */
  readonly revision: number;
  readonly deleted: number;
}

export type CompareOp = '==' | '!=' | '<' | '>';

interface CompareBase {
  readonly key: string;
  /** Defaults to '=='. */
  readonly op?: CompareOp;
}

/**
 * One condition of a transaction: exactly one target field. A missing key has createRevision,
 * modRevision and version 0 and lease 0; a `value` compare on a missing key is false whatever the op.
 * `value` and `exists` only take '==' and '!=' (values compare by their msgpack encoding, as they
 * would on etcd); `lease` compares the lease id (0 = none).
 */
export type Compare =
  | (CompareBase & { readonly createRevision: number })
  | (CompareBase & { readonly modRevision: number })
  | (CompareBase & { readonly version: number })
  | (CompareBase & { readonly lease: number })
  | (CompareBase & { readonly value: StoreValue })
  | (CompareBase & { readonly exists: boolean });

export type TxnOp =
  | { readonly op: 'put'; readonly key: string; readonly value: StoreValue; readonly lease?: LeaseId }
  | { readonly op: 'delete'; readonly key: string; readonly prefix?: boolean }
  | { readonly op: 'get'; readonly key: string; readonly prefix?: boolean };

export type TxnOpResult =
  | { readonly op: 'put'; readonly revision: number }
  | { readonly op: 'delete'; readonly deleted: number }
  | { readonly op: 'get'; readonly entries: KeyValue[] };

export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success?: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface TxnResult {
  /** Whether every compare held (and `success` ran) or not (and `failure` ran). */
  readonly succeeded: boolean;
  /** The store's revision after the transaction: one new revision for all its writes, if any. */
  readonly revision: number;
  /** One result per op of the branch that ran, in order. */
  readonly results: TxnOpResult[];
}

export type WatchEvent =
  | {
      readonly type: 'put';
      readonly key: string;
      readonly value: StoreValue;
      /** The revision of the write (= the key's new modRevision). */
      readonly revision: number;
      readonly createRevision: number;
      readonly version: number;
      readonly lease?: LeaseId;
    }
  | { readonly type: 'delete'; readonly key: string; readonly revision: number };

export type WatchCallback = (event: WatchEvent) => void;

export interface WatchOptions {
  /**
   * Called once if the watch ends without being cancelled: the history no longer reaches back to the
   * resume revision (EDVSRANGE), the store was reset (EDVSCONNRESET), or the backend could not
   * re-establish it. The watcher must then resynchronise from a fresh read and watch again.
   * (An exception thrown by `onEvent` does not end the watch; backends report it as a warning or an
   * `error` event.)
   */
  readonly onError?: (err: DvsError) => void;
}

/** Stops a watch: no event is delivered after it returns. */
export type Unsubscribe = () => void;

/** Every call a `CoordinationStore` serves, as counted in `calls`. */
export type StoreOp = 'get' | 'getPrefix' | 'put' | 'delete' | 'txn' | 'grantLease' | 'keepAlive' | 'revokeLease' | 'watch';

export const STORE_OPS: readonly StoreOp[] = ['get', 'getPrefix', 'put', 'delete', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'watch'];

/**
 * Counts the calls made on a store, per operation, and tells an optional hook about each one. A test
 * (or a metric) takes `total()` before and after a piece of work to prove it made no store call.
 */
export class StoreCallCounter {
  private readonly counts = new Map<StoreOp, number>();
  /** Called synchronously on every counted call. */
  onCall: ((op: StoreOp) => void) | undefined;

  count(op: StoreOp): void {
    this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
    this.onCall?.(op);
  }

  get(op: StoreOp): number {
    return this.counts.get(op) ?? 0;
  }

  total(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  snapshot(): Record<StoreOp, number> {
    const out = {} as Record<StoreOp, number>;
    for (const op of STORE_OPS) out[op] = this.get(op);
    return out;
  }

  reset(): void {
    this.counts.clear();
  }
}

export interface CoordinationStore {
  /** Calls made on this store so far. */
  readonly calls: StoreCallCounter;

  get(key: string): Promise<KeyValue | undefined>;
  /** Every key starting with `prefix` ('' = all keys), with the revision the read saw. */
  getPrefix(prefix: string): Promise<RangeResult>;
  put(key: string, value: StoreValue, opts?: PutOptions): Promise<PutResult>;
  delete(key: string): Promise<DeleteResult>;
  /** Atomically: if every compare holds run `success`, else `failure`. */
  txn(req: TxnRequest): Promise<TxnResult>;

  /** A lease that expires `ttlMs` after it was granted or last kept alive. */
  grantLease(ttlMs: number): Promise<LeaseId>;
  /** Restarts the lease's TTL; returns the TTL in ms. EDVSNOENT if the lease expired or never existed. */
  keepAlive(lease: LeaseId): Promise<number>;
  /** Ends the lease now, deleting its keys (one revision). EDVSNOENT if it does not exist. */
  revokeLease(lease: LeaseId): Promise<void>;

  /**
   * Watches every key starting with `prefix`. Events come in revision order with no gap: every
   * event with revision > `fromRevision` (default: the store's revision when the watch is
   * established), each exactly once, the events of one revision together and in the order of the
   * writes. Resolves once the watch is established. EDVSRANGE when `fromRevision` is older than the
   * retained history.
   */
  watch(prefix: string, fromRevision: number | undefined, onEvent: WatchCallback, opts?: WatchOptions): Promise<Unsubscribe>;

  /** Releases the backend's resources; later calls fail with EDVSSHUTDOWN. Leases are not revoked. */
  close(): Promise<void>;
}
