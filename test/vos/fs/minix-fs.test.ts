/**
 * MinixFs on images made by the real mkfs.minix -3: every operation and error code, files that
 * need indirect and double-indirect zones, holes, truncation giving zones back, the request
 * counts that coalescing and read-ahead promise, and fsck.minix -f clean after each scenario.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isDvsError, type DvsErrorCode } from '../../../src/ipc/errors.js';
import { FileBlockDevice, MemoryBlockDevice } from '../../../src/vos/fs/block-device.js';
import { MinixFs } from '../../../src/vos/fs/minix/minix-fs.js';
import { bytes, formatInMemory, fsck, makeImage, memoryOf, ProbeDevice, save, TempDirs, text } from './minix-helpers.js';

const temps = new TempDirs();
afterEach(() => temps.cleanup());

async function rejects(p: Promise<unknown>, code: DvsErrorCode, pathInMessage?: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isDvsError(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
  if (pathInMessage !== undefined) expect(String(err)).toContain(pathInMessage);
}

function expectClean(path: string): void {
  const r = fsck(path);
  expect(r.code, r.output).toBe(0);
}

/** A fresh image in memory (saved back for fsck by `done`). */
async function fresh(blocks = 8192, inodes = 256, opts: Parameters<typeof MinixFs.mount>[1] = {}) {
  const image = makeImage(temps.make(), blocks, inodes);
  const mem = memoryOf(image.path);
  const dev = new ProbeDevice(mem);
  const fs = await MinixFs.mount(dev, opts);
  const done = async (): Promise<void> => {
    await fs.unmount();
    expect(dev.outOfBounds).toEqual([]);
    save(mem, image.path);
    expectClean(image.path);
  };
  return { image, mem, dev, fs, done };
}

describe('MinixFs on a fresh mkfs.minix -3 image', () => {
  it('mounts: / is an empty dir and statfs matches mkfs', async () => {
    const { image, fs, done } = await fresh(4096, 128);
    const root = await fs.stat('/');
    expect(root).toMatchObject({ ino: 1, kind: 'dir', nlink: 2, size: 128 });
    expect(await fs.readdir('/')).toEqual({ entries: [] });
    const s = await fs.statfs();
    expect(s).toEqual({ blockSize: 1024, blocks: image.blocks, freeBlocks: image.blocks - image.firstDataZone - 1, inodes: image.inodes, freeInodes: image.inodes - 1 });
    await done();
  });

  it('works on an image file through FileBlockDevice, and a read-only mount refuses changes', async () => {
    const image = makeImage(temps.make(), 2048, 64);
    const dev = await FileBlockDevice.open(image.path);
    const fs = await MinixFs.mount(dev);
    const f = await fs.open('/hello', { create: true });
    await fs.write(f.ino, 0, text('hello, minix'));
    await fs.unmount();
    await dev.close();
    expectClean(image.path);

    const ro = await FileBlockDevice.open(image.path, { readOnly: true });
    const rfs = await MinixFs.mount(ro, { readOnly: true });
    expect(new TextDecoder().decode(await rfs.read(f.ino, 0, 100))).toBe('hello, minix');
    await rejects(rfs.write(f.ino, 0, text('x')), 'EDVSROFS', `ino ${f.ino}`);
    await rejects(rfs.mkdir('/d'), 'EDVSROFS', '/d');
    await rejects(rfs.open('/new', { create: true }), 'EDVSROFS', '/new');
    await rfs.unmount();
    await ro.close();
    await rejects(rfs.stat('/'), 'EDVSSHUTDOWN');
    await rejects(ro.read(0, 1), 'EDVSIO');
  });

  it('creates, writes, reads, appends, overwrites; holes read as zeros', async () => {
    const { fs, done } = await fresh();
    const f = await fs.open('/a', { create: true, mode: 0o600 });
    expect(f).toMatchObject({ kind: 'file', mode: 0o100600, nlink: 1, size: 0 });
    await fs.write(f.ino, 0, text('abc'));
    expect((await fs.append(f.ino, text('def'))).size).toBe(6);
    await fs.write(f.ino, 1, text('XY'));
    expect(new TextDecoder().decode(await fs.read(f.ino, 0, 100))).toBe('aXYdef');
    expect((await fs.read(f.ino, 6, 10)).length).toBe(0);
    // A hole of several blocks, then data.
    await fs.write(f.ino, 10_000, text('end'));
    const all = await fs.read(f.ino, 0, 20_000);
    expect(all.length).toBe(10_003);
    expect(all.subarray(6, 10_000).every((b) => b === 0)).toBe(true);
    expect(new TextDecoder().decode(all.subarray(10_000))).toBe('end');
    expect((await fs.stat('/a')).size).toBe(10_003);
    await rejects(fs.open('/a', { create: true, exclusive: true }), 'EDVSEXIST', '/a');
    expect((await fs.open('/a', { truncate: true })).size).toBe(0);
    await rejects(fs.open('/missing'), 'EDVSNOENT', '/missing');
    await done();
  });

  it('files needing indirect and double-indirect zones; truncate gives zones back', async () => {
    const { fs, done } = await fresh(16384, 128);
    const before = (await fs.statfs()).freeBlocks;
    const f = await fs.open('/big', { create: true });
    const size = 3 * 1024 * 1024 + 777;
    const data = bytes(size, 7);
    for (let off = 0; off < size; off += 256 * 1024) await fs.write(f.ino, off, data.subarray(off, Math.min(size, off + 256 * 1024)));
    expect((await fs.stat('/big')).size).toBe(size);
    const used = before - (await fs.statfs()).freeBlocks;
    // Data blocks, one indirect, one double indirect and its indirects.
    const dataBlocks = Math.ceil(size / 1024);
    expect(used).toBe(dataBlocks + 1 + 1 + Math.ceil((dataBlocks - 7 - 256) / 256));
    expect(Buffer.from(await fs.read(f.ino, 0, size)).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(await fs.read(f.ino, 2_000_000, 5000)).equals(Buffer.from(data.subarray(2_000_000, 2_005_000)))).toBe(true);

    await fs.truncate(f.ino, 5000);
    expect(before - (await fs.statfs()).freeBlocks).toBe(5);
    expect(Buffer.from(await fs.read(f.ino, 0, 10_000)).equals(Buffer.from(data.subarray(0, 5000)))).toBe(true);
    // Growing again makes a hole: the old bytes do not come back.
    await fs.truncate(f.ino, 300_000);
    expect((await fs.read(f.ino, 4990, 20)).subarray(10).every((b) => b === 0)).toBe(true);
    expect(before - (await fs.statfs()).freeBlocks).toBe(5);
    await fs.truncate(f.ino, 0);
    expect((await fs.statfs()).freeBlocks).toBe(before);

    // A sparse file with only a double-indirect block in use.
    const s = await fs.open('/sparse', { create: true });
    await fs.write(s.ino, 2_000_000, text('far'));
    expect(before - (await fs.statfs()).freeBlocks).toBe(3);
    await fs.unlink('/sparse');
    expect((await fs.statfs()).freeBlocks).toBe(before);
    await fs.write(f.ino, 0, data.subarray(0, 600_000));
    await done();
  });

  it('directories: mkdir, readdir pages, rmdir, nlink counts, slots reused', async () => {
    const { fs, done } = await fresh();
    await fs.mkdir('/d');
    await fs.mkdir('/d/e', 0o700);
    expect((await fs.stat('/d')).nlink).toBe(3);
    expect((await fs.stat('/')).nlink).toBe(3);
    expect((await fs.stat('/d/e')).mode).toBe(0o40700);
    for (let i = 0; i < 40; i++) await fs.open(`/d/f${String(i).padStart(2, '0')}`, { create: true });
    const sizeBefore = (await fs.stat('/d')).size;
    expect(sizeBefore).toBe(64 * 43);
    const names: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 20; page++) {
      const r = await fs.readdir('/d', { after, limit: 7 });
      names.push(...r.entries.map((e) => e.name));
      if (r.next === undefined) break;
      after = r.next;
    }
    expect(names).toEqual(['e', ...Array.from({ length: 40 }, (_, i) => `f${String(i).padStart(2, '0')}`)].sort());
    expect((await fs.readdir('/d', { limit: 1 })).entries[0]).toMatchObject({ name: 'e', kind: 'dir' });
    await fs.unlink('/d/f05');
    await fs.unlink('/d/f06');
    await fs.open('/d/new1', { create: true });
    await fs.open('/d/new2', { create: true });
    expect((await fs.stat('/d')).size).toBe(sizeBefore);
    await rejects(fs.rmdir('/d'), 'EDVSNOTEMPTY', '/d');
    await rejects(fs.rmdir('/d/f00'), 'EDVSNOTDIR', '/d/f00');
    await rejects(fs.rmdir('/'), 'EDVSINVAL', '/');
    await rejects(fs.unlink('/d/e'), 'EDVSISDIR', '/d/e');
    await rejects(fs.mkdir('/d/e'), 'EDVSEXIST', '/d/e');
    await rejects(fs.mkdir('/nope/x'), 'EDVSNOENT', '/nope/x');
    await rejects(fs.mkdir('/d/f00/x'), 'EDVSNOTDIR', '/d/f00/x');
    await rejects(fs.readdir('/d/f00'), 'EDVSNOTDIR', '/d/f00');
    await rejects(fs.stat('/d/zz'), 'EDVSNOENT', '/d/zz');
    await fs.rmdir('/d/e');
    expect((await fs.stat('/d')).nlink).toBe(2);
    // Path normalisation: "." and "..", never above "/".
    expect((await fs.stat('/../d/./f00/..')).ino).toBe((await fs.stat('/d')).ino);
    expect((await fs.stat('/..')).ino).toBe(1);
    await rejects(fs.stat('relative'), 'EDVSINVAL', 'relative');
    await rejects(fs.open(`/${'n'.repeat(61)}`, { create: true }), 'EDVSNAMETOOLONG', 'n'.repeat(61));
    await fs.open(`/${'n'.repeat(60)}`, { create: true });
    expect((await fs.stat(`/${'n'.repeat(60)}`)).kind).toBe('file');
    await done();
  });

  it('link, unlink and rename follow POSIX', async () => {
    const { fs, done } = await fresh();
    const a = await fs.open('/a', { create: true });
    await fs.write(a.ino, 0, text('A'));
    expect((await fs.link('/a', '/b')).nlink).toBe(2);
    await rejects(fs.link('/a', '/b'), 'EDVSEXIST', '/b');
    await fs.mkdir('/d');
    await rejects(fs.link('/d', '/d2'), 'EDVSISDIR', '/d');
    await fs.unlink('/a');
    expect((await fs.stat('/b')).nlink).toBe(1);
    expect(new TextDecoder().decode(await fs.read(a.ino, 0, 9))).toBe('A');

    // Replacing a file.
    const c = await fs.open('/c', { create: true });
    await fs.write(c.ino, 0, text('C'));
    await fs.rename('/b', '/c');
    await rejects(fs.stat('/b'), 'EDVSNOENT', '/b');
    expect((await fs.stat('/c')).ino).toBe(a.ino);
    await rejects(fs.statIno(c.ino), 'EDVSNOENT', `ino ${c.ino}`);
    // Moving a dir: ".." and link counts.
    await fs.mkdir('/d/sub');
    await fs.mkdir('/e');
    await fs.rename('/d/sub', '/e/moved');
    expect((await fs.stat('/d')).nlink).toBe(2);
    expect((await fs.stat('/e')).nlink).toBe(3);
    expect((await fs.stat('/e/moved/..')).ino).toBe((await fs.stat('/e')).ino);
    // Replacing an empty dir with a dir, across parents.
    await fs.mkdir('/d/empty');
    await fs.rename('/e/moved', '/d/empty');
    expect((await fs.stat('/d')).nlink).toBe(3);
    expect((await fs.stat('/e')).nlink).toBe(2);
    await fs.open('/d/empty/x', { create: true });
    await fs.mkdir('/e/full');
    await fs.open('/e/full/y', { create: true });
    await rejects(fs.rename('/d/empty', '/e/full'), 'EDVSNOTEMPTY', '/e/full');
    await rejects(fs.rename('/d/empty', '/c'), 'EDVSNOTDIR', '/c');
    await rejects(fs.rename('/c', '/e/full'), 'EDVSISDIR', '/e/full');
    await rejects(fs.rename('/d', '/d/empty/inside'), 'EDVSINVAL', '/d/empty/inside');
    await rejects(fs.rename('/', '/x'), 'EDVSINVAL', '/');
    await rejects(fs.rename('/nothing', '/x'), 'EDVSNOENT', '/nothing');
    await fs.rename('/c', '/c');
    // Within one directory.
    await fs.rename('/e/full', '/e/full2');
    expect((await fs.stat('/e')).nlink).toBe(3);
    expect((await fs.readdir('/e')).entries.map((e) => e.name)).toEqual(['full2']);
    await done();
  });

  it('runs out of inodes and zones with EDVSNOSPC, and refuses too many links', async () => {
    const { fs, done } = await fresh(256, 16, { linkMax: 6 });
    const made: string[] = [];
    let err: unknown;
    for (let i = 0; i < 40 && err === undefined; i++) {
      try {
        await fs.open(`/f${i}`, { create: true });
        made.push(`/f${i}`);
      } catch (e) {
        err = e;
      }
    }
    expect(made.length).toBe(15);
    expect(isDvsError(err, 'EDVSNOSPC') && String(err).includes('/f15')).toBe(true);
    const f = await fs.stat('/f0');
    await rejects(fs.write(f.ino, 0, new Uint8Array(300 * 1024)), 'EDVSNOSPC', `ino ${f.ino}`);
    expect((await fs.statfs()).freeBlocks).toBe(0);
    // A mkdir that gets an inode but no zone gives the inode back.
    await fs.unlink('/f14');
    await rejects(fs.mkdir('/dx'), 'EDVSNOSPC', '/dx');
    expect((await fs.statfs()).freeInodes).toBe(1);
    await rejects(fs.stat('/dx'), 'EDVSNOENT', '/dx');
    await fs.truncate(f.ino, 0);
    for (let i = 1; i < 6; i++) await fs.link('/f1', `/l${i}`);
    await rejects(fs.link('/f1', '/l6'), 'EDVSMLINK', '/f1');
    for (let i = 2; i < 7; i++) await fs.unlink(`/f${i}`);
    for (let i = 0; i < 4; i++) await fs.mkdir(`/d${i}`);
    await rejects(fs.mkdir('/d4'), 'EDVSMLINK', '/d4');
    await done();
  });

  it('EDVSFBIG beyond the size limit; bad inode numbers', async () => {
    const { fs, done } = await fresh();
    const f = await fs.open('/f', { create: true });
    await rejects(fs.truncate(f.ino, 2 ** 31), 'EDVSFBIG', `ino ${f.ino}`);
    await rejects(fs.write(f.ino, 2 ** 31 - 1, text('xy')), 'EDVSFBIG', `ino ${f.ino}`);
    await fs.write(f.ino, 2 ** 31 - 2, text('x'));
    expect((await fs.stat('/f')).size).toBe(2 ** 31 - 1);
    expect((await fs.read(f.ino, 2 ** 31 - 3, 10)).length).toBe(2);
    await rejects(fs.statIno(0), 'EDVSINVAL', 'ino 0');
    await rejects(fs.statIno(100_000), 'EDVSINVAL', 'ino 100000');
    await rejects(fs.read(f.ino, -1, 3), 'EDVSINVAL');
    await rejects(fs.read(1, 0, 3), 'EDVSISDIR', 'ino 1');
    await rejects(fs.write(1, 0, text('x')), 'EDVSISDIR', 'ino 1');
    await fs.truncate(f.ino, 0);
    await done();
  });

  it('reads coalesce contiguous zones and a sequential reader is read ahead; flush coalesces', async () => {
    const image = makeImage(temps.make(), 16384, 64);
    const mem = memoryOf(image.path);
    const dev = new ProbeDevice(mem);
    let fs = await MinixFs.mount(dev, { cacheBytes: 16 << 20 });
    const f = await fs.open('/big', { create: true });
    const size = 4 << 20;
    const data = bytes(size, 3);
    dev.reset();
    await fs.write(f.ino, 0, data);
    await fs.sync();
    // 4 MiB of data (+ indirects, bitmap, inode) in a few coalesced writes, then one flush.
    expect(dev.count('write')).toBeLessThanOrEqual(12);
    expect(dev.count('flush')).toBe(1);
    await fs.unmount();

    fs = await MinixFs.mount(dev, { cacheBytes: 16 << 20, readAheadBytes: 1 << 20 });
    dev.reset();
    const chunk = 64 * 1024;
    const got = new Uint8Array(size);
    for (let off = 0; off < size; off += chunk) got.set(await fs.read(f.ino, off, chunk), off);
    expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true);
    // 64 reads of 64 KiB: without read-ahead at least 64 requests; with it a few per MiB (data in
    // large runs, plus one request per single-indirect block, which maps 256 KiB here).
    expect(dev.count('read')).toBeLessThanOrEqual(30);
    expect(dev.log.filter((r) => r.length >= 256 * 1024).length).toBeGreaterThanOrEqual(5);
    await fs.unmount();

    // A single 1 MiB read: the inode, the indirect blocks that map it, and one data request.
    fs = await MinixFs.mount(dev, { readAheadBytes: 0 });
    dev.reset();
    expect((await fs.read(f.ino, 0, 1 << 20)).length).toBe(1 << 20);
    expect(dev.count('read')).toBeLessThanOrEqual(8);
    expect(dev.log.filter((r) => r.length >= 1000 * 1024).length).toBe(1);
    await fs.unmount();
    expect(dev.outOfBounds).toEqual([]);
    save(mem, image.path);
    expectClean(image.path);
  });

  it('readers go on during a write-back and the disk flush of sync; writers wait for the write-back', async () => {
    const { fs, dev, done } = await fresh(8192, 128);
    const a = await fs.open('/a', { create: true });
    await fs.write(a.ino, 0, bytes(64 * 1024, 1));
    await fs.sync();
    const b = await fs.open('/b', { create: true });
    await fs.write(b.ino, 0, bytes(64 * 1024, 2));
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    dev.holdWrite = () => gate;
    const writeBack = fs.writeBack();
    await vi.waitFor(() => expect(dev.inFlight).toBeGreaterThan(0), { timeout: 5000 });
    expect(Buffer.from(await fs.read(a.ino, 0, 1024)).equals(Buffer.from(bytes(64 * 1024, 1).subarray(0, 1024)))).toBe(true);
    let wrote = false;
    const writer = fs.write(a.ino, 0, text('x')).then(() => (wrote = true));
    await new Promise((r) => setImmediate(r));
    expect(wrote).toBe(false);
    release();
    await writeBack;
    await writer;
    dev.holdWrite = undefined;
    // sync's disk flush is held: a read still goes through.
    let flushGate = (): void => undefined;
    const flushHeld = new Promise<void>((resolve) => (flushGate = resolve));
    dev.holdFlush = () => flushHeld;
    const synced = fs.sync();
    await vi.waitFor(() => expect(dev.count('flush')).toBeGreaterThan(1), { timeout: 5000 });
    expect((await fs.read(b.ino, 0, 4))[0]).toBe(bytes(4, 2)[0]);
    flushGate();
    await synced;
    dev.holdFlush = undefined;
    await done();
  });

  it('a small cache evicts dirty blocks by writing them back, and all stays right', async () => {
    const { fs, mem, image, done } = await fresh(8192, 128, { cacheBytes: 32 * 1024 });
    const files: { ino: number; data: Uint8Array }[] = [];
    for (let i = 0; i < 6; i++) {
      const f = await fs.open(`/f${i}`, { create: true });
      const data = bytes(100_000 + i * 7000, i);
      for (let off = 0; off < data.length; off += 5000) await fs.write(f.ino, off, data.subarray(off, off + 5000));
      files.push({ ino: f.ino, data });
    }
    for (const f of files) expect(Buffer.from(await fs.read(f.ino, 0, 1 << 20)).equals(Buffer.from(f.data))).toBe(true);
    await done();
    const again = await MinixFs.mount(memoryOf(image.path));
    for (const f of files) expect(Buffer.from(await again.read(f.ino, 0, 1 << 20)).equals(Buffer.from(f.data))).toBe(true);
    await again.unmount();
    void mem;
  });

  it('4 KiB blocks (as MINIX 3 makes them): files past single indirection, dirs, truncate, remount', async () => {
    const mem = formatInMemory(4096, 4096, 256);
    const dev = new ProbeDevice(mem);
    let fs = await MinixFs.mount(dev);
    const start = await fs.statfs();
    expect(start).toMatchObject({ blockSize: 4096, blocks: 4096, inodes: 256, freeInodes: 255 });
    await fs.mkdir('/d');
    const f = await fs.open('/d/big', { create: true });
    // 7 direct + 1024 single-indirect blocks cover 4124 KiB: 6 MiB needs the double indirect.
    const data = bytes(6 << 20, 11);
    await fs.write(f.ino, 0, data);
    const dataBlocks = (6 << 20) / 4096;
    expect(start.freeBlocks - (await fs.statfs()).freeBlocks).toBe(1 + dataBlocks + 1 + 1 + 1);
    for (let i = 0; i < 100; i++) await fs.open(`/d/n${i}`, { create: true });
    await fs.unmount();
    fs = await MinixFs.mount(dev);
    expect(Buffer.from(await fs.read(f.ino, 0, 7 << 20)).equals(Buffer.from(data))).toBe(true);
    expect((await fs.readdir('/d')).entries.length).toBe(101);
    await fs.truncate(f.ino, 10_000);
    // /d now spans two blocks (103 entries of 64 bytes), /d/big three.
    expect(start.freeBlocks - (await fs.statfs()).freeBlocks).toBe(2 + 3);
    await fs.unmount();
    expect(dev.outOfBounds).toEqual([]);
  });

  it('a device node (made by patching an inode) is listed as other, never read for zones, unlinked cleanly', async () => {
    const image = makeImage(temps.make(), 1024, 32);
    const mem = memoryOf(image.path);
    let fs = await MinixFs.mount(mem);
    const node = await fs.open('/tty', { create: true });
    await fs.unmount();
    // Inode table at block 4 in this image; a char device keeps its number in zone[0].
    const v = new DataView(mem.bytes.buffer);
    v.setUint16(4 * 1024 + (node.ino - 1) * 64, 0o020620, true);
    v.setUint32(4 * 1024 + (node.ino - 1) * 64 + 24, 0x0403, true);
    fs = await MinixFs.mount(mem);
    const free = (await fs.statfs()).freeBlocks;
    expect((await fs.readdir('/')).entries).toEqual([{ name: 'tty', ino: node.ino, kind: 'other' }]);
    await rejects(fs.read(node.ino, 0, 10), 'EDVSINVAL', `ino ${node.ino}`);
    await rejects(fs.write(node.ino, 0, text('x')), 'EDVSINVAL', `ino ${node.ino}`);
    await fs.rename('/tty', '/tty0');
    await fs.unlink('/tty0');
    expect((await fs.statfs()).freeBlocks).toBe(free);
    await fs.unmount();
    save(mem, image.path);
    expectClean(image.path);
  });

  it('refuses devices out of bounds with EDVSIO', async () => {
    const dev = new MemoryBlockDevice(4096);
    await rejects(dev.read(4090, 10), 'EDVSIO');
    await rejects(dev.write(-1, new Uint8Array(1)), 'EDVSIO');
    await rejects(dev.read(0, -1), 'EDVSIO');
    expect((await dev.read(4095, 1)).length).toBe(1);
  });
});
