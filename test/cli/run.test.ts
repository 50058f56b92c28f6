/**
 * `dvs run` and the runs of `dvs ps`, the CLI as an OS process against a real one-node cluster: the
 * program it starts gets its slot, name, cwd and environment, binds, serves a call, and is listed
 * running with its endpoint, then exited with its code; errors have their exit codes.
 */
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { connect, type DvsClient, type RemoteProcess, type RunInfo } from '../../src/client/index.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';
import { runCli } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('../node/fixtures/run-echo.mjs', import.meta.url));
const DC = 1;

let tc: TestCluster;
let client: DvsClient;
let caller: RemoteProcess;
let workDir: string;

interface Ps {
  readonly procs: { dcid: number; endpoint: number; name: string }[];
  readonly runs: RunInfo[];
}

async function ps(...extra: string[]): Promise<Ps> {
  const r = await runCli(['ps', '--json', '--dir', tc.dir, ...extra]);
  expect(r.code, r.stderr).toBe(EXIT.ok);
  return JSON.parse(r.stdout) as Ps;
}

beforeAll(async () => {
  tc = await startCluster(1, 1500);
  await createDc(tc.dir, { dcid: DC, name: 'cli-runs', nodes: [0] });
  await createDc(tc.dir, { dcid: 2, name: 'other', nodes: [0] });
  workDir = await realpath(await mkdtemp(path.join(os.tmpdir(), 'dvs-run-cwd-')));
  const r = tc.runtime(0);
  client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'run-cli-test' });
  caller = await eventually(() => client.bind(DC, { name: 'caller', timeoutMs: 5000 }).catch(() => undefined), 20_000);
}, 60_000);

afterAll(async () => {
  await client?.close();
  await tc?.stop();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
}, 30_000);

describe('dvs run', () => {
  it('starts a program on the node, which ps lists with its endpoint, then as exited with its code', async () => {
    const r = await runCli(['run', '--dc', String(DC), '--node', '0', '--slot', '5', '--name', 'echo', '--cwd', workDir, '--env', 'DVS_TEST_VALUE=a=b', '--json', '--dir', tc.dir, '--', process.execPath, FIXTURE]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const info = JSON.parse(r.stdout) as RunInfo;
    expect(info).toMatchObject({ node: 0, dcid: DC, program: process.execPath, args: [FIXTURE], slot: 5, name: 'echo', state: 'running' });
    expect(info.pid).toBeGreaterThan(0);

    const listed = await eventually(async () => (await ps()).runs.find((x) => x.run === info.run && x.endpoints.length > 0), 20_000);
    expect(listed).toMatchObject({ state: 'running', pid: info.pid, endpoints: [{ dcid: DC, name: 'echo' }] });
    const ep = listed.endpoints[0]?.endpoint ?? -1;
    const found = await ps();
    expect(found.procs.some((p) => p.dcid === DC && p.endpoint === ep && p.name === 'echo')).toBe(true);
    // Filtered to another DC, the run is not listed.
    expect((await ps('--dc', '2')).runs.some((x) => x.run === info.run)).toBe(false);

    const text = await runCli(['ps', '--dir', tc.dir]);
    expect(text.code, text.stderr).toBe(EXIT.ok);
    expect(text.stdout).toMatch(new RegExp(`^0 +${info.run} +${info.pid} +${DC} +running +- +.*run-echo\\.mjs +${DC}:${ep}\\(echo\\)$`, 'm'));

    const answer = await caller.sendrec(ep, { type: 1, payload: 'via cli' }, { timeoutMs: 10_000 });
    expect(answer.payload).toEqual({ echo: 'via cli', run: info.run, cwd: workDir, testValue: 'a=b' });

    await caller.sendrec(ep, { type: 2, payload: { code: 3 } }, { timeoutMs: 10_000 });
    const ended = await eventually(async () => (await ps()).runs.find((x) => x.run === info.run && x.state !== 'running'), 20_000);
    expect(ended).toMatchObject({ state: 'exited', exitCode: 3, endpoints: [] });
    const after = await runCli(['ps', '--dir', tc.dir]);
    expect(after.stdout).toMatch(new RegExp(`^0 +${info.run} +${info.pid} +${DC} +exited +code 3 +.*run-echo\\.mjs +-$`, 'm'));
  }, 90_000);

  it('prints the run and pid without --json', async () => {
    const r = await runCli(['run', '--dc', String(DC), '--node', '0', '--slot', '6', '--dir', tc.dir, '--', process.execPath, FIXTURE]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const m = /^run (\d+) on node 0: pid (\d+)\n$/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const run = Number(m?.[1]);
    expect((await client.runs()).find((x) => x.run === run)).toMatchObject({ pid: Number(m?.[2]), state: 'running' });
    expect(await client.stop(run)).toMatchObject({ state: 'exited', signal: 'SIGTERM' });
  }, 60_000);

  it('fails with the documented exit codes: a missing program, a DC or node not there, bad usage', async () => {
    const missing = path.join(workDir, 'nothing-here');
    const r = await runCli(['run', '--dc', String(DC), '--node', '0', '--dir', tc.dir, '--', missing]);
    expect(r.code).toBe(EXIT.error);
    expect(r.stderr).toMatch(/^dvs: EDVSNOENT: cannot run /);
    expect((await ps()).runs.find((x) => x.program === missing)).toMatchObject({ state: 'failed' });
    const text = await runCli(['ps', '--dir', tc.dir]);
    expect(text.stdout).toMatch(/ failed +not started +.*nothing-here +-$/m);

    const noDc = await runCli(['run', '--dc', '9', '--node', '0', '--timeout', '2000', '--dir', tc.dir, '--', process.execPath]);
    expect(noDc.code).toBe(EXIT.error);
    expect(noDc.stderr).toMatch(/^dvs: EDVSBADDCID: /);
    const noNode = await runCli(['run', '--dc', String(DC), '--node', '7', '--dir', tc.dir, '--', process.execPath]);
    expect(noNode.code).toBe(EXIT.error);
    expect(noNode.stderr).toMatch(/^dvs: EDVSBADNODEID: /);
    const badEnv = await runCli(['run', '--dc', String(DC), '--node', '0', '--env', 'NOEQUALS', '--dir', tc.dir, '--', process.execPath]);
    expect(badEnv.code).toBe(EXIT.error);
    expect(badEnv.stderr).toMatch(/^dvs: EDVSBADVALUE: --env takes NAME=VALUE/);
    const usage = await runCli(['run', '--node', '0', '--dir', tc.dir, '--', process.execPath]);
    expect(usage.code).toBe(EXIT.usage);
    const noProgram = await runCli(['run', '--dc', String(DC), '--node', '0', '--dir', tc.dir]);
    expect(noProgram.code).toBe(EXIT.usage);

    // A cluster whose node 0 has no daemon running: unreachable.
    const idle = path.join(workDir, 'idle-cluster');
    const idleData = path.join(idle, 'node-0');
    await mkdir(idleData, { recursive: true });
    await writeFile(path.join(idle, 'cluster.json'), JSON.stringify({ dir: idle, keyFile: path.join(idle, 'cluster.key'), store: { backend: 'embedded', host: '127.0.0.1', port: 1 }, nodes: [{ nodeId: 0, dataDir: idleData, configFile: path.join(idleData, 'config.json'), pid: 0 }] }));
    const down = await runCli(['run', '--dc', String(DC), '--node', '0', '--dir', idle, '--', process.execPath]);
    expect(down.code).toBe(EXIT.unreachable);
    expect(down.stderr).toMatch(/^dvs: EDVSNOTCONN: cannot reach the daemon of node 0 at .*no daemon runs there/);
  }, 60_000);
});
