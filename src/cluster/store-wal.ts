/**
 * Durability of the embedded store: a write-ahead log of its changes plus a snapshot, in one
 * directory. Every record is on disk (fdatasync) before the write it describes is acknowledged, so
 * the store restarted from its directory has every write a client saw succeed, with the same
 * revisions, the same store id and the same lease ids.
 *
 *   store.snap   one frame: the whole state at some record sequence number (written to a temporary
 *                file, synced, then renamed over the old one)
 *   store.wal    a header frame (format version, store id), then one frame per record
 *
 * A frame is `length:u32be | crc32(body):u32be | body` with a msgpack body. On open, a torn tail of
 * the log (a frame cut short, or a bad last frame, as a crash mid-write leaves) is cut off; a bad
 * frame with good ones after it, or a bad snapshot, is damage and fails with EDVSIO. When the log
 * outgrows `snapshotBytes`, the store writes a snapshot and starts a fresh log; a crash between the
 * two is harmless because records carry sequence numbers and replay skips those the snapshot holds.
 * See docs/coordination.md ("Durability of the embedded store").
 */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, fsyncSync, ftruncateSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { DvsError } from '../ipc/errors.js';
import { decodeValue, encodeValue } from '../transport/codec.js';

/** On-disk format version of both files. */
export const STORE_WAL_FORMAT = 1;
const FRAME_HEAD = 8;
/** A frame longer than this is taken for damage (values are limited far below it). */
const MAX_FRAME = 256 * 1024 * 1024;
const DEFAULT_SNAPSHOT_BYTES = 8 * 1024 * 1024;

/** One key as stored: `[key, value bytes, createRevision, modRevision, version, lease (0 = none)]`. */
export type PersistedEntry = [key: string, bytes: Buffer, createRevision: number, modRevision: number, version: number, lease: number];

/** What a record or snapshot says of one key: the entry after a put, or null after a delete. */
export type PersistedEvent = [key: string, entry: PersistedEntry | null];

export type WalRecord =
  | { readonly t: 'commit'; readonly revision: number; readonly events: readonly PersistedEvent[] }
  | { readonly t: 'lease'; readonly id: number; readonly ttlMs: number }
  | { readonly t: 'unlease'; readonly id: number };

/** The whole state of a store, as a snapshot holds it. */
export interface StoreImage {
  readonly storeId: string;
  readonly revision: number;
  readonly nextLease: number;
  readonly entries: readonly PersistedEntry[];
  /** `[id, ttlMs]` of every live lease. */
  readonly leases: readonly (readonly [number, number])[];
}

export interface Recovered {
  /** The snapshot's state (empty for a store that never took one). */
  readonly image: StoreImage;
  /** Records after the snapshot, in order. */
  readonly records: readonly WalRecord[];
  /** Bytes of a torn log tail that were cut off (0 normally). */
  readonly truncatedBytes: number;
}

export interface StoreWalOptions {
  /** fdatasync after every record (default true). Off only where losing the last writes on a crash is fine. */
  readonly fsync?: boolean;
  /** Snapshot once the log holds this many bytes. Default 8 MiB. */
  readonly snapshotBytes?: number;
}

function damaged(file: string, why: string): DvsError {
  return new DvsError('EDVSIO', `store file ${file} is damaged: ${why}`, { details: { file } });
}

function frame(body: unknown): Buffer {
  const bytes = encodeValue(body);
  const out = Buffer.allocUnsafe(FRAME_HEAD + bytes.byteLength);
  out.writeUInt32BE(bytes.byteLength, 0);
  out.writeUInt32BE(crc32(bytes), 4);
  bytes.copy(out, FRAME_HEAD);
  return out;
}

/** Reads frames from `buf`; stops at the first one that is cut short or fails its check. */
function readFrames(buf: Buffer): { bodies: unknown[]; goodBytes: number; badFrameEnd: number | undefined } {
  const bodies: unknown[] = [];
  let off = 0;
  while (buf.byteLength - off >= FRAME_HEAD) {
    const len = buf.readUInt32BE(off);
    const end = off + FRAME_HEAD + len;
    if (len > MAX_FRAME || end > buf.byteLength) return { bodies, goodBytes: off, badFrameEnd: undefined };
    const body = buf.subarray(off + FRAME_HEAD, end);
    if (crc32(body) !== buf.readUInt32BE(off + 4)) return { bodies, goodBytes: off, badFrameEnd: end };
    try {
      bodies.push(decodeValue(body));
    } catch {
      return { bodies, goodBytes: off, badFrameEnd: end };
    }
    off = end;
  }
  return { bodies, goodBytes: off, badFrameEnd: undefined };
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function checkEntry(e: unknown, file: string): PersistedEntry {
  if (!Array.isArray(e) || e.length !== 6 || typeof e[0] !== 'string' || !Buffer.isBuffer(e[1]) || !e.slice(2).every(isInt)) throw damaged(file, 'malformed entry');
  return e as PersistedEntry;
}

function parseRecord(r: unknown, file: string): { seq: number; rec: WalRecord } {
  if (!Array.isArray(r) || !isInt(r[0])) throw damaged(file, 'malformed record');
  const [seq, kind] = r as [number, unknown];
  if (kind === 'c' && isInt(r[2]) && Array.isArray(r[3])) {
    const events = (r[3] as unknown[]).map((ev): PersistedEvent => {
      if (!Array.isArray(ev) || ev.length !== 2 || typeof ev[0] !== 'string') throw damaged(file, 'malformed event');
      return [ev[0], ev[1] === null ? null : checkEntry(ev[1], file)];
    });
    return { seq, rec: { t: 'commit', revision: r[2], events } };
  }
  if (kind === 'l' && isInt(r[2]) && isInt(r[3])) return { seq, rec: { t: 'lease', id: r[2], ttlMs: r[3] } };
  if (kind === 'u' && isInt(r[2])) return { seq, rec: { t: 'unlease', id: r[2] } };
  throw damaged(file, `unknown record ${JSON.stringify(kind)}`);
}

function recordBody(seq: number, rec: WalRecord): unknown[] {
  switch (rec.t) {
    case 'commit':
      return [seq, 'c', rec.revision, rec.events];
    case 'lease':
      return [seq, 'l', rec.id, rec.ttlMs];
    case 'unlease':
      return [seq, 'u', rec.id];
  }
}

export class StoreWal {
  readonly dir: string;
  readonly storeId: string;
  private readonly fsync: boolean;
  private readonly snapshotBytes: number;
  private fd: number;
  private bytes: number;
  private seq: number;
  private closed = false;

  private constructor(dir: string, storeId: string, fd: number, bytes: number, seq: number, opts: StoreWalOptions) {
    this.dir = dir;
    this.storeId = storeId;
    this.fd = fd;
    this.bytes = bytes;
    this.seq = seq;
    this.fsync = opts.fsync ?? true;
    this.snapshotBytes = opts.snapshotBytes ?? DEFAULT_SNAPSHOT_BYTES;
  }

  /**
   * Opens (or creates) the store directory's files and reads back what they hold. The directory
   * must exist. One process at a time: the daemon's data directory is its own.
   */
  static open(dir: string, opts: StoreWalOptions = {}): { wal: StoreWal; recovered: Recovered } {
    const snapFile = path.join(dir, 'store.snap');
    const walFile = path.join(dir, 'store.wal');
    let image: StoreImage | undefined;
    let snapSeq = 0;
    if (existsSync(snapFile)) {
      const buf = readFileSync(snapFile);
      const { bodies, goodBytes } = readFrames(buf);
      const s = bodies[0] as Record<string, unknown> | undefined;
      if (bodies.length !== 1 || goodBytes !== buf.byteLength || s === undefined || s.v !== STORE_WAL_FORMAT) throw damaged(snapFile, 'not one valid snapshot frame');
      if (typeof s.storeId !== 'string' || !isInt(s.seq) || !isInt(s.revision) || !isInt(s.nextLease) || !Array.isArray(s.entries) || !Array.isArray(s.leases)) throw damaged(snapFile, 'malformed snapshot');
      const leases = (s.leases as unknown[]).map((l) => {
        if (!Array.isArray(l) || l.length !== 2 || !isInt(l[0]) || !isInt(l[1])) throw damaged(snapFile, 'malformed lease');
        return [l[0], l[1]] as const;
      });
      image = { storeId: s.storeId, revision: s.revision, nextLease: s.nextLease, entries: (s.entries as unknown[]).map((e) => checkEntry(e, snapFile)), leases };
      snapSeq = s.seq;
    }
    const records: WalRecord[] = [];
    let truncatedBytes = 0;
    let seq = snapSeq;
    let storeId = image?.storeId;
    let walBytes = 0;
    if (existsSync(walFile)) {
      const buf = readFileSync(walFile);
      const { bodies, goodBytes, badFrameEnd } = readFrames(buf);
      if (badFrameEnd !== undefined && badFrameEnd < buf.byteLength) throw damaged(walFile, `bad record at byte ${goodBytes} with ${buf.byteLength - badFrameEnd} bytes after it`);
      const head = bodies[0] as Record<string, unknown> | undefined;
      // The header is written whole (a temporary file renamed into place): a log without one is damaged.
      if (head === undefined && buf.byteLength > 0) throw damaged(walFile, 'no valid header');
      if (head !== undefined) {
        if (head.v !== STORE_WAL_FORMAT || typeof head.storeId !== 'string') throw damaged(walFile, 'bad header');
        if (storeId !== undefined && head.storeId !== storeId) throw damaged(walFile, `log of store ${head.storeId} beside a snapshot of store ${storeId}`);
        storeId = head.storeId;
        for (const b of bodies.slice(1)) {
          const { seq: s, rec } = parseRecord(b, walFile);
          if (s <= snapSeq) continue; // already in the snapshot (a crash came between snapshot and new log)
          if (s !== seq + 1) throw damaged(walFile, `record ${s} follows record ${seq}`);
          seq = s;
          records.push(rec);
        }
        truncatedBytes = buf.byteLength - goodBytes;
        walBytes = goodBytes;
      }
    }
    storeId ??= randomUUID();
    image ??= { storeId, revision: 0, nextLease: 1, entries: [], leases: [] };
    let fd: number;
    if (walBytes === 0) {
      // No log yet (or an empty file): start one.
      ({ fd, bytes: walBytes } = StoreWal.freshLog(dir, storeId));
    } else {
      if (truncatedBytes > 0) {
        const rw = openSync(walFile, 'r+');
        try {
          ftruncateSync(rw, walBytes);
          fsyncSync(rw);
        } finally {
          closeSync(rw);
        }
      }
      fd = openSync(walFile, 'a');
    }
    const wal = new StoreWal(dir, storeId, fd, walBytes, seq, opts);
    return { wal, recovered: { image, records, truncatedBytes } };
  }

  /** Writes a new log holding only its header (via a temporary file); returns it open for appending, and its size. */
  private static freshLog(dir: string, storeId: string): { fd: number; bytes: number } {
    const tmp = path.join(dir, 'store.wal.tmp');
    const head = frame({ v: STORE_WAL_FORMAT, storeId });
    const fd = openSync(tmp, 'w', 0o600);
    writeFully(fd, head);
    fsyncSync(fd);
    renameSync(tmp, path.join(dir, 'store.wal'));
    syncDir(dir);
    return { fd, bytes: head.byteLength };
  }

  /** Bytes in the log. */
  get size(): number {
    return this.bytes;
  }

  /** The log has outgrown its bound: the owner should call `snapshot`. */
  get wantsSnapshot(): boolean {
    return this.bytes >= this.snapshotBytes;
  }

  /** Appends one record; it is on disk when this returns. Throws EDVSIO when it cannot be. */
  append(rec: WalRecord): void {
    this.checkOpen();
    const buf = frame(recordBody(this.seq + 1, rec));
    try {
      writeFully(this.fd, buf);
      if (this.fsync) fdatasyncSync(this.fd);
    } catch (err) {
      throw new DvsError('EDVSIO', `cannot write the store log: ${(err as Error).message}`, { cause: err });
    }
    this.seq++;
    this.bytes += buf.byteLength;
  }

  /** Replaces the snapshot with `image` (the state after every record so far) and starts an empty log. */
  snapshot(image: Omit<StoreImage, 'storeId'>): void {
    this.checkOpen();
    try {
      const tmp = path.join(this.dir, 'store.snap.tmp');
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeFully(fd, frame({ v: STORE_WAL_FORMAT, storeId: this.storeId, seq: this.seq, ...image }));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path.join(this.dir, 'store.snap'));
      syncDir(this.dir);
      const old = this.fd;
      ({ fd: this.fd, bytes: this.bytes } = StoreWal.freshLog(this.dir, this.storeId));
      closeSync(old);
    } catch (err) {
      throw new DvsError('EDVSIO', `cannot write the store snapshot: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      // A log that failed may have lost its descriptor already; there is nothing left to flush.
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new DvsError('EDVSSHUTDOWN', 'store log closed');
  }
}

function writeFully(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.byteLength; ) off += writeSync(fd, buf, off);
}

/** Makes a rename in `dir` durable. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
