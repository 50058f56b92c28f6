/**
 * The DC's files for applications, in the shape of Node's `fs/promises` (docs/vos/fs.md, "From an
 * application"): readFile, writeFile, appendFile, readdir, stat, mkdir, rm, rename, open → a
 * FileHandle with read, write, stat, truncate and streams, and createReadStream/createWriteStream.
 * Every call is a request to FS through the caller's Vos, so calls made at once are made one after
 * another on its endpoint. Failures are DvsErrors with the catalogue's codes (EDVSNOENT for ENOENT,
 * …); `details.syscall` and `details.path` say what failed, as Node's errors do.
 */
import { Readable, Writable } from 'node:stream';
import { DvsError } from '../ipc/errors.js';
import type { M3Ipc } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { FsClient, type FsStatfs, type OpenFlags } from '../vos/fs/fs-client.js';
import type { FileRef, FsDirEntry, FsStatWire } from '../vos/fs/fs-messages.js';
import { fixedPeer } from '../vos/slot-peer.js';

/** How a Vos reaches FS: one call at a time on its endpoint, looked up again when it moved. */
export type FsCaller = <T>(fn: (fs: FsClient) => Promise<T>) => Promise<T>;

export function fsCaller(call: <C, T>(server: string, make: (ipc: M3Ipc, ep: Endpoint) => C, fn: (c: C) => Promise<T>) => Promise<T>, timeoutMs?: number): FsCaller {
  return (fn) => call('fs', (ipc, ep) => new FsClient(ipc, fixedPeer(ep), timeoutMs), fn);
}

/** What a stat and a directory entry both tell, with Node's methods for it. */
class KindOf {
  constructor(readonly kind: FsStatWire['kind']) {}
  isFile(): boolean {
    return this.kind === 'file';
  }
  isDirectory(): boolean {
    return this.kind === 'dir';
  }
  isSymbolicLink(): boolean {
    return this.kind === 'symlink';
  }
}

/** A file's attributes with the methods of Node's fs.Stats. */
export class VosStats extends KindOf {
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;

  constructor(s: FsStatWire) {
    super(s.kind);
    this.ino = s.ino;
    this.mode = s.mode;
    this.nlink = s.nlink;
    this.uid = s.uid;
    this.gid = s.gid;
    this.size = s.size;
    this.atimeMs = s.atime * 1000;
    this.mtimeMs = s.mtime * 1000;
    this.ctimeMs = s.ctime * 1000;
  }

  get atime(): Date {
    return new Date(this.atimeMs);
  }
  get mtime(): Date {
    return new Date(this.mtimeMs);
  }
  get ctime(): Date {
    return new Date(this.ctimeMs);
  }
}

/** A directory entry with the methods of Node's fs.Dirent. */
export class VosDirent extends KindOf {
  constructor(
    readonly name: string,
    readonly parentPath: string,
    kind: FsDirEntry['kind'],
  ) {
    super(kind);
  }
}

type Encoding = BufferEncoding;
type Data = string | Uint8Array;

/** Node's flags as FS's open: [open flags, append]. */
function parseFlags(flags: string): [OpenFlags, boolean] {
  switch (flags) {
    case 'r':
    case 'r+':
    case 'rs+':
      return [{}, false];
    case 'w':
    case 'w+':
      return [{ create: true, truncate: true }, false];
    case 'wx':
    case 'xw':
    case 'wx+':
    case 'xw+':
      return [{ create: true, exclusive: true }, false];
    case 'a':
    case 'a+':
      return [{ create: true }, true];
    case 'ax':
    case 'xa':
    case 'ax+':
    case 'xa+':
      return [{ create: true, exclusive: true }, true];
    default:
      throw new DvsError('EDVSINVAL', `unknown open flags ${JSON.stringify(flags)}`, { details: { syscall: 'open', flags } });
  }
}

function bytesOf(data: Data, encoding: Encoding = 'utf8'): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, encoding) : data;
}

function encodingOf(o: { encoding?: Encoding | null } | Encoding | undefined | null): Encoding | undefined {
  if (o === undefined || o === null) return undefined;
  return typeof o === 'string' ? o : (o.encoding ?? undefined);
}

/** Absolute, normalised: relative paths are taken from `/` (a VOS process has no working directory). */
export function vosPath(p: string): string {
  if (typeof p !== 'string') throw new DvsError('EDVSINVAL', 'a path must be a string');
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join('/')}`;
}

/** Adds what Node's errors say (syscall, path) to an error of FS. */
function tagged(err: unknown, syscall: string, path: string): Error {
  if (!(err instanceof DvsError)) return err as Error;
  return new DvsError(err.code, `${err.message.replace(/^[A-Z0-9]+: /, '')}, ${syscall} '${path}'`, { details: { ...err.details, syscall, path }, cause: err });
}

const CHUNK = 1024 * 1024;
const STREAM_CHUNK = 256 * 1024;

/** An open file of the DC's FS, with the methods of Node's FileHandle. */
export class VosFileHandle {
  private position = 0;
  private closed = false;

  constructor(
    private readonly call: FsCaller,
    readonly path: string,
    /** The inode number: the handle FS knows the file by. */
    readonly fd: number,
    private readonly append: boolean,
  ) {}

  private ref(): FileRef {
    if (this.closed) throw new DvsError('EDVSBADF', `file handle of ${this.path} is closed`, { details: { syscall: 'read', path: this.path } });
    return { ino: this.fd };
  }

  /** Reads into `buffer` like FileHandle.read: from `position` (default: the handle's position, which then advances). */
  async read(buffer: Uint8Array, offset = 0, length = buffer.length - offset, position: number | null = null): Promise<{ bytesRead: number; buffer: Uint8Array }> {
    const ref = this.ref();
    const at = position ?? this.position;
    const n = await this.call((fs) => fs.readInto(ref, at, buffer.subarray(offset, offset + length))).catch((e: unknown) => Promise.reject(tagged(e, 'read', this.path)));
    if (position === null) this.position += n;
    return { bytesRead: n, buffer };
  }

  /** Writes like FileHandle.write; a handle opened for appending always writes at the end. */
  async write(data: Data, offsetOrPosition?: number | null, lengthOrEncoding?: number | Encoding, position: number | null = null): Promise<{ bytesWritten: number }> {
    const ref = this.ref();
    let bytes: Uint8Array;
    let at: number | null;
    if (typeof data === 'string') {
      bytes = bytesOf(data, typeof lengthOrEncoding === 'string' ? lengthOrEncoding : 'utf8');
      at = offsetOrPosition ?? null;
    } else {
      const off = offsetOrPosition ?? 0;
      bytes = data.subarray(off, typeof lengthOrEncoding === 'number' ? off + lengthOrEncoding : data.length);
      at = position;
    }
    const where = this.append ? 'append' : (at ?? this.position);
    await this.call((fs) => fs.write('ino' in ref ? ref.ino : 0, where, bytes)).catch((e: unknown) => Promise.reject(tagged(e, 'write', this.path)));
    if (at === null && !this.append) this.position += bytes.length;
    return { bytesWritten: bytes.length };
  }

  async stat(): Promise<VosStats> {
    const ref = this.ref();
    return new VosStats(await this.call((fs) => fs.fstat('ino' in ref ? ref.ino : 0)));
  }

  async truncate(len = 0): Promise<void> {
    const ref = this.ref();
    await this.call((fs) => fs.truncate(ref, len));
  }

  async readFile(o?: { encoding?: Encoding | null } | Encoding): Promise<Buffer | string> {
    const ref = this.ref();
    const size = (await this.stat()).size;
    const buf = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const n = await this.call((fs) => fs.readInto(ref, done, buf.subarray(done, Math.min(size, done + CHUNK))));
      if (n === 0) break;
      done += n;
    }
    const enc = encodingOf(o);
    const out = done === size ? buf : buf.subarray(0, done);
    return enc === undefined ? out : out.toString(enc);
  }

  async writeFile(data: Data, o?: { encoding?: Encoding | null } | Encoding): Promise<void> {
    const bytes = bytesOf(data, encodingOf(o));
    await this.truncate(0);
    this.position = 0;
    await this.write(bytes, 0, bytes.length, 0);
  }

  async sync(): Promise<void> {
    await this.call((fs) => fs.sync());
  }
  datasync(): Promise<void> {
    return this.sync();
  }

  createReadStream(o: { start?: number; end?: number; highWaterMark?: number } = {}): Readable {
    return readStream(this.call, this.path, { ino: this.fd }, o);
  }

  createWriteStream(): Writable {
    return writeStream(async (chunk) => void (await this.write(chunk)));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function readStream(call: FsCaller, path: string, ref: FileRef, o: { start?: number; end?: number; highWaterMark?: number }): Readable {
  const chunk = o.highWaterMark ?? STREAM_CHUNK;
  let at = o.start ?? 0;
  const end = o.end === undefined ? Number.MAX_SAFE_INTEGER : o.end + 1;
  return Readable.from(
    (async function* () {
      while (at < end) {
        const data = await call((fs) => fs.read(ref, at, Math.min(chunk, end - at))).catch((e: unknown) => Promise.reject(tagged(e, 'read', path)));
        if (data.length === 0) return;
        at += data.length;
        yield Buffer.from(data.buffer, data.byteOffset, data.length);
      }
    })(),
    { objectMode: false },
  );
}

function writeStream(write: (chunk: Uint8Array) => Promise<void>): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      write(chunk).then(() => done(), done);
    },
  });
}

/** The DC's FS with the shape of Node's `fs/promises`. */
export class VosFiles {
  constructor(private readonly call: FsCaller) {}

  private async op<T>(syscall: string, path: string, fn: (fs: FsClient) => Promise<T>): Promise<T> {
    try {
      return await this.call(fn);
    } catch (err) {
      throw tagged(err, syscall, path);
    }
  }

  async open(path: string, flags = 'r', mode?: number): Promise<VosFileHandle> {
    const p = vosPath(path);
    const [o, append] = parseFlags(flags);
    const s = await this.op('open', p, (fs) => fs.open(p, mode === undefined ? o : { ...o, mode }));
    if (s.kind === 'dir' && flags !== 'r') throw new DvsError('EDVSISDIR', `illegal operation on a directory, open '${p}'`, { details: { syscall: 'open', path: p } });
    return new VosFileHandle(this.call, p, s.ino, append);
  }

  async stat(path: string): Promise<VosStats> {
    const p = vosPath(path);
    return new VosStats(await this.op('stat', p, (fs) => fs.stat(p)));
  }

  lstat(path: string): Promise<VosStats> {
    return this.stat(path);
  }

  async access(path: string): Promise<void> {
    await this.stat(path);
  }

  async readFile(path: string, o?: { encoding?: Encoding | null } | Encoding): Promise<Buffer | string> {
    const h = await this.open(path, 'r');
    return h.readFile(o);
  }

  async writeFile(path: string, data: Data, o?: { encoding?: Encoding | null; mode?: number; flag?: string } | Encoding): Promise<void> {
    const flag = typeof o === 'object' && o !== null && o.flag !== undefined ? o.flag : 'w';
    const mode = typeof o === 'object' && o !== null ? o.mode : undefined;
    const h = await this.open(path, flag, mode);
    const bytes = bytesOf(data, encodingOf(o));
    await h.write(bytes, 0, bytes.length, null);
  }

  async appendFile(path: string, data: Data, o?: { encoding?: Encoding | null; mode?: number } | Encoding): Promise<void> {
    const h = await this.open(path, 'a', typeof o === 'object' && o !== null ? o.mode : undefined);
    await h.write(bytesOf(data, encodingOf(o)));
  }

  readdir(path: string, o?: { withFileTypes?: false }): Promise<string[]>;
  readdir(path: string, o: { withFileTypes: true }): Promise<VosDirent[]>;
  async readdir(path: string, o?: { withFileTypes?: boolean }): Promise<string[] | VosDirent[]> {
    const p = vosPath(path);
    const entries = await this.op('scandir', p, (fs) => fs.readdir(p));
    return o?.withFileTypes === true ? entries.map((e) => new VosDirent(e.name, p, e.kind)) : entries.map((e) => e.name);
  }

  async mkdir(path: string, o?: { recursive?: boolean; mode?: number } | number): Promise<string | undefined> {
    const p = vosPath(path);
    const mode = typeof o === 'number' ? o : o?.mode;
    if (typeof o !== 'object' || o.recursive !== true) {
      await this.op('mkdir', p, (fs) => fs.mkdir(p, mode));
      return undefined;
    }
    let first: string | undefined;
    let at = '';
    for (const seg of p.split('/').filter((s) => s !== '')) {
      at += `/${seg}`;
      const dir = at;
      try {
        await this.op('mkdir', dir, (fs) => fs.mkdir(dir, mode));
        first ??= dir;
      } catch (err) {
        if (!(err instanceof DvsError) || err.code !== 'EDVSEXIST') throw err;
        if (!(await this.stat(dir)).isDirectory()) throw new DvsError('EDVSNOTDIR', `not a directory, mkdir '${dir}'`, { details: { syscall: 'mkdir', path: dir } });
      }
    }
    return first;
  }

  async rmdir(path: string): Promise<void> {
    const p = vosPath(path);
    await this.op('rmdir', p, (fs) => fs.rmdir(p));
  }

  async unlink(path: string): Promise<void> {
    const p = vosPath(path);
    await this.op('unlink', p, (fs) => fs.unlink(p));
  }

  /** Removes a file, or a directory with `recursive`; `force` ignores a missing path. */
  async rm(path: string, o: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    const p = vosPath(path);
    let s: VosStats;
    try {
      s = await this.stat(p);
    } catch (err) {
      if (o.force === true && err instanceof DvsError && err.code === 'EDVSNOENT') return;
      throw err;
    }
    if (!s.isDirectory()) return this.unlink(p);
    if (o.recursive !== true) throw new DvsError('EDVSISDIR', `path is a directory, rm '${p}'`, { details: { syscall: 'rm', path: p } });
    for (const e of await this.readdir(p, { withFileTypes: true })) await this.rm(`${p === '/' ? '' : p}/${e.name}`, o);
    if (p !== '/') await this.rmdir(p);
  }

  async rename(from: string, to: string): Promise<void> {
    const a = vosPath(from);
    const b = vosPath(to);
    await this.op('rename', a, (fs) => fs.rename(a, b));
  }

  async link(existing: string, path: string): Promise<void> {
    const a = vosPath(existing);
    const b = vosPath(path);
    await this.op('link', a, (fs) => fs.link(a, b));
  }

  async truncate(path: string, len = 0): Promise<void> {
    const p = vosPath(path);
    await this.op('truncate', p, (fs) => fs.truncate({ path: p }, len));
  }

  async statfs(): Promise<FsStatfs> {
    return this.call((fs) => fs.statfs());
  }

  async sync(): Promise<void> {
    await this.call((fs) => fs.sync());
  }

  createReadStream(path: string, o: { start?: number; end?: number; highWaterMark?: number } = {}): Readable {
    const p = vosPath(path);
    return readStream(this.call, p, { path: p }, o);
  }

  createWriteStream(path: string, o: { flags?: string } = {}): Writable {
    const opened = this.open(path, o.flags ?? 'w');
    // A failed open fails the first write (and so the stream), as Node's does.
    opened.catch(() => undefined);
    return writeStream(async (chunk) => void (await (await opened).write(chunk)));
  }
}
