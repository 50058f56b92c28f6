/**
 * A small bounded cache of small files' bytes, so a popular 1 KiB file costs one stat per request
 * instead of a stat and a read (each a round trip to the file-system server). An entry is keyed by
 * path and valid only for the exact (ino, size, mtime) a fresh stat reports, so a changed file is
 * never served stale; eviction is least recently used, by total bytes.
 */
import type { WebStat } from './web-files.js';

interface Entry {
  readonly ino: number;
  readonly size: number;
  readonly mtime: number;
  readonly bytes: Uint8Array;
}

export class SmallFileCache {
  private readonly entries = new Map<string, Entry>();
  private held = 0;

  /** `maxFileBytes` 0 disables the cache. */
  constructor(readonly maxFileBytes: number, readonly maxTotalBytes: number) {}

  /** Whether a file of this version is worth caching. */
  admits(stat: WebStat): boolean {
    return stat.size <= this.maxFileBytes && stat.size <= this.maxTotalBytes;
  }

  /** The bytes of exactly this version of `path`, if held (and it becomes the most recent). */
  get(path: string, stat: WebStat): Uint8Array | undefined {
    const entry = this.entries.get(path);
    if (entry === undefined) return undefined;
    this.entries.delete(path);
    if (entry.ino !== stat.ino || entry.size !== stat.size || entry.mtime !== stat.mtime) {
      this.held -= entry.size;
      return undefined;
    }
    this.entries.set(path, entry);
    return entry.bytes;
  }

  set(path: string, stat: WebStat, bytes: Uint8Array): void {
    if (!this.admits(stat) || bytes.length !== stat.size) return;
    const old = this.entries.get(path);
    if (old !== undefined) {
      this.entries.delete(path);
      this.held -= old.size;
    }
    this.entries.set(path, { ino: stat.ino, size: stat.size, mtime: stat.mtime, bytes });
    this.held += bytes.length;
    for (const [key, entry] of this.entries) {
      if (this.held <= this.maxTotalBytes) break;
      this.entries.delete(key);
      this.held -= entry.size;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.held;
  }
}
