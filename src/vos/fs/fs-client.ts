/**
 * Typed calls to FS over any M3-IPC handle: each is one sendrec (docs/vos/fs.md), its answer checked
 * and a failure rethrown as the DvsError FS sent. Reads and writes above the inline limit move
 * through a grant held while the caller waits in its sendrec. One handle makes one call at a time,
 * as an endpoint has one thread of control: a caller with many tasks serialises them (FsWebFiles,
 * the client library's Vos).
 */
import type { M3Ipc } from '../../ipc/calls.js';
import { ANY } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { fromWireError, isPlainMap } from '../../transport/proc-protocol.js';
import { REPLY_OK } from '../server-replies.js';
import type { FsStatfs } from './minix/minix-fs.js';
import type { PeerRef } from '../slot-peer.js';
import {
  FS_FSTAT, FS_LINK, FS_MAX_INLINE, FS_MAX_IO, FS_MKDIR, FS_OPEN, FS_READ, FS_READDIR, FS_RENAME, FS_RMDIR, FS_STAT, FS_STATFS, FS_SYNC, FS_TRUNCATE, FS_UNLINK, FS_WRITE,
  statOf, type FileRef, type FsDirEntry, type FsKind, type FsStatWire,
} from './fs-messages.js';

export type { FsStatfs } from './minix/minix-fs.js';

export interface OpenFlags {
  readonly create?: boolean;
  readonly exclusive?: boolean;
  readonly truncate?: boolean;
  readonly mode?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

function malformed(what: string): never {
  throw new DvsError('EDVSIO', `FS answered with a malformed message: ${what}`);
}

function refPayload(f: FileRef): Record<string, Payload> {
  return 'ino' in f ? { ino: f.ino } : { path: f.path };
}

export class FsClient {
  constructor(
    private readonly ipc: M3Ipc,
    private readonly fs: PeerRef,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  async stat(path: string): Promise<FsStatWire> {
    return statOf((await this.call(FS_STAT, { path })).stat);
  }

  async fstat(ino: number): Promise<FsStatWire> {
    return statOf((await this.call(FS_FSTAT, { ino })).stat);
  }

  async open(path: string, flags: OpenFlags = {}): Promise<FsStatWire> {
    return statOf((await this.call(FS_OPEN, { path, ...flags })).stat);
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the file). */
  async read(file: FileRef, offset: number, length: number): Promise<Uint8Array> {
    if (length <= FS_MAX_INLINE) {
      const r = await this.call(FS_READ, { ...refPayload(file), offset, length });
      if (!(r.data instanceof Uint8Array)) malformed('a read without data');
      return r.data;
    }
    const buf = new Uint8Array(length);
    const n = await this.readInto(file, offset, buf);
    return n === length ? buf : buf.subarray(0, n);
  }

  /** Reads into `into` (any size: several requests when above FS_MAX_IO); the bytes read. */
  async readInto(file: FileRef, offset: number, into: Uint8Array): Promise<number> {
    let done = 0;
    while (done < into.length) {
      const part = into.subarray(done, Math.min(into.length, done + FS_MAX_IO));
      let n: number;
      if (part.length <= FS_MAX_INLINE) {
        const data = await this.read(file, offset + done, part.length);
        part.set(data);
        n = data.length;
      } else {
        const grant = this.ipc.grant(part, { grantee: ANY, access: 'write' });
        try {
          n = (await this.call(FS_READ, { ...refPayload(file), offset: offset + done, length: part.length, grant })).bytes as number;
        } finally {
          this.ipc.revoke(grant);
        }
      }
      done += n;
      if (n < part.length) break;
    }
    return done;
  }

  /** Writes `data` at `offset` (or at the end, atomically, with 'append'); the file's stat after. */
  async write(ino: number, offset: number | 'append', data: Uint8Array): Promise<FsStatWire> {
    let stat: FsStatWire | undefined;
    let at = 0;
    do {
      const part = data.subarray(at, Math.min(data.length, at + FS_MAX_IO));
      const where = offset === 'append' ? 'append' : offset + at;
      if (part.length <= FS_MAX_INLINE) {
        stat = statOf((await this.call(FS_WRITE, { ino, offset: where, data: part })).stat);
      } else {
        const grant = this.ipc.grant(part, { grantee: ANY, access: 'read' });
        try {
          stat = statOf((await this.call(FS_WRITE, { ino, offset: where, length: part.length, grant })).stat);
        } finally {
          this.ipc.revoke(grant);
        }
      }
      at += part.length;
    } while (at < data.length);
    return stat;
  }

  async truncate(file: FileRef, size: number): Promise<FsStatWire> {
    return statOf((await this.call(FS_TRUNCATE, { ...refPayload(file), size })).stat);
  }

  async mkdir(path: string, mode?: number): Promise<FsStatWire> {
    return statOf((await this.call(FS_MKDIR, mode === undefined ? { path } : { path, mode })).stat);
  }

  async rmdir(path: string): Promise<void> {
    await this.call(FS_RMDIR, { path });
  }

  async unlink(path: string): Promise<void> {
    await this.call(FS_UNLINK, { path });
  }

  async rename(from: string, to: string): Promise<void> {
    await this.call(FS_RENAME, { from, to });
  }

  async link(existing: string, path: string): Promise<FsStatWire> {
    return statOf((await this.call(FS_LINK, { existing, path })).stat);
  }

  async readdirPage(path: string, after?: string, limit?: number): Promise<{ entries: FsDirEntry[]; next?: string }> {
    const payload: Record<string, Payload> = { path };
    if (after !== undefined) payload.after = after;
    if (limit !== undefined) payload.limit = limit;
    const r = await this.call(FS_READDIR, payload);
    if (!Array.isArray(r.entries)) malformed('entries is not an array');
    const entries = (r.entries as unknown[]).map((e) => {
      if (!isPlainMap(e) || typeof e.name !== 'string' || typeof e.ino !== 'number' || typeof e.kind !== 'string') malformed('an entry is not {name, ino, kind}');
      return { name: e.name, ino: e.ino, kind: e.kind as FsKind };
    });
    if (r.next !== undefined && typeof r.next !== 'string') malformed('next is not a string');
    return r.next === undefined ? { entries } : { entries, next: r.next };
  }

  /** Every entry of a directory (but . and ..), following the pages. */
  async readdir(path: string): Promise<FsDirEntry[]> {
    const out: FsDirEntry[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.readdirPage(path, after);
      out.push(...page.entries);
      if (page.next === undefined) return out;
      after = page.next;
    }
  }

  async statfs(): Promise<FsStatfs> {
    const r = await this.call(FS_STATFS, {});
    const num = (k: string): number => (typeof r[k] === 'number' ? (r[k] as number) : malformed(`statfs without ${k}`));
    return { blockSize: num('blockSize'), blocks: num('blocks'), freeBlocks: num('freeBlocks'), inodes: num('inodes'), freeInodes: num('freeInodes') };
  }

  /** Every block FS holds unwritten goes to the disk, and the disk flushes. */
  async sync(): Promise<void> {
    await this.call(FS_SYNC, {});
  }

  private async call(type: number, payload: Payload): Promise<Record<string, unknown>> {
    const m = await this.fs.call((ep) => this.ipc.sendrec(ep, { type, payload }, { timeoutMs: this.timeoutMs }));
    const r = m.payload;
    if (!isPlainMap(r) || typeof r.ok !== 'boolean') malformed('not {ok, ...}');
    if (!r.ok) throw fromWireError(r.error);
    if (m.type !== REPLY_OK) malformed(`ok with reply type ${m.type}`);
    return r;
  }
}
