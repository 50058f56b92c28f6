/**
 * MINIX v3 directory entries: 64 bytes each, a u32 inode number then a 60-byte name padded with
 * NULs (a 60-byte name has no terminator). Inode 0 marks a free slot. Entry 0 is ".", entry 1 is
 * "..". These are the byte-level helpers; walking a directory's zones is the facade's job.
 */
import { DvsError } from '../../../ipc/errors.js';
import { DIRENT_BYTES, NAME_MAX } from './superblock.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The name's bytes; EDVSNAMETOOLONG past 60, EDVSINVAL for an empty name, '/' or NUL. */
export function encodeName(name: string, what: string): Uint8Array {
  const bytes = encoder.encode(name);
  if (bytes.length > NAME_MAX) {
    throw new DvsError('EDVSNAMETOOLONG', `${what}: name "${name}" is ${bytes.length} bytes, more than ${NAME_MAX}`, { details: { path: what } });
  }
  if (bytes.length === 0 || name.includes('/') || name.includes('\0')) {
    throw new DvsError('EDVSINVAL', `${what}: bad name "${name}"`, { details: { path: what } });
  }
  return bytes;
}

export function entryIno(block: Uint8Array, offset: number): number {
  return new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(offset, true);
}

/** The name's bytes (up to the first NUL, at most 60). */
export function entryNameBytes(block: Uint8Array, offset: number): Uint8Array {
  const start = offset + 4;
  let end = start;
  while (end < start + NAME_MAX && block[end] !== 0) end++;
  return block.subarray(start, end);
}

export function entryName(block: Uint8Array, offset: number): string {
  return decoder.decode(entryNameBytes(block, offset));
}

export function sameName(block: Uint8Array, offset: number, name: Uint8Array): boolean {
  const stored = entryNameBytes(block, offset);
  if (stored.length !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (stored[i] !== name[i]) return false;
  return true;
}

export function writeEntry(block: Uint8Array, offset: number, ino: number, name: Uint8Array): void {
  new DataView(block.buffer, block.byteOffset, block.byteLength).setUint32(offset, ino, true);
  block.fill(0, offset + 4, offset + DIRENT_BYTES);
  block.set(name, offset + 4);
}

export function setEntryIno(block: Uint8Array, offset: number, ino: number): void {
  new DataView(block.buffer, block.byteOffset, block.byteLength).setUint32(offset, ino, true);
}

export const DOT = encoder.encode('.');
export const DOTDOT = encoder.encode('..');
