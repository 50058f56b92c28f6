/**
 * The in-memory coordination store: the state of the embedded backend (served over TCP by
 * `StoreServer`) and the store of in-process clusters and tests. Time is injected (a `Clock`), so
 * lease expiry runs on virtual time under the simulator.
 *
 * Every operation runs synchronously; the `...Sync` methods expose that to the server, the async
 * `CoordinationStore` methods wrap them. Values are kept encoded (msgpack), so a caller never shares
 * an object with the store and `value` compares are by encoding, as on etcd.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { DvsError } from '../ipc/errors.js';
import { checkPayload } from '../ipc/payload.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { systemClock } from '../runtime/system-clock.js';
import { decodeValue, encodeValue } from '../transport/codec.js';
import {
  checkKey,
  checkLeaseId,
  checkPrefix,
  checkRevision,
  checkTtl,
  checkTxn,
  DEFAULT_STORE_LIMITS,
  type CheckedCompare,
  type CheckedOp,
  type StoreLimits,
} from './store-checks.js';
import {
  StoreCallCounter,
  type CoordinationStore,
  type DeleteResult,
  type KeyValue,
  type LeaseId,
  type PutOptions,
  type PutResult,
  type RangeResult,
  type StoreValue,
  type TxnOpResult,
  type TxnRequest,
  type TxnResult,
  type Unsubscribe,
  type WatchCallback,
  type WatchEvent,
  type WatchOptions,
} from './store.js';
import { StoreWal, type PersistedEntry, type Recovered, type StoreWalOptions } from './store-wal.js';

export interface MemoryStoreOptions {
  /** Time for lease expiry. Default: the system clock. */
  readonly clock?: Clock;
  /** Revisions of history kept for watches that resume; older ones are compacted. Default 10000. */
  readonly historyRevisions?: number;
  readonly limits?: Partial<StoreLimits>;
  /** Durable mode: every change goes to this log first; the store starts from what it recovered. See `MemoryStore.open`. */
  readonly log?: { readonly wal: StoreWal; readonly recovered: Recovered };
}

interface Entry {
  readonly bytes: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** 0 = none. */
  readonly lease: number;
}

interface Lease {
  readonly id: number;
  readonly ttlMs: number;
  deadline: number;
  readonly keys: Set<string>;
  timer: TimerHandle | undefined;
}

/** One event as kept in history: the entry after a put, or undefined after a delete. */
interface StoredEvent {
  readonly key: string;
  readonly entry: Entry | undefined;
}

interface Batch {
  readonly revision: number;
  readonly events: StoredEvent[];
}

/** Receives the events of one revision, matching the watch's prefix, in write order. */
export type BatchCallback = (revision: number, events: WatchEvent[]) => void;

interface Watcher {
  readonly prefix: string;
  readonly onBatch: BatchCallback;
  /** Events of this revision and earlier are not for this watcher. */
  readonly after: number;
  cancelled: boolean;
}

export interface WatchHandle {
  /** The store's revision when the watch was established. */
  readonly revision: number;
  readonly cancel: Unsubscribe;
}

function toKeyValue(key: string, e: Entry): KeyValue {
  const value = decodeValue(e.bytes) as StoreValue;
  return e.lease === 0
    ? { key, value, createRevision: e.createRevision, modRevision: e.modRevision, version: e.version }
    : { key, value, createRevision: e.createRevision, modRevision: e.modRevision, version: e.version, lease: e.lease };
}

function toEvent(ev: StoredEvent, revision: number): WatchEvent {
  const e = ev.entry;
  if (e === undefined) return { type: 'delete', key: ev.key, revision };
  const value = decodeValue(e.bytes) as StoreValue;
  return e.lease === 0
    ? { type: 'put', key: ev.key, value, revision, createRevision: e.createRevision, version: e.version }
    : { type: 'put', key: ev.key, value, revision, createRevision: e.createRevision, version: e.version, lease: e.lease };
}

function compareNumbers(a: number, op: string, b: number): boolean {
  switch (op) {
    case '==':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    default:
      return a > b;
  }
}

export class MemoryStore implements CoordinationStore {
  readonly calls = new StoreCallCounter();
  readonly limits: StoreLimits;
  /** Identifies this store's data: kept across restarts in durable mode, new for each memory-only store. */
  readonly storeId: string;
  private readonly wal: StoreWal | undefined;
  private readonly clock: Clock;
  private readonly historyMax: number;
  private readonly data = new Map<string, Entry>();
  private readonly leases = new Map<number, Lease>();
  private nextLease: number;
  private rev = 0;
  private compacted = 0;
  private history: Batch[] = [];
  private historyHead = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly deliveries: { w: Watcher; revision: number; events: StoredEvent[] }[] = [];
  private draining = false;
  private closed = false;

  constructor(opts: MemoryStoreOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.limits = Object.freeze({ ...DEFAULT_STORE_LIMITS, ...opts.limits });
    const h = opts.historyRevisions ?? 10_000;
    if (!Number.isInteger(h) || h < 1) throw new DvsError('EDVSINVAL', `historyRevisions must be a positive integer, got ${h}`);
    this.historyMax = h;
    // Lease ids start at a random point so ids of a restarted store do not repeat old ones.
    this.nextLease = randomInt(1, 2 ** 40);
    this.wal = opts.log?.wal;
    this.storeId = opts.log?.wal.storeId ?? randomUUID();
    if (opts.log !== undefined) this.restore(opts.log.recovered);
  }

  /**
   * A durable store kept in `dir` (which must exist): it starts with every write acknowledged before
   * (same revisions, store id and lease ids; each lease gets its full TTL again, as etcd does after a
   * leader change) and logs each change to disk before acknowledging it. EDVSIO if the files are damaged.
   */
  static open(dir: string, opts: Omit<MemoryStoreOptions, 'log'> & StoreWalOptions = {}): MemoryStore {
    const { wal, recovered } = StoreWal.open(dir, opts);
    try {
      return new MemoryStore({ ...opts, log: { wal, recovered } });
    } catch (err) {
      wal.close();
      throw err;
    }
  }

  /** Bytes of a torn log tail cut off when this store was opened (0 normally, and for a memory-only store). */
  truncatedOnOpen = 0;

  // ---------------------------------------------------------------- introspection

  /** The current revision: 0 for an empty store, bumped by every write (a txn's writes share one). */
  get revision(): number {
    return this.rev;
  }

  /** Watches may resume from this revision or later. */
  get compactRevision(): number {
    return this.compacted;
  }

  get size(): number {
    return this.data.size;
  }

  get leaseCount(): number {
    return this.leases.size;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /** Drops history up to `revision`: watches can no longer resume from before it. */
  compact(revision: number): void {
    checkRevision(revision, 'revision');
    while (this.historyHead < this.history.length && this.history[this.historyHead]!.revision <= revision) this.historyHead++;
    this.compacted = Math.max(this.compacted, Math.min(revision, this.rev));
    this.trimHistory();
  }

  // ---------------------------------------------------------------- CoordinationStore

  async get(key: string): Promise<KeyValue | undefined> {
    this.calls.count('get');
    return this.getSync(key);
  }

  async getPrefix(prefix: string): Promise<RangeResult> {
    this.calls.count('getPrefix');
    return this.rangeSync(prefix);
  }

  async put(key: string, value: StoreValue, opts?: PutOptions): Promise<PutResult> {
    this.calls.count('put');
    return this.putSync(key, value, opts);
  }

  async delete(key: string): Promise<DeleteResult> {
    this.calls.count('delete');
    return this.deleteSync(key);
  }

  async txn(req: TxnRequest): Promise<TxnResult> {
    this.calls.count('txn');
    return this.txnSync(req);
  }

  async grantLease(ttlMs: number): Promise<LeaseId> {
    this.calls.count('grantLease');
    return this.grantSync(ttlMs);
  }

  async keepAlive(lease: LeaseId): Promise<number> {
    this.calls.count('keepAlive');
    return this.keepAliveSync(lease);
  }

  async revokeLease(lease: LeaseId): Promise<void> {
    this.calls.count('revokeLease');
    this.revokeSync(lease);
  }

  async watch(prefix: string, fromRevision: number | undefined, onEvent: WatchCallback, _opts: WatchOptions = {}): Promise<Unsubscribe> {
    this.calls.count('watch');
    const h = this.watchBatches(
      prefix,
      fromRevision,
      (_rev, events) => {
        for (const ev of events) {
          try {
            onEvent(ev);
          } catch (err) {
            this.report(err);
          }
        }
      },
    );
    // A MemoryStore never ends a watch by itself (its history covers every live watcher), so
    // `onError` is never called; it is part of the interface for remote backends.
    return h.cancel;
  }

  async close(): Promise<void> {
    this.closeSync();
  }

  // ---------------------------------------------------------------- synchronous core

  getSync(key: string): KeyValue | undefined {
    this.checkOpen();
    checkKey(key, this.limits);
    const e = this.data.get(key);
    return e === undefined ? undefined : toKeyValue(key, e);
  }

  rangeSync(prefix: string): RangeResult {
    this.checkOpen();
    checkPrefix(prefix, this.limits);
    return { revision: this.rev, entries: this.scan(prefix).map((k) => toKeyValue(k, this.data.get(k)!)) };
  }

  putSync(key: string, value: StoreValue, opts: PutOptions = {}): PutResult {
    const lease = opts === null || typeof opts !== 'object' || opts.lease === undefined || opts.lease === 0 ? 0 : opts.lease;
    const r = this.txnSync({ compare: [], success: [lease === 0 ? { op: 'put', key, value } : { op: 'put', key, value, lease }] });
    return { revision: r.revision };
  }

  deleteSync(key: string): DeleteResult {
    const r = this.txnSync({ compare: [], success: [{ op: 'delete', key }] });
    const first = r.results[0] as { deleted: number };
    return { revision: r.revision, deleted: first.deleted };
  }

  txnSync(req: TxnRequest): TxnResult {
    this.checkOpen();
    const t = checkTxn(req, this.limits);
    // Leases past their deadline expire first (their own revision), so compares see the state after.
    for (const o of [...t.success, ...t.failure]) if (o.op === 'put' && o.lease !== 0) this.liveLease(o.lease);
    // Everything that can fail is checked before anything is written.
    const succeeded = t.compare.every((c) => this.evaluate(c));
    const ops = succeeded ? t.success : t.failure;
    const encoded = new Map<CheckedOp, Buffer>();
    for (const o of ops) {
      if (o.op !== 'put') continue;
      encoded.set(o, this.encode(o.value));
      if (o.lease !== 0 && this.liveLease(o.lease) === undefined) throw new DvsError('EDVSNOENT', `lease ${o.lease} not found (expired or revoked)`, { details: { lease: o.lease } });
    }
    const revision = this.rev + 1;
    const events: StoredEvent[] = [];
    const results: TxnOpResult[] = [];
    for (const o of ops) {
      switch (o.op) {
        case 'get':
          results.push({ op: 'get', entries: (o.prefix ? this.scan(o.key) : this.data.has(o.key) ? [o.key] : []).map((k) => toKeyValue(k, this.data.get(k)!)) });
          break;
        case 'put':
          events.push(this.applyPut(o.key, encoded.get(o)!, o.lease, revision));
          results.push({ op: 'put', revision });
          break;
        case 'delete': {
          const keys = o.prefix ? this.scan(o.key) : this.data.has(o.key) ? [o.key] : [];
          for (const k of keys) events.push(this.applyDelete(k));
          results.push({ op: 'delete', deleted: keys.length });
          break;
        }
      }
    }
    this.commit(revision, events);
    return { succeeded, revision: this.rev, results };
  }

  grantSync(ttlMs: number): LeaseId {
    this.checkOpen();
    const ttl = checkTtl(ttlMs, this.limits);
    const id = this.nextLease++;
    this.log({ t: 'lease', id, ttlMs: ttl });
    const lease: Lease = { id, ttlMs: ttl, deadline: this.clock.now() + ttl, keys: new Set(), timer: undefined };
    this.leases.set(id, lease);
    this.arm(lease);
    this.maybeSnapshot();
    return id;
  }

  keepAliveSync(leaseId: LeaseId): number {
    this.checkOpen();
    const lease = this.liveLease(checkLeaseId(leaseId));
    if (lease === undefined) throw new DvsError('EDVSNOENT', `lease ${leaseId} not found (expired or revoked)`, { details: { lease: leaseId } });
    lease.deadline = this.clock.now() + lease.ttlMs;
    this.arm(lease);
    return lease.ttlMs;
  }

  revokeSync(leaseId: LeaseId): void {
    this.checkOpen();
    const lease = this.liveLease(checkLeaseId(leaseId));
    if (lease === undefined) throw new DvsError('EDVSNOENT', `lease ${leaseId} not found (expired or revoked)`, { details: { lease: leaseId } });
    this.endLease(lease);
  }

  /** The remaining TTL of a live lease, or undefined. */
  leaseTtl(leaseId: LeaseId): number | undefined {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return undefined;
    return Math.max(0, lease.deadline - this.clock.now());
  }

  /**
   * Watches with one callback per revision (the events of one revision that match `prefix`), which
   * lets the server send a revision in one frame. Replayed history is delivered before this returns.
   */
  watchBatches(prefix: string, fromRevision: number | undefined, onBatch: BatchCallback): WatchHandle {
    this.checkOpen();
    checkPrefix(prefix, this.limits);
    const from = fromRevision === undefined || fromRevision === null ? this.rev : checkRevision(fromRevision, 'fromRevision');
    if (from < this.compacted) {
      throw new DvsError('EDVSRANGE', `revision ${from} is compacted; watches may resume from ${this.compacted}`, { details: { revision: from, compactRevision: this.compacted } });
    }
    const w: Watcher = { prefix, onBatch, after: from, cancelled: false };
    this.watchers.add(w);
    // Replay: every retained revision after `from`, through the same queue as live events.
    for (let i = this.firstAfter(from); i < this.history.length; i++) {
      const b = this.history[i]!;
      const events = b.events.filter((e) => e.key.startsWith(prefix));
      if (events.length > 0) this.deliveries.push({ w, revision: b.revision, events });
    }
    this.drain();
    return {
      revision: this.rev,
      cancel: () => {
        w.cancelled = true;
        this.watchers.delete(w);
      },
    };
  }

  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.leases.values()) if (l.timer !== undefined) this.clock.clearTimer(l.timer);
    this.leases.clear();
    for (const w of this.watchers) w.cancelled = true;
    this.watchers.clear();
    this.deliveries.length = 0;
    this.wal?.close();
  }

  // ---------------------------------------------------------------- internals

  /** Rebuilds the state a durable store's files hold: the snapshot, then the log's records in order. */
  private restore(r: Recovered): void {
    const img = r.image;
    const put = (e: PersistedEntry): void => {
      this.data.set(e[0], { bytes: e[1], createRevision: e[2], modRevision: e[3], version: e[4], lease: e[5] });
    };
    const ttls = new Map<number, number>(img.leases.map(([id, ttl]) => [id, ttl]));
    let nextLease = img.nextLease;
    img.entries.forEach(put);
    this.rev = img.revision;
    this.compacted = img.revision;
    for (const rec of r.records) {
      if (rec.t === 'lease') {
        ttls.set(rec.id, rec.ttlMs);
        nextLease = Math.max(nextLease, rec.id + 1);
      } else if (rec.t === 'unlease') {
        ttls.delete(rec.id);
      } else {
        const events: StoredEvent[] = [];
        for (const [key, e] of rec.events) {
          if (e === null) this.data.delete(key);
          else put(e);
          events.push({ key, entry: e === null ? undefined : this.data.get(key) });
        }
        this.rev = rec.revision;
        this.history.push({ revision: rec.revision, events });
      }
    }
    this.trimHistory();
    this.nextLease = nextLease;
    const now = this.clock.now();
    for (const [id, ttlMs] of ttls) this.leases.set(id, { id, ttlMs, deadline: now + ttlMs, keys: new Set(), timer: undefined });
    for (const [key, e] of this.data) {
      if (e.lease !== 0) this.leases.get(e.lease)?.keys.add(key);
    }
    for (const lease of this.leases.values()) this.arm(lease);
    this.truncatedOnOpen = r.truncatedBytes;
  }

  /** Logs a change before it is acknowledged; a store that cannot log closes (EDVSIO), as etcd stops on a WAL error. */
  private log(rec: Parameters<StoreWal['append']>[0]): void {
    this.durably((wal) => wal.append(rec));
  }

  /** Once a change is complete (state and log agree): replaces an outgrown log by a snapshot. */
  private maybeSnapshot(): void {
    this.durably((wal) => {
      if (wal.wantsSnapshot) wal.snapshot(this.image());
    });
  }

  private durably(io: (wal: StoreWal) => void): void {
    const wal = this.wal;
    if (wal === undefined) return;
    try {
      io(wal);
    } catch (err) {
      this.closeSync();
      throw err;
    }
  }

  private image(): Parameters<StoreWal['snapshot']>[0] {
    const entries: PersistedEntry[] = [];
    for (const [key, e] of this.data) entries.push([key, e.bytes, e.createRevision, e.modRevision, e.version, e.lease]);
    return { revision: this.rev, nextLease: this.nextLease, entries, leases: [...this.leases.values()].map((l) => [l.id, l.ttlMs] as const) };
  }

  private checkOpen(): void {
    if (this.closed) throw new DvsError('EDVSSHUTDOWN', 'store closed');
  }

  private encode(value: unknown): Buffer {
    checkPayload(value, Number.MAX_SAFE_INTEGER);
    const bytes = encodeValue(value);
    if (bytes.byteLength > this.limits.maxValueBytes) {
      throw new DvsError('EDVSMSGSIZE', `value of ${bytes.byteLength} bytes exceeds ${this.limits.maxValueBytes}`, { details: { limit: this.limits.maxValueBytes } });
    }
    return bytes;
  }

  private scan(prefix: string): string[] {
    const keys: string[] = [];
    for (const k of this.data.keys()) if (k.startsWith(prefix)) keys.push(k);
    return keys.sort();
  }

  private evaluate(c: CheckedCompare): boolean {
    const e = this.data.get(c.key);
    switch (c.target) {
      case 'exists':
        return (e !== undefined) === c.operand ? c.op === '==' : c.op === '!=';
      case 'value': {
        if (e === undefined) return false;
        let operand: Buffer;
        try {
          operand = encodeValue(c.operand);
        } catch {
          return false;
        }
        return e.bytes.equals(operand) ? c.op === '==' : c.op === '!=';
      }
      default:
        return compareNumbers(e === undefined ? 0 : e[c.target], c.op, c.operand as number);
    }
  }

  private applyPut(key: string, bytes: Buffer, lease: number, revision: number): StoredEvent {
    const old = this.data.get(key);
    if (old !== undefined && old.lease !== 0 && old.lease !== lease) this.leases.get(old.lease)?.keys.delete(key);
    if (lease !== 0) this.leases.get(lease)!.keys.add(key);
    const entry: Entry = { bytes, createRevision: old?.createRevision ?? revision, modRevision: revision, version: (old?.version ?? 0) + 1, lease };
    this.data.set(key, entry);
    return { key, entry };
  }

  private applyDelete(key: string): StoredEvent {
    const old = this.data.get(key);
    if (old !== undefined && old.lease !== 0) this.leases.get(old.lease)?.keys.delete(key);
    this.data.delete(key);
    return { key, entry: undefined };
  }

  private commit(revision: number, events: StoredEvent[]): void {
    if (events.length === 0) return;
    if (this.wal !== undefined) {
      this.log({ t: 'commit', revision, events: events.map((ev) => [ev.key, ev.entry === undefined ? null : [ev.key, ev.entry.bytes, ev.entry.createRevision, ev.entry.modRevision, ev.entry.version, ev.entry.lease]]) });
    }
    this.rev = revision;
    this.history.push({ revision, events });
    this.trimHistory();
    this.maybeSnapshot();
    for (const w of this.watchers) {
      if (revision <= w.after) continue;
      const mine = events.filter((e) => e.key.startsWith(w.prefix));
      if (mine.length > 0) this.deliveries.push({ w, revision, events: mine });
    }
    this.drain();
  }

  private trimHistory(): void {
    const live = this.history.length - this.historyHead;
    if (live > this.historyMax) {
      const drop = live - this.historyMax;
      this.historyHead += drop;
      this.compacted = Math.max(this.compacted, this.history[this.historyHead - 1]!.revision);
    }
    // Reclaim the dropped prefix now and then, not on every write.
    if (this.historyHead > 1024 && this.historyHead * 2 > this.history.length) {
      this.history = this.history.slice(this.historyHead);
      this.historyHead = 0;
    }
  }

  /** Index of the first retained batch with a revision above `rev`. */
  private firstAfter(rev: number): number {
    let lo = this.historyHead;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.history[mid]!.revision <= rev) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Delivers queued batches in order; a write made by a callback queues behind, never interleaves. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let d = this.deliveries.shift(); d !== undefined; d = this.deliveries.shift()) {
        if (d.w.cancelled) continue;
        const events = d.events.map((e) => toEvent(e, d.revision));
        try {
          d.w.onBatch(d.revision, events);
        } catch (err) {
          this.report(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /** A watch callback threw: the watch goes on; the fault is reported as a process warning. */
  private report(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    process.emitWarning(`watch callback threw: ${message}`, { code: 'DVS_WATCH_CALLBACK' });
  }

  /** The lease if it is still live; one found past its deadline is expired now. */
  private liveLease(id: number): Lease | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    if (this.clock.now() >= lease.deadline) {
      this.endLease(lease);
      return undefined;
    }
    return lease;
  }

  private arm(lease: Lease): void {
    if (lease.timer !== undefined) this.clock.clearTimer(lease.timer);
    lease.timer = this.clock.setTimer(lease.deadline - this.clock.now(), () => {
      lease.timer = undefined;
      if (this.closed || this.leases.get(lease.id) !== lease) return;
      // A timer may fire a little early on a real clock: re-arm rather than expire before the deadline.
      if (this.clock.now() < lease.deadline) this.arm(lease);
      else this.endLease(lease);
    });
  }

  /** Removes a lease and deletes its keys in one revision. */
  private endLease(lease: Lease): void {
    if (lease.timer !== undefined) this.clock.clearTimer(lease.timer);
    lease.timer = undefined;
    this.leases.delete(lease.id);
    const keys = [...lease.keys].sort();
    lease.keys.clear();
    const events: StoredEvent[] = [];
    for (const k of keys) {
      this.data.delete(k);
      events.push({ key: k, entry: undefined });
    }
    this.commit(this.rev + 1, events);
    // After its keys' deletion: a crash between the two records leaves an empty lease, which expires.
    this.log({ t: 'unlease', id: lease.id });
    this.maybeSnapshot();
  }
}
