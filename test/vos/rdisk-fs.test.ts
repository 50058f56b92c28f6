/**
 * RDISK and FS on the in-process kernel: RDISK's requests (inline, through grants, several
 * extents, tagged), its bounds and bad input answered with typed errors while it keeps serving;
 * FS over RDISK over an image made by mkfs.minix -3: many clients at once, bad requests, a move
 * refused while requests are in progress, the write-back at stop leaving an image fsck.minix -f
 * finds clean; and a corrupt image refused at mount.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { ERRNO } from '../../src/ipc/errors.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { FsClient } from '../../src/vos/fs/fs-client.js';
import { FS_READ, FS_STAT } from '../../src/vos/fs/fs-messages.js';
import { FsServer } from '../../src/vos/fs/fs-server.js';
import { RdiskClient } from '../../src/vos/rdisk/rdisk-client.js';
import { RD_DONE, RD_READ, RD_WRITE } from '../../src/vos/rdisk/rdisk-messages.js';
import { RdiskServer } from '../../src/vos/rdisk/rdisk-server.js';
import { fixedPeer, SlotPeer } from '../../src/vos/slot-peer.js';

const run = promisify(execFile);
const DC = 1;
const RDISK_SLOT = 3;
const FS_SLOT = 1;

let dir: string;
let image: string;
let k: Kernel;
const stops: (() => Promise<void>)[] = [];

async function mkfs(file: string, blocks = 8192): Promise<void> {
  await writeFile(file, '');
  await truncate(file, blocks * 1024);
  await run('/usr/sbin/mkfs.minix', ['-3', file, String(blocks)]);
}

function start(service: RdiskServer | FsServer, slot: number, name: string): Process {
  const p = k.bind(DC, { name, slot });
  const ac = new AbortController();
  const done = service.run(p, { dcid: DC, endpoint: p.endpoint, node: 0, migrated: false, signal: ac.signal });
  stops.unshift(async () => {
    await service.stop?.();
    ac.abort();
    await p.unbind().catch(() => undefined);
    await done.catch(() => undefined);
  });
  return p;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-rdisk-'));
  image = path.join(dir, 'disk.img');
  k = new Kernel({ nodeId: 0, clock: systemClock });
  k.createDc({ dcid: DC });
});

afterEach(async () => {
  for (const s of stops.splice(0)) await s();
  await rm(dir, { recursive: true, force: true });
});

describe('RDISK', () => {
  it('reads and writes inline, through grants and in several extents, and flushes', async () => {
    await writeFile(image, Buffer.alloc(1024 * 1024));
    const server = new RdiskServer({ image });
    const rd = start(server, RDISK_SLOT, 'rdisk');
    const c = k.bind(DC, { name: 'client' });
    const client = new RdiskClient(c, fixedPeer(rd.endpoint));
    expect(await client.open()).toMatchObject({ version: 1, size: 1024 * 1024, readOnly: false });
    const small = randomBytes(1000);
    await client.write(4096, small);
    expect(Buffer.compare(Buffer.from(await client.read(4096, 1000)), small)).toBe(0);
    const big = randomBytes(300 * 1024);
    const seq = await client.write(100_000, big);
    expect(seq).toBe(2);
    expect(Buffer.compare(Buffer.from(await client.read(100_000, big.length)), big)).toBe(0);
    await client.flush();
    const onDisk = await readFile(image);
    expect(Buffer.compare(onDisk.subarray(100_000, 100_000 + big.length), big)).toBe(0);
    // Two extents, their data back to back in one grant.
    const buf = new Uint8Array(2000);
    const g = c.grant(buf, { grantee: ANY, access: 'write' });
    const r = await c.sendrec(rd.endpoint, { type: RD_READ, payload: { extents: [[4096, 1000], [100_000, 1000]], grant: g } });
    expect(r.type).toBe(0);
    expect(Buffer.compare(Buffer.from(buf.subarray(0, 1000)), small)).toBe(0);
    expect(Buffer.compare(Buffer.from(buf.subarray(1000)), big.subarray(0, 1000))).toBe(0);
    expect(server.info()).toMatchObject({ writes: 2 });
  });

  it('answers a tagged send with an RD_DONE message carrying the tag', async () => {
    await writeFile(image, Buffer.alloc(64 * 1024, 7));
    const rd = start(new RdiskServer({ image }), RDISK_SLOT, 'rdisk');
    const fsLike = k.bind(DC, { name: 'fs', slot: FS_SLOT });
    await fsLike.send(rd.endpoint, { type: RD_READ, payload: { offset: 10, length: 4, tag: 99 } });
    const m = await fsLike.receive(rd.endpoint, { timeoutMs: 5000 });
    expect(m.type).toBe(RD_DONE);
    expect(m.payload).toMatchObject({ tag: 99, type: 0, ok: true, bytes: 4 });
    expect(Array.from((m.payload as { data: Uint8Array }).data)).toEqual([7, 7, 7, 7]);
    await fsLike.send(rd.endpoint, { type: RD_READ, payload: { offset: 64 * 1024, length: 4, tag: 100 } });
    const bad = await fsLike.receive(rd.endpoint, { timeoutMs: 5000 });
    expect(bad.payload).toMatchObject({ tag: 100, type: ERRNO.EDVSNXIO, ok: false, error: { code: 'EDVSNXIO' } });
  });

  it('refuses what lies outside the device, bad fields and unknown requests, and keeps serving', async () => {
    await writeFile(image, Buffer.alloc(8192, 1));
    const rd = start(new RdiskServer({ image }), RDISK_SLOT, 'rdisk');
    const c = k.bind(DC, { name: 'client' });
    const ask = async (type: number, payload: Record<string, unknown>): Promise<string | undefined> => {
      const m = await c.sendrec(rd.endpoint, { type, payload: payload as never });
      return (m.payload as { error?: { code: string } }).error?.code;
    };
    expect(await ask(RD_WRITE, { offset: 8000, length: 500, data: new Uint8Array(500) })).toBe('EDVSNXIO');
    expect(await ask(RD_WRITE, { offset: 0, length: 4, data: new Uint8Array(5) })).toBe('EDVSINVAL');
    expect(await ask(RD_WRITE, { offset: 0, length: 4 })).toBe('EDVSINVAL');
    expect(await ask(RD_READ, { offset: -1, length: 4 })).toBe('EDVSINVAL');
    expect(await ask(RD_READ, { offset: 0, length: 64 * 1024 })).toBe('EDVSINVAL');
    expect(await ask(RD_READ, { offset: 0, length: 4, bogus: 1 })).toBe('EDVSINVAL');
    expect(await ask(RD_READ, { extents: [[0, 1]], offset: 0 })).toBe('EDVSINVAL');
    expect(await ask(0x9ff, {})).toBe('EDVSBADREQUEST');
    // Nothing was written past the end, nor at all.
    expect((await readFile(image)).equals(Buffer.alloc(8192, 1))).toBe(true);
    expect(await ask(RD_READ, { offset: 0, length: 4 })).toBeUndefined();
  });

  it('read-only refuses writes with EDVSROFS', async () => {
    await writeFile(image, Buffer.alloc(4096));
    const rd = start(new RdiskServer({ image, readOnly: true }), RDISK_SLOT, 'rdisk');
    const client = new RdiskClient(k.bind(DC, { name: 'client' }), fixedPeer(rd.endpoint));
    await expect(client.write(0, new Uint8Array(4))).rejects.toMatchObject({ code: 'EDVSROFS' });
  });
});

describe('FS over RDISK', () => {
  it('serves many clients at once; the image is clean for fsck.minix -f after FS stops', { timeout: 60_000 }, async () => {
    await mkfs(image);
    start(new RdiskServer({ image }), RDISK_SLOT, 'rdisk');
    const fsServer = new FsServer({ diskSlot: RDISK_SLOT });
    const fsp = start(fsServer, FS_SLOT, 'fs');
    const clients = Array.from({ length: 8 }, (_, i) => new FsClient(k.bind(DC, { name: `c${i}` }), fixedPeer(fsp.endpoint)));
    const contents = clients.map((_, i) => randomBytes(40_000 + i * 9_000));
    await clients[0]!.mkdir('/d');
    await Promise.all(
      clients.map(async (c, i) => {
        const s = await c.open(`/d/f${i}`, { create: true });
        await c.write(s.ino, 0, contents[i]!);
        await c.write(s.ino, 'append', Buffer.from('end'));
      }),
    );
    const names = (await clients[1]!.readdir('/d')).map((e) => e.name).sort();
    expect(names).toEqual(clients.map((_, i) => `f${i}`).sort());
    await Promise.all(
      clients.map(async (c, i) => {
        const got = await c.read({ path: `/d/f${(i + 1) % 8}` }, 0, 1_000_000);
        expect(Buffer.compare(Buffer.from(got), Buffer.concat([contents[(i + 1) % 8]!, Buffer.from('end')]))).toBe(0);
      }),
    );
    // Stops (the write-back at stop), then the image is checked.
    for (const s of stops.splice(0)) await s();
    const check = await run('/usr/sbin/fsck.minix', ['-f', image]).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
    expect(check.code, check.out).toBe(0);
  });

  it('answers bad requests with typed errors and keeps serving', { timeout: 30_000 }, async () => {
    await mkfs(image);
    start(new RdiskServer({ image }), RDISK_SLOT, 'rdisk');
    const fsp = start(new FsServer({ diskSlot: RDISK_SLOT }), FS_SLOT, 'fs');
    const c = k.bind(DC, { name: 'c' });
    const ask = async (type: number, payload: unknown): Promise<string | undefined> => {
      const m = await c.sendrec(fsp.endpoint, { type, payload: payload as never }, { timeoutMs: 10_000 });
      return (m.payload as { error?: { code: string } }).error?.code;
    };
    expect(await ask(FS_STAT, { path: 'relative' })).toBe('EDVSINVAL');
    expect(await ask(FS_STAT, { path: '/a\0b' })).toBe('EDVSINVAL');
    expect(await ask(FS_STAT, { path: `/${'x'.repeat(5000)}` })).toBe('EDVSNAMETOOLONG');
    expect(await ask(FS_STAT, { path: '/nope' })).toBe('EDVSNOENT');
    expect(await ask(FS_STAT, 'not a map')).toBe('EDVSINVAL');
    expect(await ask(FS_READ, { path: '/', length: 10 })).toBe('EDVSISDIR');
    expect(await ask(FS_READ, { path: '/x', length: 1 << 20 })).toBe('EDVSINVAL');
    expect(await ask(0xaff, {})).toBe('EDVSBADREQUEST');
    expect(await ask(FS_STAT, { path: '/' })).toBeUndefined();
  });

  it('refuses to move while a request is in progress, and moves its unwritten blocks when idle', { timeout: 30_000 }, async () => {
    await mkfs(image);
    start(new RdiskServer({ image }), RDISK_SLOT, 'rdisk');
    const server = new FsServer({ diskSlot: RDISK_SLOT, writeBackMs: 60_000 });
    const fsp = start(server, FS_SLOT, 'fs');
    const c = new FsClient(k.bind(DC, { name: 'c' }), new SlotPeer(FS_SLOT));
    const s = await c.open('/f', { create: true });
    expect(fsp.endpoint).toBe(FS_SLOT);
    const pending = c.write(s.ino, 0, randomBytes(2 * 1024 * 1024));
    // Taken and not answered yet: the write is in progress.
    for (let i = 0; i < 200 && server.info().inFlight === 0; i++) await new Promise((r) => setTimeout(r, 1));
    expect(server.movable()).toMatch(/in progress/);
    await pending;
    expect(server.movable()).toBe(true);
    const state = server.snapshot();
    expect(state.length).toBeGreaterThan(2 * 1024 * 1024);
  });

  it('a corrupt image (bad magic) is refused at mount with EDVSIO, not served', { timeout: 30_000 }, async () => {
    await mkfs(image);
    const h = await open(image, 'r+');
    await h.write(Buffer.from([0, 0]), 0, 2, 1024 + 24);
    await h.close();
    start(new RdiskServer({ image }), RDISK_SLOT, 'rdisk');
    const server = new FsServer({ diskSlot: RDISK_SLOT });
    const p = k.bind(DC, { name: 'fs', slot: FS_SLOT });
    const err = await server.run(p, { dcid: DC, endpoint: p.endpoint, node: 0, migrated: false, signal: new AbortController().signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'EDVSIO' });
    await p.unbind();
  });
});
