/** The process socket: start-up, authentication by hello, limits announced, shutdown. */
import { chmod, lstat, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, DvsError, ERRNO } from '../../src/client/index.js';
import { Kernel } from '../../src/kernel/kernel.js';
import { PROC_PROTOCOL_VERSION } from '../../src/transport/proc-protocol.js';
import { ProcServer } from '../../src/node/proc-server.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { DC, startHarness, type Harness } from './helpers.js';

let h: Harness | undefined;

/** A process that listens on `path` and is killed with SIGKILL, so its socket file stays behind. */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', () => reject(new Error('listener exited early')));
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('process socket: hello and start-up', { timeout: 10_000 }, () => {
  it('authenticates with the token file and announces the limits', async () => {
    h = await startHarness({ limits: { maxPayloadBytes: 8192, maxCopyChunk: 1000 } });
    expect((await stat(h.socketPath)).mode & 0o777).toBe(0o600);
    expect((await stat(h.tokenPath)).mode & 0o777).toBe(0o600);
    const c = await h.connect({ name: 'probe' });
    expect(c.info.version).toBe(PROC_PROTOCOL_VERSION);
    expect(c.info.nodeId).toBe(0);
    expect(c.info.maxPayloadBytes).toBe(8192);
    expect(c.info.maxCopyChunk).toBe(1000);
    expect(c.info.maxCopyBytes).toBe(c.info.maxFrameBytes - 4096);
    await c.ping();
    const info = await c.nodeInfo();
    expect(info.nodeId).toBe(0);
    expect(info.dcs.map((d) => d.dcid)).toEqual([DC]);
    const c2 = await connect({ socketPath: h.socketPath, token: h.token });
    await c2.close();
  });

  it('refuses a wrong token with EDVSACCES and closes', async () => {
    h = await startHarness();
    const err = await connect({ socketPath: h.socketPath, token: 'not-the-token' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DvsError);
    expect((err as DvsError).code).toBe('EDVSACCES');
    expect((err as DvsError).errno).toBe(ERRNO.EDVSACCES);
    const raw = await h.raw();
    raw.send({ id: 7, op: 'hello', version: PROC_PROTOCOL_VERSION, token: h.token + 'x' });
    const res = await raw.next();
    expect(res).toMatchObject({ id: 7, ok: false, error: { code: 'EDVSACCES', errno: -13 } });
    expect(await raw.waitClosed()).toBe(true);
    expect(h.server.stats.authFailures).toBe(2);
  });

  it('refuses any first request but hello with EDVSPERM, and a bad version with EDVSPROTONOSUPPORT', async () => {
    h = await startHarness();
    const raw = await h.raw();
    raw.send({ id: 1, op: 'bind', dcid: DC });
    expect(await raw.next()).toMatchObject({ id: 1, ok: false, error: { code: 'EDVSPERM', errno: -1 } });
    expect(await raw.waitClosed()).toBe(true);

    const raw2 = await h.raw();
    raw2.send({ id: 1, op: 'hello', version: 99, token: h.token });
    expect(await raw2.next()).toMatchObject({ id: 1, ok: false, error: { code: 'EDVSPROTONOSUPPORT' } });
    expect(await raw2.waitClosed()).toBe(true);

    const raw3 = await h.raw();
    raw3.send({ id: 1, op: 'hello', version: PROC_PROTOCOL_VERSION, token: 42 });
    expect(await raw3.next()).toMatchObject({ id: 1, ok: false, error: { code: 'EDVSBADREQUEST' } });
    expect(await raw3.waitClosed()).toBe(true);
    expect(h.kernel.procs(DC)).toEqual([]);
  });

  it('closes a connection that does not say hello in time', async () => {
    h = await startHarness({ server: { helloTimeoutMs: 100 } });
    const raw = await h.raw();
    const t0 = Date.now();
    expect(await raw.next()).toMatchObject({ op: 'bye', error: { code: 'EDVSTIMEDOUT' } });
    expect(await raw.waitClosed()).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('an unauthenticated peer may not send more than 64 KiB', async () => {
    h = await startHarness();
    const raw = await h.raw();
    raw.sendBytes(Uint8Array.of(0, 2, 0, 0, 1, 0));
    raw.sendBytes(new Uint8Array(70_000));
    expect(await raw.next()).toMatchObject({ op: 'bye', error: { code: 'EDVSPACKSIZE' } });
    expect(await raw.waitClosed()).toBe(true);
  });

  it('a second hello is refused but the connection stays', async () => {
    h = await startHarness();
    const raw = await h.rawHello();
    raw.send({ id: 2, op: 'hello', version: PROC_PROTOCOL_VERSION, token: h.token });
    expect(await raw.next()).toMatchObject({ id: 2, ok: false, error: { code: 'EDVSALREADY' } });
    raw.send({ id: 3, op: 'ping' });
    expect(await raw.next()).toMatchObject({ id: 3, ok: true, result: null });
  });

  it('bind without a dcid uses the default DC, or fails with EDVSBADDCID without one', async () => {
    h = await startHarness({ server: { defaultDcid: DC } });
    const raw = await h.rawHello();
    raw.send({ id: 1, op: 'bind', name: 'dflt' });
    const res = await raw.next();
    expect(res).toMatchObject({ id: 1, ok: true, result: { dcid: DC, name: 'dflt', system: false } });
    await h.close();
    h = await startHarness();
    const raw2 = await h.rawHello();
    raw2.send({ id: 1, op: 'bind' });
    expect(await raw2.next()).toMatchObject({ id: 1, ok: false, error: { code: 'EDVSBADDCID', errno: -302 } });
  });

  it('removes a stale socket file, refuses a live one and a non-socket path, and refuses a token file others can read', async () => {
    h = await startHarness();
    const dir = h.dir;
    const kernel = new Kernel({ nodeId: 0, clock: systemClock });
    // A live daemon on the path.
    const second = new ProcServer({ kernel, socketPath: h.socketPath, token: 'abc' });
    await expect(second.start()).rejects.toMatchObject({ code: 'EDVSADDRINUSE' });
    // A stale socket: something bound the path and died without removing it.
    const stalePath = join(dir, 'stale.sock');
    await leaveStaleSocket(stalePath);
    expect((await lstat(stalePath)).isSocket()).toBe(true);
    const third = new ProcServer({ kernel, socketPath: stalePath, token: 'abc' });
    await third.start();
    const c = await connect({ socketPath: stalePath, token: 'abc' });
    await c.close();
    await third.close();
    await expect(lstat(stalePath)).rejects.toThrow();
    // A regular file is never removed.
    const filePath = join(dir, 'file.sock');
    await writeFile(filePath, 'data');
    await expect(new ProcServer({ kernel, socketPath: filePath, token: 'abc' }).start()).rejects.toMatchObject({ code: 'EDVSEXIST' });
    // Token file readable by others.
    const loose = join(dir, 'loose-token');
    await writeFile(loose, 'secret\n');
    await chmod(loose, 0o644);
    await expect(new ProcServer({ kernel, socketPath: join(dir, 'x.sock'), tokenPath: loose }).start()).rejects.toMatchObject({ code: 'EDVSACCES' });
    kernel.shutdown();
  });

  it('connect to a missing socket fails with EDVSCONNREFUSED', async () => {
    h = await startHarness();
    await expect(connect({ socketPath: join(h.dir, 'nope.sock'), token: 't' })).rejects.toMatchObject({ code: 'EDVSCONNREFUSED' });
  });

  it('close() ends every connection: pending calls fail with EDVSNOTCONN and the socket file is removed', async () => {
    h = await startHarness();
    const c = await h.connect();
    const p = await c.bind(DC);
    const pending = p.receive(0x7ace).catch((e: unknown) => e);
    await h.server.close();
    const err = (await pending) as DvsError;
    expect(err.code).toBe('EDVSNOTCONN');
    expect(err.errno).toBe(-64);
    expect(c.closed).toBe(true);
    await expect(p.send(5, { type: 1 })).rejects.toMatchObject({ code: 'EDVSNOTCONN' });
    expect(() => p.grant(new Uint8Array(4), { grantee: 0x7ace, access: 'read' })).toThrow(/EDVSNOTCONN/);
    await expect(lstat(h.socketPath)).rejects.toThrow();
    expect(h.kernel.procs(DC)).toEqual([]);
  });
});
