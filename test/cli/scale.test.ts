/**
 * `dvs scale`: an instance group of a stateless echo service on three real daemons, clients on
 * node 0 calling continuously: calls spread over the three instances; a SIGKILL of one instance's
 * daemon under load costs no failed call; instances removed and added again by `dvs scale` while
 * clients call cost none either.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import type { InstanceGroupView } from '../../src/cli/scale-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { isDvsError } from '../../src/ipc/errors.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';
import { runCli } from './helpers.js';

const ECHO = fileURLToPath(new URL('../services/fixtures/echo-service.mjs', import.meta.url));
const DC = 1;
const SLOT = 20;
let tc: TestCluster;
let client: DvsClient;

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'lb', nodes: [0, 1, 2] });
  const r = tc.runtime(0);
  client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'scale-test' });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await tc?.stop();
}, 30_000);

interface Answer {
  readonly at: number;
  readonly node: number;
}

async function scale(nodes: string): Promise<InstanceGroupView> {
  const r = await runCli(['scale', '--dc', String(DC), '--slot', String(SLOT), '--module', ECHO, '--nodes', nodes, '--args', '{"workMs":2}', '--json', '--dir', tc.dir]);
  expect(r.code, r.stderr).toBe(EXIT.ok);
  return JSON.parse(r.stdout) as InstanceGroupView;
}

describe('dvs scale: instance groups on real daemons', () => {
  it('spreads calls, survives a SIGKILLed instance and scaling down and up under load with no failed call', { timeout: 180_000 }, async () => {
    const view = await scale('0,1,2');
    expect(view.nodes).toEqual([0, 1, 2]);
    expect(view.perNode.filter((p) => p.running).map((p) => p.node)).toEqual([0, 1, 2]);
    const ep = view.endpoint;

    const answers: Answer[] = [];
    const failures: string[] = [];
    let stop = false;
    const callers = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => client.bind(DC, { name: `caller${i}` })));
    const loops = callers.map(async (p, c) => {
      for (let i = 0; !stop; i++) {
        try {
          const m = await p.sendrec(ep, { type: 1, payload: { c, i } }, { timeoutMs: 20_000 });
          const ans = m.payload as { node: number; echo: { c: number; i: number } };
          if (ans.echo.c !== c || ans.echo.i !== i) failures.push(`${c}/${i}: wrong answer ${JSON.stringify(ans)}`);
          answers.push({ at: Date.now(), node: ans.node });
        } catch (err) {
          failures.push(`${c}/${i}: ${isDvsError(err) ? err.code : String(err)}`);
        }
      }
    });
    const since = (t: number): Answer[] => answers.filter((a) => a.at > t);
    const count = (list: Answer[], node: number): number => list.filter((a) => a.node === node).length;

    // 1. Spread: every instance answers its share.
    await eventually(() => (answers.length >= 600 ? true : undefined), 30_000);
    for (const n of [0, 1, 2]) expect(count(answers, n) / answers.length, `node ${n}`).toBeGreaterThan(0.15);
    expect(failures).toEqual([]);

    // 2. SIGKILL node 2's daemon (node 0 serves the store) under load: no call fails.
    const killedAt = Date.now();
    process.kill(tc.runtime(2).pid, 'SIGKILL');
    await eventually(() => (since(killedAt + 4000).length >= 300 ? true : undefined), 40_000);
    expect(failures).toEqual([]);
    expect(count(since(killedAt + 100), 2)).toBe(0);
    for (const n of [0, 1]) expect(count(since(killedAt), n)).toBeGreaterThan(50);

    // 3. dvs scale while clients call: the dead node out, then node 1 out, then node 1 back.
    const v01 = await scale('0,1');
    expect(v01.nodes).toEqual([0, 1]);
    const t0 = Date.now();
    const v0 = await scale('0');
    expect(v0.perNode.find((p) => p.node === 1)?.running).toBe(false);
    const t1 = Date.now();
    await eventually(() => (since(t1 + 500).length >= 200 ? true : undefined), 30_000);
    expect(count(since(t1 + 500), 1)).toBe(0);
    expect(count(since(t0), 0)).toBeGreaterThan(0);
    const back = await scale('0,1');
    expect(back.perNode.filter((p) => p.running).map((p) => p.node)).toEqual([0, 1]);
    const t2 = Date.now();
    await eventually(() => (count(since(t2), 1) >= 50 ? true : undefined), 30_000);

    stop = true;
    await Promise.all(loops);
    expect(failures).toEqual([]);

    // dvs scale ls: the group with each live daemon's counts.
    const ls = await runCli(['scale', 'ls', '--dc', String(DC), '--json', '--dir', tc.dir]);
    expect(ls.code, ls.stderr).toBe(EXIT.ok);
    const groups = JSON.parse(ls.stdout) as InstanceGroupView[];
    expect(groups.map((g) => g.slot)).toEqual([SLOT]);
    const node0 = groups[0]?.perNode.find((p) => p.node === 0);
    expect(node0?.running).toBe(true);
    expect(Object.keys(node0?.sent ?? {}).sort()).toEqual(['0', '1', '2']);
    // Calls node 2 had taken when it died, or node 1 when it stopped, were sent again elsewhere.
    expect(node0?.resent).toBeGreaterThan(0);
    const text = await runCli(['scale', 'ls', '--dir', tc.dir]);
    expect(text.stdout).toMatch(/DC 1 slot 20: .* on nodes \[0,1\]/);
  });

  it('bad requests get a typed error, exit code 1, and change nothing; rm stops every instance', { timeout: 60_000 }, async () => {
    const started = await runCli(['service', 'start', '--dc', String(DC), '--node', '1', '--module', ECHO, '--slot', '22', '--json', '--dir', tc.dir]);
    expect(started.code, started.stderr).toBe(EXIT.ok);
    const ep = (JSON.parse(started.stdout) as { endpoint: number }).endpoint;
    for (const [args, code] of [
      [['--dc', String(DC), '--slot', '23', '--nodes', '0'], 'EDVSINVAL'], // a new group needs its module
      [['--dc', String(DC), '--slot', '22', '--nodes', '0', '--module', ECHO], 'EDVSSLOTUSED'], // a service's slot
      [['--dc', String(DC), '--slot', '23', '--nodes', '0,7', '--module', ECHO], 'EDVSNODCNODE'],
      [['--dc', '9', '--slot', '23', '--nodes', '0', '--module', ECHO], 'EDVSBADDCID'],
    ] as const) {
      const bad = await runCli(['scale', ...args, '--dir', tc.dir]);
      expect(bad.code, `${args.join(' ')}: ${bad.stderr}`).toBe(EXIT.error);
      expect(bad.stderr).toMatch(new RegExp(code));
    }
    const rm = await runCli(['scale', 'rm', '--dc', String(DC), '--slot', '23', '--dir', tc.dir]);
    expect(rm.code).toBe(EXIT.error);
    expect(rm.stderr).toMatch(/EDVSNOENT/);
    const ls = await runCli(['scale', 'ls', '--dc', String(DC), '--json', '--dir', tc.dir]);
    expect((JSON.parse(ls.stdout) as InstanceGroupView[]).map((g) => g.slot)).toEqual([SLOT]);
    // Removing the group stops every instance; the plain service stays.
    const gone = await runCli(['scale', 'rm', '--dc', String(DC), '--slot', String(SLOT), '--dir', tc.dir]);
    expect(gone.code, gone.stderr).toBe(EXIT.ok);
    await eventually(async () => {
      const r = await runCli(['service', 'ls', '--json', '--dir', tc.dir]);
      const rows = JSON.parse(r.stdout) as { endpoint: number; node: number }[];
      return rows.length === 1 && rows[0]?.endpoint === ep ? true : undefined;
    }, 20_000, 200);
  });
});
