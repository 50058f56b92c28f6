/**
 * Durability of the embedded store (src/cluster/store-wal.ts, MemoryStore.open): what a client saw
 * acknowledged is there after a restart, with the same revisions, store id and lease ids; a torn log
 * tail is cut off, damage fails with EDVSIO, a snapshot replaces the log and a crash between the two
 * replays nothing twice.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, existsSync, closeSync } from 'node:fs';
import { DvsError } from '../../src/ipc/errors.js';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { StoreWal, type WalRecord } from '../../src/cluster/store-wal.js';
import type { WatchEvent } from '../../src/cluster/store.js';
import { SimClock } from '../../src/sim/sim-clock.js';
import { codeOf, codeOfSync } from './helpers.js';

let dir: string;
let open: MemoryStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'dvs-store-wal-'));
});

afterEach(() => {
  for (const s of open) s.closeSync();
  open = [];
  rmSync(dir, { recursive: true, force: true });
});

function openStore(clock = new SimClock(), snapshotBytes?: number): MemoryStore {
  const s = MemoryStore.open(dir, snapshotBytes === undefined ? { clock } : { clock, snapshotBytes });
  open.push(s);
  return s;
}

function reopen(s: MemoryStore, clock = new SimClock(), snapshotBytes?: number): MemoryStore {
  s.closeSync();
  return openStore(clock, snapshotBytes);
}

describe('a durable MemoryStore', () => {
  it('comes back with every acknowledged write, its revisions and its store id', async () => {
    let s = openStore();
    const id = s.storeId;
    await s.put('/dc/1', { name: 'main', nodes: [0, 1, 2] });
    await s.put('/dc/2', { name: 'other' });
    await s.put('/dc/1', { name: 'main', nodes: [0, 1] });
    await s.delete('/dc/2');
    const t = await s.txn({ compare: [{ key: '/gen/3', version: 0 }], success: [{ op: 'put', key: '/gen/3', value: 7 }, { op: 'put', key: '/gen/4', value: 1 }] });
    expect(t.succeeded).toBe(true);
    const before = { dc1: await s.get('/dc/1'), gen: await s.getPrefix('/gen/'), revision: s.revision };
    s = reopen(s);
    expect(s.storeId).toBe(id);
    expect(s.revision).toBe(before.revision);
    expect(await s.get('/dc/1')).toEqual(before.dc1);
    expect(await s.get('/dc/2')).toBeUndefined();
    expect(await s.getPrefix('/gen/')).toEqual(before.gen);
    // Writing goes on from the same revision.
    expect(await s.put('/dc/3', 3)).toEqual({ revision: before.revision + 1 });
    expect(s.truncatedOnOpen).toBe(0);
  });

  it('keeps leases and their keys, each with its full TTL again, and expires them if nobody keeps them alive', async () => {
    let clock = new SimClock();
    let s = openStore(clock);
    const kept = await s.grantLease(1000);
    const dropped = await s.grantLease(1000);
    await s.put('/nodes/1', 'a', { lease: kept });
    await s.put('/nodes/2', 'b', { lease: dropped });
    clock.runUntil(900); // 100 ms left on both
    clock = new SimClock();
    s = reopen(s, clock);
    expect((await s.getPrefix('/nodes/')).entries.map((e) => [e.key, e.lease])).toEqual([
      ['/nodes/1', kept],
      ['/nodes/2', dropped],
    ]);
    expect(s.leaseTtl(kept)).toBe(1000);
    clock.runUntil(600);
    expect(await s.keepAlive(kept)).toBe(1000);
    clock.runUntil(1200);
    expect((await s.getPrefix('/nodes/')).entries.map((e) => e.key)).toEqual(['/nodes/1']);
    expect(await codeOf(s.keepAlive(dropped))).toBe('EDVSNOENT');
    // The expiry itself was logged: after another restart the key and its lease stay gone.
    s = reopen(s);
    expect((await s.getPrefix('/nodes/')).entries.map((e) => e.key)).toEqual(['/nodes/1']);
    expect(await codeOf(s.keepAlive(dropped))).toBe('EDVSNOENT');
    // New lease ids never repeat old ones.
    expect(await s.grantLease(1000)).toBeGreaterThan(Math.max(kept, dropped));
  });

  it('forgets a revoked lease and its keys', async () => {
    let s = openStore();
    const l = await s.grantLease(5000);
    await s.put('/eps/9', 'x', { lease: l });
    await s.revokeLease(l);
    s = reopen(s);
    expect(await s.get('/eps/9')).toBeUndefined();
    expect(await codeOf(s.keepAlive(l))).toBe('EDVSNOENT');
  });

  it('lets a watch resume after the restart from a revision it saw before', async () => {
    let s = openStore();
    await s.put('/dcs/1', 'a');
    const seen = s.revision;
    await s.put('/dcs/2', 'b');
    await s.delete('/dcs/1');
    s = reopen(s);
    const got: WatchEvent[] = [];
    const h = s.watchBatches('/dcs/', seen, (_rev, events) => got.push(...events));
    expect(got.map((e) => [e.type, e.key, e.revision])).toEqual([
      ['put', '/dcs/2', seen + 1],
      ['delete', '/dcs/1', seen + 2],
    ]);
    h.cancel();
  });

  it('takes a snapshot when the log grows, restarts from it, and compacts the history before it', async () => {
    let s = openStore(new SimClock(), 4096);
    for (let i = 0; i < 200; i++) await s.put(`/k/${i % 20}`, { i, pad: 'x'.repeat(40) });
    expect(existsSync(path.join(dir, 'store.snap'))).toBe(true);
    expect(statSync(path.join(dir, 'store.wal')).size).toBeLessThan(4096 + 200);
    const all = await s.getPrefix('/k/');
    s = reopen(s, new SimClock(), 4096);
    expect(s.revision).toBe(200);
    expect(await s.getPrefix('/k/')).toEqual(all);
    expect(s.compactRevision).toBeGreaterThan(0);
    expect(codeOfSync(() => s.watchBatches('/k/', 0, () => undefined))).toBe('EDVSRANGE');
  });

  it('comes back whole from a snapshot taken at any write (every write snapshots here)', async () => {
    let s = openStore(new SimClock(), 1);
    await s.put('/a', 1);
    const lease = await s.grantLease(5000);
    s = reopen(s, new SimClock(), 1);
    expect(s.revision).toBe(1);
    expect(await s.keepAlive(lease)).toBe(5000);
    await s.put('/b', 2, { lease });
    s = reopen(s, new SimClock(), 1);
    expect(s.revision).toBe(2);
    expect(await s.get('/b')).toMatchObject({ value: 2, modRevision: 2, lease });
    expect(await s.put('/c', 3)).toEqual({ revision: 3 });
    await s.revokeLease(lease);
    s = reopen(s, new SimClock(), 1);
    expect(s.revision).toBe(4);
    expect(await s.get('/b')).toBeUndefined();
    expect(await codeOf(s.keepAlive(lease))).toBe('EDVSNOENT');
    expect(await s.grantLease(1000)).toBeGreaterThan(lease);
  });

  it('closes with EDVSIO when it cannot log, and keeps the write out of what it comes back with', async () => {
    let s = openStore();
    await s.put('/a', 1);
    // The log's file descriptor goes bad under it (as a failing disk would make every write fail).
    closeSync((s as unknown as { wal: { fd: number } }).wal.fd);
    expect(await codeOf(s.put('/b', 2))).toBe('EDVSIO');
    expect(await codeOf(s.get('/a'))).toBe('EDVSSHUTDOWN');
    open = open.filter((x) => x !== s);
    s = openStore();
    expect(await s.get('/a')).toMatchObject({ value: 1 });
    expect(await s.get('/b')).toBeUndefined();
  });
});

describe('StoreWal files', () => {
  const walFile = (): string => path.join(dir, 'store.wal');
  const commit = (revision: number, key: string): WalRecord => ({ t: 'commit', revision, events: [[key, [key, Buffer.from([revision]), revision, revision, 1, 0]]] });

  it('cuts off a torn tail and goes on appending after the last whole record', () => {
    const { wal } = StoreWal.open(dir);
    for (let r = 1; r <= 3; r++) wal.append(commit(r, `/k${r}`));
    wal.close();
    const size = statSync(walFile()).size;
    truncateSync(walFile(), size - 3); // a crash in the middle of writing record 3
    let rec = StoreWal.open(dir);
    expect(rec.recovered.truncatedBytes).toBeGreaterThan(0);
    expect(rec.recovered.records.map((r) => (r.t === 'commit' ? r.revision : -1))).toEqual([1, 2]);
    rec.wal.append(commit(3, '/k3b'));
    rec.wal.close();
    rec = StoreWal.open(dir);
    expect(rec.recovered.truncatedBytes).toBe(0);
    expect(rec.recovered.records.map((r) => (r.t === 'commit' ? r.events[0]![0] : ''))).toEqual(['/k1', '/k2', '/k3b']);
    rec.wal.close();
  });

  it('fails with EDVSIO on a damaged record that has whole records after it, and on a damaged snapshot', () => {
    const { wal } = StoreWal.open(dir);
    for (let r = 1; r <= 4; r++) wal.append(commit(r, `/key-${r}`));
    wal.close();
    const bytes = readFileSync(walFile());
    const at = bytes.indexOf(Buffer.from('/key-2'));
    bytes[at + 1]! ^= 0xff;
    writeFileSync(walFile(), bytes);
    expect(codeOfSync(() => StoreWal.open(dir))).toBe('EDVSIO');

    // A damaged header (its length here) is damage too, and the log is left as it was.
    rmSync(walFile());
    const third = StoreWal.open(dir);
    third.wal.append(commit(1, '/kept'));
    third.wal.close();
    const headerBroken = readFileSync(walFile());
    headerBroken[0]! ^= 0x40;
    writeFileSync(walFile(), headerBroken);
    expect(codeOfSync(() => StoreWal.open(dir))).toBe('EDVSIO');
    expect(readFileSync(walFile()).equals(headerBroken)).toBe(true);

    rmSync(walFile());
    const again = StoreWal.open(dir);
    again.wal.snapshot({ revision: 1, nextLease: 1, entries: [], leases: [] });
    again.wal.close();
    const snap = path.join(dir, 'store.snap');
    const s = readFileSync(snap);
    s[s.byteLength - 1]! ^= 0xff;
    writeFileSync(snap, s);
    expect(codeOfSync(() => StoreWal.open(dir))).toBe('EDVSIO');
  });

  it('replays nothing twice when a crash leaves the old log beside a new snapshot', () => {
    const first = StoreWal.open(dir);
    for (let r = 1; r <= 3; r++) first.wal.append(commit(r, `/k${r}`));
    copyFileSync(walFile(), path.join(dir, 'old.wal'));
    first.wal.snapshot({ revision: 3, nextLease: 1, entries: [['/k1', Buffer.from([1]), 1, 1, 1, 0]], leases: [] });
    first.wal.close();
    // The crash: the snapshot was renamed into place, the fresh log was not.
    copyFileSync(path.join(dir, 'old.wal'), walFile());
    let rec = StoreWal.open(dir);
    expect(rec.recovered.image.revision).toBe(3);
    expect(rec.recovered.records).toEqual([]);
    rec.wal.append(commit(4, '/k4'));
    rec.wal.close();
    rec = StoreWal.open(dir);
    expect(rec.recovered.records.map((r) => (r.t === 'commit' ? r.revision : -1))).toEqual([4]);
    expect(rec.wal.storeId).toBe(first.wal.storeId);
    rec.wal.close();
  });

  it('given any truncation or flipped byte, opens with a prefix of what was written or fails with EDVSIO', () => {
    const written: WalRecord[] = [];
    {
      const { wal } = StoreWal.open(dir);
      for (let r = 1; r <= 12; r++) {
        const rec: WalRecord = r % 4 === 0 ? { t: 'lease', id: r, ttlMs: 1000 + r } : commit(r, `/key/${'x'.repeat(r * 7)}`);
        wal.append(rec);
        written.push(rec);
      }
      wal.close();
    }
    const pristine = readFileSync(walFile());
    fc.assert(
      fc.property(fc.oneof(fc.record({ cut: fc.integer({ min: 0, max: pristine.byteLength }) }), fc.record({ at: fc.integer({ min: 0, max: pristine.byteLength - 1 }), xor: fc.integer({ min: 1, max: 255 }) })), (damage) => {
        const bytes = Buffer.from(pristine);
        let file = bytes;
        if ('cut' in damage) file = bytes.subarray(0, damage.cut);
        else bytes[damage.at]! ^= damage.xor;
        writeFileSync(walFile(), file);
        let got: WalRecord[];
        try {
          const opened = StoreWal.open(dir);
          got = [...opened.recovered.records];
          opened.wal.close();
        } catch (err) {
          expect(err).toBeInstanceOf(DvsError);
          expect((err as DvsError).code).toBe('EDVSIO');
          return;
        }
        expect(got).toEqual(written.slice(0, got.length));
        // A cut keeps every record that was whole before the cut.
        if ('cut' in damage && damage.cut === pristine.byteLength) expect(got.length).toBe(written.length);
      }),
      { numRuns: 300, seed: 20261128 },
    );
  });
});
