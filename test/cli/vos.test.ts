/**
 * `dvs vos up|status|down`, `dvs run --vos` and `dvs ps --dc` as an operator types them: the real
 * CLI against real daemons; a bad spec fails with exit code 1 naming the field.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../node/helpers.js';
import { runCli } from './helpers.js';

let tc: TestCluster;
const dvs = (...args: string[]) => runCli([...args, '--dir', tc.dir]);

beforeAll(async () => {
  tc = await startCluster(3);
}, 60_000);

afterAll(async () => {
  await tc?.stop();
}, 30_000);

describe('dvs vos', () => {
  it('boots a VOS, runs a process through PM, shows it in ps, and stops the VOS', { timeout: 90_000 }, async () => {
    expect((await dvs('dc', 'create', '4', '--nodes', '0,1,2')).code).toBe(0);
    const spec = path.join(tc.dir, 'vos.json');
    await writeFile(spec, JSON.stringify({ dc: 4, servers: [{ name: 'systask' }, { name: 'pm', node: 2, shape: 'unikernel' }, { name: 'ds', node: 0 }] }));
    const up = await dvs('vos', 'up', '--spec', spec);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/^pm\s+unikernel:vos\s+0\s+2\s+2\s+\d+$/m);
    expect(up.stdout).toMatch(/^systask@1\s+multiserver\s+-\d+\s+1\s+1\s+-\d+$/m);
    const status = JSON.parse((await dvs('vos', 'status', '--dc', '4', '--json')).stdout) as { servers: { key: string; at?: number }[] };
    expect(status.servers.map((s) => [s.key, s.at])).toEqual([['systask@0', 0], ['ds', 0], ['systask@1', 1], ['pm', 2], ['systask@2', 2]]);

    const run = await runCli(['run', '--dc', '4', '--vos', '--node', '1', '--dir', tc.dir, '--', 'sleep', '30']);
    expect(run.code, run.stderr).toBe(0);
    const pid = Number(/VOS process (\d+) of DC 4 on node 1/.exec(run.stdout)?.[1]);
    expect(pid).toBeGreaterThan(1);
    const ps = await dvs('ps', '--dc', '4');
    expect(ps.code, ps.stderr).toBe(0);
    expect(ps.stdout).toContain('VOS processes of DC 4');
    expect(ps.stdout).toMatch(new RegExp(`^${pid}\\s+1\\s+1\\s+4\\s+running\\s+\\d+\\s+\\d+\\s+sleep 30$`, 'm'));
    const psJson = JSON.parse((await dvs('ps', '--dc', '4', '--json')).stdout) as { vos: { pid: number; node: number; state: string }[] };
    expect(psJson.vos.find((r) => r.pid === pid)).toMatchObject({ node: 1, state: 'running' });

    const down = await dvs('vos', 'down', '--dc', '4');
    expect(down.code, down.stderr).toBe(0);
    const after = await dvs('vos', 'status', '--dc', '4');
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('DC 4 runs no VOS');
  });

  it('refuses a bad spec naming the field, and --vos misuse, with exit code 1', { timeout: 30_000 }, async () => {
    const spec = path.join(tc.dir, 'bad.json');
    await writeFile(spec, '{"dc": 4, "servers": [{"name": "pm", "node": 0, "shape": "uni"}]}');
    const r = await dvs('vos', 'up', '--spec', spec);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('servers[0].shape: must be "unikernel" or "multiserver", got "uni"');
    const noNode = await runCli(['run', '--dc', '4', '--dir', tc.dir, '--', 'true']);
    expect(noNode.code).toBe(1);
    expect(noNode.stderr).toContain('--node is required');
  });
});
