/**
 * SIGKILL the node running PM while processes run: PM is taken over by the DC's lowest live node
 * with its table rebuilt from the SYSTASKs; a wait interrupted by PM's death is retried and
 * answered once; a zombie is reported once, not again; `dvs ps` and `dvs run --vos` work through
 * the new PM. Also: PM moved by `dvs migrate` keeps its table and its waiters.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { vosUp } from '../../src/cli/vos-command.js';
import { vosProcesses, vosRun } from '../../src/cli/vos-ps.js';
import { connect, migrate, Vos, type DvsClient } from '../../src/client/index.js';
import { isDvsError } from '../../src/ipc/errors.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';

const DC = 1;
const W = 30_000;
let tc: TestCluster;
const clients: DvsClient[] = [];
const opened: Vos[] = [];

async function vosOn(node: number, opts: { rebindMs?: number } = {}): Promise<Vos> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'failover-test' });
  clients.push(c);
  const v = await Vos.open(c, { dcid: DC, name: `t${node}`, ...opts });
  opened.push(v);
  return v;
}

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'failover', nodes: [0, 1, 2] });
  const file = path.join(tc.dir, 'vos.json');
  // Node 0 serves the store: PM and DS share a unikernel host on node 1, the one that dies.
  await writeFile(file, JSON.stringify({ dc: DC, servers: [{ name: 'systask', shape: 'unikernel' }, { name: 'pm', node: 1, shape: 'unikernel', host: 'core' }, { name: 'ds', node: 1, shape: 'unikernel', host: 'core' }] }));
  await vosUp(tc.dir, file, { timeoutMs: W });
}, 60_000);

afterAll(async () => {
  for (const v of opened) await v.close().catch(() => undefined);
  for (const c of clients) await c.close().catch(() => undefined);
  await tc?.stop();
}, 60_000);

describe('PM across migration and the death of its node', () => {
  it('moved by migrate, PM keeps its table and a pending wait', { timeout: 60_000 }, async () => {
    const v = await vosOn(2);
    const sleeper = await vosRun(tc.dir, DC, { program: 'sleep', args: ['30'], node: 2 }, { timeoutMs: W });
    const waiting = (await vosOn(0)).pm((p) => p.wait({ pid: sleeper.pid, timeoutMs: W }));
    const pmEp = await v.endpointOf('pm');
    const report = await migrate(clients[0]!, DC, pmEp, 2);
    expect(report).toMatchObject({ from: 1, to: 2 });
    expect(report.stateBytes).toBeGreaterThan(0);
    expect((await v.refresh()).servers.find((s) => s.key === 'pm')).toMatchObject({ endpoint: pmEp, at: 2 });
    expect((await v.pm((p) => p.ps())).find((r) => r.pid === sleeper.pid)).toMatchObject({ state: 'running', node: 2 });
    await v.pm((p) => p.kill(sleeper.pid, 'SIGKILL'));
    await expect(waiting).resolves.toMatchObject({ pid: sleeper.pid, exit: { signal: 'SIGKILL' } });
    // Home again, for the next test: PM on node 1.
    await migrate(clients[0]!, DC, pmEp, 1);
  });

  it('SIGKILL of its node: PM comes back on node 0 with the table rebuilt from the SYSTASKs; nothing is reported twice', { timeout: 90_000 }, async () => {
    const v0 = await vosOn(0);
    const a = await v0.pm((p) => p.spawn('sleep', ['60'], { node: 0 }));
    const b = await v0.pm((p) => p.spawn('sleep', ['60'], { node: 2 }));
    const zombie = await v0.pm((p) => p.spawn('/bin/sh', ['-c', 'exit 3'], { node: 2 }));
    await eventually(async () => ((await v0.pm((p) => p.ps())).find((r) => r.pid === zombie.pid)?.state === 'exited' ? true : undefined), 10_000, 100);
    // A waiter on node 2, blocked in PM when PM's node dies.
    const waiter = await vosOn(2);
    const waiting = waiter.pm((p) => p.wait({ pid: a.pid, timeoutMs: 60_000 }), { retries: 8 });
    await new Promise((r) => setTimeout(r, 200));
    const pmBefore = await v0.endpointOf('pm');

    process.kill(tc.runtime(1).pid, 'SIGKILL');
    const back = await eventually(async () => {
      const s = (await v0.refresh()).servers.find((x) => x.key === 'pm');
      return s?.at === 0 && s.endpoint !== pmBefore ? s : undefined;
    }, 30_000, 100);
    expect(back.node).toBe(1);

    const rows = await eventually(async () => {
      const all = await v0.pm((p) => p.ps());
      return all.some((r) => r.pid === a.pid) ? all : undefined;
    }, 20_000, 200);
    expect(rows.find((r) => r.pid === a.pid)).toMatchObject({ node: 0, state: 'running' });
    expect(rows.find((r) => r.pid === b.pid)).toMatchObject({ node: 2, state: 'running' });
    expect(rows.find((r) => r.pid === zombie.pid)).toMatchObject({ node: 2, state: 'exited', exit: { code: 3 } });

    // The zombie is reported once; a second wait for it finds nothing.
    await expect(v0.pm((p) => p.wait({ pid: zombie.pid, timeoutMs: W }))).resolves.toMatchObject({ exit: { code: 3 } });
    await expect(v0.pm((p) => p.wait({ pid: zombie.pid, timeoutMs: 0 }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
    // The interrupted wait was retried on the new PM and gets a's end, once.
    await v0.pm((p) => p.kill(a.pid, 'SIGTERM'));
    await expect(waiting).resolves.toMatchObject({ pid: a.pid, node: 0, exit: { signal: 'SIGTERM' } });
    await expect(v0.pm((p) => p.wait({ pid: a.pid, timeoutMs: 0 }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));

    // The command line goes through the new PM; new pids do not collide with old ones.
    const c = await vosRun(tc.dir, DC, { program: 'sleep', args: ['30'] }, { timeoutMs: W });
    expect([0, 2]).toContain(c.node);
    expect(c.pid).toBeGreaterThan(Math.max(a.pid, b.pid, zombie.pid));
    const listed = await vosProcesses(tc.dir, DC, { timeoutMs: W });
    expect(listed.filter((r) => r.state === 'running').map((r) => r.pid).sort()).toEqual([b.pid, c.pid].sort());
    for (const pid of [b.pid, c.pid]) {
      await v0.pm((p) => p.kill(pid, 'SIGKILL'));
      await v0.pm((p) => p.wait({ pid, timeoutMs: W }));
    }
  });
});
