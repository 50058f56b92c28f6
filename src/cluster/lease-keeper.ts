/**
 * Keeps one lease alive on any `CoordinationStore`: a keepalive every `ttl / 3` (by default) on the
 * injected clock. The lease is declared lost, once, when the store answers EDVSNOENT (it expired or
 * was revoked) or when no keepalive sent within the last TTL was confirmed (the store may already
 * have expired it: a node that cannot prove it is alive must behave as dead).
 */
import { DvsError } from '../ipc/errors.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { CoordinationStore, LeaseId } from './store.js';

export interface LeaseKeeperOptions {
  readonly store: CoordinationStore;
  readonly lease: LeaseId;
  readonly ttlMs: number;
  readonly clock: Clock;
  /** Default ttlMs / 3. */
  readonly intervalMs?: number;
  /** When the lease was granted (or last confirmed), on `clock`. Default: now. */
  readonly since?: number;
  readonly onLost: (err: DvsError) => void;
}

export class LeaseKeeper {
  readonly lease: LeaseId;
  private readonly store: CoordinationStore;
  private readonly ttlMs: number;
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly onLost: (err: DvsError) => void;
  private timer: TimerHandle | undefined;
  private confirmed: number;
  private inflight = 0;
  private stopped = false;
  private lostWith: DvsError | undefined;
  /** Keepalives confirmed so far. */
  refreshes = 0;

  constructor(opts: LeaseKeeperOptions) {
    this.store = opts.store;
    this.lease = opts.lease;
    this.ttlMs = opts.ttlMs;
    this.clock = opts.clock;
    this.intervalMs = Math.max(1, opts.intervalMs ?? Math.floor(opts.ttlMs / 3));
    this.onLost = opts.onLost;
    this.confirmed = opts.since ?? opts.clock.now();
  }

  get lost(): DvsError | undefined {
    return this.lostWith;
  }

  start(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.schedule();
  }

  /** Stops refreshing (the lease then expires on its own unless revoked). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.timer = this.clock.setTimer(this.intervalMs, () => this.tick());
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const now = this.clock.now();
    if (now - this.confirmed >= this.ttlMs) {
      this.lose(new DvsError('EDVSTIMEDOUT', `lease ${this.lease} not confirmed for ${now - this.confirmed} ms (TTL ${this.ttlMs} ms)`, { details: { lease: this.lease } }));
      return;
    }
    // Scheduled before the answer, so refreshes keep their pace whatever the store's latency.
    this.schedule();
    if (this.inflight >= 2) return;
    this.inflight++;
    const sentAt = now;
    this.store.keepAlive(this.lease).then(
      () => {
        this.inflight--;
        this.refreshes++;
        if (sentAt > this.confirmed) this.confirmed = sentAt;
      },
      (err: unknown) => {
        this.inflight--;
        if (err instanceof DvsError && (err.code === 'EDVSNOENT' || err.code === 'EDVSSHUTDOWN')) this.lose(err);
        // Anything else (not connected, timed out) is retried at the next tick.
      },
    );
  }

  private lose(err: DvsError): void {
    if (this.stopped) return;
    this.stop();
    this.lostWith = err;
    this.onLost(err);
  }
}
