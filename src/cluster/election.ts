/**
 * Leader election with fencing epochs on any `CoordinationStore` (docs/coordination.md, "Election"),
 * the scheme of etcd's own `concurrency.Election`, so it needs nothing beyond the store interface:
 *
 * - A candidate puts `<prefix><lease>` under its lease, by a transaction that creates the key only if
 *   it is absent (`createRevision == 0`; a candidate campaigning again with the same lease finds its
 *   key and keeps it).
 * - The leader is the candidate whose key has the **lowest createRevision**; the others wait (by
 *   watch) until every key created before theirs is gone (resigned, or deleted with an expired lease).
 * - The leader's **epoch** is its key's createRevision: unique to that leadership, and strictly
 *   greater than every earlier leader's (a later leader's key was created after the previous leader's
 *   key, which had the lowest createRevision at the time). The store itself is the fence: a write made
 *   with `leadership.fence()` among its compares lands only while the key still exists with that
 *   createRevision, so a deposed leader that has not noticed yet cannot write.
 */
import { DvsError } from '../ipc/errors.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { systemClock } from '../runtime/system-clock.js';
import { Emitter } from './emitter.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { Compare, CoordinationStore, KeyValue, LeaseId, StoreValue, TxnRequest, TxnResult, Unsubscribe, WatchEvent } from './store.js';

export interface ElectionOptions {
  /** Key prefix of the layout; the election's keys are `<root>/elections/<name>/<lease>`. Default '/dvs'. */
  readonly root?: string;
  /** Timers (campaign timeouts, the keepalive of leases the election grants). Default: the system clock. */
  readonly clock?: Clock;
}

export interface CampaignOptions {
  /**
   * Campaign under this lease, kept alive by the caller (e.g. the node's registration lease). Without
   * it, the election grants a lease of `ttlMs`, keeps it alive, and revokes it on `resign`.
   */
  readonly lease?: LeaseId;
  /** TTL of the lease the election grants. Default 10 000 ms. */
  readonly ttlMs?: number;
  /** Give up (EDVSTIMEDOUT) after this long, withdrawing the candidacy. Default: wait as long as it takes. */
  readonly timeoutMs?: number;
  /** Abort the campaign (EDVSINTR), withdrawing the candidacy. */
  readonly signal?: AbortSignal;
}

export interface LeaderInfo {
  /** The leader's candidate key. */
  readonly key: string;
  readonly value: StoreValue;
  /** The fencing epoch: the key's createRevision. */
  readonly epoch: number;
  readonly lease: LeaseId;
}

export interface LeadershipEvents {
  /** The leadership ended without `resign` (lease expired or revoked, key deleted): stop acting as leader. */
  lost: DvsError;
  error: DvsError;
}

const noop = (): void => undefined;

function asDvsError(err: unknown): DvsError {
  return err instanceof DvsError ? err : new DvsError('EDVSIO', err instanceof Error ? err.message : String(err), { cause: err });
}

function leaderOf(entries: Iterable<KeyValue>): KeyValue | undefined {
  let best: KeyValue | undefined;
  for (const kv of entries) if (best === undefined || kv.createRevision < best.createRevision) best = kv;
  return best;
}

function infoOf(kv: KeyValue): LeaderInfo {
  return { key: kv.key, value: kv.value, epoch: kv.createRevision, lease: kv.lease ?? 0 };
}

/** One won election. */
export class Leadership extends Emitter<LeadershipEvents> {
  private ended = false;
  private unwatch: Unsubscribe | undefined;

  /** @internal */
  constructor(
    private readonly store: CoordinationStore,
    readonly name: string,
    readonly key: string,
    /** The fencing epoch: strictly greater than every earlier leader's of this election. */
    readonly epoch: number,
    readonly lease: LeaseId,
    private readonly keeper: LeaseKeeper | undefined,
  ) {
    super();
  }

  /** Whether `resign` was called or the leadership was lost. */
  get over(): boolean {
    return this.ended;
  }

  /** A compare that holds only while this leadership stands: put it in every transaction the leader makes. */
  fence(): Compare {
    return { key: this.key, createRevision: this.epoch };
  }

  /** Runs `req` fenced by this leadership: `succeeded` is false (and `failure` ran) if it no longer stands. */
  fencedTxn(req: TxnRequest): Promise<TxnResult> {
    return this.store.txn({ ...req, compare: [this.fence(), ...req.compare] });
  }

  /** Asks the store whether this leadership still stands. */
  async isLeader(): Promise<boolean> {
    const kv = await this.store.get(this.key);
    return kv !== undefined && kv.createRevision === this.epoch;
  }

  /** Replaces the leader's value (what observers see); EDVSGRPLEADER if the leadership is gone. */
  async proclaim(value: StoreValue): Promise<void> {
    const r = await this.store.txn({ compare: [this.fence()], success: [{ op: 'put', key: this.key, value, lease: this.lease }] });
    if (!r.succeeded) throw new DvsError('EDVSGRPLEADER', `no longer the leader of election ${this.name} (epoch ${this.epoch})`);
  }

  /** Steps down: deletes the candidate key (if it is still this leadership's) and ends a lease the election granted. */
  async resign(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.stopWatching();
    this.keeper?.stop();
    if (this.keeper !== undefined) {
      await this.store.revokeLease(this.lease).catch(noop);
      return;
    }
    await this.store.txn({ compare: [this.fence()], success: [{ op: 'delete', key: this.key }] });
  }

  /** @internal Follows the candidate key, so a deletion is reported as `lost`. */
  async follow(fromRevision: number): Promise<void> {
    const unwatch = await this.store.watch(
      this.key,
      fromRevision,
      (ev) => {
        if (ev.key === this.key && ev.type === 'delete') this.lose(new DvsError('EDVSNOENT', `leadership of election ${this.name} (epoch ${this.epoch}) lost: its key was deleted`));
      },
      {
        onError: (err) => {
          // Cannot follow any more: ask the store once.
          this.unwatch = undefined;
          this.isLeader().then(
            (still) => {
              if (!still) this.lose(err);
              else this.emit('error', err);
            },
            (e: unknown) => this.emit('error', asDvsError(e)),
          );
        },
      },
    );
    if (this.ended) unwatch();
    else this.unwatch = unwatch;
  }

  /** @internal */
  lose(err: DvsError): void {
    if (this.ended) return;
    this.ended = true;
    this.stopWatching();
    this.keeper?.stop();
    this.emit('lost', err);
  }

  private stopWatching(): void {
    this.unwatch?.();
    this.unwatch = undefined;
  }
}

export class Election {
  readonly prefix: string;
  private readonly clock: Clock;

  constructor(
    private readonly store: CoordinationStore,
    readonly name: string,
    opts: ElectionOptions = {},
  ) {
    if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new DvsError('EDVSINVAL', `election name must be 1..64 characters of [A-Za-z0-9._-], got ${String(name)}`);
    const root = opts.root ?? '/dvs';
    this.prefix = `${root}/elections/${name}/`;
    this.clock = opts.clock ?? systemClock;
  }

  /** The current leader, read from the store (undefined: no candidate). */
  async leader(): Promise<LeaderInfo | undefined> {
    const r = await this.store.getPrefix(this.prefix);
    const kv = leaderOf(r.entries);
    return kv === undefined ? undefined : infoOf(kv);
  }

  /**
   * Stands as a candidate with `value` and resolves once elected, with the leadership and its
   * fencing epoch. EDVSTIMEDOUT (`timeoutMs`) or EDVSINTR (`signal`) withdraw the candidacy;
   * EDVSNOENT if the candidacy's lease ended while waiting.
   */
  async campaign(value: StoreValue, opts: CampaignOptions = {}): Promise<Leadership> {
    const ownLease = opts.lease === undefined;
    const ttlMs = opts.ttlMs ?? 10_000;
    const since = this.clock.now();
    const lease = opts.lease ?? (await this.store.grantLease(ttlMs));
    let keeper: LeaseKeeper | undefined;
    let lostLease: DvsError | undefined;
    // While campaigning a lost lease fails the campaign; once elected, it ends the leadership.
    let onLost = (err: DvsError): void => {
      lostLease = err;
    };
    if (ownLease) {
      keeper = new LeaseKeeper({ store: this.store, lease, ttlMs, clock: this.clock, since, onLost: (err) => onLost(err) });
      keeper.start();
    }
    const key = `${this.prefix}${lease}`;
    const withdraw = async (): Promise<void> => {
      keeper?.stop();
      if (ownLease) await this.store.revokeLease(lease).catch(noop);
      else await this.store.txn({ compare: [{ key, lease }], success: [{ op: 'delete', key }] }).catch(noop);
    };
    try {
      // Create the key if absent (a campaign again with the same lease keeps the existing key).
      const put = await this.store.txn({
        compare: [{ key, exists: false }],
        success: [{ op: 'put', key, value, lease }],
        failure: [{ op: 'get', key }],
      });
      let epoch = put.revision;
      if (!put.succeeded) {
        const existing = put.results[0]?.op === 'get' ? put.results[0].entries[0] : undefined;
        if (existing === undefined) throw new DvsError('EDVSBUSY', `candidate key ${key} changed during the campaign`);
        epoch = existing.createRevision;
        await this.store.txn({ compare: [{ key, createRevision: epoch }], success: [{ op: 'put', key, value, lease }] });
      }
      const deadline = opts.timeoutMs === undefined ? undefined : this.clock.now() + opts.timeoutMs;
      for (;;) {
        if (lostLease !== undefined) throw new DvsError('EDVSNOENT', `campaign for ${this.name} lost its lease: ${lostLease.message}`);
        const snap = await this.store.getPrefix(this.prefix);
        const mine = snap.entries.find((kv) => kv.key === key);
        if (mine === undefined || mine.createRevision !== epoch) throw new DvsError('EDVSNOENT', `candidacy ${key} ended (lease expired or revoked) before it was elected`);
        const ahead = new Set(snap.entries.filter((kv) => kv.createRevision < epoch).map((kv) => kv.key));
        if (ahead.size === 0) {
          const leadership = new Leadership(this.store, this.name, key, epoch, lease, keeper);
          onLost = (err) => leadership.lose(err);
          if (lostLease !== undefined) leadership.lose(lostLease);
          await leadership.follow(snap.revision);
          return leadership;
        }
        ahead.add(key);
        await this.waitForDelete(snap.revision, ahead, deadline, opts.signal);
      }
    } catch (err) {
      await withdraw();
      throw err;
    }
  }

  /**
   * Calls `onLeader` with the current leader (undefined: none) and again whenever it changes (a new
   * leader, or the leader's value). Re-reads after a watch that ended. Returns the stop function.
   */
  async observe(onLeader: (leader: LeaderInfo | undefined) => void, opts: { onError?: (err: DvsError) => void } = {}): Promise<Unsubscribe> {
    const candidates = new Map<string, KeyValue>();
    let shown: string | undefined = 'none yet';
    let stopped = false;
    let unwatch: Unsubscribe | undefined;
    const report = (): void => {
      const l = leaderOf(candidates.values());
      const tag = l === undefined ? undefined : `${l.key}@${l.createRevision}@${l.modRevision}`;
      if (tag === shown) return;
      shown = tag;
      onLeader(l === undefined ? undefined : infoOf(l));
    };
    const onEvent = (ev: WatchEvent): void => {
      if (stopped) return;
      if (ev.type === 'delete') candidates.delete(ev.key);
      else candidates.set(ev.key, { key: ev.key, value: ev.value, createRevision: ev.createRevision, modRevision: ev.revision, version: ev.version, ...(ev.lease === undefined ? {} : { lease: ev.lease }) });
      report();
    };
    const load = async (): Promise<void> => {
      const r = await this.store.getPrefix(this.prefix);
      if (stopped) return;
      candidates.clear();
      for (const kv of r.entries) candidates.set(kv.key, kv);
      report();
      const u = await this.store.watch(this.prefix, r.revision, onEvent, { onError: (err) => restart(err) });
      if (stopped) u();
      else unwatch = u;
    };
    const restart = (err: DvsError): void => {
      unwatch = undefined;
      if (stopped) return;
      opts.onError?.(err);
      const retry = (delayMs: number): void => {
        this.clock.setTimer(delayMs, () => {
          if (stopped) return;
          load().catch((e: unknown) => {
            opts.onError?.(asDvsError(e));
            retry(Math.min(5000, delayMs * 2));
          });
        });
      };
      retry(50);
    };
    await load();
    return () => {
      stopped = true;
      unwatch?.();
      unwatch = undefined;
    };
  }

  /** Resolves when one of `keys` is deleted (or the watch ends: the caller re-reads); fails at `deadline` or on abort. */
  private async waitForDelete(fromRevision: number, keys: ReadonlySet<string>, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw new DvsError('EDVSINTR', `campaign for ${this.name} aborted`);
    let timer: TimerHandle | undefined;
    let unwatch: Unsubscribe | undefined;
    let settled = false;
    let onAbort: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        if (deadline !== undefined) {
          const left = deadline - this.clock.now();
          if (left <= 0) return reject(new DvsError('EDVSTIMEDOUT', `not elected leader of ${this.name} in time`));
          timer = this.clock.setTimer(left, () => reject(new DvsError('EDVSTIMEDOUT', `not elected leader of ${this.name} in time`)));
        }
        if (signal !== undefined) {
          onAbort = () => reject(new DvsError('EDVSINTR', `campaign for ${this.name} aborted`));
          signal.addEventListener('abort', onAbort, { once: true });
        }
        this.store
          .watch(
            this.prefix,
            fromRevision,
            (ev) => {
              if (ev.type === 'delete' && keys.has(ev.key)) resolve();
            },
            { onError: () => resolve() },
          )
          .then(
            (u) => {
              // Established only after the wait ended: stop it at once.
              if (settled) u();
              else unwatch = u;
            },
            (err: unknown) => reject(asDvsError(err)),
          );
      });
    } finally {
      if (timer !== undefined) this.clock.clearTimer(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
      settled = true;
      unwatch?.();
    }
  }
}
