/**
 * The daemon's supervisor of OS programs through the process protocol (`run`, `runs`, `stop`), on a
 * real one-node cluster: a program started by the daemon reaches it through the environment it was
 * given, binds, serves, and is seen exiting; stop signals it, then kills it after the grace; bad
 * requests get typed errors; a stopping daemon leaves no program behind.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { isAlive } from '../../src/cli/cluster-files.js';
import { connect, type DvsClient, type RemoteProcess, type RunInfo } from '../../src/client/index.js';
import { eventually, startCluster, type TestCluster } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/run-echo.mjs', import.meta.url));
const DC = 1;

let tc: TestCluster;
let client: DvsClient;
let caller: RemoteProcess;
let stopped = false;

function dataDir(): string {
  return tc.cluster.nodes[0]!.dataDir;
}

async function runOf(run: number): Promise<RunInfo | undefined> {
  return (await client.runs()).find((r) => r.run === run);
}

/** Waits until run `run` has bound an endpoint (its connection said it belongs to the run). */
function boundEndpoint(run: number): Promise<number> {
  return eventually(async () => (await runOf(run))?.endpoints[0]?.endpoint, 20_000);
}

beforeAll(async () => {
  tc = await startCluster(1, 1500);
  await createDc(tc.dir, { dcid: DC, name: 'runs', nodes: [0] });
  const r = tc.runtime(0);
  client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'supervisor-test' });
  caller = await eventually(() => client.bind(DC, { name: 'caller', timeoutMs: 5000 }).catch(() => undefined), 20_000);
}, 60_000);

afterAll(async () => {
  if (stopped) return;
  await client?.close();
  await tc?.stop();
}, 30_000);

describe('run, runs and stop through the daemon', () => {
  it('runs a program that binds with its run id, serves a call, and is seen exiting with its code', async () => {
    const info = await client.run({ dcid: DC, program: process.execPath, args: [FIXTURE], slot: 5, name: 'echo' });
    expect(info).toMatchObject({ node: 0, dcid: DC, program: process.execPath, args: [FIXTURE], slot: 5, name: 'echo', state: 'running' });
    expect(info.pid).toBeGreaterThan(0);
    expect(isAlive(info.pid ?? 0)).toBe(true);
    const ep = await boundEndpoint(info.run);
    const listed = await runOf(info.run);
    expect(listed?.endpoints).toEqual([{ dcid: DC, endpoint: ep, name: 'echo' }]);
    expect((await client.procs(DC)).find((p) => p.endpoint === ep)?.slot).toBe(5);

    const answer = await caller.sendrec(ep, { type: 1, payload: 'hello' }, { timeoutMs: 10_000 });
    expect(answer.payload).toMatchObject({ echo: 'hello', run: info.run });

    await caller.sendrec(ep, { type: 2, payload: { code: 3 } }, { timeoutMs: 10_000 });
    const ended = await eventually(async () => {
      const r = await runOf(info.run);
      return r?.state === 'running' ? undefined : r;
    }, 20_000);
    expect(ended).toMatchObject({ state: 'exited', exitCode: 3, endpoints: [] });
    expect(ended.signal).toBeUndefined();
    expect(ended.endedAt).toBeGreaterThanOrEqual(ended.startedAt);
    // Its own output went to its log; the daemon logged the exit.
    const own = await readFile(path.join(dataDir(), 'runs', `${info.run}.log`), 'utf8');
    expect(own).toContain('"ready":true');
    expect(own).toContain('exiting with 3');
    const daemonLog = await eventually(async () => {
      const text = await readFile(path.join(dataDir(), 'dvsd.log'), 'utf8');
      return text.split('\n').find((l) => l.includes('"msg":"program exited"') && l.includes(`"run":${info.run},`));
    }, 10_000);
    expect(JSON.parse(daemonLog)).toMatchObject({ run: info.run, pid: info.pid, code: 3, signal: null });
  }, 60_000);

  it('stop ends a running program with SIGTERM, and one that ignores it with SIGKILL after the grace', async () => {
    const soft = await client.run({ dcid: DC, program: process.execPath, args: [FIXTURE], slot: 6 });
    await boundEndpoint(soft.run);
    const softEnd = await client.stop(soft.run);
    expect(softEnd).toMatchObject({ run: soft.run, state: 'exited', signal: 'SIGTERM' });
    expect(softEnd.exitCode).toBeUndefined();
    expect(isAlive(soft.pid ?? 0)).toBe(false);
    // Stopping an ended run answers it as it is.
    expect(await client.stop(soft.run)).toMatchObject({ state: 'exited', signal: 'SIGTERM' });

    const hard = await client.run({ dcid: DC, program: process.execPath, args: [FIXTURE, 'ignore-term'], slot: 7 });
    await boundEndpoint(hard.run);
    const hardEnd = await client.stop(hard.run, 'SIGTERM');
    expect(hardEnd).toMatchObject({ run: hard.run, state: 'exited', signal: 'SIGKILL' });
    expect(await readFile(path.join(dataDir(), 'runs', `${hard.run}.log`), 'utf8')).toContain('SIGTERM ignored');
    expect(isAlive(hard.pid ?? 0)).toBe(false);
  }, 60_000);

  it('a program that cannot start fails the request with EDVSNOENT and is kept as failed', async () => {
    const missing = path.join(dataDir(), 'no-such-program');
    const err = await client.run({ dcid: DC, program: missing }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EDVSNOENT' });
    const failed = (await client.runs()).find((r) => r.program === missing);
    expect(failed).toMatchObject({ state: 'failed', dcid: DC, endpoints: [] });
    expect(failed?.pid).toBeUndefined();
    expect(failed?.error).toMatch(/ENOENT/);
    // A file that is not executable.
    await expect(client.run({ dcid: DC, program: FIXTURE })).rejects.toMatchObject({ code: 'EDVSACCES' });
  }, 30_000);

  it('refuses malformed requests with EDVSBADREQUEST naming the field, a DC it does not run, and an unknown run', async () => {
    const ok = { dcid: DC, program: process.execPath };
    const bad: [Record<string, unknown>, string][] = [
      [{ dcid: DC }, 'program'],
      [{ ...ok, program: 5 }, 'program'],
      [{ ...ok, program: '' }, 'program'],
      [{ ...ok, args: 'x' }, 'args'],
      [{ ...ok, args: ['a', 7] }, 'args[1]'],
      [{ ...ok, env: ['A=1'] }, 'env'],
      [{ ...ok, env: { A: 1 } }, 'env.A'],
      [{ ...ok, env: { 'A=B': 'x' } }, 'env.A=B'],
      [{ ...ok, cwd: 3 }, 'cwd'],
      [{ ...ok, name: 'n'.repeat(65) }, 'name'],
      [{ ...ok, slot: -1 }, 'slot'],
      [{ ...ok, slot: 'x' }, 'slot'],
      [{ ...ok, dcid: 'one' }, 'dcid'],
    ];
    for (const [fields, field] of bad) {
      const err = await client.call('run', fields).catch((e: unknown) => e);
      expect(err, JSON.stringify(fields)).toMatchObject({ code: 'EDVSBADREQUEST', details: { field } });
    }
    await expect(client.run({ dcid: 77, program: process.execPath })).rejects.toMatchObject({ code: 'EDVSBADDCID' });
    await expect(client.call('stop', { run: 'x' })).rejects.toMatchObject({ code: 'EDVSBADREQUEST', details: { field: 'run' } });
    await expect(client.call('stop', { run: 1, signal: 'SIGHUP' })).rejects.toMatchObject({ code: 'EDVSBADREQUEST', details: { field: 'signal' } });
    await expect(client.stop(999_999)).rejects.toMatchObject({ code: 'EDVSSRCH' });
    // Nothing of these started.
    expect((await client.runs()).filter((r) => r.program === process.execPath && r.args.length === 0)).toEqual([]);
  }, 30_000);

  it('hello field run: a connection naming a run lists its endpoints with that run; a malformed one is refused', async () => {
    const r = tc.runtime(0);
    const sleeper = await client.run({ dcid: DC, program: process.execPath, args: ['-e', 'setInterval(() => undefined, 1000)'] });
    const member = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'member', run: sleeper.run });
    try {
      const p = await member.bind(DC, { name: 'member' });
      expect((await runOf(sleeper.run))?.endpoints).toEqual([{ dcid: DC, endpoint: p.endpoint, name: 'member' }]);
      await p.unbind();
      expect((await runOf(sleeper.run))?.endpoints).toEqual([]);
    } finally {
      await member.close();
    }
    for (const run of [0, -1, 1.5]) await expect(connect({ socketPath: r.socket, tokenPath: r.token, run }), String(run)).rejects.toMatchObject({ code: 'EDVSBADREQUEST' });
    expect(await client.stop(sleeper.run, 'SIGKILL')).toMatchObject({ state: 'exited', signal: 'SIGKILL' });
  }, 30_000);

  it('a stopping daemon stops its programs: none is left running', async () => {
    // Programs that do not end by themselves when their daemon goes: one never connects, one also ignores SIGTERM.
    const sleeper = ['-e', 'setInterval(() => undefined, 1000)'];
    const stubborn = ['-e', 'process.on("SIGTERM", () => undefined); setInterval(() => undefined, 1000)'];
    const a = await client.run({ dcid: DC, program: process.execPath, args: sleeper });
    const b = await client.run({ dcid: DC, program: process.execPath, args: stubborn });
    const c = await client.run({ dcid: DC, program: process.execPath, args: [FIXTURE], slot: 8 });
    await boundEndpoint(c.run);
    const pids = [a.pid ?? 0, b.pid ?? 0, c.pid ?? 0];
    expect(pids.every(isAlive)).toBe(true);
    await client.close();
    stopped = true;
    await tc.stop();
    await eventually(() => (pids.some(isAlive) ? undefined : true), 10_000);
    expect(pids.some(isAlive)).toBe(false);
  }, 60_000);
});
