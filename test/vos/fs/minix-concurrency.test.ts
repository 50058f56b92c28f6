/**
 * MinixFs under concurrent callers and a slow device: parallel writers and readers on different
 * files match a model, appends are atomic, a read waiting on the device does not hold up a stat
 * (readers share the lock) while a writer does wait for it, and unwritten blocks carried to a
 * second instance by dirtyBlocks/adoptDirty end up on the device intact.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { MinixFs } from '../../../src/vos/fs/minix/minix-fs.js';
import { bytes, fsck, makeImage, memoryOf, ProbeDevice, save, TempDirs, text } from './minix-helpers.js';

const temps = new TempDirs();
afterEach(() => temps.cleanup());

function expectClean(path: string): void {
  const r = fsck(path);
  expect(r.code, r.output).toBe(0);
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

describe('MinixFs with concurrent callers', () => {
  it('parallel writes and reads on different files through a slow device match the model', async () => {
    const image = makeImage(temps.make(), 8192, 128);
    const mem = memoryOf(image.path);
    const dev = new ProbeDevice(mem);
    dev.delayMs = 2;
    const fs = await MinixFs.mount(dev, { cacheBytes: 64 * 1024 });
    const FILES = 8;
    const STEPS = 8;
    const model = new Map<number, Uint8Array>();
    const inos = await Promise.all(Array.from({ length: FILES }, (_, i) => fs.open(`/f${i}`, { create: true }).then((s) => s.ino)));
    await Promise.all(
      inos.map(async (ino, i) => {
        let data = new Uint8Array(0);
        for (let step = 0; step < STEPS; step++) {
          const chunk = bytes(500 + ((i * 997 + step * 1931) % 9000), i * 100 + step);
          const at = step % 3 === 2 ? Math.floor(data.length / 2) : data.length;
          await fs.write(ino, at, chunk);
          const next = new Uint8Array(Math.max(data.length, at + chunk.length));
          next.set(data);
          next.set(chunk, at);
          data = next;
          // A reader of this file and a stat of another run alongside the next write.
          const [got] = await Promise.all([fs.read(ino, 0, data.length), fs.stat(`/f${(i + 1) % FILES}`)]);
          expect(same(got, data), `file ${i} step ${step}`).toBe(true);
        }
        model.set(ino, data);
      }),
    );
    for (const [ino, data] of model) expect(same(await fs.read(ino, 0, data.length + 1), data)).toBe(true);
    await fs.unmount();
    expect(dev.outOfBounds).toEqual([]);
    save(mem, image.path);
    expectClean(image.path);
    const again = await MinixFs.mount(memoryOf(image.path));
    for (const [ino, data] of model) expect(same(await again.read(ino, 0, data.length + 1), data)).toBe(true);
    await again.unmount();
  });

  it('concurrent appends to one file each land whole', async () => {
    const image = makeImage(temps.make(), 2048, 32);
    const dev = new ProbeDevice(memoryOf(image.path));
    dev.delayMs = 1;
    const fs = await MinixFs.mount(dev);
    const f = await fs.open('/log', { create: true });
    const N = 30;
    const record = (i: number): Uint8Array => text(`[record ${String(i).padStart(3, '0')} ${'x'.repeat(i * 7)}]`);
    await Promise.all(Array.from({ length: N }, (_, i) => fs.append(f.ino, record(i))));
    const total = Array.from({ length: N }, (_, i) => record(i).length).reduce((a, b) => a + b, 0);
    const content = new TextDecoder().decode(await fs.read(f.ino, 0, total + 10));
    expect(content.length).toBe(total);
    const found = content.match(/\[record \d{3} x*\]/g) ?? [];
    expect(found.sort()).toEqual(Array.from({ length: N }, (_, i) => new TextDecoder().decode(record(i))).sort());
    await fs.unmount();
  });

  it('a read waiting on the device does not hold up a stat of another file; a writer waits for both', async () => {
    const image = makeImage(temps.make(), 4096, 64);
    const mem = memoryOf(image.path);
    let fs = await MinixFs.mount(mem);
    const a = await fs.open('/a', { create: true });
    await fs.write(a.ino, 0, bytes(200_000, 1));
    const b = await fs.open('/b', { create: true });
    await fs.write(b.ino, 0, text('bee'));
    await fs.unmount();

    const dev = new ProbeDevice(mem);
    fs = await MinixFs.mount(dev, { readAheadBytes: 0 });
    await fs.stat('/b');
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    let reached = (): void => undefined;
    const readReachedDevice = new Promise<void>((resolve) => (reached = resolve));
    // Hold the big data read of /a (nothing else reads 64 KiB or more here).
    dev.holdRead = (_offset, length) => {
      if (length < 64 * 1024) return undefined;
      held++;
      reached();
      return gate;
    };
    const order: string[] = [];
    const readA = fs.read(a.ino, 0, 200_000).then((d) => {
      order.push('read a');
      return d;
    });
    // The others start once the read waits on the device.
    await readReachedDevice;
    expect(held).toBe(1);
    const statB = fs.stat('/b');
    // Queued after the stat: a waiting writer lets no later reader overtake it (no starvation).
    const writeB = fs.write(b.ino, 3, text('!')).then(() => order.push('write b'));
    expect((await statB).size).toBe(3);
    order.push('stat b');
    expect(order).toEqual(['stat b']);
    release();
    expect(same(await readA, bytes(200_000, 1))).toBe(true);
    await writeB;
    expect(order).toEqual(['stat b', 'read a', 'write b']);
    dev.holdRead = undefined;
    await fs.unmount();
  });

  it('dirtyBlocks/adoptDirty carry unwritten changes to a second instance on the same device', async () => {
    const image = makeImage(temps.make(), 4096, 64);
    const mem = memoryOf(image.path);
    const dev = new ProbeDevice(mem);
    const first = await MinixFs.mount(dev);
    await first.mkdir('/d');
    const f = await first.open('/d/f', { create: true });
    const data = bytes(300_000, 9);
    await first.write(f.ino, 0, data);
    await first.link('/d/f', '/g');
    dev.reset();
    const carried = first.dirtyBlocks();
    expect(carried.length).toBeGreaterThan(290);
    expect(dev.count('write')).toBe(0);

    const second = await MinixFs.mount(dev);
    second.adoptDirty(carried);
    expect((await second.stat('/d/f')).nlink).toBe(2);
    expect(same(await second.read(f.ino, 0, 400_000), data)).toBe(true);
    await second.append(f.ino, text('more'));
    await second.sync();
    await second.unmount();
    expect(dev.outOfBounds).toEqual([]);
    save(mem, image.path);
    expectClean(image.path);
    const third = await MinixFs.mount(memoryOf(image.path));
    const got = await third.read(f.ino, 0, 400_000);
    expect(got.length).toBe(300_004);
    expect(same(got.subarray(0, 300_000), data)).toBe(true);
    expect((await third.readdir('/')).entries.map((e) => e.name)).toEqual(['d', 'g']);
    await third.unmount();
  });
});

describe('MinixFs with concurrent random workers', () => {
  it('workers on their own directories, all at once on a slow device, end as their models say', async () => {
    const RUNS = Math.max(3, Math.floor(Number(process.env.DVS_PROPERTY_RUNS ?? 20) / 4));
    const step = fc.record({ kind: fc.nat({ max: 5 }), name: fc.nat({ max: 3 }), n: fc.nat({ max: 30_000 }), seed: fc.nat() });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(step, { maxLength: 25 }), { minLength: 2, maxLength: 4 }), fc.boolean(), async (workers, smallCache) => {
        const image = makeImage(temps.make(), 8192, 256);
        const mem = memoryOf(image.path);
        const dev = new ProbeDevice(mem);
        dev.delayMs = 1;
        const fs = await MinixFs.mount(dev, smallCache ? { cacheBytes: 16 * 1024 } : {});
        const models = await Promise.all(
          workers.map(async (steps, w) => {
            const dir = `/w${w}`;
            await fs.mkdir(dir);
            const model = new Map<string, { ino: number; data: Uint8Array }>();
            for (const s of steps) {
              const name = `${dir}/f${s.name}`;
              const cur = model.get(name);
              if (cur === undefined || s.kind === 0) {
                if (cur === undefined) model.set(name, { ino: (await fs.open(name, { create: true })).ino, data: new Uint8Array(0) });
                continue;
              }
              if (s.kind === 1 || s.kind === 2) {
                const chunk = bytes(s.n % 20_000, s.seed);
                const at = s.kind === 1 ? cur.data.length : s.n % (cur.data.length + 1);
                if (s.kind === 1) await fs.append(cur.ino, chunk);
                else await fs.write(cur.ino, at, chunk);
                const next = new Uint8Array(Math.max(cur.data.length, at + chunk.length));
                next.set(cur.data);
                next.set(chunk, at);
                cur.data = next;
              } else if (s.kind === 3) {
                await fs.truncate(cur.ino, s.n % (cur.data.length + 2000));
                const next = new Uint8Array(s.n % (cur.data.length + 2000));
                next.set(cur.data.subarray(0, next.length));
                cur.data = next;
              } else if (s.kind === 4) {
                await fs.unlink(name);
                model.delete(name);
              } else {
                const to = `${dir}/f${(s.name + 1) % 4}`;
                await fs.rename(name, to);
                model.delete(name);
                model.set(to, cur);
              }
              if (s.kind !== 4) expect(same(await fs.read(cur.ino, 0, cur.data.length + 1), cur.data), `${name} after ${JSON.stringify(s)}`).toBe(true);
            }
            return { dir, model };
          }),
        );
        const check = async (target: MinixFs): Promise<void> => {
          for (const { dir, model } of models) {
            expect((await target.readdir(dir)).entries.map((e) => `${dir}/${e.name}`)).toEqual([...model.keys()].sort());
            for (const [name, f] of model) expect(same(await target.read((await target.stat(name)).ino, 0, f.data.length + 1), f.data), name).toBe(true);
          }
        };
        await check(fs);
        await fs.unmount();
        expect(dev.outOfBounds).toEqual([]);
        save(mem, image.path);
        expectClean(image.path);
        const again = await MinixFs.mount(memoryOf(image.path));
        await check(again);
        await again.unmount();
        temps.cleanup();
      }),
      { numRuns: RUNS },
    );
  }, 120_000);
});
