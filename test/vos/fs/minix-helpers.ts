/**
 * Shared by the MINIX FS tests: images made by the real mkfs.minix -3, judged by the real
 * fsck.minix -f, and a device wrapper that counts requests, can delay or hold them, and records
 * any access outside the device (which the library must never make).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlockDevice, type BlockDevice } from '../../../src/vos/fs/block-device.js';

export const MKFS = '/usr/sbin/mkfs.minix';
export const FSCK = '/usr/sbin/fsck.minix';

export interface Image {
  readonly path: string;
  readonly blocks: number;
  readonly inodes: number;
  readonly firstDataZone: number;
  readonly mkfsOutput: string;
}

export class TempDirs {
  private readonly dirs: string[] = [];

  make(): string {
    const dir = mkdtempSync(join(tmpdir(), 'dvs-minix-'));
    this.dirs.push(dir);
    return dir;
  }

  cleanup(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** A fresh image of `blocks` 1 KiB blocks and (at least) `inodes` inodes, by mkfs.minix -3. */
export function makeImage(dir: string, blocks: number, inodes: number, name = 'fs.img'): Image {
  const path = join(dir, name);
  writeFileSync(path, '');
  truncateSync(path, blocks * 1024);
  const out = execFileSync(MKFS, ['-3', '-i', String(inodes), path, String(blocks)], { encoding: 'utf8' });
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (m?.[1] === undefined) throw new Error(`mkfs output without ${re}: ${out}`);
    return Number(m[1]);
  };
  return { path, blocks: num(/(\d+) blocks/), inodes: num(/(\d+) inodes/), firstDataZone: num(/Firstdatazone=(\d+)/), mkfsOutput: out };
}

export function fsck(path: string): { code: number; output: string } {
  const r = spawnSync(FSCK, ['-f', path], { encoding: 'utf8' });
  return { code: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

export function memoryOf(path: string): MemoryBlockDevice {
  return new MemoryBlockDevice(new Uint8Array(readFileSync(path)));
}

export function save(dev: MemoryBlockDevice, path: string): void {
  writeFileSync(path, dev.bytes);
}

export interface Request {
  readonly op: 'read' | 'write' | 'flush';
  readonly offset: number;
  readonly length: number;
}

/** Wraps a device: counts and logs requests, checks bounds itself, optionally delays or holds reads. */
export class ProbeDevice implements BlockDevice {
  readonly log: Request[] = [];
  readonly outOfBounds: Request[] = [];
  /** Delay of each request in ms (0 = none). */
  delayMs = 0;
  /** When set, a read for which it returns a promise waits for that promise first. */
  holdRead: ((offset: number, length: number) => Promise<void> | undefined) | undefined;
  /** The same for writes, and for flushes. */
  holdWrite: ((offset: number, length: number) => Promise<void> | undefined) | undefined;
  holdFlush: (() => Promise<void> | undefined) | undefined;
  /** Requests in progress now, and the most ever at once. */
  inFlight = 0;
  maxInFlight = 0;

  constructor(readonly inner: BlockDevice) {}

  get size(): number {
    return this.inner.size;
  }

  count(op: Request['op']): number {
    return this.log.filter((r) => r.op === op).length;
  }

  reset(): void {
    this.log.length = 0;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.note({ op: 'read', offset, length });
    return this.counted(async () => {
      const hold = this.holdRead?.(offset, length);
      if (hold !== undefined) await hold;
      await this.pause();
      return this.inner.read(offset, length);
    });
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.note({ op: 'write', offset, length: data.length });
    return this.counted(async () => {
      const hold = this.holdWrite?.(offset, data.length);
      if (hold !== undefined) await hold;
      await this.pause();
      return this.inner.write(offset, data);
    });
  }

  private async counted<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      return await fn();
    } finally {
      this.inFlight--;
    }
  }

  async flush(): Promise<void> {
    this.log.push({ op: 'flush', offset: 0, length: 0 });
    const hold = this.holdFlush?.();
    if (hold !== undefined) await hold;
    await this.pause();
    return this.inner.flush();
  }

  private note(r: Request): void {
    this.log.push(r);
    if (r.offset < 0 || r.length < 0 || r.offset + r.length > this.size) this.outOfBounds.push(r);
  }

  private pause(): Promise<void> {
    return this.delayMs > 0 ? new Promise((resolve) => setTimeout(resolve, this.delayMs)) : Promise.resolve();
  }
}

export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/**
 * A MINIX v3 image with a block size other than mkfs.minix's 1 KiB (MINIX 3 itself uses 4 KiB),
 * laid out as MINIX's mkfs does: superblock at byte 1024, bitmaps from block 2, one root dir.
 */
export function formatInMemory(blockSize: number, blocks: number, inodes: number): MemoryBlockDevice {
  const mem = new MemoryBlockDevice(blocks * blockSize);
  const v = new DataView(mem.bytes.buffer);
  const bits = blockSize * 8;
  const perBlock = blockSize / 64;
  const ninodes = Math.ceil(inodes / perBlock) * perBlock;
  const imap = Math.ceil((ninodes + 1) / bits);
  const zmap = Math.ceil(blocks / bits);
  const inodeTable = 2 + imap + zmap;
  const first = inodeTable + ninodes / perBlock;
  const sb = 1024;
  v.setUint32(sb, ninodes, true);
  v.setUint16(sb + 6, imap, true);
  v.setUint16(sb + 8, zmap, true);
  v.setUint16(sb + 10, first, true);
  v.setUint32(sb + 16, 0x7fffffff, true);
  v.setUint32(sb + 20, blocks, true);
  v.setUint16(sb + 24, 0x4d5a, true);
  v.setUint16(sb + 28, blockSize, true);
  const clear = (start: number, bit: number): void => {
    const at = start * blockSize + (bit >> 3);
    mem.bytes[at] = (mem.bytes[at] ?? 0) & ~(1 << (bit & 7));
  };
  mem.bytes.fill(0xff, 2 * blockSize, inodeTable * blockSize);
  for (let i = 2; i <= ninodes; i++) clear(2, i);
  for (let z = 2; z <= blocks - first; z++) clear(2 + imap, z);
  const root = inodeTable * blockSize;
  v.setUint16(root, 0o40755, true);
  v.setUint16(root + 2, 2, true);
  v.setUint32(root + 8, 128, true);
  v.setUint32(root + 24, first, true);
  v.setUint32(first * blockSize, 1, true);
  mem.bytes[first * blockSize + 4] = 0x2e;
  v.setUint32(first * blockSize + 64, 1, true);
  mem.bytes.set([0x2e, 0x2e], first * blockSize + 68);
  return mem;
}
