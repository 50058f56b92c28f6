/**
 * Grants of client processes: their bytes stay in the client and the daemon fetches them chunk by
 * chunk (kernel maxCopyChunk 1000) through grant-read / grant-write; copies by clients travel in
 * the request and response.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ANY, DvsError, ERRNO, SELF, type DvsClient, type RemoteProcess } from '../../src/client/index.js';
import type { Process } from '../../src/kernel/process.js';
import { DC, SERVER_SLOT, pattern, rowOf, sameBytes, socketOf, startHarness, track, until, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

const LIMITS = { maxCopyChunk: 1000, maxPayloadBytes: 8192 };

async function expectCode(p: Promise<unknown>, code: keyof typeof ERRNO): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DvsError);
  expect((err as DvsError).code).toBe(code);
  expect((err as DvsError).errno).toBe(ERRNO[code]);
}

async function setup(server?: { maxFrameBytes?: number }): Promise<{ h: Harness; c: DvsClient; cli: RemoteProcess; srv: Process }> {
  h = await startHarness({ limits: LIMITS, ...(server === undefined ? {} : { server }) });
  const c = await h.connect();
  const cli = await c.bind(DC, { name: 'cli' });
  const srv = h.kernel.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
  return { h, c, cli, srv };
}

describe('process protocol: grants and copies', { timeout: 15_000 }, () => {
  it('an in-process server copies from and to a client grant across chunk boundaries, byte-exact', async () => {
    const { cli, srv } = await setup();
    const buf = pattern(6000, 7);
    const original = buf.slice();
    // Window [7, 7 + 4321): 5 chunks of 1000 and an uneven tail from any offset.
    const g = cli.grant(buf, { grantee: srv.endpoint, access: 'readwrite', offset: 7, length: 4321 });
    const incoming = pattern(3003, 99);
    const serve = (async () => {
      const req = await srv.receiveRequest();
      const ref = { owner: req.source, grant: (req.payload as { g: number }).g };
      const got = new Uint8Array(4321 - 13);
      expect(await srv.copyFrom({ ...ref, offset: 13 }, got)).toBe(got.byteLength);
      expect(sameBytes(got, original.subarray(7 + 13, 7 + 4321))).toBe('equal');
      expect(await srv.copyTo({ ...ref, offset: 1111 }, incoming)).toBe(3003);
      await srv.reply(req.source, { type: 0 });
    })();
    const rep = await cli.sendrec(srv.endpoint, { type: 1, payload: { g } });
    await serve;
    expect(rep.type).toBe(0);
    const expected = original.slice();
    expected.set(incoming, 7 + 1111);
    expect(sameBytes(buf, expected)).toBe('equal');
  });

  it('a client copies from and to an in-process grant; large copies go as several requests', async () => {
    const { c, cli, srv } = await setup({ maxFrameBytes: 16_384 });
    expect(c.maxCopyBytes).toBe(12_288);
    const mem = pattern(50_000, 3);
    const g = srv.grant(mem, { grantee: cli.endpoint, access: 'readwrite', whileWaiting: false });
    const into = new Uint8Array(40_010);
    expect(await cli.copyFrom({ owner: srv.endpoint, grant: g, offset: 5 }, into, { intoOffset: 10 })).toBe(40_000);
    expect(sameBytes(into.subarray(10), mem.subarray(5, 40_005))).toBe('equal');
    expect(sameBytes(into.subarray(0, 10), new Uint8Array(10))).toBe('equal');
    const data = pattern(30_001, 11);
    expect(await cli.copyTo({ owner: srv.endpoint, grant: g, offset: 19_000 }, data, { timeoutMs: 5000 })).toBe(30_001);
    expect(sameBytes(mem.subarray(19_000, 49_001), data)).toBe('equal');
  });

  it('a client copy longer than 1 MiB streams through a grant of its own buffer, revoked afterwards', async () => {
    const { cli, srv } = await setup();
    const size = 1024 * 1024 + 4321;
    const mem = pattern(size + 100, 21);
    const g = srv.grant(mem, { grantee: cli.endpoint, access: 'readwrite', whileWaiting: false });
    const into = new Uint8Array(size + 7);
    expect(await cli.copyFrom({ owner: srv.endpoint, grant: g, offset: 100 }, into, { intoOffset: 7 })).toBe(size);
    expect(sameBytes(into.subarray(7), mem.subarray(100))).toBe('equal');
    const data = pattern(size, 22);
    expect(await cli.copyTo({ owner: srv.endpoint, grant: g, offset: 50 }, data, { timeoutMs: 10_000 })).toBe(size);
    expect(sameBytes(mem.subarray(50, 50 + size), data)).toBe('equal');
    // Each copy ran as one windowed copy of the daemon's kernel, not as pieces; the grant is gone
    // (its revoke is sent after the copy returns).
    await until(() => rowOf(h!.kernel, cli.endpoint)?.grants === 0, 5000, 'the own grant revoked');
    expect(rowOf(h!.kernel, cli.endpoint)?.counters).toMatchObject({ rmtCopies: 2, lclCopies: 0 });
  });

  it('a client that may not grant still copies more than 1 MiB, piece by piece', async () => {
    const { cli, srv } = await setup({ maxFrameBytes: 256 * 1024 });
    h!.kernel.setPrivileges(DC, cli.endpoint, { level: 'user', allowedCalls: ['send', 'receive', 'sendrec', 'notify', 'copy'], ipcTo: 'all' });
    const size = 1024 * 1024 + 99;
    const mem = pattern(size, 23);
    const g = srv.grant(mem, { grantee: cli.endpoint, access: 'readwrite', whileWaiting: false });
    const into = new Uint8Array(size);
    expect(await cli.copyFrom({ owner: srv.endpoint, grant: g }, into)).toBe(size);
    expect(sameBytes(into, mem)).toBe('equal');
    const data = pattern(size, 24);
    expect(await cli.copyTo({ owner: srv.endpoint, grant: g }, data)).toBe(size);
    expect(sameBytes(mem, data)).toBe('equal');
    // Five requests each way (pieces of at most maxCopyBytes), and no grant left behind.
    const row = h!.kernel.procs(DC).find((r) => r.endpoint === cli.endpoint)!;
    expect(row.counters).toMatchObject({ rmtCopies: 0, lclCopies: 10 });
    expect(row.grants).toBe(0);
  });

  it('client-to-client copies: the copier and the owner are both behind the socket', async () => {
    h = await startHarness({ limits: LIMITS });
    const c1 = await h.connect();
    const c2 = await h.connect();
    const owner = await c1.bind(DC);
    const copier = await c2.bind(DC, { slot: SERVER_SLOT });
    const buf = pattern(2500, 5);
    const g = owner.grant(buf, { grantee: copier.endpoint, access: 'readwrite' });
    const serve = (async () => {
      const req = await copier.receiveRequest();
      const got = new Uint8Array(2500);
      await copier.copyFrom({ owner: req.source, grant: g }, got);
      expect(sameBytes(got, pattern(2500, 5))).toBe('equal');
      await copier.copyTo({ owner: req.source, grant: g, offset: 500 }, new Uint8Array(1500).fill(0xee));
      await copier.reply(req.source, { type: 0 });
    })();
    await owner.sendrec(copier.endpoint, { type: 1 });
    await serve;
    const expected = pattern(2500, 5);
    expected.fill(0xee, 500, 2000);
    expect(sameBytes(buf, expected)).toBe('equal');
  });

  it('third-party copy between two client grants, and a copy from SELF', async () => {
    h = await startHarness({ limits: LIMITS });
    const c = await h.connect();
    const a = await c.bind(DC);
    const b = await c.bind(DC);
    const third = h.kernel.bind(DC, { slot: SERVER_SLOT });
    const src = pattern(3500, 21);
    const dst = new Uint8Array(4000);
    const gs = a.grant(src, { grantee: ANY, access: 'read', whileWaiting: false });
    const gd = b.grant(dst, { grantee: ANY, access: 'write', whileWaiting: false });
    // grant() returns at once; a later request answered by the daemon proves it registered.
    await c.ping();
    expect(await third.copy({ owner: a.endpoint, grant: gs, offset: 100 }, { owner: b.endpoint, grant: gd, offset: 250 }, 3400)).toBe(3400);
    expect(sameBytes(dst.subarray(250, 3650), src.subarray(100, 3500))).toBe('equal');
    expect(sameBytes(dst.subarray(0, 250), new Uint8Array(250))).toBe('equal');
    // A client asks the daemon for a third-party copy between two grants of another client.
    const back = new Uint8Array(10);
    const gb = a.grant(back, { grantee: ANY, access: 'write', whileWaiting: false });
    await c.ping();
    expect(await b.copy({ owner: a.endpoint, grant: gs }, { owner: a.endpoint, grant: gb }, 10)).toBe(10);
    expect(sameBytes(back, src.subarray(0, 10))).toBe('equal');
    const self = new Uint8Array(1500);
    expect(await a.copyFrom({ owner: SELF, grant: gs, offset: 2000 }, self)).toBe(1500);
    expect(sameBytes(self, src.subarray(2000, 3500))).toBe('equal');
  });

  it('grant errors: revoked, wrong access, outside the window, owner not waiting, wrong grantee', async () => {
    const { h, c, cli, srv } = await setup();
    const other = await c.bind(DC);
    const buf = pattern(3000, 1);
    const ro = cli.grant(buf, { grantee: srv.endpoint, access: 'read', whileWaiting: false });
    const waiting = cli.grant(buf, { grantee: srv.endpoint, access: 'read' });
    const mine = cli.grant(buf, { grantee: other.endpoint, access: 'read', whileWaiting: false });
    await c.ping();
    await expectCode(srv.copyTo({ owner: cli.endpoint, grant: ro }, new Uint8Array(10)), 'EDVSACCES');
    await expectCode(srv.copyFrom({ owner: cli.endpoint, grant: ro, offset: 2995 }, new Uint8Array(10)), 'EDVSRANGE');
    await expectCode(srv.copyFrom({ owner: cli.endpoint, grant: waiting }, new Uint8Array(10)), 'EDVSPROCSTS');
    await expectCode(srv.copyFrom({ owner: cli.endpoint, grant: mine }, new Uint8Array(10)), 'EDVSACCES');
    const got = new Uint8Array(2000);
    await srv.copyFrom({ owner: cli.endpoint, grant: ro, offset: 1000 }, got);
    expect(sameBytes(got, buf.subarray(1000, 3000))).toBe('equal');
    cli.revoke(ro);
    expect(() => cli.revoke(ro)).toThrow(/EDVSBADVALUE/);
    await c.ping();
    await expectCode(srv.copyFrom({ owner: cli.endpoint, grant: ro }, new Uint8Array(10)), 'EDVSBADVALUE');
    // Client-side argument checks are synchronous, like the in-process call.
    expect(() => cli.grant(buf, { grantee: srv.endpoint, access: 'read', offset: 3001 })).toThrow(/EDVSRANGE/);
    expect(() => cli.grant(buf, { grantee: srv.endpoint, access: 'rw' as never })).toThrow(/EDVSBADVALUE/);
    expect(() => cli.grant('x' as never, { grantee: srv.endpoint, access: 'read' })).toThrow(/EDVSBADVALUE/);
    // A grant the kernel refuses is reported asynchronously and dropped.
    const errors: DvsError[] = [];
    const c2 = await h.connect({ onAsyncError: (e) => errors.push(e) });
    const p2 = await c2.bind(DC);
    h.kernel.setPrivileges(DC, p2.endpoint, { level: 'user', allowedCalls: ['send'], ipcTo: 'all' });
    const refused = p2.grant(buf, { grantee: ANY, access: 'read' });
    await c2.ping();
    expect(errors.map((e) => e.code)).toEqual(['EDVSBADCALL']);
    await expectCode(srv.copyFrom({ owner: p2.endpoint, grant: refused }, new Uint8Array(1)), 'EDVSBADVALUE');
  });

  it('a copy from a client that disconnects mid-way fails instead of hanging', async () => {
    const { h, c, cli, srv } = await setup();
    const buf = pattern(5000, 2);
    const g = cli.grant(buf, { grantee: srv.endpoint, access: 'read', whileWaiting: false });
    await c.ping();
    // Stop the client from answering grant-reads, start a copy, then drop the client.
    const socket = socketOf(c);
    socket.pause();
    const sentBefore = h.server.stats.bytesOut;
    const copy = track(srv.copyFrom({ owner: cli.endpoint, grant: g }, new Uint8Array(5000), { timeoutMs: 3000 }));
    // The copy is under way once the daemon has written its grant-read to the client.
    await until(() => h.server.stats.bytesOut > sentBefore, 5000, 'the grant-read sent');
    socket.destroy();
    const err = await copy.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DvsError);
    expect(['EDVSSRCDIED', 'EDVSSHUTDOWN', 'EDVSBADVALUE']).toContain((err as DvsError).code);
    void h;
  });

  it('a client that does not answer grant requests makes the copy time out on the daemon side', async () => {
    h = await startHarness({ limits: LIMITS, server: { grantTimeoutMs: 100 } });
    const c = await h.connect();
    const cli = await c.bind(DC);
    const srv = h.kernel.bind(DC, { slot: SERVER_SLOT });
    const g = cli.grant(new Uint8Array(10), { grantee: srv.endpoint, access: 'read', whileWaiting: false });
    await c.ping();
    const socket = socketOf(c);
    socket.pause();
    await expectCode(srv.copyFrom({ owner: cli.endpoint, grant: g }, new Uint8Array(10)), 'EDVSTIMEDOUT');
    socket.resume();
    await c.ping();
  });
});
