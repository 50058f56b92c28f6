/**
 * The Supervisor on its own, with real OS programs and no daemon: the environment a program gets,
 * retire, the lookups the daemon's migration uses (run of a pid, run of an endpoint), stopAll, and
 * the bound on the ended runs it keeps.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/cli/cluster-files.js';
import { MAX_ENDED, Supervisor } from '../../src/node/supervisor.js';
import { asRunSpec, type RunEndpoint, type RunInfo } from '../../src/transport/run-spec.js';
import { eventually } from './helpers.js';

const SLEEPER = ['-e', 'setInterval(() => undefined, 1000)'];
const PRINT_ENV = ['-e', 'const e = {}; for (const [k, v] of Object.entries(process.env)) if (k.startsWith("DVS_") || k === "FOO") e[k] = v; console.log(JSON.stringify(e))'];

let dir: string;
let sup: Supervisor;
let logged: { msg: string; fields: Record<string, unknown> }[];
const endpoints = new Map<number, RunEndpoint[]>();

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-supervisor-'));
  logged = [];
  endpoints.clear();
  const record = (fields: object, msg?: string): void => void logged.push({ msg: msg ?? '', fields: fields as Record<string, unknown> });
  sup = new Supervisor({
    nodeId: 3,
    socketPath: path.join(dir, 'dvsd.sock'),
    tokenPath: path.join(dir, 'token'),
    dataDir: dir,
    logger: { debug: record, info: record, warn: record, error: record },
    endpointsOf: (run) => endpoints.get(run) ?? [],
  });
});

afterEach(async () => {
  await sup.stopAll(500);
  await rm(dir, { recursive: true, force: true });
});

function ended(run: number): Promise<RunInfo> {
  return eventually(() => {
    const r = sup.get(run);
    return r === undefined || r.state === 'running' ? undefined : r;
  }, 20_000);
}

describe('Supervisor', () => {
  it('gives a program the daemon\'s variables after its own env, then extraEnv; no inherited slot or name', async () => {
    const withAll = await sup.start({ dcid: 4, program: process.execPath, args: PRINT_ENV, slot: 7, name: 'svc', env: { FOO: 'bar', DVS_SOCKET: 'not this' } }, { DVS_EXTRA: 'x' });
    expect(await ended(withAll.run)).toMatchObject({ state: 'exited', exitCode: 0 });
    const env = JSON.parse(await readFile(sup.logFile(withAll.run), 'utf8')) as Record<string, string>;
    expect(env).toEqual({
      FOO: 'bar',
      DVS_SOCKET: path.join(dir, 'dvsd.sock'),
      DVS_TOKEN_FILE: path.join(dir, 'token'),
      DVS_NODE: '3',
      DVS_DC: '4',
      DVS_RUN: String(withAll.run),
      DVS_SLOT: '7',
      DVS_NAME: 'svc',
      DVS_EXTRA: 'x',
    });
    process.env.DVS_SLOT = '99';
    try {
      const bare = await sup.start({ dcid: 4, program: process.execPath, args: PRINT_ENV });
      await ended(bare.run);
      const env2 = JSON.parse(await readFile(sup.logFile(bare.run), 'utf8')) as Record<string, string>;
      expect(env2.DVS_SLOT).toBeUndefined();
      expect(env2.DVS_NAME).toBeUndefined();
      expect(env2.DVS_RUN).toBe(String(bare.run));
      expect(bare.run).toBeGreaterThan(withAll.run);
    } finally {
      delete process.env.DVS_SLOT;
    }
  }, 30_000);

  it('retire stops a program as moved: state retired, logged as such; the lookups find it while it runs', async () => {
    const r = await sup.start({ dcid: 1, program: process.execPath, args: SLEEPER });
    const pid = r.pid ?? 0;
    endpoints.set(r.run, [{ dcid: 1, endpoint: 40, name: 'svc' }]);
    expect(sup.runOfPid(pid)).toBe(r.run);
    expect(sup.runOfEndpoint(1, 40)).toBe(r.run);
    expect(sup.runOfEndpoint(1, 41)).toBeUndefined();
    expect(sup.runOfEndpoint(2, 40)).toBeUndefined();
    expect(sup.get(r.run)?.endpoints).toEqual([{ dcid: 1, endpoint: 40, name: 'svc' }]);
    expect(sup.specOf(r.run)).toEqual({ dcid: 1, program: process.execPath, args: SLEEPER });

    const retired = await sup.retire(r.run);
    expect(retired).toMatchObject({ state: 'retired', signal: 'SIGTERM', endpoints: [] });
    expect(isAlive(pid)).toBe(false);
    expect(sup.runOfPid(pid)).toBeUndefined();
    expect(sup.runOfEndpoint(1, 40)).toBeUndefined();
    expect(logged.find((l) => l.msg.startsWith('program retired'))?.fields).toMatchObject({ run: r.run, pid, signal: 'SIGTERM' });
  }, 30_000);

  it('asRunSpec takes a spec that travelled as plain data, and nothing else', () => {
    const spec = { dcid: 2, program: '/bin/true', args: ['a'], cwd: '/tmp', env: { A: 'b' }, name: 'n', slot: 3 };
    expect(asRunSpec(JSON.parse(JSON.stringify(spec)))).toEqual(spec);
    expect(asRunSpec({ dcid: 2, program: '/bin/true' })).toEqual({ dcid: 2, program: '/bin/true', args: [] });
    for (const v of [undefined, null, 'x', [], { program: '/bin/true' }, { dcid: 2 }, { dcid: 2, program: 5 }, { dcid: 2, program: '/bin/true', args: [1] }, { factory: '/m.js', dcid: 1 }]) expect(asRunSpec(v), JSON.stringify(v)).toBeUndefined();
  });

  it('a missing working directory fails the start with EDVSNOENT', async () => {
    await expect(sup.start({ dcid: 1, program: process.execPath, args: SLEEPER, cwd: path.join(dir, 'gone') })).rejects.toMatchObject({ code: 'EDVSNOENT' });
    expect(sup.list()).toMatchObject([{ state: 'failed' }]);
  });

  it('stopAll stops every program, waits for a start in flight, and refuses new ones', async () => {
    const a = await sup.start({ dcid: 1, program: process.execPath, args: SLEEPER });
    const inFlight = sup.start({ dcid: 1, program: process.execPath, args: SLEEPER });
    await sup.stopAll(2000);
    const b = await inFlight;
    const pids = [a.pid ?? 0, b.pid ?? 0];
    expect(pids.some(isAlive)).toBe(false);
    expect(sup.list().map((r) => r.state)).toEqual(['exited', 'exited']);
    await expect(sup.start({ dcid: 1, program: process.execPath, args: SLEEPER })).rejects.toMatchObject({ code: 'EDVSSHUTDOWN' });
  }, 30_000);

  it(`keeps the last ${MAX_ENDED} ended runs`, async () => {
    const missing = path.join(dir, 'missing');
    const extra = 5;
    for (let i = 0; i < MAX_ENDED + extra; i++) await sup.start({ dcid: 1, program: missing, args: [] }).catch(() => undefined);
    const kept = sup.list();
    expect(kept).toHaveLength(MAX_ENDED);
    expect(kept[0]?.run).toBe(extra + 1);
    expect(sup.get(1)).toBeUndefined();
    await expect(sup.stop(1)).rejects.toMatchObject({ code: 'EDVSSRCH' });
  }, 60_000);
});
