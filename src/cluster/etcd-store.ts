/**
 * The etcd backend of the coordination store (docs/coordination.md, "etcd"): the `CoordinationStore`
 * semantics mapped onto etcd's v3 API through npm `etcd3`, for clusters of real hosts.
 *
 * - Keys are UTF-8 etcd keys; values are msgpack-encoded (src/transport/codec.ts) into etcd values.
 * - Revisions, createRevision, modRevision, version and leases are etcd's own. Lease ids are chosen
 *   here (random, below 2^48, so they stay safe JS integers; etcd's own ids would not); a lease TTL
 *   in ms is rounded **up** to whole seconds (etcd also raises it to its minimum, 1.5 election
 *   timeouts, rounded up).
 * - Transactions map one to one (`exists` is `createRevision > 0` / `== 0`); everything is checked
 *   and encoded before anything is sent, as on `MemoryStore`.
 * - `watch` opens an etcd watch from `fromRevision + 1`; it survives member failures by re-opening
 *   on the next member from the last revision it delivered (no gap, no repeat); a compacted
 *   revision ends it with EDVSRANGE.
 *
 * Failover: members are used in the order given, the current one until it fails. A call that fails
 * in a way that proves it was not applied (no connection, "no leader", proposal dropped) is retried on
 * the next member, with backoff, until `requestTimeoutMs`; reads, keepalives, grants and revokes are
 * also retried after ambiguous failures (they are idempotent here); writes (`put`, `delete`, `txn`)
 * are not: they fail with EDVSNOTCONN / EDVSTIMEDOUT, outcome unknown, as on the embedded client.
 */
import { randomInt } from 'node:crypto';
import { CompareResult, CompareTarget, type ICompare, type IKeyValue, type IRequestOp, type IWatchResponse } from 'etcd3';
import { DvsError } from '../ipc/errors.js';
import { checkPayload } from '../ipc/payload.js';
import { decodeValue, encodeValue } from '../transport/codec.js';
import { classify, EtcdEndpoint, keyBytes, num, prefixRange, type EtcdAuth, type EtcdService, type EtcdTls, type Failure } from './etcd-support.js';
import { checkKey, checkLeaseId, checkPrefix, checkRevision, checkTtl, checkTxn, DEFAULT_STORE_LIMITS, type CheckedCompare, type CheckedOp, type StoreLimits } from './store-checks.js';
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

export type { EtcdAuth, EtcdTls } from './etcd-support.js';

export interface EtcdStoreOptions {
  /** Client URLs of the etcd members, `http://host:port` (or `https://` with `tls`). Tried in this order. */
  readonly endpoints: readonly string[];
  /** etcd user authentication (etcd3 exchanges it for a token). */
  readonly auth?: EtcdAuth;
  /** TLS: the CA that signed the members' certificates, and the client's key and certificate if etcd asks for them. */
  readonly tls?: EtcdTls;
  /** How long one attempt waits for a connection to a member before moving to the next. Default 2000 ms. */
  readonly dialTimeoutMs?: number;
  /** How long a call may take in all, retries on other members included. Default 5000 ms. */
  readonly requestTimeoutMs?: number;
  /** Key, value and transaction limits (as MemoryStore; keep maxValueBytes under etcd's --max-request-bytes). */
  readonly limits?: Partial<StoreLimits>;
  /** Extra gRPC channel options (see DEFAULT_GRPC_OPTIONS in etcd-support.ts). */
  readonly grpcOptions?: Readonly<Record<string, unknown>>;
  /** Longest pause between two attempts to re-open a broken watch. Default 1000 ms. */
  readonly watchRetryMaxMs?: number;
}

const noop = (): void => undefined;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function byKey(a: KeyValue, b: KeyValue): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function decodeStored(bytes: Buffer): StoreValue {
  try {
    return decodeValue(bytes) as StoreValue;
  } catch {
    // Not written by DVS (or not msgpack): handed out as raw bytes, which no DVS record parses.
    return Buffer.from(bytes);
  }
}

function toKeyValue(kv: IKeyValue): KeyValue {
  const key = kv.key.toString('utf8');
  const value = decodeStored(kv.value);
  const lease = num(kv.lease);
  const base = { key, value, createRevision: num(kv.create_revision), modRevision: num(kv.mod_revision), version: num(kv.version) };
  return lease === 0 ? base : { ...base, lease };
}

const OP_RESULT: Record<string, CompareResult> = { '==': CompareResult.Equal, '!=': CompareResult.NotEqual, '<': CompareResult.Less, '>': CompareResult.Greater };

/** A compare that never holds: what a `value` compare against an unencodable operand is. */
function neverHolds(key: Buffer): ICompare {
  return { key, target: CompareTarget.Create, result: CompareResult.Less, create_revision: 0 };
}

function toCompare(c: CheckedCompare): ICompare {
  const key = keyBytes(c.key);
  switch (c.target) {
    case 'exists': {
      // exists == true / exists != false: createRevision > 0; otherwise createRevision == 0.
      const present = (c.operand as boolean) === (c.op === '==');
      return { key, target: CompareTarget.Create, result: present ? CompareResult.Greater : CompareResult.Equal, create_revision: 0 };
    }
    case 'value': {
      let value: Buffer;
      try {
        value = encodeValue(c.operand);
      } catch {
        return neverHolds(key);
      }
      return { key, target: CompareTarget.Value, result: OP_RESULT[c.op]!, value };
    }
    case 'createRevision':
      return { key, target: CompareTarget.Create, result: OP_RESULT[c.op]!, create_revision: c.operand as number };
    case 'modRevision':
      return { key, target: CompareTarget.Mod, result: OP_RESULT[c.op]!, mod_revision: c.operand as number };
    case 'version':
      return { key, target: CompareTarget.Version, result: OP_RESULT[c.op]!, version: c.operand as number };
    case 'lease':
      return { key, target: CompareTarget.Lease, result: OP_RESULT[c.op]!, lease: c.operand as number };
  }
}

export class EtcdStore implements CoordinationStore {
  readonly calls = new StoreCallCounter();
  readonly limits: StoreLimits;
  readonly endpoints: readonly string[];
  readonly dialTimeoutMs: number;
  readonly requestTimeoutMs: number;
  private readonly members: EtcdEndpoint[];
  private readonly watchRetryMaxMs: number;
  private readonly watches = new Set<EtcdWatch>();
  private current = 0;
  private closed = false;

  constructor(opts: EtcdStoreOptions) {
    if (opts === null || typeof opts !== 'object') throw new DvsError('EDVSINVAL', 'EtcdStore options must be an object');
    const eps = opts.endpoints;
    if (!Array.isArray(eps) || eps.length === 0) throw new DvsError('EDVSINVAL', 'etcd endpoints must be a non-empty array of URLs');
    for (const e of eps) {
      if (typeof e !== 'string' || !/^https?:\/\/[^/\s]+:\d+\/?$/.test(e)) throw new DvsError('EDVSINVAL', `etcd endpoint must be http(s)://host:port, got ${String(e)}`);
    }
    const positive = (v: number | undefined, dflt: number, what: string): number => {
      const n = v ?? dflt;
      if (!Number.isSafeInteger(n) || n < 1) throw new DvsError('EDVSINVAL', `${what} must be a positive integer (ms), got ${String(v)}`);
      return n;
    };
    this.dialTimeoutMs = positive(opts.dialTimeoutMs, 2000, 'dialTimeoutMs');
    this.requestTimeoutMs = positive(opts.requestTimeoutMs, 5000, 'requestTimeoutMs');
    this.watchRetryMaxMs = positive(opts.watchRetryMaxMs, 1000, 'watchRetryMaxMs');
    this.limits = Object.freeze({ ...DEFAULT_STORE_LIMITS, ...opts.limits });
    this.endpoints = Object.freeze(eps.map((e: string) => e.replace(/\/$/, '')));
    const memberOpts = {
      ...(opts.auth === undefined ? {} : { auth: opts.auth }),
      ...(opts.tls === undefined ? {} : { tls: opts.tls }),
      ...(opts.grpcOptions === undefined ? {} : { grpcOptions: opts.grpcOptions }),
    };
    this.members = this.endpoints.map((url) => new EtcdEndpoint(url, memberOpts));
  }

  // ---------------------------------------------------------------- CoordinationStore

  async get(key: string): Promise<KeyValue | undefined> {
    this.calls.count('get');
    this.checkOpen();
    checkKey(key, this.limits);
    const r = await this.run('KV', true, (m, deadline) => m.client.kv.range({ key: keyBytes(key) }, { deadline }));
    const kv = r.kvs[0];
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  async getPrefix(prefix: string): Promise<RangeResult> {
    this.calls.count('getPrefix');
    this.checkOpen();
    checkPrefix(prefix, this.limits);
    const r = await this.run('KV', true, (m, deadline) => m.client.kv.range(prefixRange(prefix), { deadline }));
    return { revision: num(r.header.revision), entries: r.kvs.map(toKeyValue).sort(byKey) };
  }

  async put(key: string, value: StoreValue, opts: PutOptions = {}): Promise<PutResult> {
    this.calls.count('put');
    this.checkOpen();
    checkKey(key, this.limits);
    const lease = opts === null || typeof opts !== 'object' || opts.lease === undefined || opts.lease === 0 ? 0 : checkLeaseId(opts.lease);
    const bytes = this.encode(value);
    const r = await this.run('KV', false, (m, deadline) => m.client.kv.put({ key: keyBytes(key), value: bytes, lease }, { deadline }));
    return { revision: num(r.header.revision) };
  }

  async delete(key: string): Promise<DeleteResult> {
    this.calls.count('delete');
    this.checkOpen();
    checkKey(key, this.limits);
    const r = await this.run('KV', false, (m, deadline) => m.client.kv.deleteRange({ key: keyBytes(key) }, { deadline }));
    return { revision: num(r.header.revision), deleted: num(r.deleted) };
  }

  async txn(req: TxnRequest): Promise<TxnResult> {
    this.calls.count('txn');
    this.checkOpen();
    const t = checkTxn(req, this.limits);
    const compare = t.compare.map(toCompare);
    const success = t.success.map((o) => this.toRequestOp(o));
    const failure = t.failure.map((o) => this.toRequestOp(o));
    const r = await this.run('KV', false, (m, deadline) => m.client.kv.txn({ compare, success, failure }, { deadline }));
    const revision = num(r.header.revision);
    const ops = r.succeeded ? t.success : t.failure;
    const results: TxnOpResult[] = ops.map((o, i): TxnOpResult => {
      const resp = r.responses[i];
      switch (o.op) {
        case 'put':
          return { op: 'put', revision };
        case 'delete':
          return { op: 'delete', deleted: num(resp?.response_delete_range?.deleted) };
        case 'get':
          return { op: 'get', entries: (resp?.response_range?.kvs ?? []).map(toKeyValue).sort(byKey) };
      }
    });
    return { succeeded: r.succeeded, revision, results };
  }

  async grantLease(ttlMs: number): Promise<LeaseId> {
    this.calls.count('grantLease');
    this.checkOpen();
    const ttl = checkTtl(ttlMs, this.limits);
    const seconds = Math.ceil(ttl / 1000);
    // The id is chosen here, so a grant repeated after a lost reply finds its own lease.
    let id = randomInt(1, 2 ** 48);
    return this.run('Lease', true, async (m, deadline, ambiguous) => {
      for (let collisions = 0; ; collisions++) {
        try {
          const r = await m.client.leaseClient.leaseGrant({ TTL: seconds, ID: id }, { deadline });
          if (r.error !== '') throw new Error(`etcdserver: ${r.error}`);
          return num(r.ID);
        } catch (err) {
          if (!(err instanceof Error && err.message.includes('lease already exists')) || collisions >= 4) throw err;
          if (ambiguous) return id; // an earlier attempt of this call granted it
          id = randomInt(1, 2 ** 48);
        }
      }
    });
  }

  async keepAlive(lease: LeaseId): Promise<number> {
    this.calls.count('keepAlive');
    this.checkOpen();
    const id = checkLeaseId(lease);
    const ttl = await this.run('Lease', true, (m, deadline) => keepAliveOnce(m, id, deadline));
    if (ttl <= 0) throw new DvsError('EDVSNOENT', `lease ${id} not found (expired or revoked)`, { details: { lease: id } });
    return ttl * 1000;
  }

  async revokeLease(lease: LeaseId): Promise<void> {
    this.calls.count('revokeLease');
    this.checkOpen();
    const id = checkLeaseId(lease);
    await this.run('Lease', true, async (m, deadline, ambiguous) => {
      try {
        await m.client.leaseClient.leaseRevoke({ ID: id }, { deadline });
      } catch (err) {
        // Not found after an attempt whose reply was lost: that attempt revoked it.
        if (ambiguous && classify(err).error.code === 'EDVSNOENT') return;
        throw err;
      }
    });
  }

  async watch(prefix: string, fromRevision: number | undefined, onEvent: WatchCallback, opts: WatchOptions = {}): Promise<Unsubscribe> {
    this.calls.count('watch');
    this.checkOpen();
    checkPrefix(prefix, this.limits);
    const from = fromRevision === undefined || fromRevision === null ? undefined : checkRevision(fromRevision, 'fromRevision');
    const range = prefixRange(prefix);
    if (from !== undefined) {
      // etcd reports a compacted start revision only after the watch is created: ask first, so the
      // call itself fails with EDVSRANGE as on the other backends.
      await this.run('KV', true, async (m, deadline) => {
        try {
          await m.client.kv.range({ ...range, revision: from + 1, count_only: true, limit: 1 }, { deadline });
        } catch (err) {
          if (!(err instanceof Error && err.message.includes('future revision'))) throw err;
        }
      });
    }
    const w = new EtcdWatch(this, range, from, onEvent, opts.onError);
    this.watches.add(w);
    try {
      await w.start(Date.now() + this.requestTimeoutMs);
    } catch (err) {
      this.watches.delete(w);
      w.cancel();
      throw err;
    }
    return () => {
      this.watches.delete(w);
      w.cancel();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.cancel();
    this.watches.clear();
    // Let half-closed streams say goodbye before the channels go.
    await sleep(0);
    for (const m of this.members) m.close();
  }

  // ---------------------------------------------------------------- extras (not counted)

  /** The store's current revision (a linearizable read). */
  async revision(): Promise<number> {
    this.checkOpen();
    const r = await this.run('KV', true, (m, deadline) => m.client.kv.range({ ...prefixRange(''), count_only: true, limit: 1 }, { deadline }));
    return num(r.header.revision);
  }

  /** Compacts etcd's history up to `revision`: watches can no longer resume from before it. */
  async compact(revision: number): Promise<void> {
    this.checkOpen();
    checkRevision(revision, 'revision');
    await this.run('KV', false, (m, deadline) => m.client.kv.compact({ revision, physical: true }, { deadline }));
  }

  /** The member calls go to now (tests, diagnostics). */
  get currentEndpoint(): string {
    return this.endpoints[this.current]!;
  }

  // ---------------------------------------------------------------- internals

  /** @internal Whether `close` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal The member to use now. */
  member(): { index: number; member: EtcdEndpoint } {
    return { index: this.current, member: this.members[this.current]! };
  }

  /** @internal Moves on from member `index` (unless someone already did). */
  failed(index: number): void {
    if (this.current === index) this.current = (index + 1) % this.members.length;
  }

  /** @internal */
  get watchRetryMax(): number {
    return this.watchRetryMaxMs;
  }

  /** @internal A watch that ended by itself. */
  forget(w: EtcdWatch): void {
    this.watches.delete(w);
  }

  private checkOpen(): void {
    if (this.closed) throw new DvsError('EDVSSHUTDOWN', 'etcd store closed');
  }

  private encode(value: unknown): Buffer {
    checkPayload(value, Number.MAX_SAFE_INTEGER);
    const bytes = encodeValue(value);
    if (bytes.byteLength > this.limits.maxValueBytes) {
      throw new DvsError('EDVSMSGSIZE', `value of ${bytes.byteLength} bytes exceeds ${this.limits.maxValueBytes}`, { details: { limit: this.limits.maxValueBytes } });
    }
    return bytes;
  }

  private toRequestOp(o: CheckedOp): IRequestOp {
    switch (o.op) {
      case 'put':
        return { request_put: { key: keyBytes(o.key), value: this.encode(o.value), lease: o.lease } };
      case 'delete':
        return { request_delete_range: o.prefix ? prefixRange(o.key) : { key: keyBytes(o.key) } };
      case 'get':
        return { request_range: o.prefix ? prefixRange(o.key) : { key: keyBytes(o.key) } };
    }
  }

  /**
   * Runs one call with failover: `attempt` on the current member, then on the next ones, with a
   * short backoff after each full round, until `requestTimeoutMs`. `ambiguous` tells the attempt
   * that an earlier one may have taken effect.
   */
  private async run<T>(service: EtcdService, idempotent: boolean, attempt: (m: EtcdEndpoint, deadline: number, ambiguous: boolean) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.requestTimeoutMs;
    const attemptMs = idempotent ? Math.max(250, Math.floor(this.requestTimeoutMs / 3)) : this.requestTimeoutMs;
    let ambiguous = false;
    let last: Failure | undefined;
    let inRound = 0;
    let backoff = 25;
    for (;;) {
      this.checkOpen();
      const left = deadline - Date.now();
      if (left <= 0) throw this.exhausted(last);
      const { index, member } = this.member();
      if (await member.ready(service, Math.min(left, this.dialTimeoutMs))) {
        try {
          return await attempt(member, Math.min(deadline, Date.now() + attemptMs), ambiguous);
        } catch (err) {
          this.checkOpen();
          const f = classify(err);
          if (f.kind === 'fatal') throw f.error;
          if (f.kind === 'unknown') {
            if (!idempotent) throw f.error;
            ambiguous = true;
          }
          last = f;
        }
      } else {
        this.checkOpen();
        last = { kind: 'unsent', error: new DvsError('EDVSNOTCONN', `etcd: cannot connect to ${member.url}`) };
      }
      this.failed(index);
      if (++inRound >= this.members.length) {
        inRound = 0;
        await sleep(Math.min(backoff, deadline - Date.now()));
        backoff = Math.min(backoff * 2, 500);
      }
    }
  }

  private exhausted(last: Failure | undefined): DvsError {
    const why = last === undefined ? '' : `: ${last.error.message}`;
    if (last?.error.code === 'EDVSTIMEDOUT') {
      return new DvsError('EDVSTIMEDOUT', `etcd: no reply within ${this.requestTimeoutMs} ms${why}`, { cause: last.error });
    }
    return new DvsError('EDVSNOTCONN', `etcd: no member of ${this.endpoints.join(', ')} reachable within ${this.requestTimeoutMs} ms${why}`, last === undefined ? {} : { cause: last.error });
  }
}

/**
 * Closes a stream we are done with: half-close first, so the stream is no longer writable and etcd3
 * does not take the cancellation that follows for a failure of the member (it would reset every
 * channel to it).
 */
function endStream(s: { end(): void; cancel(): void }): void {
  try {
    s.end();
  } catch {
    // already closed
  }
  try {
    s.cancel();
  } catch {
    // already closed
  }
}

/** One keepalive on its own short stream: the lease's remaining TTL in seconds (0: not found). */
async function keepAliveOnce(m: EtcdEndpoint, lease: number, deadline: number): Promise<number> {
  const stream = await m.client.leaseClient.leaseKeepAlive({ deadline });
  return new Promise<number>((resolve, reject) => {
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      endStream(stream);
      f();
    };
    stream.on('data', (r) => {
      if (num(r.ID) === lease) finish(() => resolve(num(r.TTL)));
    });
    stream.on('error', (err) => finish(() => reject(err)));
    stream.on('end', () => finish(() => reject(new Error('keepalive stream ended: Connection dropped'))));
    stream.write({ ID: lease });
  });
}

type WatchStream = Awaited<ReturnType<EtcdEndpoint['client']['watchClient']['watch']>>;

/**
 * One DVS watch: an etcd watch stream on some member, re-opened on the next member from the last
 * delivered revision whenever it breaks, until cancelled or ended by compaction / a fatal error.
 */
class EtcdWatch {
  /** Every event up to this revision was delivered (undefined until the first stream says where "now" is). */
  private last: number | undefined;
  private stream: WatchStream | undefined;
  private cancelled = false;
  private ended = false;
  private established = false;
  private retryMs = 50;
  private timer: NodeJS.Timeout | undefined;
  private settle: { resolve: () => void; reject: (e: DvsError) => void } | undefined;

  constructor(
    private readonly store: EtcdStore,
    private readonly range: { key: Buffer; range_end: Buffer },
    from: number | undefined,
    private readonly onEvent: WatchCallback,
    private readonly onError: ((err: DvsError) => void) | undefined,
  ) {
    this.last = from;
  }

  /** Resolves once etcd confirms the watch; fails with the last error at `deadline`. */
  start(deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.established) return;
        this.settle = undefined;
        reject(new DvsError('EDVSNOTCONN', `etcd: watch not established within ${this.store.requestTimeoutMs} ms`));
      }, Math.max(1, deadline - Date.now()));
      this.settle = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      void this.open();
    });
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.closeStream();
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = undefined;
    if (s === undefined) return;
    endStream(s);
  }

  private get dead(): boolean {
    return this.cancelled || this.ended || this.store.isClosed;
  }

  private async open(): Promise<void> {
    if (this.dead) return;
    const { index, member } = this.store.member();
    const ok = await member.ready('Watch', this.store.dialTimeoutMs);
    if (this.dead) return;
    if (!ok) return this.retry(index);
    let stream: WatchStream;
    try {
      stream = await member.client.watchClient.watch();
    } catch {
      return this.retry(index);
    }
    if (this.dead) {
      stream.on('error', noop);
      endStream(stream);
      return;
    }
    this.stream = stream;
    let broken = false;
    const lost = (): void => {
      if (broken) return;
      broken = true;
      if (this.stream === stream) {
        this.stream = undefined;
        this.retry(index);
      }
    };
    stream.on('data', (res) => {
      if (this.stream === stream) this.onResponse(res, index);
    });
    stream.on('error', lost);
    stream.on('end', lost);
    const req = this.last === undefined ? { ...this.range } : { ...this.range, start_revision: this.last + 1 };
    stream.write({ create_request: req });
  }

  private retry(index: number): void {
    if (this.dead) return;
    this.store.failed(index);
    const jitter = 0.8 + Math.random() * 0.4;
    const wait = Math.round(this.retryMs * jitter);
    this.retryMs = Math.min(this.retryMs * 2, this.store.watchRetryMax);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.open();
    }, wait);
  }

  private onResponse(res: IWatchResponse, index: number): void {
    if (this.dead) return;
    if (num(res.compact_revision) !== 0) {
      const from = this.last ?? 0;
      this.end(new DvsError('EDVSRANGE', `etcd: revision ${from} is compacted; watches may resume from ${num(res.compact_revision) - 1}`, { details: { revision: from, compactRevision: num(res.compact_revision) - 1 } }));
      return;
    }
    if (res.canceled) {
      const f = classify(new Error(res.cancel_reason === '' ? 'watch canceled by etcd (UNAVAILABLE)' : res.cancel_reason));
      if (f.kind === 'fatal') {
        this.end(f.error);
      } else {
        this.closeStream();
        this.retry(index);
      }
      return;
    }
    if (res.created) {
      if (this.last === undefined) this.last = num(res.header.revision);
      this.retryMs = 50;
      if (!this.established) {
        this.established = true;
        this.settle?.resolve();
        this.settle = undefined;
      }
    }
    // The events of one revision always come in one response, so a response is delivered whole.
    const after = this.last ?? 0;
    for (const ev of res.events) {
      if (this.cancelled) return;
      const kv = ev.kv;
      const revision = num(kv.mod_revision);
      if (revision <= after) continue; // delivered before a re-open
      const key = kv.key.toString('utf8');
      let event: WatchEvent;
      if (ev.type === 'Delete') {
        event = { type: 'delete', key, revision };
      } else {
        const lease = num(kv.lease);
        const base = { type: 'put' as const, key, value: decodeStored(kv.value), revision, createRevision: num(kv.create_revision), version: num(kv.version) };
        event = lease === 0 ? base : { ...base, lease };
      }
      try {
        this.onEvent(event);
      } catch (err) {
        process.emitWarning(`watch callback threw: ${err instanceof Error ? err.message : String(err)}`, { code: 'DVS_WATCH_CALLBACK' });
      }
      if (revision > (this.last ?? 0)) this.last = revision;
    }
  }

  /** The watch is over (not by cancel): tell the caller once. */
  private end(err: DvsError): void {
    if (this.dead) return;
    this.ended = true;
    this.closeStream();
    this.store.forget(this);
    if (!this.established) {
      this.settle?.reject(err);
      this.settle = undefined;
      return;
    }
    try {
      this.onError?.(err);
    } catch (e) {
      process.emitWarning(`watch onError threw: ${e instanceof Error ? e.message : String(e)}`, { code: 'DVS_WATCH_CALLBACK' });
    }
  }
}
