/**
 * The client as a separate OS process: a plain .mjs fixture importing the built library from dist/
 * (built once by test/global-setup.ts) talks to a ProcServer in this process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DvsError, ERRNO } from '../../src/client/index.js';
import { DC, SERVER_SLOT, pattern, sameBytes, startHarness, track, type Harness } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/client-process.mjs', import.meta.url));
const DIST_CLIENT = fileURLToPath(new URL('../../dist/src/client/index.js', import.meta.url));

let h: Harness | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await h?.close();
  h = undefined;
});

function run(mode: string, env: Record<string, string>): { child: ChildProcess; firstLine: Promise<Record<string, unknown>>; exit: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [FIXTURE, mode], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const firstLine = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before printing: ${err}`)));
  });
  firstLine.catch(() => undefined);
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, firstLine, exit, stderr: () => err };
}

describe('process protocol: a client in another OS process', { timeout: 30_000 }, () => {
  it('binds, grants, sendrecs; the server copies from and into its memory across chunks; errors keep code and errno', async () => {
    await access(DIST_CLIENT);
    h = await startHarness({ limits: { maxCopyChunk: 1000 } });
    const srv = h.kernel.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
    const serve = (async () => {
      const req = await srv.receiveRequest({ timeoutMs: 20_000 });
      const { grant, length } = req.payload as { grant: number; length: number };
      const data = new Uint8Array(length);
      await srv.copyFrom({ owner: req.source, grant }, data);
      const original = sameBytes(data, pattern(5000, 42));
      await srv.copyTo({ owner: req.source, grant }, data.slice().reverse());
      await srv.reply(req.source, { type: 2, payload: { original } });
      return req.source;
    })();
    const child = run('grant', { DVS_SOCKET: h.socketPath, DVS_TOKEN_PATH: h.tokenPath, DVS_SERVER: String(srv.endpoint) });
    const line = await child.firstLine;
    const childEp = await serve;
    expect(line).toMatchObject({
      endpoint: childEp,
      reply: { source: srv.endpoint, type: 2, payload: { original: 'equal' } },
      rewritten: true,
      err: { code: 'EDVSRANGE', errno: ERRNO.EDVSRANGE, name: 'DvsError' },
    });
    expect(await child.exit).toBe(0);
    expect(h.kernel.procs(DC).map((p) => p.name)).toEqual(['srv']);
  });

  it('a client process killed with SIGKILL is unbound: a peer receiving from it gets EDVSSRCDIED, a sendrec caller EDVSDEADSRCDST', async () => {
    h = await startHarness();
    const child = run('hold', { DVS_SOCKET: h.socketPath, DVS_TOKEN_PATH: h.tokenPath, DVS_SERVER: '0' });
    const { endpoint } = (await child.firstLine) as { endpoint: number };
    const peer = h.kernel.bind(DC);
    const r = track(peer.receive(endpoint, { timeoutMs: 10_000 }));
    const call = track(h.kernel.bind(DC).sendrec(endpoint, { type: 1 }, { timeoutMs: 10_000 }));
    child.child.kill('SIGKILL');
    const err = await r.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DvsError);
    expect((err as DvsError).code).toBe('EDVSSRCDIED');
    // Taken by the child or still queued, the request's caller learns its server died.
    await expect(call).rejects.toMatchObject({ code: 'EDVSDEADSRCDST', errno: ERRNO.EDVSDEADSRCDST });
    expect(await child.exit).toBe(null);
    expect(h.kernel.procs(DC).some((p) => p.endpoint === endpoint)).toBe(false);
  });
});
