/**
 * Corrupt images (patched bytes in images written by mkfs.minix): the superblock's fields at mount,
 * zone pointers, inode numbers and directory sizes met at run time. Each is a typed EDVSIO naming
 * what was wrong; none crashes, and none makes the library ask the device for bytes outside it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isDvsError, type DvsError } from '../../../src/ipc/errors.js';
import { MemoryBlockDevice } from '../../../src/vos/fs/block-device.js';
import { MinixFs } from '../../../src/vos/fs/minix/minix-fs.js';
import { bytes, makeImage, memoryOf, ProbeDevice, TempDirs } from './minix-helpers.js';

const temps = new TempDirs();
afterEach(() => temps.cleanup());

const SB = 1024;

function patch16(mem: MemoryBlockDevice, offset: number, value: number): void {
  new DataView(mem.bytes.buffer, mem.bytes.byteOffset).setUint16(offset, value, true);
}
function patch32(mem: MemoryBlockDevice, offset: number, value: number): void {
  new DataView(mem.bytes.buffer, mem.bytes.byteOffset).setUint32(offset, value, true);
}

async function ioError(p: Promise<unknown>): Promise<DvsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isDvsError(err, 'EDVSIO')) throw new Error(`expected EDVSIO, got ${String(err)}`);
  return err;
}

/** A 1024-block image (32 inodes: inode table at block 4, data from block 6). */
function image(): MemoryBlockDevice {
  return memoryOf(makeImage(temps.make(), 1024, 32).path);
}

describe('MinixFs refuses corrupt superblocks at mount', () => {
  const cases: [string, string, (m: MemoryBlockDevice) => void][] = [
    ['bad magic', 's_magic', (m) => patch16(m, SB + 24, 0x1234)],
    ['a MINIX v2 image', 's_magic', (m) => (patch16(m, SB + 24, 0), patch16(m, SB + 16, 0x2478))],
    ['a block size that is not a power of two', 's_blocksize', (m) => patch16(m, SB + 28, 1000)],
    ['a block size of 0', 's_blocksize', (m) => patch16(m, SB + 28, 0)],
    ['a block size below 1024', 's_blocksize', (m) => patch16(m, SB + 28, 512)],
    ['zones larger than one block', 's_log_zone_size', (m) => patch16(m, SB + 12, 1)],
    ['s_zones beyond the device', 's_zones', (m) => patch32(m, SB + 20, 1_000_000)],
    ['no inodes', 's_ninodes', (m) => patch32(m, SB, 0)],
    ['an inode bitmap too small', 's_imap_blocks', (m) => patch32(m, SB, 100_000)],
    ['a zone bitmap too small', 's_zmap_blocks', (m) => patch16(m, SB + 8, 0)],
    ['the first data zone inside the metadata', 's_firstdatazone', (m) => patch16(m, SB + 10, 3)],
    ['the first data zone past the end', 's_firstdatazone', (m) => patch16(m, SB + 10, 5000)],
    ['a zero maximum size', 's_max_size', (m) => patch32(m, SB + 16, 0)],
  ];
  for (const [title, field, corrupt] of cases) {
    it(`${title} → EDVSIO naming ${field}`, async () => {
      const mem = image();
      corrupt(mem);
      const dev = new ProbeDevice(mem);
      const err = await ioError(MinixFs.mount(dev));
      expect(err.details?.field).toBe(field);
      expect(err.message).toContain(field);
      expect(dev.outOfBounds).toEqual([]);
    });
  }

  it('a device too small for a superblock, and a root that is not a directory', async () => {
    expect((await ioError(MinixFs.mount(new MemoryBlockDevice(1040)))).details?.field).toBe('device');
    const mem = image();
    patch16(mem, 4 * 1024, 0o100644);
    expect((await ioError(MinixFs.mount(mem))).details?.field).toBe('root');
    const odd = image();
    patch32(odd, 4 * 1024 + 8, 100);
    expect((await ioError(MinixFs.mount(odd))).message).toContain('impossible size');
  });

  it('garbage of every kind in the superblock never crashes nor reads outside the device', async () => {
    const base = image();
    for (let seed = 1; seed <= 200; seed++) {
      const mem = new MemoryBlockDevice(base.bytes.slice());
      const noise = bytes(32, seed);
      // Keep the magic most of the time so the other checks are reached.
      mem.bytes.set(noise, SB);
      if (seed % 4 !== 0) patch16(mem, SB + 24, 0x4d5a);
      const dev = new ProbeDevice(mem);
      const err = await MinixFs.mount(dev).then(
        async (fs) => {
          await fs.unmount();
          return undefined;
        },
        (e: unknown) => e,
      );
      if (err !== undefined) expect(isDvsError(err, 'EDVSIO'), String(err)).toBe(true);
      expect(dev.outOfBounds).toEqual([]);
    }
  });
});

describe('MinixFs meets corrupt structures at run time', () => {
  /** An image with /d/f (a file needing an indirect block), unmounted and patched by `corrupt`. */
  async function patched(corrupt: (m: MemoryBlockDevice, ino: { d: number; f: number }) => void) {
    const mem = image();
    const fs = await MinixFs.mount(mem);
    const d = (await fs.mkdir('/d')).ino;
    const f = (await fs.open('/d/f', { create: true })).ino;
    await fs.write(f, 0, bytes(20_000, 5));
    await fs.unmount();
    corrupt(mem, { d, f });
    const dev = new ProbeDevice(mem);
    return { fs: await MinixFs.mount(dev), dev, f, d };
  }
  const inodeAt = (ino: number): number => 4 * 1024 + (ino - 1) * 64;

  it('a direct zone pointer out of range', async () => {
    const { fs, dev, f } = await patched((m, { f }) => patch32(m, inodeAt(f) + 24, 0xffffff));
    const err = await ioError(fs.read(f, 0, 100));
    expect(err.message).toContain(`ino ${f}`);
    expect(err.message).toContain('zone pointer 16777215');
    await ioError(fs.truncate(f, 0));
    await ioError(fs.write(f, 0, bytes(10, 1)));
    await ioError(fs.unlink('/d/f'));
    expect(dev.outOfBounds).toEqual([]);
  });

  it('a zone pointer out of range inside an indirect block', async () => {
    let indirect = 0;
    const { fs, dev, f } = await patched((m, { f }) => {
      indirect = new DataView(m.bytes.buffer).getUint32(inodeAt(f) + 24 + 7 * 4, true);
      patch32(m, indirect * 1024 + 4, 999_999);
    });
    expect(indirect).toBeGreaterThan(0);
    expect((await fs.read(f, 0, 7 * 1024)).length).toBe(7 * 1024);
    const err = await ioError(fs.read(f, 0, 20_000));
    expect(err.message).toContain('999999');
    expect(dev.outOfBounds).toEqual([]);
  });

  it('a directory entry naming an inode beyond s_ninodes', async () => {
    const { fs, dev } = await patched((m, { d }) => {
      const dirZone = new DataView(m.bytes.buffer).getUint32(inodeAt(d) + 24, true);
      patch32(m, dirZone * 1024 + 2 * 64, 5000);
    });
    const err = await ioError(fs.stat('/d/f'));
    expect(err.message).toContain('/d/f');
    expect(err.message).toContain('5000');
    expect(dev.outOfBounds).toEqual([]);
  });

  it('a directory of impossible size', async () => {
    const { fs, dev } = await patched((m, { d }) => patch32(m, inodeAt(d) + 8, 130));
    const err = await ioError(fs.readdir('/d'));
    expect(err.message).toContain('/d');
    expect(err.message).toContain('impossible size 130');
    expect(dev.outOfBounds).toEqual([]);
  });
});
