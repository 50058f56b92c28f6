/**
 * The VOS with real daemons, the same PM/DS/SYSTASK suite in three shapes at once on one cluster:
 * DC 1 all unikernel (coroutines of the daemons), DC 2 all multiserver (a process per server), DC 3
 * mixed (SYSTASKs in the daemons, PM a coroutine of node 1's daemon, DS a process on node 0).
 * Processes are spawned on every node from every node, waited for across nodes, killed, listed
 * the same from everywhere; a VOS application uses PM and DS through the client library; an
 * orphan's exit reaches its waiter; the memory limit kills with PM saying why; the DCs are
 * isolated from each other (PID namespace, hostname).
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { vosUp } from '../../src/cli/vos-command.js';
import { connect, Vos, type DvsClient } from '../../src/client/index.js';
import { isDvsError } from '../../src/ipc/errors.js';
import type { PmClient } from '../../src/vos/pm/pm-client.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';
import { ROOT } from './container/helpers.js';

const APP = fileURLToPath(new URL('./fixtures/vos-app.mjs', import.meta.url));
const LIMITS = { memoryMB: 160, pids: 128 };
const SHAPES = {
  unikernel: { dc: 1, servers: [{ name: 'systask', shape: 'unikernel' }, { name: 'pm', node: 0, shape: 'unikernel' }, { name: 'ds', node: 0, shape: 'unikernel' }], limits: LIMITS },
  multiserver: { dc: 2, servers: [{ name: 'systask' }, { name: 'pm', node: 1 }, { name: 'ds', node: 2 }], limits: LIMITS },
  mixed: { dc: 3, servers: [{ name: 'systask', shape: 'unikernel' }, { name: 'pm', node: 1, shape: 'unikernel' }, { name: 'ds', node: 0 }], limits: LIMITS },
} as const;
const W = 30_000;

let tc: TestCluster;
const clients = new Map<number, DvsClient>();
const opened: Vos[] = [];

async function vosOn(node: number, dcid: number): Promise<Vos> {
  let c = clients.get(node);
  if (c === undefined) {
    const r = tc.runtime(node);
    c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'shapes-test' });
    clients.set(node, c);
  }
  const v = await Vos.open(c, { dcid, name: `t${node}` });
  opened.push(v);
  return v;
}

function pmOf(v: Vos): <T>(fn: (pm: PmClient) => Promise<T>) => Promise<T> {
  return (fn) => v.pm(fn);
}

/** The JSON line a VOS process printed (SYSTASK keeps its output in the node's VOS log directory). */
async function outputOf(node: number, dcid: number, pid: number): Promise<Record<string, unknown>> {
  const dataDir = tc.cluster.nodes.find((n) => n.nodeId === node)!.dataDir;
  const text = await readFile(path.join(dataDir, 'vos', String(dcid), 'logs', `${pid}.log`), 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`process ${pid} printed no JSON: ${text}`);
  return JSON.parse(line) as Record<string, unknown>;
}

beforeAll(async () => {
  tc = await startCluster(3);
  for (const [name, spec] of Object.entries(SHAPES)) {
    await createDc(tc.dir, { dcid: spec.dc, name, nodes: [0, 1, 2] });
    const file = path.join(tc.dir, `${name}.json`);
    await writeFile(file, JSON.stringify(spec));
    await vosUp(tc.dir, file, { timeoutMs: W });
  }
}, 120_000);

afterAll(async () => {
  for (const v of opened) await v.close().catch(() => undefined);
  for (const c of clients.values()) await c.close().catch(() => undefined);
  await tc?.stop();
}, 60_000);

describe.each(Object.entries(SHAPES))('the VOS, %s', (shape, spec) => {
  const DC = spec.dc;

  it('spawns on every node from every node; each exit code is waited for from the spawning node', { timeout: 60_000 }, async () => {
    for (const from of [0, 1, 2]) {
      const pm = pmOf(await vosOn(from, DC));
      // Issued together: the Vos makes them one after the other on its endpoint.
      const started = await Promise.all([0, 1, 2].map((to) => pm((p) => p.spawn('/bin/sh', ['-c', `exit ${from * 3 + to + 1}`], { node: to }))));
      expect(started.map((s) => s.node)).toEqual([0, 1, 2]);
      for (const [to, s] of started.entries()) {
        const r = await pm((p) => p.wait({ pid: s.pid, timeoutMs: W }));
        expect(r).toMatchObject({ pid: s.pid, node: to, exit: { code: from * 3 + to + 1 } });
      }
    }
  });

  it('places by least load, shows one table from every node with node, state and usage, and kills', { timeout: 60_000 }, async () => {
    const pm = pmOf(await vosOn(2, DC));
    const sleepers = [];
    for (let i = 0; i < 3; i++) sleepers.push(await pm((p) => p.spawn('sleep', ['30'])));
    expect(new Set(sleepers.map((s) => s.node))).toEqual(new Set([0, 1, 2]));
    const pids = sleepers.map((s) => s.pid);
    for (const from of [0, 1]) {
      const rows = await pmOf(await vosOn(from, DC))((p) => p.ps());
      const mine = rows.filter((r) => pids.includes(r.pid));
      expect(mine.map((r) => [r.pid, r.node, r.state, r.program])).toEqual(sleepers.map((s) => [s.pid, s.node, 'running', 'sleep']));
      for (const r of mine) expect(r.hostPid).toBeGreaterThan(0);
    }
    // Usage is read from the node's /proc: a sleeping process has some resident memory.
    const rows = await eventually(async () => {
      const all = await pm((p) => p.ps());
      const mine = all.filter((r) => pids.includes(r.pid));
      return mine.every((r) => r.usage.rssKB > 0) ? mine : undefined;
    }, 10_000, 200);
    expect(rows).toHaveLength(3);
    for (const s of sleepers) await pm((p) => p.kill(s.pid, 'SIGTERM'));
    for (const s of sleepers) await expect(pm((p) => p.wait({ pid: s.pid, timeoutMs: W }))).resolves.toMatchObject({ pid: s.pid, exit: { signal: 'SIGTERM' } });
  });

  it('a VOS application spawns a child on another node, waits for it, sees the table and publishes in DS', { timeout: 60_000 }, async () => {
    const v = await vosOn(1, DC);
    const app = await v.pm((p) => p.spawn(process.execPath, [APP, 'wait-child', '2', '7'], { node: 0 }));
    const done = await v.pm((p) => p.wait({ pid: app.pid, timeoutMs: W }));
    const out = await outputOf(0, DC, app.pid);
    expect(done.exit.code, JSON.stringify(out)).toBe(7);
    expect(out).toMatchObject({ exit: { code: 7 }, node: 2, hostname: `dc${DC}` });
    // The app saw itself in the table; its child, reaped by its wait, is gone from it.
    expect(out.pids as number[]).toContain(app.pid);
    expect(out.pids as number[]).not.toContain(out.child as number);
    await expect(v.pm((p) => p.wait({ pid: out.child as number, timeoutMs: 0 }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
  });

  it('the child of a process that died is reported to its waiter', { timeout: 60_000 }, async () => {
    const v = await vosOn(0, DC);
    const app = await v.pm((p) => p.spawn(process.execPath, [APP, 'orphan', '2'], { node: 1 }));
    await expect(v.pm((p) => p.wait({ pid: app.pid, timeoutMs: W }))).resolves.toMatchObject({ exit: { code: 0 } });
    const child = (await outputOf(1, DC, app.pid)).child as number;
    const row = (await v.pm((p) => p.ps())).find((r) => r.pid === child);
    expect(row).toMatchObject({ parent: 1, node: 2 });
    await expect(v.pm((p) => p.wait({ pid: child, timeoutMs: W }))).resolves.toMatchObject({ pid: child, node: 2, exit: { code: 5 } });
  });

  (ROOT ? it : it.skip)("a process over the DC's memory limit is killed and PM says why", { timeout: 60_000 }, async () => {
    const v = await vosOn(2, DC);
    const hog = await v.pm((p) => p.spawn(process.execPath, ['-e', 'const keep = []; for (let i = 0; i < 1024; i++) keep.push(Buffer.alloc(1 << 20, 1)); console.log("survived")'], { node: 1 }));
    await expect(v.pm((p) => p.wait({ pid: hog.pid, timeoutMs: W }))).resolves.toMatchObject({ pid: hog.pid, node: 1, exit: { signal: 'SIGKILL', oomKilled: true, reason: "killed: over the DC's memory limit" } });
  });

  it(`refuses bad requests with typed errors and keeps serving (${shape})`, { timeout: 20_000 }, async () => {
    const pm = pmOf(await vosOn(0, DC));
    await expect(pm((p) => p.spawn('/no/such/program', []))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
    await expect(pm((p) => p.spawn('sh', [], { node: 9 }))).rejects.toSatisfy((e) => isDvsError(e));
    await expect(pm((p) => p.wait({ pid: 999_999, timeoutMs: 0 }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
    await expect(pm((p) => p.kill(999_999))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
    // Spawn and wait on one client, as an application writes it: the wait goes to the same PM at
    // once (it would otherwise wait out rebindMs, 30 s, for a new PM, past this test's bound).
    await expect(pm(async (p) => p.wait({ pid: (await p.spawn('true', [], { node: 0 })).pid, timeoutMs: W }))).resolves.toMatchObject({ exit: { code: 0 } });
  });
});

describe('DCs are apart on a node', () => {
  (ROOT ? it : it.skip)('a process of DC 1 sees only DC 1 processes in its PID namespace, and each DC has its own hostname', { timeout: 60_000 }, async () => {
    const v1 = await vosOn(0, 1);
    const v2 = await vosOn(0, 2);
    const sleeper2 = await v2.pm((p) => p.spawn('sleep', ['2222'], { node: 0 }));
    const look = [await v1.pm((p) => p.spawn(process.execPath, [APP, 'ps-inside'], { node: 0 })), await v2.pm((p) => p.spawn(process.execPath, [APP, 'ps-inside'], { node: 0 }))];
    await v1.pm((p) => p.wait({ pid: look[0]!.pid, timeoutMs: W }));
    await v2.pm((p) => p.wait({ pid: look[1]!.pid, timeoutMs: W }));
    const in1 = await outputOf(0, 1, look[0]!.pid);
    const in2 = await outputOf(0, 2, look[1]!.pid);
    expect(in1.hostname).toBe('dc1');
    expect(in2.hostname).toBe('dc2');
    expect(hostname()).not.toBe('dc1');
    // PID namespaces: DC 2's sleeper is visible in DC 2 only; pids are the namespace's own.
    const sleeps = (v: unknown): boolean => (v as string[]).some((a) => a.endsWith('sleep 2222'));
    expect(sleeps(in2.visible), JSON.stringify(in2.visible)).toBe(true);
    expect(sleeps(in1.visible), JSON.stringify(in1.visible)).toBe(false);
    expect((in1.visible as string[]).length).toBeLessThan(10);
    expect(in1.selfPid as number).toBeLessThan(100);
    await v2.pm((p) => p.kill(sleeper2.pid, 'SIGKILL'));
    await v2.pm((p) => p.wait({ pid: sleeper2.pid, timeoutMs: W }));
  });
});
