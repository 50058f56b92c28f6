/**
 * Decoded inodes by number, bounded (LRU by count), over the block cache. It holds no state of its
 * own beyond the decoding: `put` encodes straight into the cached inode-table block, so the block
 * cache stays the one place dirty state lives (what `dirtyBlocks` carries away). Callers get
 * copies, so a reader never sees a writer's half-made change.
 */
import { DvsError } from '../../../ipc/errors.js';
import type { BlockCache } from '../block-cache.js';
import { cloneInode, decodeInode, encodeInode, inodeLocation, type Inode } from './inode.js';
import type { Superblock } from './superblock.js';

export class InodeCache {
  private readonly decoded = new Map<number, Inode>();

  constructor(
    private readonly cache: BlockCache,
    private readonly sb: Superblock,
    private readonly maxEntries = 1024,
  ) {}

  /** Throws EDVSIO unless `ino` is a valid inode number (met in a directory or the caller's argument). */
  checkIno(ino: number, what: string): void {
    if (!Number.isInteger(ino) || ino < 1 || ino > this.sb.ninodes) {
      throw new DvsError('EDVSIO', `${what}: inode number ${ino} outside 1..${this.sb.ninodes}`, { details: { path: what, ino } });
    }
  }

  async get(ino: number, what: string): Promise<Inode> {
    this.checkIno(ino, what);
    const hit = this.decoded.get(ino);
    if (hit !== undefined) {
      this.decoded.delete(ino);
      this.decoded.set(ino, hit);
      return cloneInode(hit);
    }
    const { block, offset } = inodeLocation(this.sb, ino);
    const inode = decodeInode(await this.cache.read(block), offset);
    this.remember(ino, inode);
    return cloneInode(inode);
  }

  async put(ino: number, inode: Inode, what: string): Promise<void> {
    this.checkIno(ino, what);
    const { block, offset } = inodeLocation(this.sb, ino);
    const copy = cloneInode(inode);
    await this.cache.modify(block, (data) => encodeInode(copy, data, offset));
    this.remember(ino, copy);
  }

  /** Forgets every decoded inode (the blocks underneath were replaced). */
  invalidate(): void {
    this.decoded.clear();
  }

  private remember(ino: number, inode: Inode): void {
    this.decoded.delete(ino);
    this.decoded.set(ino, inode);
    if (this.decoded.size > this.maxEntries) {
      const oldest = this.decoded.keys().next();
      if (oldest.done !== true) this.decoded.delete(oldest.value);
    }
  }
}
