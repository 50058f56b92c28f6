/**
 * A write-back cache of fixed-size device blocks, bounded by a byte budget (LRU). The device may be
 * a network round trip away, so the cache exists to cut requests: concurrent misses on one block
 * share one device read, a batch of misses is coalesced into one read per contiguous run, and
 * `flush` writes dirty blocks sorted with contiguous ones joined into one device write.
 *
 * Rules that keep it correct without a lock of its own:
 *  - only clean blocks are evicted; dirty ones leave only through a write-back (`flush`), which the
 *    caller runs at a point where no writer of its own can run (readers may);
 *  - a device read that completes never replaces a block already cached (the cached one is newer);
 *  - `fresh` (a block whose old contents do not matter) cancels a read still in flight for it, so a
 *    late read cannot bring back stale contents.
 * `read` returns the cached bytes themselves: a caller copies what it needs before its next await.
 */
import { DvsError } from '../../ipc/errors.js';
import type { BlockDevice } from './block-device.js';

export interface BlockCacheOptions {
  /** Byte budget for cached blocks; dirty blocks may exceed it until the next write-back. */
  readonly budgetBytes: number;
  /** Largest single device request, in bytes. */
  readonly maxRequestBytes?: number;
}

interface Entry {
  data: Uint8Array;
  dirty: boolean;
  /** Bumped on every change, so a write-back marks clean only what it actually wrote. */
  version: number;
  /** Used since eviction last passed it (the clock's second chance). */
  used?: boolean;
}

/** One device read of blocks [first, first+count): one promise and one callback for the whole run. */
interface RunRead {
  readonly first: number;
  promise: Promise<Uint8Array>;
  /** The run's bytes once read, for a reader whose block was evicted before it came back. */
  bytes: Uint8Array | undefined;
}

/** A block of a run in flight. */
interface PendingRead {
  readonly run: RunRead;
  /** False once `fresh` superseded it: its result must not be cached. */
  valid: boolean;
}

/** A few tries suffice: a block is lost between load and use only when evicted in that gap. */
const MAX_LOAD_ATTEMPTS = 8;
/** Longest run of cached blocks a read may span to join two runs of missing ones. */
const MAX_BRIDGE_BLOCKS = 4;
export const DEFAULT_MAX_REQUEST_BYTES = 1 << 20;
/** Write-back requests in flight at once: enough to keep the device busy, few enough that a read
 * sent meanwhile does not queue behind the whole write-back. */
const WRITE_BACK_DEPTH = 4;

export class BlockCache {
  private readonly entries = new Map<number, Entry>();
  /**
   * The clean blocks of `entries`, in the order they became clean or were given a second chance:
   * eviction is a clock over them (a used block goes to the back once), never scanning dirty ones
   * and never reordering a map on every hit.
   */
  private readonly clean = new Set<number>();
  /**
   * Eviction's place in `clean`, kept between evictions: every block it passes is dropped or moved
   * to the back, so it stays at the front, and a fresh iterator would step again over every entry
   * deleted there since, at each insert of a long read.
   */
  private hand: Iterator<number> | undefined;
  private readonly pending = new Map<number, PendingRead>();
  private readonly prefetches = new Set<Promise<void>>();
  private readonly budgetBlocks: number;
  readonly maxRequestBlocks: number;

  constructor(
    private readonly dev: BlockDevice,
    readonly blockSize: number,
    opts: BlockCacheOptions,
  ) {
    // Below a handful of blocks one operation's working set (inode, indirects, data) would thrash.
    this.budgetBlocks = Math.max(16, Math.floor(opts.budgetBytes / blockSize));
    this.maxRequestBlocks = Math.max(1, Math.floor((opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES) / blockSize));
  }

  /** Cached blocks (clean and dirty). */
  get cachedBlocks(): number {
    return this.entries.size;
  }

  get dirtyCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.dirty) n++;
    return n;
  }

  isCached(block: number): boolean {
    return this.entries.has(block) || this.pending.has(block);
  }

  /** The block's bytes (the cache's own buffer: copy before the next await, never mutate). */
  async read(block: number): Promise<Uint8Array> {
    for (let attempt = 0; attempt < MAX_LOAD_ATTEMPTS; attempt++) {
      const e = this.entries.get(block);
      if (e !== undefined) {
        this.touch(block, e);
        return e.data;
      }
      let p = this.pending.get(block);
      if (p === undefined) {
        this.startRun(block, 1);
        p = this.pending.get(block);
      }
      if (p === undefined) break;
      const buf = await p.run.promise;
      const now = this.entries.get(block);
      if (now !== undefined) return now.data;
      if (p.valid) return this.blockOf(p.run, buf, block);
    }
    throw new DvsError('EDVSIO', `block ${block} could not be kept in the cache`, { details: { block } });
  }

  /**
   * The bytes of every block in `blocks` (same order), missing ones fetched with one device read
   * per contiguous run (up to `maxRequestBytes`), all runs in flight at once. Blocks in `ahead`
   * (read-ahead) join the same runs but are not waited for.
   */
  async readMany(blocks: readonly number[], ahead: readonly number[] = []): Promise<Uint8Array[]> {
    const out = new Array<Uint8Array>(blocks.length);
    let missing = false;
    for (let i = 0; i < blocks.length && !missing; i++) {
      const e = this.entries.get(blocks[i] ?? -1);
      if (e === undefined) missing = true;
      else out[i] = e.data;
    }
    // All cached (the common case of a warm cache): no wait per block.
    if (!missing) {
      for (const b of blocks) this.peek(b);
      if (ahead.length > 0) this.prefetch(ahead);
      return out;
    }
    for (const run of this.fetchMissing(ahead.length === 0 ? blocks : [...blocks, ...ahead])) this.track(run.promise);
    // Wait for each run once (not each block), then take every block as it is now.
    const recs = blocks.map((b) => this.pending.get(b));
    const runs = new Set<Promise<Uint8Array>>();
    for (const p of recs) if (p !== undefined) runs.add(p.run.promise);
    if (runs.size > 0) await Promise.all(runs);
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i] ?? -1;
      const e = this.entries.get(b);
      const p = recs[i];
      if (e !== undefined) {
        this.touch(b, e);
        out[i] = e.data;
      } else if (p?.valid === true && p.run.bytes !== undefined) {
        out[i] = this.blockOf(p.run, p.run.bytes, b);
      } else {
        out[i] = await this.read(b); // superseded or evicted meanwhile (a tiny budget): one at a time
      }
    }
    return out;
  }

  /** The block's bytes when cached (counted as a use), else undefined; never waits. */
  peek(block: number): Uint8Array | undefined {
    const e = this.entries.get(block);
    if (e === undefined) return undefined;
    this.touch(block, e);
    return e.data;
  }

  /** Starts reading the missing blocks of `blocks` in the background (read-ahead); errors are dropped. */
  prefetch(blocks: readonly number[]): void {
    for (const run of this.fetchMissing(blocks)) this.track(run.promise);
  }

  /** Keeps `work` (background reading) in view of `drain`; its failure is dropped. */
  track(work: Promise<unknown>): void {
    const done = work.then(
      () => undefined,
      () => undefined,
    );
    this.prefetches.add(done);
    void done.finally(() => this.prefetches.delete(done));
  }

  /** Waits for the read-aheads in flight (before the device goes away). */
  async drain(): Promise<void> {
    while (this.prefetches.size > 0) await Promise.all([...this.prefetches]);
  }

  /** Changes a block in place through `change` (run synchronously on the cached bytes) and marks it dirty. */
  async modify(block: number, change: (data: Uint8Array) => void): Promise<void> {
    for (let attempt = 0; attempt < MAX_LOAD_ATTEMPTS; attempt++) {
      const e = this.entries.get(block);
      if (e !== undefined) {
        change(e.data);
        this.markDirty(block, e);
        return;
      }
      const data = await this.read(block);
      if (!this.entries.has(block)) {
        // Loaded but evicted before we came back (or never inserted): keep this copy as the entry.
        this.insert(block, { data: data.slice(), dirty: false, version: 0 });
      }
    }
    throw new DvsError('EDVSIO', `block ${block} could not be kept in the cache`, { details: { block } });
  }

  /** A block whose device contents do not matter (just allocated): `data` or zeros, dirty, no device read. */
  fresh(block: number, data?: Uint8Array): Uint8Array {
    const p = this.pending.get(block);
    if (p !== undefined) {
      p.valid = false;
      this.pending.delete(block);
    }
    const bytes = new Uint8Array(this.blockSize);
    if (data !== undefined) bytes.set(data.subarray(0, this.blockSize));
    const old = this.entries.get(block);
    const e: Entry = { data: bytes, dirty: true, version: (old?.version ?? 0) + 1 };
    this.entries.delete(block);
    this.clean.delete(block);
    this.insert(block, e);
    return bytes;
  }

  overBudget(): boolean {
    return this.entries.size > this.budgetBlocks;
  }

  /**
   * Writes every dirty block, sorted, contiguous ones joined into one device write of at most
   * `maxRequestBytes`. Does not call the device's own flush (the caller decides durability).
   * Flushes run one at a time, so no block has two writes in flight (a write a replicated disk
   * sends again after a failover can never overtake a newer one).
   */
  async flush(): Promise<void> {
    const prev = this.flushing;
    const run = (async (): Promise<void> => {
      await prev?.catch(() => undefined);
      await this.flushNow();
    })();
    this.flushing = run;
    try {
      await run;
    } finally {
      if (this.flushing === run) this.flushing = undefined;
    }
  }

  private flushing: Promise<void> | undefined;

  private async flushNow(): Promise<void> {
    const dirty = [...this.entries].filter(([, e]) => e.dirty).sort((a, b) => a[0] - b[0]);
    const runs: [number, Entry][][] = [];
    for (const item of dirty) {
      const run = runs[runs.length - 1];
      const last = run?.[run.length - 1];
      if (run !== undefined && last !== undefined && last[0] + 1 === item[0] && run.length < this.maxRequestBlocks) run.push(item);
      else runs.push([item]);
    }
    let nextRun = 0;
    const worker = async (): Promise<void> => {
      while (nextRun < runs.length) {
        const run = runs[nextRun++];
        const first = run?.[0];
        if (run === undefined || first === undefined) continue;
        const buf = new Uint8Array(run.length * this.blockSize);
        const versions = run.map(([, e], i) => {
          buf.set(e.data, i * this.blockSize);
          return e.version;
        });
        await this.dev.write(first[0] * this.blockSize, buf);
        run.forEach(([block, e], i) => {
          if (this.entries.get(block) === e && e.version === versions[i]) {
            e.dirty = false;
            this.clean.add(block);
          }
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITE_BACK_DEPTH, runs.length) }, worker));
    this.evict(undefined);
  }

  /** Copies of the dirty blocks, sorted (to carry them to another cache on the same device). */
  dirtyBlocks(): { block: number; data: Uint8Array }[] {
    return [...this.entries]
      .filter(([, e]) => e.dirty)
      .sort((a, b) => a[0] - b[0])
      .map(([block, e]) => ({ block, data: e.data.slice() }));
  }

  /** Takes blocks written elsewhere and not yet on the device; they replace what is cached. */
  adoptDirty(list: readonly { block: number; data: Uint8Array }[]): void {
    for (const { block, data } of list) {
      if (data.length !== this.blockSize) {
        throw new DvsError('EDVSINVAL', `adopted block ${block} has ${data.length} bytes, not ${this.blockSize}`, { details: { block } });
      }
      this.fresh(block, data);
    }
  }

  /** Forgets every clean block (dirty ones stay). */
  dropClean(): void {
    for (const block of this.clean) this.entries.delete(block);
    this.clean.clear();
  }

  private fetchMissing(blocks: readonly number[]): RunRead[] {
    const missing = [...new Set(blocks)].filter((b) => !this.isCached(b)).sort((a, b) => a - b);
    const started: RunRead[] = [];
    let i = 0;
    while (i < missing.length) {
      const first = missing[i] ?? 0;
      let end = first + 1;
      i++;
      // Extend the run over the next missing block when the gap to it is short and already cached
      // (an indirect block between two data runs): a few wasted bytes instead of a request.
      while (i < missing.length) {
        const next = missing[i] ?? 0;
        if (next - first + 1 > this.maxRequestBlocks || next - end > MAX_BRIDGE_BLOCKS) break;
        let bridgeable = true;
        for (let b = end; b < next; b++) if (!this.isCached(b)) bridgeable = false;
        if (!bridgeable) break;
        end = next + 1;
        i++;
      }
      started.push(this.startRun(first, end - first));
    }
    return started;
  }

  /**
   * One device read for blocks [first, first+count), its blocks not cached or in flight already
   * registered as pending; when it completes, those still valid enter the cache.
   */
  private startRun(first: number, count: number): RunRead {
    const run: RunRead = { first, promise: this.dev.read(first * this.blockSize, count * this.blockSize), bytes: undefined };
    const mine: number[] = [];
    for (let block = first; block < first + count; block++) {
      // A bridged block already cached or in flight keeps what it has.
      if (this.isCached(block)) continue;
      this.pending.set(block, { run, valid: true });
      mine.push(block);
    }
    run.promise = run.promise.then(
      (buf) => {
        run.bytes = buf;
        for (const block of mine) {
          const rec = this.pending.get(block);
          if (rec?.run !== run) continue; // superseded by `fresh`, maybe read again since
          this.pending.delete(block);
          if (rec.valid && !this.entries.has(block)) this.insert(block, { data: this.blockOf(run, buf, block), dirty: false, version: 0 });
        }
        return buf;
      },
      (err: unknown) => {
        for (const block of mine) if (this.pending.get(block)?.run === run) this.pending.delete(block);
        throw err;
      },
    );
    // A prefetch nobody awaits must not surface as an unhandled rejection.
    run.promise.catch(() => undefined);
    return run;
  }

  /** A copy of `block`'s bytes out of its run's (a cache entry must not pin the whole run). */
  private blockOf(run: RunRead, buf: Uint8Array, block: number): Uint8Array {
    const at = (block - run.first) * this.blockSize;
    return buf.slice(at, at + this.blockSize);
  }

  private touch(_block: number, e: Entry): void {
    e.used = true;
  }

  private markDirty(block: number, e: Entry): void {
    e.dirty = true;
    e.version++;
    this.clean.delete(block);
    this.touch(block, e);
  }

  private insert(block: number, e: Entry): void {
    this.entries.set(block, e);
    if (e.dirty) this.clean.delete(block);
    else this.clean.add(block);
    this.evict(block);
  }

  /** Drops clean blocks not used lately while over budget, never `keep`. */
  private evict(keep: number | undefined): void {
    if (this.entries.size <= this.budgetBlocks) return;
    // Each block is passed at most twice: once to clear its used bit, once to drop it.
    let steps = 2 * this.clean.size + 2;
    while (this.entries.size > this.budgetBlocks && steps-- > 0) {
      let next = this.hand?.next();
      if (next === undefined || next.done === true) {
        this.hand = this.clean.values();
        next = this.hand.next();
        if (next.done === true) return;
      }
      const block = next.value;
      if (block === keep) continue;
      const e = this.entries.get(block);
      if (e?.used === true) {
        e.used = false;
        this.clean.delete(block);
        this.clean.add(block);
        continue;
      }
      this.entries.delete(block);
      this.clean.delete(block);
    }
  }
}
