/**
 * The block cache and the devices on their own: one device read for concurrent misses on a block,
 * coalesced reads and write-backs, dirty blocks never dropped by eviction, read-ahead never
 * evicted before its reader comes, a write-back that leaves room for reads, a late read never
 * bringing back stale bytes, and both devices refusing accesses outside them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isDvsError } from '../../../src/ipc/errors.js';
import { BlockCache } from '../../../src/vos/fs/block-cache.js';
import { FileBlockDevice, MemoryBlockDevice } from '../../../src/vos/fs/block-device.js';
import { ProbeDevice, TempDirs } from './minix-helpers.js';

const temps = new TempDirs();
afterEach(() => temps.cleanup());

const BS = 1024;

function device(blocks = 256): { mem: MemoryBlockDevice; dev: ProbeDevice } {
  const mem = new MemoryBlockDevice(blocks * BS);
  for (let b = 0; b < blocks; b++) mem.bytes.fill(b & 0xff, b * BS, (b + 1) * BS);
  return { mem, dev: new ProbeDevice(mem) };
}

describe('BlockCache', () => {
  it('concurrent misses on one block share one device read', async () => {
    const { dev } = device();
    dev.delayMs = 2;
    const cache = new BlockCache(dev, BS, { budgetBytes: 64 * BS });
    const got = await Promise.all(Array.from({ length: 10 }, () => cache.read(7)));
    expect(got.every((d) => d[0] === 7)).toBe(true);
    expect(dev.count('read')).toBe(1);
  });

  it('reads missing blocks in one request per contiguous run, bridging a short cached gap', async () => {
    const { dev } = device();
    const cache = new BlockCache(dev, BS, { budgetBytes: 256 * BS, maxRequestBytes: 16 * BS });
    await cache.read(20);
    dev.reset();
    const blocks = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 40, 41, 42];
    const got = await cache.readMany(blocks);
    expect(got.map((d) => d[0])).toEqual(blocks);
    // 10..22 (20 already cached, bridged) is one request, 40..42 another.
    expect(dev.log.map((r) => [r.offset / BS, r.length / BS])).toEqual([
      [10, 13],
      [40, 3],
    ]);
    dev.reset();
    await cache.readMany(Array.from({ length: 40 }, (_, i) => 100 + i));
    expect(dev.log.map((r) => r.length / BS)).toEqual([16, 16, 8]);
  });

  it('writes dirty blocks sorted, contiguous ones joined; eviction keeps dirty blocks', async () => {
    const { dev, mem } = device();
    const cache = new BlockCache(dev, BS, { budgetBytes: 16 * BS });
    for (const b of [9, 3, 4, 5, 30, 8, 31]) await cache.modify(b, (d) => d.fill(0xee));
    // Far more clean reads than the budget: dirty blocks must survive them.
    for (let b = 100; b < 160; b++) await cache.read(b);
    expect(cache.dirtyCount).toBe(7);
    expect(cache.cachedBlocks).toBeLessThanOrEqual(16);
    dev.reset();
    await cache.flush();
    expect(dev.log.map((r) => [r.op, r.offset / BS, r.length / BS])).toEqual([
      ['write', 3, 3],
      ['write', 8, 2],
      ['write', 30, 2],
    ]);
    expect(mem.bytes[9 * BS]).toBe(0xee);
    expect(cache.dirtyCount).toBe(0);
  });

  it('a sequential reader far beyond the budget, reading ahead, fetches every block once', async () => {
    const { dev } = device(4096);
    const cache = new BlockCache(dev, BS, { budgetBytes: 256 * BS, maxRequestBytes: 64 * BS });
    const span = (from: number, n: number): number[] => Array.from({ length: Math.max(0, Math.min(n, 4096 - from)) }, (_, i) => from + i);
    for (let at = 0; at < 4096; at += 64) {
      const got = await cache.readMany(span(at, 64), span(at + 64, 64));
      expect(got.map((d) => d[0])).toEqual(span(at, 64).map((b) => b & 0xff));
      expect(cache.cachedBlocks).toBeLessThanOrEqual(256);
    }
    await cache.drain();
    // A block read ahead and evicted before its reader came would be fetched a second time.
    expect(dev.log.reduce((n, r) => n + r.length / BS, 0)).toBe(4096);
  });

  it('a write-back keeps a few requests in flight, so a read sent meanwhile is not queued behind all of it', async () => {
    const { dev, mem } = device(512);
    const cache = new BlockCache(dev, BS, { budgetBytes: 512 * BS });
    // Every other block dirty: 100 runs of one block.
    for (let b = 0; b < 200; b += 2) cache.fresh(b).fill(0xaa);
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    dev.holdWrite = () => gate;
    const flushed = cache.flush();
    await vi.waitFor(() => expect(dev.count('write')).toBeGreaterThan(0), { timeout: 5000 });
    expect(dev.inFlight).toBeLessThanOrEqual(4);
    // The read reaches the device before the write-back is done.
    const read = cache.read(300);
    await vi.waitFor(() => expect(dev.count('read')).toBe(1), { timeout: 5000 });
    expect((await read)[0]).toBe(300 & 0xff);
    release();
    await flushed;
    expect(dev.count('write')).toBe(100);
    expect(dev.maxInFlight).toBeLessThanOrEqual(5);
    expect(cache.dirtyCount).toBe(0);
    for (let b = 0; b < 200; b += 2) expect(mem.bytes[b * BS]).toBe(0xaa);
  });

  it('a read in flight when a block is made fresh does not bring back old bytes', async () => {
    const { dev } = device();
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    dev.holdRead = () => gate;
    const cache = new BlockCache(dev, BS, { budgetBytes: 64 * BS });
    const late = cache.read(5);
    const fresh = cache.fresh(5);
    fresh.fill(0x55);
    release();
    await late;
    expect((await cache.read(5))[0]).toBe(0x55);
    expect(cache.dirtyBlocks().map((d) => [d.block, d.data[0]])).toEqual([[5, 0x55]]);
  });

  it('adoptDirty takes another cache’s dirty blocks over what it has', async () => {
    const { dev } = device();
    const a = new BlockCache(dev, BS, { budgetBytes: 64 * BS });
    const b = new BlockCache(dev, BS, { budgetBytes: 64 * BS });
    await b.read(3);
    await a.modify(3, (d) => d.fill(0x33));
    b.adoptDirty(a.dirtyBlocks());
    expect((await b.read(3))[0]).toBe(0x33);
    expect(() => b.adoptDirty([{ block: 1, data: new Uint8Array(10) }])).toThrow(/10 bytes/);
  });
});

describe('block devices', () => {
  it('refuse accesses outside [0, size) with EDVSIO', async () => {
    const path = join(temps.make(), 'img');
    writeFileSync(path, new Uint8Array(4096));
    const file = await FileBlockDevice.open(path);
    const mem = new MemoryBlockDevice(4096);
    for (const dev of [file, mem]) {
      for (const attempt of [() => dev.read(4000, 100), () => dev.read(-1, 1), () => dev.write(4095, new Uint8Array(2)), () => dev.read(1.5, 1)]) {
        const err = await attempt().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isDvsError(err, 'EDVSIO'), String(err)).toBe(true);
      }
      await dev.write(4090, new Uint8Array([1, 2, 3, 4, 5, 6]));
      expect([...(await dev.read(4090, 6))]).toEqual([1, 2, 3, 4, 5, 6]);
      await dev.flush();
    }
    await file.close();
    expect(isDvsError(await FileBlockDevice.open(join(path, 'none')).catch((e: unknown) => e), 'EDVSIO')).toBe(true);
  });
});
