/**
 * Chaos on three real daemons: client processes call two servers by slot, with random timeouts,
 * while one daemon is SIGKILLed and restarted, removed from and re-added to the DC, and a server
 * process is killed and replaced. Every reply must be the right one, every error typed, no call may
 * hang, the daemons that were left alone must survive, and afterwards every server answers again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { addNode, createDc, removeNode } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { isAlive } from '../../src/cli/cluster-files.js';
import { Prng } from '../../src/sim/prng.js';
import { startCluster, type TestCluster } from './helpers.js';

const ACTOR = fileURLToPath(new URL('./fixtures/chaos-actor.mjs', import.meta.url));
const CHAOS_MS = 12_000;
/** Errors a call may meet while its server dies, moves generation or leaves the DC. */
const EXPECTED = ['EDVSTIMEDOUT', 'EDVSNOTCONN', 'EDVSDSTDIED', 'EDVSDEADSRCDST', 'EDVSENDPOINT', 'EDVSNODCNODE', 'EDVSNOTBIND'];

let tc: TestCluster;
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await tc?.stop();
}, 30_000);

interface ChaosActor {
  readonly child: ChildProcess;
  readonly result: Promise<Record<string, unknown>>;
}

function actor(node: number, role: 'server' | 'client', args: object): ChaosActor {
  const r = tc.runtime(node);
  const child = spawn(process.execPath, [ACTOR, role, JSON.stringify(args)], {
    env: { ...process.env, DVS_SOCKET: r.socket, DVS_TOKEN_PATH: r.token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const result = new Promise<Record<string, unknown>>((resolve) => {
    let last: Record<string, unknown> = {};
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.done === true) last = o;
    });
    child.once('exit', (code, signal) => resolve({ ...last, exit: code ?? signal, stderr }));
  });
  return { child, result };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it('callers see only right replies and typed errors, never a hang, and every server answers afterwards', async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: 1, name: 'chaos', nodes: [0, 1, 2] });
  const rng = new Prng(Number(process.env.DVS_CHAOS_SEED ?? 20261128));
  const untilMs = Date.now() + CHAOS_MS;
  const survivors = [0, 1].map((n) => tc.runtime(n).pid);
  let server1 = actor(1, 'server', { dcid: 1, slot: 5, untilMs });
  actor(2, 'server', { dcid: 1, slot: 6, untilMs });
  const clients = [0, 1, 0, 1].map((n) => actor(n, 'client', { dcid: 1, slots: [5, 6], untilMs }));
  const victim = tc.cluster.nodes.find((n) => n.nodeId === 2)!;
  const done: string[] = [];
  while (Date.now() < untilMs - 2500) {
    await sleep(600 + rng.nextU32() % 900);
    const pick = rng.nextU32() % 3;
    if (pick === 0) {
      process.kill(tc.runtime(2).pid, 'SIGKILL');
      await sleep(200 + rng.nextU32() % 1200);
      await spawnNode(JSON.parse(await readFile(victim.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
      actor(2, 'server', { dcid: 1, slot: 6, untilMs });
      done.push('kill and restart daemon 2');
    } else if (pick === 1) {
      await removeNode(tc.dir, 1, 2);
      await sleep(200 + rng.nextU32() % 800);
      await addNode(tc.dir, 1, 2);
      done.push('remove node 2 from the DC and add it back');
    } else {
      server1.child.kill('SIGKILL');
      server1 = actor(1, 'server', { dcid: 1, slot: 5, untilMs });
      done.push('kill and replace the server on node 1');
    }
  }
  const results = await Promise.all(clients.map((c) => c.result));
  expect(done.length).toBeGreaterThan(0);
  for (const pid of survivors) expect(isAlive(pid)).toBe(true);
  for (const r of results) {
    expect(r.exit, String(r.stderr)).toBe(0);
    expect(r.bad).toEqual([]);
    expect(Object.keys(r.codes as object).filter((c) => !EXPECTED.includes(c.replace(/^wait:/, '')))).toEqual([]);
    // No call outlived its timeout by more than failure detection (1.5 s) and slack.
    expect(r.slowestOverMs as number).toBeLessThan(10_000);
    expect(r.ok as number).toBeGreaterThan(0);
    // After the chaos, 10 clean calls to each server.
    expect(r.final).toEqual({ 5: 10, 6: 10 });
  }
}, 120_000);
