/**
 * The 64-byte MINIX v3 (= v2) on-disk inode: mode, links, uid, gid, size, three times in seconds,
 * and ten zone numbers (7 direct, then single, double and triple indirect). Inode numbers start at
 * 1 (the root); inode n lives in the inode table at index n-1.
 */
import { INODE_BYTES, type Superblock } from './superblock.js';

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const ZONE_SLOTS = 10;
export const INDIRECT = 7;
export const DOUBLE_INDIRECT = 8;
export const TRIPLE_INDIRECT = 9;

export interface Inode {
  mode: number;
  nlinks: number;
  uid: number;
  gid: number;
  size: number;
  atime: number;
  mtime: number;
  ctime: number;
  /** Always ZONE_SLOTS long. */
  zone: number[];
}

export type InodeKind = 'file' | 'dir' | 'symlink' | 'other';

export function kindOf(mode: number): InodeKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

export function emptyInode(): Inode {
  return { mode: 0, nlinks: 0, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0, ctime: 0, zone: new Array<number>(ZONE_SLOTS).fill(0) };
}

export function cloneInode(i: Inode): Inode {
  return { ...i, zone: [...i.zone] };
}

/** Where inode `ino` lives: its block and byte offset in that block. */
export function inodeLocation(sb: Superblock, ino: number): { block: number; offset: number } {
  const index = ino - 1;
  return { block: sb.inodeTableStart + Math.floor(index / sb.inodesPerBlock), offset: (index % sb.inodesPerBlock) * INODE_BYTES };
}

export function decodeInode(bytes: Uint8Array, offset: number): Inode {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, INODE_BYTES);
  const zone: number[] = [];
  for (let i = 0; i < ZONE_SLOTS; i++) zone.push(v.getUint32(24 + 4 * i, true));
  return {
    mode: v.getUint16(0, true),
    nlinks: v.getUint16(2, true),
    uid: v.getUint16(4, true),
    gid: v.getUint16(6, true),
    size: v.getUint32(8, true),
    atime: v.getUint32(12, true),
    mtime: v.getUint32(16, true),
    ctime: v.getUint32(20, true),
    zone,
  };
}

export function encodeInode(inode: Inode, bytes: Uint8Array, offset: number): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, INODE_BYTES);
  v.setUint16(0, inode.mode, true);
  v.setUint16(2, inode.nlinks, true);
  v.setUint16(4, inode.uid, true);
  v.setUint16(6, inode.gid, true);
  v.setUint32(8, inode.size, true);
  v.setUint32(12, inode.atime >>> 0, true);
  v.setUint32(16, inode.mtime >>> 0, true);
  v.setUint32(20, inode.ctime >>> 0, true);
  for (let i = 0; i < ZONE_SLOTS; i++) v.setUint32(24 + 4 * i, inode.zone[i] ?? 0, true);
}
