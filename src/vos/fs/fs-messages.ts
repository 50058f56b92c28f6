/**
 * FS's wire protocol (docs/vos/fs.md): request types, their payloads as validated here, the stat
 * and directory-entry shapes, and the limits. Files are named by path, or by inode number once
 * opened: a handle is the inode number, so FS keeps no per-client state and moves with nothing but
 * its unwritten blocks. Data moves inline when small, else through the client's grant.
 */
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { badField, fieldsOf, intIn, optBool, optBytes, optIntIn, shown } from '../../transport/request-fields.js';
import type { InodeKind } from './minix/inode.js';
import type { FsStat } from './minix/minix-fs.js';

/** Request types: FS's range starts at 0xA00. */
export const FS_STAT = 0xa00;
export const FS_FSTAT = 0xa01;
export const FS_OPEN = 0xa02;
export const FS_READ = 0xa03;
export const FS_WRITE = 0xa04;
export const FS_TRUNCATE = 0xa05;
export const FS_MKDIR = 0xa06;
export const FS_RMDIR = 0xa07;
export const FS_UNLINK = 0xa08;
export const FS_RENAME = 0xa09;
export const FS_LINK = 0xa0a;
export const FS_READDIR = 0xa0b;
export const FS_STATFS = 0xa0c;
export const FS_SYNC = 0xa0d;

/** Most bytes one read or write moves. */
export const FS_MAX_IO = 8 * 1024 * 1024;
/** Most bytes carried inline (a write's data, a read's answer) instead of through a grant. */
export const FS_MAX_INLINE = 32 * 1024;
/** Longest path, in bytes. */
export const FS_MAX_PATH = 4096;
/** Most entries in one readdir answer. */
export const FS_MAX_READDIR = 512;
/** Largest file size or offset FS accepts (the format's limit is checked by FS itself). */
export const FS_MAX_OFFSET = 2 ** 32 - 1;

/** A file's kind; its attributes as FS answers them (times in seconds since the epoch); a directory entry. */
export type { InodeKind as FsKind } from './minix/inode.js';
export type { FsStat as FsStatWire, DirEntry as FsDirEntry } from './minix/minix-fs.js';

/** A file by path or by inode number. */
export type FileRef = { readonly path: string } | { readonly ino: number };

export type FsRequest =
  | { readonly op: 'stat'; readonly path: string }
  | { readonly op: 'fstat'; readonly ino: number }
  | { readonly op: 'open'; readonly path: string; readonly create: boolean; readonly exclusive: boolean; readonly truncate: boolean; readonly mode: number | undefined }
  | { readonly op: 'read'; readonly file: FileRef; readonly offset: number; readonly length: number; readonly grant: number | undefined }
  | { readonly op: 'write'; readonly ino: number; readonly offset: number | 'append'; readonly length: number; readonly data: Uint8Array | undefined; readonly grant: number | undefined }
  | { readonly op: 'truncate'; readonly file: FileRef; readonly size: number }
  | { readonly op: 'mkdir'; readonly path: string; readonly mode: number | undefined }
  | { readonly op: 'rmdir'; readonly path: string }
  | { readonly op: 'unlink'; readonly path: string }
  | { readonly op: 'rename'; readonly from: string; readonly to: string }
  | { readonly op: 'link'; readonly existing: string; readonly path: string }
  | { readonly op: 'readdir'; readonly path: string; readonly after: string | undefined; readonly limit: number }
  | { readonly op: 'statfs' }
  | { readonly op: 'sync' };

/** An absolute path: starts with `/`, at most FS_MAX_PATH bytes, no NUL. */
export function checkPath(v: unknown, field = 'path'): string {
  if (typeof v !== 'string') badField(field, `must be a string, got ${shown(v)}`);
  if (!v.startsWith('/')) badField(field, `must be absolute (start with "/"), got ${shown(v)}`);
  if (v.includes('\0')) badField(field, 'must not contain NUL');
  if (Buffer.byteLength(v) > FS_MAX_PATH) throw new DvsError('EDVSNAMETOOLONG', `${field}: longer than ${FS_MAX_PATH} bytes`, { details: { field } });
  return v;
}

function fileRef(f: Record<string, unknown>): FileRef {
  if (f.path !== undefined && f.path !== null) {
    if (f.ino !== undefined && f.ino !== null) badField('ino', 'name a file by path or by ino, not both');
    return { path: checkPath(f.path) };
  }
  return { ino: intIn(f.ino, 'ino', 1, FS_MAX_OFFSET) };
}

function mode(v: unknown): number | undefined {
  return optIntIn(v, 'mode', 0, 0o7777);
}

/** The request a message carries; EDVSBADREQUEST for an unknown type, EDVSINVAL (naming the field) for a bad payload. */
export function parseFsRequest(type: number, payload: Payload): FsRequest {
  switch (type) {
    case FS_STAT:
      return { op: 'stat', path: checkPath(fieldsOf(payload, ['path'], 'stat').path) };
    case FS_FSTAT:
      return { op: 'fstat', ino: intIn(fieldsOf(payload, ['ino'], 'fstat').ino, 'ino', 1, FS_MAX_OFFSET) };
    case FS_OPEN: {
      const f = fieldsOf(payload, ['path', 'create', 'exclusive', 'truncate', 'mode'], 'open');
      return { op: 'open', path: checkPath(f.path), create: optBool(f.create, 'create'), exclusive: optBool(f.exclusive, 'exclusive'), truncate: optBool(f.truncate, 'truncate'), mode: mode(f.mode) };
    }
    case FS_READ: {
      const f = fieldsOf(payload, ['path', 'ino', 'offset', 'length', 'grant'], 'read');
      const grant = optIntIn(f.grant, 'grant', 0, Number.MAX_SAFE_INTEGER);
      const length = intIn(f.length, 'length', 0, grant === undefined ? FS_MAX_INLINE : FS_MAX_IO);
      return { op: 'read', file: fileRef(f), offset: intIn(f.offset ?? 0, 'offset', 0, FS_MAX_OFFSET), length, grant };
    }
    case FS_WRITE: {
      const f = fieldsOf(payload, ['ino', 'offset', 'length', 'data', 'grant'], 'write');
      const data = optBytes(f.data, 'data', FS_MAX_INLINE);
      const grant = optIntIn(f.grant, 'grant', 0, Number.MAX_SAFE_INTEGER);
      if ((data === undefined) === (grant === undefined)) badField('data', 'a write carries its data inline or names a grant holding it (one of the two)');
      const length = data?.length ?? intIn(f.length, 'length', 0, FS_MAX_IO);
      const offset = f.offset === 'append' ? 'append' : intIn(f.offset, 'offset', 0, FS_MAX_OFFSET);
      return { op: 'write', ino: intIn(f.ino, 'ino', 1, FS_MAX_OFFSET), offset, length, data, grant };
    }
    case FS_TRUNCATE: {
      const f = fieldsOf(payload, ['path', 'ino', 'size'], 'truncate');
      return { op: 'truncate', file: fileRef(f), size: intIn(f.size, 'size', 0, FS_MAX_OFFSET) };
    }
    case FS_MKDIR: {
      const f = fieldsOf(payload, ['path', 'mode'], 'mkdir');
      return { op: 'mkdir', path: checkPath(f.path), mode: mode(f.mode) };
    }
    case FS_RMDIR:
      return { op: 'rmdir', path: checkPath(fieldsOf(payload, ['path'], 'rmdir').path) };
    case FS_UNLINK:
      return { op: 'unlink', path: checkPath(fieldsOf(payload, ['path'], 'unlink').path) };
    case FS_RENAME: {
      const f = fieldsOf(payload, ['from', 'to'], 'rename');
      return { op: 'rename', from: checkPath(f.from, 'from'), to: checkPath(f.to, 'to') };
    }
    case FS_LINK: {
      const f = fieldsOf(payload, ['existing', 'path'], 'link');
      return { op: 'link', existing: checkPath(f.existing, 'existing'), path: checkPath(f.path) };
    }
    case FS_READDIR: {
      const f = fieldsOf(payload, ['path', 'after', 'limit'], 'readdir');
      let after: string | undefined;
      if (f.after !== undefined && f.after !== null) {
        if (typeof f.after !== 'string') badField('after', `must be a string, got ${shown(f.after)}`);
        after = f.after;
      }
      return { op: 'readdir', path: checkPath(f.path), after, limit: optIntIn(f.limit, 'limit', 1, FS_MAX_READDIR) ?? FS_MAX_READDIR };
    }
    case FS_STATFS:
      fieldsOf(payload, [], 'statfs', true);
      return { op: 'statfs' };
    case FS_SYNC:
      fieldsOf(payload, [], 'sync', true);
      return { op: 'sync' };
    default:
      throw new DvsError('EDVSBADREQUEST', `unknown FS request type ${type} (0x${type.toString(16)}); FS takes 0xa00..0xa0d`, { details: { type } });
  }
}

/** A stat as it crosses the wire. */
export function statPayload(s: FsStat): Record<string, Payload> {
  return { ino: s.ino, kind: s.kind, mode: s.mode, nlink: s.nlink, uid: s.uid, gid: s.gid, size: s.size, atime: s.atime, mtime: s.mtime, ctime: s.ctime };
}

const KINDS: readonly string[] = ['file', 'dir', 'symlink', 'other'];

/** A stat from FS's answer (validated: an answer is input too). */
export function statOf(v: unknown): FsStat {
  const r = v as Record<string, unknown> | null;
  const num = (k: string): number => {
    const x = r?.[k];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new DvsError('EDVSIO', `FS answered a stat without ${k}`);
    return x;
  };
  const kind = r?.kind;
  if (typeof kind !== 'string' || !KINDS.includes(kind)) throw new DvsError('EDVSIO', 'FS answered a stat without a kind');
  return { ino: num('ino'), kind: kind as InodeKind, mode: num('mode'), nlink: num('nlink'), uid: num('uid'), gid: num('gid'), size: num('size'), atime: num('atime'), mtime: num('mtime'), ctime: num('ctime') };
}
