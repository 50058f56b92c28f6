/** How a directory and its calls are configured, and the checked settings its parts share. */
import type { AbortLike } from '../../ipc/calls.js';
import { DvsError } from '../../ipc/errors.js';
import type { Clock } from '../../kernel/clock.js';
import type { Compare } from '../store.js';
import { isInt } from './parse.js';

export interface DirectoryOptions {
  /** Key prefix of the layout. Default '/dvs'. */
  readonly root?: string;
  /** Timers (lease keepalive, waits, resync backoff). Default: the system clock. */
  readonly clock?: Clock;
  /** User slots a node reserves per DC at a time. Default 16, at most 32 (one txn stays under etcd's 128 ops). */
  readonly rangeSize?: number;
  /** A background refill starts when a node's pool falls below this. Default rangeSize / 4. */
  readonly refillBelow?: number;
  /** Attempts of a transaction that lost a race before EDVSBUSY. Default 8. */
  readonly maxRetries?: number;
  /** How long a write waits for the cache to catch up with it. Default 5000 ms. */
  readonly cacheWaitMs?: number;
  /** A claim's timeout when it gives none. Default 10000 ms. */
  readonly claimTimeoutMs?: number;
  /** A registration's timeout when it gives none. Default 10000 ms. */
  readonly registerTimeoutMs?: number;
}

export interface RegisterOptions {
  /** Take over a live registration of the same node id (a restarted daemon whose old lease has not expired): its lease is revoked. */
  readonly replace?: boolean;
  /** Fails the registration with EDVSTIMEDOUT after this many ms; -1: no timeout. Default the directory's `registerTimeoutMs`. */
  readonly timeoutMs?: number;
  /** Aborting fails the registration with EDVSINTR. */
  readonly signal?: AbortLike;
}

export interface ClaimOptions {
  /** A fixed slot (servers, tasks); without one, a user slot from the node's pool. */
  readonly slot?: number;
  /** With `slot`: exactly this generation (EDVSENDPOINT when the slot's next generation is another). */
  readonly generation?: number;
  /** Default `ep<slot>`. */
  readonly name?: string;
  /**
   * Fails the claim with EDVSTIMEDOUT after this many ms (retries of an unreachable store included);
   * -1: no timeout. Default the directory's `claimTimeoutMs`.
   */
  readonly timeoutMs?: number;
  /** Aborting fails the claim with EDVSINTR. */
  readonly signal?: AbortLike;
}

export interface RestoreOptions {
  /** More compares the publication needs (a replica group's primary: its leadership's fence). */
  readonly fence?: readonly Compare[];
  /** Marks the entry as a replica group's (EndpointRecord.failoverMs). */
  readonly failoverMs?: number;
  /** An entry of this same endpoint (another node's, or an older epoch) is replaced, not refused: a new primary's takeover, under its fence. */
  readonly replace?: boolean;
}

export interface ReleaseOptions {
  /** Release only while this node owns the entry (EDVSRMTPROC once it moved to another). */
  readonly node?: number;
}

/** The options every part of a directory works with, checked once. */
export interface DirectorySettings {
  readonly rangeSize: number;
  readonly refillBelow: number;
  readonly maxRetries: number;
  readonly cacheWaitMs: number;
  readonly claimTimeoutMs: number;
  readonly registerTimeoutMs: number;
}

export function directorySettings(opts: DirectoryOptions): DirectorySettings {
  const rangeSize = opts.rangeSize ?? 16;
  if (!isInt(rangeSize, 1, 32)) throw new DvsError('EDVSINVAL', `rangeSize must be an integer in 1..32, got ${String(opts.rangeSize)}`);
  for (const [name, v] of [
    ['claimTimeoutMs', opts.claimTimeoutMs],
    ['registerTimeoutMs', opts.registerTimeoutMs],
  ] as const) {
    if (v !== undefined && !isInt(v, -1, 0x7fffffff)) throw new DvsError('EDVSINVAL', `${name} must be an integer >= -1, got ${String(v)}`);
  }
  return {
    rangeSize,
    refillBelow: opts.refillBelow ?? Math.max(1, Math.floor(rangeSize / 4)),
    maxRetries: opts.maxRetries ?? 8,
    cacheWaitMs: opts.cacheWaitMs ?? 5000,
    claimTimeoutMs: opts.claimTimeoutMs ?? 10_000,
    registerTimeoutMs: opts.registerTimeoutMs ?? 10_000,
  };
}
