/**
 * MinixFs: a MINIX v3 file system over an async BlockDevice, as a library (the FS server wraps it).
 * Paths are absolute POSIX paths, normalised lexically ("." dropped, ".." resolved within the FS,
 * never above "/"); symlinks are never followed (one in the middle of a path is EDVSNOTDIR).
 *
 * Concurrency: every operation takes one shared/exclusive lock (rw-lock.ts, arrival order). Those
 * that only read (stat, statIno, read, readdir, statfs, open without create/truncate) share it, so
 * one waiting on a slow device does not hold up another; those that change anything (write,
 * append, truncate, mkdir, rmdir, unlink, rename, link, open with create/truncate, sync, unmount)
 * hold it alone. No atime is kept up to date (as with noatime): a read changes nothing.
 *
 * Caching: all state lives in the block cache (block-cache.ts, write-back, LRU by bytes); inodes
 * are decoded copies over it, bitmaps are read through it. Dirty blocks reach the device on
 * `sync`, on `unmount`, or when a change leaves the cache over budget; `dirtyBlocks`/`adoptDirty`
 * carry the unwritten ones to another instance on the same device. File reads coalesce contiguous
 * zones into one device request, and a sequential reader triggers a bounded read-ahead.
 *
 * There are no open files here: unlinking a file frees it at once, and an inode number may be
 * reused afterwards. A server that wants POSIX open-file semantics keeps its own table.
 */
import { DvsError, type DvsErrorCode } from '../../../ipc/errors.js';
import { BlockCache, DEFAULT_MAX_REQUEST_BYTES } from '../block-cache.js';
import type { BlockDevice } from '../block-device.js';
import { RwLock } from '../rw-lock.js';
import { Bitmap } from './bitmap.js';
import { DOT, DOTDOT, encodeName, entryIno, entryName, sameName, setEntryIno, writeEntry } from './directory.js';
import { InodeCache } from './inode-cache.js';
import { emptyInode, kindOf, S_IFDIR, S_IFMT, S_IFREG, type Inode, type InodeKind } from './inode.js';
import { DIRENT_BYTES, parseSuperblock, ROOT_INO, SUPERBLOCK_BYTES, SUPERBLOCK_OFFSET, type Superblock } from './superblock.js';
import { Zones } from './zones.js';

export interface FsStat {
  readonly ino: number;
  readonly kind: InodeKind;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly atime: number;
  readonly mtime: number;
  readonly ctime: number;
}

export interface DirEntry {
  readonly name: string;
  readonly ino: number;
  readonly kind: InodeKind;
}

export interface FsStatfs {
  readonly blockSize: number;
  readonly blocks: number;
  readonly freeBlocks: number;
  readonly inodes: number;
  readonly freeInodes: number;
}

export interface MountOptions {
  /** Block cache budget in bytes (default 8 MiB). */
  readonly cacheBytes?: number;
  readonly readOnly?: boolean;
  /** Clock in seconds, for inode times. */
  readonly now?: () => number;
  /** Bytes read ahead of a sequential reader (default the lower of 8 MiB and an eighth of the cache; 0 = off). */
  readonly readAheadBytes?: number;
  /** Largest single device request (default 1 MiB). */
  readonly maxRequestBytes?: number;
  /**
   * Most links to one inode (default 255: MINIX allows SHRT_MAX, but fsck.minix counts links in a
   * byte, so more would make it report errors).
   */
  readonly linkMax?: number;
}

export interface OpenOptions {
  readonly create?: boolean;
  readonly exclusive?: boolean;
  readonly truncate?: boolean;
  readonly mode?: number;
}

const DEFAULT_CACHE_BYTES = 8 << 20;
const DEFAULT_LINK_MAX = 255;

function fsError(code: DvsErrorCode, path: string, message: string): DvsError {
  return new DvsError(code, `${path}: ${message}`, { details: { path } });
}

/** Splits an absolute path into components, "." dropped and ".." resolved (never above "/"). */
export function normalisePath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('\0')) {
    throw fsError('EDVSINVAL', String(path), 'not an absolute path');
  }
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts;
}

function toStat(ino: number, i: Inode): FsStat {
  return {
    ino,
    kind: kindOf(i.mode),
    mode: i.mode,
    nlink: i.nlinks,
    uid: i.uid,
    gid: i.gid,
    size: i.size,
    atime: i.atime,
    mtime: i.mtime,
    ctime: i.ctime,
  };
}

/** Where a name sits in a directory. */
interface Slot {
  readonly block: number;
  readonly offset: number;
  readonly ino: number;
}

export class MinixFs {
  private readonly lock = new RwLock();
  private mounted = true;
  /** Per inode: where its sequential reader would read next, and how far read-ahead has reached. */
  private readonly sequential = new Map<number, { next: number; aheadEnd: number }>();

  private constructor(
    private readonly dev: BlockDevice,
    readonly superblock: Superblock,
    private readonly cache: BlockCache,
    private readonly inodes: InodeCache,
    private readonly imap: Bitmap,
    private readonly zmap: Bitmap,
    private readonly zones: Zones,
    private readonly readOnly: boolean,
    private readonly now: () => number,
    private readonly readAheadBytes: number,
    private readonly linkMax: number,
  ) {}

  static async mount(dev: BlockDevice, opts: MountOptions = {}): Promise<MinixFs> {
    if (dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) {
      throw new DvsError('EDVSIO', `superblock: device of ${dev.size} bytes is too small for one`, { details: { field: 'device' } });
    }
    const sb = parseSuperblock(await dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES), dev.size);
    const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
    const cache = new BlockCache(dev, sb.blockSize, { budgetBytes: cacheBytes, maxRequestBytes: opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES });
    const inodes = new InodeCache(cache, sb);
    const imap = new Bitmap(cache, 'inode', 2, sb.ninodes);
    const zmap = new Bitmap(cache, 'zone', sb.zmapStart, sb.zones - sb.firstDataZone);
    const zones = new Zones(cache, sb, zmap);
    const readAhead = opts.readAheadBytes ?? Math.min(8 << 20, Math.floor(cacheBytes / 8));
    const fs = new MinixFs(
      dev,
      sb,
      cache,
      inodes,
      imap,
      zmap,
      zones,
      opts.readOnly ?? false,
      opts.now ?? (() => Math.floor(Date.now() / 1000)),
      readAhead,
      opts.linkMax ?? DEFAULT_LINK_MAX,
    );
    const root = await inodes.get(ROOT_INO, '/');
    if ((root.mode & S_IFMT) !== S_IFDIR) {
      throw new DvsError('EDVSIO', `root inode: mode 0o${root.mode.toString(8)} is not a directory`, { details: { field: 'root', path: '/' } });
    }
    await fs.checkDirSize(root, '/');
    return fs;
  }

  // ---- the lock and the lifecycle ----

  private shared<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return this.lock.shared(async () => {
      this.checkMounted();
      return withPath(fn(), what);
    });
  }

  private exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return this.lock.exclusive(async () => {
      this.checkMounted();
      if (this.readOnly) throw fsError('EDVSROFS', what, 'file system is mounted read-only');
      try {
        return await withPath(fn(), what);
      } finally {
        // Dirty blocks beyond the budget leave only here, while no one else is inside.
        if (this.cache.overBudget()) await withPath(this.cache.flush(), what);
      }
    });
  }

  private checkMounted(): void {
    if (!this.mounted) throw new DvsError('EDVSSHUTDOWN', 'file system is unmounted');
  }

  /**
   * Writes every dirty block to the device (not asking the device to make it durable). Readers go
   * on meanwhile: a write-back changes no block, and only writers are kept out.
   */
  async writeBack(): Promise<void> {
    this.checkMounted();
    if (this.cache.dirtyCount === 0) return;
    await this.lock.shared(async () => {
      this.checkMounted();
      await this.cache.flush();
    });
  }

  /** Everything written before is on the device's stable storage. */
  async sync(): Promise<void> {
    await this.writeBack();
    this.checkMounted();
    // Outside the lock: a device's flush (RDISK's fdatasync) can take seconds after a large write,
    // and it concerns only what the write-back already put on the device.
    await this.dev.flush();
  }

  async unmount(): Promise<void> {
    await this.lock.exclusive(async () => {
      this.checkMounted();
      await this.cache.drain();
      await this.cache.flush();
      await this.dev.flush();
      this.mounted = false;
    });
  }

  /** Copies of the blocks changed but not yet written (call between operations). */
  dirtyBlocks(): { block: number; data: Uint8Array }[] {
    this.checkMounted();
    return this.cache.dirtyBlocks();
  }

  /** Takes over blocks another instance changed on this device and did not write (call before other operations). */
  adoptDirty(list: readonly { block: number; data: Uint8Array }[]): void {
    this.checkMounted();
    if (this.readOnly && list.length > 0) throw new DvsError('EDVSROFS', 'file system is mounted read-only');
    for (const { block } of list) {
      if (!Number.isInteger(block) || block < 0 || block >= this.superblock.zones) {
        throw new DvsError('EDVSINVAL', `adopted block ${block} is outside the file system`, { details: { block } });
      }
    }
    this.cache.adoptDirty(list);
    this.inodes.invalidate();
    this.imap.reset();
    this.zmap.reset();
    this.sequential.clear();
  }

  // ---- reading ----

  stat(path: string): Promise<FsStat> {
    return this.shared(path, async () => {
      const { ino, inode } = await this.resolve(path);
      return toStat(ino, inode);
    });
  }

  statIno(ino: number): Promise<FsStat> {
    return this.shared(`ino ${ino}`, async () => toStat(ino, await this.liveInode(ino)));
  }

  statfs(): Promise<FsStatfs> {
    return this.shared('statfs', async () => ({
      blockSize: this.superblock.blockSize,
      blocks: this.superblock.zones,
      freeBlocks: await this.zmap.countFree(),
      inodes: this.superblock.ninodes,
      freeInodes: await this.imap.countFree(),
    }));
  }

  read(ino: number, offset: number, length: number): Promise<Uint8Array> {
    return this.shared(`ino ${ino}`, async () => {
      const what = `ino ${ino}`;
      checkRange(offset, length, what);
      const inode = await this.liveInode(ino);
      const kind = kindOf(inode.mode);
      if (kind === 'dir') throw fsError('EDVSISDIR', what, 'is a directory');
      // A device node's zone slots hold its device number, not zones.
      if (kind === 'other') throw fsError('EDVSINVAL', what, 'is not a file with data');
      const end = Math.min(inode.size, offset + length);
      if (end <= offset) return new Uint8Array(0);
      const ahead = this.readAheadRange(ino, inode, offset, end);
      return this.readRange(inode, offset, end, ahead, what);
    });
  }

  readdir(path: string, opts: { after?: string; limit?: number } = {}): Promise<{ entries: DirEntry[]; next?: string }> {
    return this.shared(path, async () => {
      const { inode } = await this.resolve(path);
      if (kindOf(inode.mode) !== 'dir') throw fsError('EDVSNOTDIR', path, 'is not a directory');
      const found: { name: string; ino: number }[] = [];
      await this.scanDir(inode, path, (block, offset, slotIndex) => {
        const child = entryIno(block, offset);
        if (child === 0 || slotIndex < 2) return false;
        found.push({ name: entryName(block, offset), ino: child });
        return false;
      });
      found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const after = opts.after;
      const from = after === undefined ? found : found.filter((e) => e.name > after);
      const limit = opts.limit ?? from.length;
      const page = from.slice(0, Math.max(0, limit));
      const entries: DirEntry[] = [];
      for (const e of page) {
        const child = await this.inodes.get(e.ino, `${path}/${e.name}`);
        entries.push({ name: e.name, ino: e.ino, kind: kindOf(child.mode) });
      }
      const last = page[page.length - 1];
      return page.length < from.length && last !== undefined ? { entries, next: last.name } : { entries };
    });
  }

  // ---- changing ----

  open(path: string, opts: OpenOptions = {}): Promise<FsStat> {
    if (opts.create !== true && opts.truncate !== true) {
      return this.stat(path);
    }
    return this.exclusive(path, async () => {
      const { parentIno, name } = await this.resolveParent(path);
      if (name === undefined) {
        if (opts.create === true && opts.exclusive === true) throw fsError('EDVSEXIST', path, 'exists');
        if (opts.truncate === true) throw fsError('EDVSISDIR', path, 'is a directory');
        return toStat(ROOT_INO, await this.inodes.get(ROOT_INO, path));
      }
      const parent = await this.inodes.get(parentIno, path);
      const slot = await this.lookup(parent, name, path);
      if (slot !== undefined) {
        if (opts.create === true && opts.exclusive === true) throw fsError('EDVSEXIST', path, 'exists');
        const inode = await this.inodes.get(slot.ino, path);
        if (opts.truncate === true) {
          if (kindOf(inode.mode) === 'dir') throw fsError('EDVSISDIR', path, 'is a directory');
          return toStat(slot.ino, await this.truncateInode(slot.ino, inode, 0, path));
        }
        return toStat(slot.ino, inode);
      }
      if (opts.create !== true) throw fsError('EDVSNOENT', path, 'no such file');
      const t = this.now();
      const inode: Inode = { ...emptyInode(), mode: S_IFREG | ((opts.mode ?? 0o644) & 0o7777), nlinks: 1, atime: t, mtime: t, ctime: t };
      const ino = await this.allocateInode(path);
      try {
        await this.inodes.put(ino, inode, path);
        await this.addEntry(parentIno, name, ino, path);
      } catch (err) {
        await this.releaseInode(ino, path);
        throw err;
      }
      return toStat(ino, inode);
    });
  }

  write(ino: number, offset: number, data: Uint8Array): Promise<FsStat> {
    return this.exclusive(`ino ${ino}`, async () => {
      const what = `ino ${ino}`;
      checkRange(offset, data.length, what);
      const inode = await this.liveFile(ino, what);
      return toStat(ino, await this.writeInode(ino, inode, offset, data, what));
    });
  }

  append(ino: number, data: Uint8Array): Promise<FsStat> {
    return this.exclusive(`ino ${ino}`, async () => {
      const what = `ino ${ino}`;
      const inode = await this.liveFile(ino, what);
      return toStat(ino, await this.writeInode(ino, inode, inode.size, data, what));
    });
  }

  truncate(ino: number, size: number): Promise<FsStat> {
    return this.exclusive(`ino ${ino}`, async () => {
      const what = `ino ${ino}`;
      checkRange(size, 0, what);
      const inode = await this.liveFile(ino, what);
      return toStat(ino, await this.truncateInode(ino, inode, size, what));
    });
  }

  mkdir(path: string, mode = 0o755): Promise<FsStat> {
    return this.exclusive(path, async () => {
      const { parentIno, name } = await this.resolveParent(path);
      if (name === undefined) throw fsError('EDVSEXIST', path, 'exists');
      const parent = await this.inodes.get(parentIno, path);
      if ((await this.lookup(parent, name, path)) !== undefined) throw fsError('EDVSEXIST', path, 'exists');
      if (parent.nlinks >= this.linkMax) throw fsError('EDVSMLINK', path, `parent has ${parent.nlinks} links, the limit`);
      const ino = await this.allocateInode(path);
      let zone = 0;
      try {
        zone = await this.zones.allocateZone(path);
        const block = this.cache.fresh(zone);
        writeEntry(block, 0, ino, DOT);
        writeEntry(block, DIRENT_BYTES, parentIno, DOTDOT);
        const t = this.now();
        const inode: Inode = { ...emptyInode(), mode: S_IFDIR | (mode & 0o7777), nlinks: 2, size: 2 * DIRENT_BYTES, atime: t, mtime: t, ctime: t };
        inode.zone[0] = zone;
        await this.inodes.put(ino, inode, path);
        await this.addEntry(parentIno, name, ino, path);
        await this.adjustLinks(parentIno, +1, path);
        return toStat(ino, inode);
      } catch (err) {
        if (zone !== 0) await this.zones.freeZone(zone);
        await this.releaseInode(ino, path);
        throw err;
      }
    });
  }

  rmdir(path: string): Promise<void> {
    return this.exclusive(path, async () => {
      const { parentIno, name } = await this.resolveParent(path);
      if (name === undefined) throw fsError('EDVSINVAL', path, 'cannot remove the root directory');
      const parent = await this.inodes.get(parentIno, path);
      const slot = await this.lookup(parent, name, path);
      if (slot === undefined) throw fsError('EDVSNOENT', path, 'no such directory');
      const inode = await this.inodes.get(slot.ino, path);
      if (kindOf(inode.mode) !== 'dir') throw fsError('EDVSNOTDIR', path, 'is not a directory');
      if (!(await this.isEmptyDir(inode, path))) throw fsError('EDVSNOTEMPTY', path, 'directory not empty');
      await this.clearSlot(slot);
      await this.touchDir(parentIno, path);
      await this.adjustLinks(parentIno, -1, path);
      await this.destroy(slot.ino, inode, path);
    });
  }

  unlink(path: string): Promise<void> {
    return this.exclusive(path, async () => {
      const { parentIno, name } = await this.resolveParent(path);
      if (name === undefined) throw fsError('EDVSISDIR', path, 'is a directory');
      const parent = await this.inodes.get(parentIno, path);
      const slot = await this.lookup(parent, name, path);
      if (slot === undefined) throw fsError('EDVSNOENT', path, 'no such file');
      const inode = await this.inodes.get(slot.ino, path);
      if (kindOf(inode.mode) === 'dir') throw fsError('EDVSISDIR', path, 'is a directory');
      await this.clearSlot(slot);
      await this.touchDir(parentIno, path);
      await this.dropLink(slot.ino, path);
    });
  }

  link(existing: string, newPath: string): Promise<FsStat> {
    return this.exclusive(newPath, async () => {
      const src = await this.resolve(existing);
      if (kindOf(src.inode.mode) === 'dir') throw fsError('EDVSISDIR', existing, 'cannot link a directory');
      const { parentIno, name } = await this.resolveParent(newPath);
      if (name === undefined) throw fsError('EDVSEXIST', newPath, 'exists');
      const parent = await this.inodes.get(parentIno, newPath);
      if ((await this.lookup(parent, name, newPath)) !== undefined) throw fsError('EDVSEXIST', newPath, 'exists');
      if (src.inode.nlinks >= this.linkMax) throw fsError('EDVSMLINK', existing, `has ${src.inode.nlinks} links, the limit`);
      await this.addEntry(parentIno, name, src.ino, newPath);
      return toStat(src.ino, await this.adjustLinks(src.ino, +1, existing));
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.exclusive(from, async () => {
      const fromParts = normalisePath(from);
      const toParts = normalisePath(to);
      const src = await this.resolveParent(from);
      const dst = await this.resolveParent(to);
      if (src.name === undefined) throw fsError('EDVSINVAL', from, 'cannot rename the root directory');
      if (dst.name === undefined) throw fsError('EDVSINVAL', to, 'cannot replace the root directory');
      const srcParent = await this.inodes.get(src.parentIno, from);
      const srcSlot = await this.lookup(srcParent, src.name, from);
      if (srcSlot === undefined) throw fsError('EDVSNOENT', from, 'no such file or directory');
      const moving = await this.inodes.get(srcSlot.ino, from);
      const movingDir = kindOf(moving.mode) === 'dir';
      if (fromParts.length === toParts.length && fromParts.every((p, i) => p === toParts[i])) return;
      if (movingDir && toParts.length > fromParts.length && fromParts.every((p, i) => p === toParts[i])) {
        throw fsError('EDVSINVAL', to, `cannot move directory ${from} into itself`);
      }
      const dstParent = await this.inodes.get(dst.parentIno, to);
      const dstSlot = await this.lookup(dstParent, dst.name, to);
      const sameParent = src.parentIno === dst.parentIno;
      if (dstSlot !== undefined) {
        if (dstSlot.ino === srcSlot.ino) return;
        const target = await this.inodes.get(dstSlot.ino, to);
        const targetDir = kindOf(target.mode) === 'dir';
        if (movingDir && !targetDir) throw fsError('EDVSNOTDIR', to, 'is not a directory');
        if (!movingDir && targetDir) throw fsError('EDVSISDIR', to, 'is a directory');
        if (targetDir && !(await this.isEmptyDir(target, to))) throw fsError('EDVSNOTEMPTY', to, 'directory not empty');
        // The target's entry now names the moving inode; then the old name goes.
        await this.setSlot(dstSlot, srcSlot.ino);
        await this.clearSlot(await this.mustLookup(src.parentIno, src.name, from));
        if (targetDir) {
          await this.destroy(dstSlot.ino, target, to);
          await this.adjustLinks(dst.parentIno, -1, to);
        } else {
          await this.dropLink(dstSlot.ino, to);
        }
      } else {
        if (movingDir && !sameParent && dstParent.nlinks >= this.linkMax) {
          throw fsError('EDVSMLINK', to, `parent has ${dstParent.nlinks} links, the limit`);
        }
        await this.addEntry(dst.parentIno, dst.name, srcSlot.ino, to);
        await this.clearSlot(await this.mustLookup(src.parentIno, src.name, from));
      }
      if (movingDir && !sameParent) {
        await this.adjustLinks(dst.parentIno, +1, to);
        await this.setDotDot(srcSlot.ino, dst.parentIno, to);
        await this.adjustLinks(src.parentIno, -1, from);
      }
      await this.touchDir(src.parentIno, from);
      if (!sameParent) await this.touchDir(dst.parentIno, to);
      const t = this.now();
      const moved = await this.inodes.get(srcSlot.ino, to);
      moved.ctime = t;
      await this.inodes.put(srcSlot.ino, moved, to);
    });
  }

  // ---- paths and directories ----

  /** The inode at `path`; errors name `what` (the caller's path when resolving its parent). */
  private async resolve(path: string, what = path): Promise<{ ino: number; inode: Inode }> {
    const parts = normalisePath(path);
    let ino = ROOT_INO;
    let inode = await this.inodes.get(ino, what);
    for (const part of parts) {
      if (kindOf(inode.mode) !== 'dir') throw fsError('EDVSNOTDIR', what, 'a component is not a directory');
      const slot = await this.lookup(inode, part, what);
      if (slot === undefined) throw fsError('EDVSNOENT', what, 'no such file or directory');
      ino = slot.ino;
      inode = await this.inodes.get(ino, what);
      if (inode.mode === 0) throw fsError('EDVSIO', what, `directory entry "${part}" names free inode ${ino}`);
    }
    return { ino, inode };
  }

  /** The directory that holds the last component, and that component (undefined for "/"). */
  private async resolveParent(path: string): Promise<{ parentIno: number; name: string | undefined }> {
    const parts = normalisePath(path);
    const name = parts.pop();
    if (name === undefined) return { parentIno: ROOT_INO, name: undefined };
    encodeName(name, path);
    const parentPath = '/' + parts.join('/');
    const { ino, inode } = await this.resolve(parentPath, path);
    if (kindOf(inode.mode) !== 'dir') throw fsError('EDVSNOTDIR', path, 'a component is not a directory');
    return { parentIno: ino, name };
  }

  private async checkDirSize(dir: Inode, what: string): Promise<void> {
    if (dir.size % DIRENT_BYTES !== 0 || dir.size < 2 * DIRENT_BYTES) {
      throw fsError('EDVSIO', what, `directory of impossible size ${dir.size}`);
    }
  }

  /**
   * Calls `visit` on each slot of `dir` in order until it returns true; the block is the cache's
   * buffer (visit must not await). Returns the slot where it stopped.
   */
  private async scanDir(dir: Inode, what: string, visit: (block: Uint8Array, offset: number, slotIndex: number, zone: number) => boolean): Promise<Slot | undefined> {
    await this.checkDirSize(dir, what);
    const bs = this.superblock.blockSize;
    const perBlock = bs / DIRENT_BYTES;
    const slots = dir.size / DIRENT_BYTES;
    const blocks = Math.ceil(dir.size / bs);
    for (let b = 0; b < blocks; b++) {
      const zone = await this.zones.zoneOf(dir, b, what);
      if (zone === 0) throw fsError('EDVSIO', what, `directory has a hole at block ${b}`);
      const data = await this.cache.read(zone);
      const inBlock = Math.min(perBlock, slots - b * perBlock);
      for (let s = 0; s < inBlock; s++) {
        if (visit(data, s * DIRENT_BYTES, b * perBlock + s, zone)) return { block: zone, offset: s * DIRENT_BYTES, ino: entryIno(data, s * DIRENT_BYTES) };
      }
    }
    return undefined;
  }

  private async lookup(dir: Inode, name: string, what: string): Promise<Slot | undefined> {
    const bytes = encodeName(name, what);
    const slot = await this.scanDir(dir, what, (block, offset) => entryIno(block, offset) !== 0 && sameName(block, offset, bytes));
    if (slot !== undefined) this.inodes.checkIno(slot.ino, what);
    return slot;
  }

  private async mustLookup(dirIno: number, name: string, what: string): Promise<Slot> {
    const slot = await this.lookup(await this.inodes.get(dirIno, what), name, what);
    if (slot === undefined) throw fsError('EDVSIO', what, `entry "${name}" vanished during the operation`);
    return slot;
  }

  private async isEmptyDir(dir: Inode, what: string): Promise<boolean> {
    const other = await this.scanDir(dir, what, (block, offset, slotIndex) => slotIndex >= 2 && entryIno(block, offset) !== 0);
    return other === undefined;
  }

  /** Adds `name` → `ino` in directory `dirIno`: the first free slot, else a new one at the end. */
  private async addEntry(dirIno: number, name: string, ino: number, what: string): Promise<void> {
    const bytes = encodeName(name, what);
    const dir = await this.inodes.get(dirIno, what);
    const free = await this.scanDir(dir, what, (block, offset) => entryIno(block, offset) === 0);
    if (free !== undefined) {
      await this.cache.modify(free.block, (d) => writeEntry(d, free.offset, ino, bytes));
    } else {
      const bs = this.superblock.blockSize;
      if (dir.size + DIRENT_BYTES > this.superblock.fileSizeLimit) throw fsError('EDVSFBIG', what, 'directory is at its size limit');
      const index = Math.floor(dir.size / bs);
      const offset = dir.size % bs;
      let placed: { zone: number; fresh: boolean };
      try {
        placed = await this.zones.ensureZone(dir, index, what);
      } catch (err) {
        // An indirect block may have been attached before the data zone ran out: record it.
        await this.inodes.put(dirIno, dir, what);
        throw err;
      }
      const { zone, fresh } = placed;
      if (fresh) this.cache.fresh(zone);
      await this.cache.modify(zone, (d) => writeEntry(d, offset, ino, bytes));
      dir.size += DIRENT_BYTES;
    }
    const t = this.now();
    dir.mtime = t;
    dir.ctime = t;
    await this.inodes.put(dirIno, dir, what);
  }

  private async clearSlot(slot: Slot): Promise<void> {
    await this.cache.modify(slot.block, (d) => d.fill(0, slot.offset, slot.offset + DIRENT_BYTES));
  }

  private async setSlot(slot: Slot, ino: number): Promise<void> {
    await this.cache.modify(slot.block, (d) => setEntryIno(d, slot.offset, ino));
  }

  private async setDotDot(dirIno: number, parentIno: number, what: string): Promise<void> {
    const dir = await this.inodes.get(dirIno, what);
    await this.checkDirSize(dir, what);
    const zone = await this.zones.zoneOf(dir, 0, what);
    if (zone === 0) throw fsError('EDVSIO', what, 'directory has no first block');
    await this.cache.modify(zone, (d) => setEntryIno(d, DIRENT_BYTES, parentIno));
  }

  private async touchDir(dirIno: number, what: string): Promise<void> {
    const dir = await this.inodes.get(dirIno, what);
    const t = this.now();
    dir.mtime = t;
    dir.ctime = t;
    await this.inodes.put(dirIno, dir, what);
  }

  // ---- inodes ----

  /** The inode `ino` of a caller's argument: EDVSINVAL out of range, EDVSNOENT when free. */
  private async liveInode(ino: number): Promise<Inode> {
    const what = `ino ${ino}`;
    if (!Number.isInteger(ino) || ino < 1 || ino > this.superblock.ninodes) throw fsError('EDVSINVAL', what, `no inode number ${ino}`);
    const inode = await this.inodes.get(ino, what);
    if (inode.mode === 0 || inode.nlinks === 0) throw fsError('EDVSNOENT', what, 'no such inode');
    return inode;
  }

  private async liveFile(ino: number, what: string): Promise<Inode> {
    const inode = await this.liveInode(ino);
    const kind = kindOf(inode.mode);
    if (kind === 'dir') throw fsError('EDVSISDIR', what, 'is a directory');
    if (kind !== 'file') throw fsError('EDVSINVAL', what, `is a ${kind}, not a regular file`);
    return inode;
  }

  private async allocateInode(what: string): Promise<number> {
    const bit = await this.imap.allocate();
    if (bit === undefined) throw fsError('EDVSNOSPC', what, 'no free inode');
    return bit;
  }

  private async releaseInode(ino: number, what: string): Promise<void> {
    await this.inodes.put(ino, emptyInode(), what);
    await this.imap.release(ino);
  }

  private async adjustLinks(ino: number, delta: number, what: string): Promise<Inode> {
    const inode = await this.inodes.get(ino, what);
    inode.nlinks += delta;
    inode.ctime = this.now();
    await this.inodes.put(ino, inode, what);
    return inode;
  }

  /** One name fewer for a non-directory; freed with its zones at zero. */
  private async dropLink(ino: number, what: string): Promise<void> {
    const inode = await this.adjustLinks(ino, -1, what);
    if (inode.nlinks <= 0) await this.destroy(ino, inode, what);
  }

  private async destroy(ino: number, inode: Inode, what: string): Promise<void> {
    // Only files, directories and symlinks own zones (a device node keeps its number in zone[0]).
    if (kindOf(inode.mode) !== 'other') await this.zones.freeFrom(inode, 0, what);
    this.sequential.delete(ino);
    await this.releaseInode(ino, what);
  }

  // ---- file data ----

  /**
   * Bytes [start, end) of the file; zones of `ahead` (a read-ahead range) are mapped with them and
   * fetched in the same coalesced requests, without being waited for.
   */
  private async readRange(inode: Inode, start: number, end: number, ahead: { from: number; to: number } | undefined, what: string): Promise<Uint8Array> {
    const bs = this.superblock.blockSize;
    const first = Math.floor(start / bs);
    const last = Math.floor((end - 1) / bs);
    const zones = await this.zones.zonesOf(inode, first, last - first + 1, what);
    const aheadZones = ahead === undefined ? [] : await this.aheadZones(inode, ahead, what);
    const present = zones.filter((z) => z !== 0);
    const blocks = await this.cache.readMany(present, aheadZones);
    const out = new Uint8Array(end - start);
    let k = 0;
    zones.forEach((zone, i) => {
      const blockStart = (first + i) * bs;
      const from = Math.max(start, blockStart);
      const to = Math.min(end, blockStart + bs);
      if (zone === 0) return;
      const data = blocks[k++];
      if (data !== undefined) out.set(data.subarray(from - blockStart, to - blockStart), from - start);
    });
    return out;
  }

  /**
   * Zones of the read-ahead range, and the indirect blocks of the window after it (so mapping that
   * one later costs no request). Only a hint: a corrupt pointer there is reported when it is read.
   */
  private async aheadZones(inode: Inode, ahead: { from: number; to: number }, what: string): Promise<number[]> {
    const bs = this.superblock.blockSize;
    try {
      const first = Math.floor(ahead.from / bs);
      const zones = await this.zones.zonesOf(inode, first, Math.floor((ahead.to - 1) / bs) - first + 1, what);
      const nextFirst = Math.floor(ahead.to / bs);
      const nextEnd = Math.min(Math.ceil(inode.size / bs), nextFirst + Math.ceil(this.readAheadBytes / bs));
      if (nextEnd > nextFirst) zones.push(...(await this.zones.indirectsOf(inode, nextFirst, nextEnd - nextFirst, what)));
      return zones.filter((z) => z !== 0);
    } catch {
      return [];
    }
  }

  /**
   * For a sequential reader (this read starts where its last ended), the range to read ahead: the
   * window past this read, topped up only once less than half of it is left, so read-ahead goes
   * out in large requests.
   */
  private readAheadRange(ino: number, inode: Inode, start: number, end: number): { from: number; to: number } | undefined {
    const state = this.sequential.get(ino) ?? { next: 0, aheadEnd: 0 };
    const isSequential = start === state.next;
    state.next = end;
    this.sequential.set(ino, state);
    if (!isSequential || this.readAheadBytes <= 0) return undefined;
    const window = this.readAheadBytes;
    if (state.aheadEnd - end >= window / 2) return undefined;
    const from = Math.max(end, state.aheadEnd);
    const to = Math.min(inode.size, end + window);
    if (to <= from) return undefined;
    state.aheadEnd = to;
    return { from, to };
  }

  private async writeInode(ino: number, inode: Inode, offset: number, data: Uint8Array, what: string): Promise<Inode> {
    const end = offset + data.length;
    if (end > this.superblock.fileSizeLimit) {
      throw fsError('EDVSFBIG', what, `size ${end} is beyond the limit of ${this.superblock.fileSizeLimit}`);
    }
    const bs = this.superblock.blockSize;
    try {
      if (data.length > 0 && offset > inode.size) await this.zeroTail(inode, inode.size, what);
      let pos = offset;
      let sinceWriteBack = 0;
      while (pos < end) {
        const index = Math.floor(pos / bs);
        const blockStart = index * bs;
        const chunkEnd = Math.min(end, blockStart + bs);
        const chunk = data.subarray(pos - offset, chunkEnd - offset);
        const { zone, fresh } = await this.zones.ensureZone(inode, index, what);
        if (chunk.length === bs) {
          this.cache.fresh(zone, chunk);
        } else {
          if (fresh) this.cache.fresh(zone);
          const at = pos - blockStart;
          await this.cache.modify(zone, (d) => d.set(chunk, at));
        }
        pos = chunkEnd;
        if (chunkEnd > inode.size) inode.size = chunkEnd;
        // A large write must not hold the whole of itself dirty in the cache.
        if (++sinceWriteBack >= this.cache.maxRequestBlocks && this.cache.overBudget()) {
          sinceWriteBack = 0;
          await this.inodes.put(ino, inode, what);
          await this.cache.flush();
        }
      }
    } finally {
      // Zones already attached must be recorded even when a later allocation failed.
      const t = this.now();
      inode.mtime = t;
      inode.ctime = t;
      await this.inodes.put(ino, inode, what);
    }
    return inode;
  }

  /** Zeroes the bytes of `size`'s block past `size`, so a later growth reads zeros there. */
  private async zeroTail(inode: Inode, size: number, what: string): Promise<void> {
    const bs = this.superblock.blockSize;
    if (size % bs === 0) return;
    const zone = await this.zones.zoneOf(inode, Math.floor(size / bs), what);
    if (zone === 0) return;
    await this.cache.modify(zone, (d) => d.fill(0, size % bs));
  }

  private async truncateInode(ino: number, inode: Inode, size: number, what: string): Promise<Inode> {
    if (size > this.superblock.fileSizeLimit) {
      throw fsError('EDVSFBIG', what, `size ${size} is beyond the limit of ${this.superblock.fileSizeLimit}`);
    }
    const bs = this.superblock.blockSize;
    if (size < inode.size) {
      await this.zones.freeFrom(inode, Math.ceil(size / bs), what);
      await this.zeroTail(inode, size, what);
    } else if (size > inode.size) {
      await this.zeroTail(inode, inode.size, what);
    }
    inode.size = size;
    const t = this.now();
    inode.mtime = t;
    inode.ctime = t;
    await this.inodes.put(ino, inode, what);
    this.sequential.delete(ino);
    return inode;
  }
}

/** Errors from below (cache, bitmaps, device) get the operation's path in front when they lack it. */
async function withPath<T>(work: Promise<T>, what: string): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof DvsError && !err.message.includes(what)) {
      const text = err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
      throw new DvsError(err.code, `${what}: ${text}`, { details: { ...err.details, path: what }, cause: err });
    }
    throw err;
  }
}

function checkRange(offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw fsError('EDVSINVAL', what, `bad offset ${offset} or length ${length}`);
  }
}
