/**
 * SYSTASK on the in-process kernel with the DC's real container on this node (namespaces and
 * cgroups as root, plainly otherwise): hello, spawn with its environment and log, exits kept until
 * reaped and notified to PM, kill, ps with usage, reap and tombstones, typed errors for programs
 * that cannot start and for malformed requests, and a stop that leaves no process behind.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { ERRNO, isDvsError } from '../../src/ipc/errors.js';
import { isNotification } from '../../src/ipc/message.js';
import type { Payload } from '../../src/ipc/payload.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { pollUntil } from '../../src/vos/container/cgroups.js';
import type { DcExit } from '../../src/vos/container/container.js';
import type { SpawnedChild, Spawner } from '../../src/vos/systask/spawner.js';
import { SystaskClient } from '../../src/vos/systask/systask-client.js';
import { SYS_HELLO, SYS_KILL, SYS_PS, SYS_REAP, SYS_SPAWN } from '../../src/vos/systask/systask-messages.js';
import { createService, SystaskServer, type SystaskOptions } from '../../src/vos/systask/systask-server.js';
import { alive } from './container/helpers.js';

const DC = 7;
const PM_SLOT = 4;
let seq = 0;
const prefix = (): string => `dvs-t${process.pid}-s${seq++}-`;

interface Rig {
  readonly k: Kernel;
  readonly server: SystaskServer;
  readonly pm: Process;
  readonly sys: SystaskClient;
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

const rigs: Rig[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}, 30_000);

function rig(opts: Partial<SystaskOptions> = {}): Rig {
  const k = new Kernel({ nodeId: 0, clock: systemClock });
  k.createDc({ dcid: DC });
  const node = opts.node ?? 0;
  const p = k.bind(DC, { slot: -2 - node, name: `systask${node}` });
  const server = new SystaskServer({ dcid: DC, node, prefix: prefix(), ...opts });
  const done = server.run(p, { dcid: DC, endpoint: p.endpoint, node, migrated: false, signal: new AbortController().signal });
  const pm = k.bind(DC, { slot: PM_SLOT, name: 'pm' });
  let stopped = false;
  const r: Rig = {
    k,
    server,
    pm,
    sys: new SystaskClient(pm, p.endpoint, { timeoutMs: 15_000 }),
    done,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (p.bound) await p.unbind();
      await done;
    },
  };
  rigs.push(r);
  return r;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return isDvsError(err) ? err.code : `THROWN ${String(err)}`;
  }
}

/** PS until `pid` has exited (bounded). */
async function exitOf(sys: SystaskClient, pid: number): Promise<NonNullable<Awaited<ReturnType<SystaskClient['ps']>>['processes'][number]['exit']>> {
  let exit;
  const ok = await pollUntil(async () => {
    exit = (await sys.ps()).processes.find((p) => p.pid === pid)?.exit;
    return exit !== undefined;
  }, 20_000, 20);
  expect(ok, `process ${pid} exited`).toBe(true);
  return exit!;
}

describe('SYSTASK', { timeout: 60_000 }, () => {
  it('hello, spawn, the exit kept and notified, ps, reap and the tombstone', async () => {
    const r = rig();
    const hello = await r.sys.hello();
    expect(hello).toEqual({ node: 0, incarnation: r.server.incarnation });
    expect(hello.incarnation).toMatch(/^[0-9a-f]{16}$/);
    expect(r.server.info().pm).toBe(r.pm.endpoint);
    const s = await r.sys.spawn({ pid: 2, program: '/bin/sh', args: ['-c', 'exit 3'], parent: 1 });
    expect(s.pid).toBe(2);
    expect(s.hostPid).toBeGreaterThan(1);
    // The exit is notified to the endpoint that said hello.
    const note = await r.pm.receive(ANY, { timeoutMs: 20_000 });
    expect(isNotification(note)).toBe(true);
    expect(note.source).toBe(-2);
    const exit = await exitOf(r.sys, 2);
    expect(exit).toMatchObject({ code: 3, reason: 'exited with code 3' });
    expect(exit.endedAt).toBeGreaterThan(0);
    const ps = await r.sys.ps();
    expect(ps).toMatchObject({ node: 0, incarnation: hello.incarnation, reaped: [] });
    expect(ps.processes).toEqual([expect.objectContaining({ pid: 2, parent: 1, program: '/bin/sh', args: ['-c', 'exit 3'], state: 'exited' })]);
    // Reaping: the exit once more, then a tombstone with the waitId.
    await expect(r.sys.reap(2, 'w-1')).resolves.toEqual({ pid: 2, waitId: 'w-1', exit });
    await expect(r.sys.reap(2, 'w-1')).resolves.toEqual({ pid: 2, waitId: 'w-1', exit });
    expect(await codeOf(r.sys.reap(2, 'w-2'))).toBe('EDVSNOENT');
    expect((await r.sys.ps()).processes).toEqual([]);
    expect((await r.sys.ps({ reaped: true })).reaped).toEqual([{ pid: 2, waitId: 'w-1', exit }]);
    // A reaped pid is not reused.
    expect(await codeOf(r.sys.spawn({ pid: 2, program: 'true' }))).toBe('EDVSEXIST');
    expect(await codeOf(r.sys.reap(99, 'w'))).toBe('EDVSNOENT');
  });

  it('the environment (DVS_VOS_PID, DVS_NODE, DVS_DC, args.env, the request env), cwd and the log file', async () => {
    const logDir = mkdtempSync(join(tmpdir(), 'dvs-systask-'));
    dirs.push(logDir);
    const r = rig({ node: 2, logDir, env: { FROM_ARGS: 'a' } });
    const s = await r.sys.spawn({ pid: 5, program: 'sh', args: ['-c', 'echo "$DVS_VOS_PID $DVS_NODE $DVS_DC $FROM_ARGS $FROM_REQ"; pwd; echo oops >&2'], env: { FROM_REQ: 'b' }, cwd: '/tmp' });
    expect(s.log).toBe(join(logDir, '5.log'));
    expect((await exitOf(r.sys, 5)).code).toBe(0);
    expect(await pollUntil(() => readFileSync(s.log!, 'utf8').includes('oops'), 5000)).toBe(true);
    expect(readFileSync(s.log!, 'utf8')).toBe(`5 2 ${DC} a b\n/tmp\noops\n`);
  });

  it('kill with a signal, usage of a running process, EDVSNOENT for one that exited', async () => {
    const r = rig();
    await r.sys.hello();
    const s = await r.sys.spawn({ pid: 3, program: process.execPath, args: ['-e', 'const b = Buffer.alloc(16 << 20, 1); setInterval(() => b[0]++, 50)'] });
    expect(await pollUntil(async () => ((await r.sys.ps()).processes[0]?.usage.rssKB ?? 0) > 16 * 1024, 15_000, 50)).toBe(true);
    const row = (await r.sys.ps()).processes[0]!;
    expect(row).toMatchObject({ pid: 3, state: 'running', hostPid: s.hostPid });
    expect(row.usage.cpuMs).toBeGreaterThanOrEqual(0);
    expect(alive(s.hostPid)).toBe(true);
    await r.sys.kill(3, 'SIGHUP');
    expect(await exitOf(r.sys, 3)).toMatchObject({ signal: 'SIGHUP', reason: 'killed by SIGHUP' });
    expect(await codeOf(r.sys.kill(3, 'SIGTERM'))).toBe('EDVSNOENT');
    expect(await codeOf(r.sys.kill(77, 'SIGTERM'))).toBe('EDVSNOENT');
    expect(await codeOf(r.sys.reap(3, 'x'))).toBe('resolved');
    // A running process cannot be reaped.
    await r.sys.spawn({ pid: 4, program: 'sleep', args: ['30'] });
    expect(await codeOf(r.sys.reap(4, 'x'))).toBe('EDVSBUSY');
  });

  it('a program that does not exist is EDVSNOENT, one that may not be run EDVSPERM, a bad cwd EDVSNOENT; nothing is left in the table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvs-systask-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'not-exec'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(dir, 'not-exec'), 0o644);
    const r = rig();
    const missing = await r.sys.spawn({ pid: 2, program: 'dvs-no-such-program' }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'EDVSNOENT', details: { field: 'program' } });
    expect(await codeOf(r.sys.spawn({ pid: 2, program: '/nonexistent/bin/x' }))).toBe('EDVSNOENT');
    expect(await codeOf(r.sys.spawn({ pid: 2, program: join(dir, 'not-exec') }))).toBe('EDVSPERM');
    expect(await codeOf(r.sys.spawn({ pid: 2, program: dir }))).toBe('EDVSPERM');
    expect(await codeOf(r.sys.spawn({ pid: 2, program: 'true', cwd: join(dir, 'nope') }))).toBe('EDVSNOENT');
    expect((await r.sys.ps()).processes).toEqual([]);
    await r.sys.spawn({ pid: 2, program: 'true' });
  });

  const bad: [string, number, Payload, string, string?][] = [
    ['unknown type', 0x6ff, {}, 'EDVSBADREQUEST'],
    ['spawn without pid', SYS_SPAWN, { program: 'true' }, 'EDVSINVAL', 'pid'],
    ['spawn with pid 1', SYS_SPAWN, { pid: 1, program: 'true' }, 'EDVSINVAL', 'pid'],
    ['spawn with args not an array', SYS_SPAWN, { pid: 2, program: 'true', args: 'x' }, 'EDVSINVAL', 'args'],
    ['spawn with env not strings', SYS_SPAWN, { pid: 2, program: 'true', env: { A: 1 } }, 'EDVSINVAL', 'env'],
    ['spawn with an empty program', SYS_SPAWN, { pid: 2, program: '' }, 'EDVSINVAL', 'program'],
    ['spawn with an unknown field', SYS_SPAWN, { pid: 2, program: 'true', progam: 'x' }, 'EDVSINVAL', 'progam'],
    ['kill with a bad signal', SYS_KILL, { pid: 2, signal: 'SIGSTOP' }, 'EDVSINVAL', 'signal'],
    ['reap without waitId', SYS_REAP, { pid: 2 }, 'EDVSINVAL', 'waitId'],
    ['ps with a string', SYS_PS, 'all', 'EDVSINVAL', 'payload'],
    ['hello with fields', SYS_HELLO, { x: 1 }, 'EDVSINVAL', 'x'],
  ];
  it('malformed requests get typed errors and SYSTASK keeps serving', async () => {
    const r = rig();
    for (const [label, type, payload, code, field] of bad) {
      const reply = await r.pm.sendrec(-2, { type, payload }, { timeoutMs: 5000 });
      expect(reply.type, label).toBe(ERRNO[code as keyof typeof ERRNO]);
      const body = reply.payload as { ok: boolean; error: { code: string; details?: { field?: string } } };
      expect(body.ok, label).toBe(false);
      expect(body.error.code, label).toBe(code);
      if (field !== undefined) expect(body.error.details?.field, label).toBe(field);
    }
    await expect(r.sys.hello()).resolves.toMatchObject({ node: 0 });
    expect(r.server.info().requests).toBe(bad.length + 1);
  });

  it('stopping it (its endpoint unbound) stops the container: no process of the DC survives', async () => {
    const r = rig();
    const a = await r.sys.spawn({ pid: 2, program: 'sleep', args: ['300'] });
    const b = await r.sys.spawn({ pid: 3, program: 'sh', args: ['-c', 'trap "" TERM; sleep 301'] });
    expect(alive(a.hostPid) && alive(b.hostPid)).toBe(true);
    await r.stop();
    expect(await pollUntil(() => !alive(a.hostPid) && !alive(b.hostPid), 10_000)).toBe(true);
    expect(r.server.movable()).toMatch(/belongs to node 0/);
  });

  it('createService validates its args; ps pages through many rows (fake spawner)', async () => {
    expect(() => createService({ dcid: 1 })).toThrow(/EDVSINVAL/);
    expect(() => createService({ dcid: 1, node: 0, isolation: 'full' })).toThrow(/EDVSINVAL/);
    expect(() => createService({ dcid: 1, node: 0, extra: 1 })).toThrow(/EDVSINVAL/);
    expect(createService({ dcid: 1, node: 0, env: { A: 'b' }, limits: { memoryMB: 64 }, isolation: 'plain', logDir: '/tmp' }).movable?.()).toMatch(/node 0/);
    const kids: ((e: DcExit) => void)[] = [];
    const fake: Spawner = {
      start: () => Promise.resolve('fake'),
      spawn: (): SpawnedChild => {
        let end!: (e: DcExit) => void;
        const exit = new Promise<DcExit>((res) => (end = res));
        kids.push(end);
        return { pid: 100_000 + kids.length, program: () => Promise.resolve(undefined), kill: () => true, exit };
      },
      usage: () => Promise.resolve({ pids: kids.length }),
      stop: () => {
        for (const k of kids) k({ code: null, signal: 'SIGKILL', oomKilled: false, reason: 'killed by SIGKILL' });
        return Promise.resolve();
      },
    };
    const r = rig({ spawner: fake });
    const long = 'x'.repeat(1000);
    for (let pid = 2; pid < 202; pid++) await r.sys.spawn({ pid, program: 'true', args: [long] });
    const first = await r.sys.psPage();
    expect(first.next).toBeDefined();
    expect(first.processes.length).toBeLessThan(200);
    const all = await r.sys.ps();
    expect(all.processes.map((p) => p.pid)).toEqual(Array.from({ length: 200 }, (_, i) => i + 2));
    expect(all.container).toEqual({ pids: 200 });
    kids[0]!({ code: 0, signal: null, oomKilled: false, reason: 'exited with code 0' });
    await pollUntil(() => r.server.info().running === 199, 2000);
    await r.sys.reap(2, 'w');
    expect((await r.sys.ps({ reaped: true })).reaped).toEqual([{ pid: 2, waitId: 'w', exit: expect.objectContaining({ code: 0 }) }]);
  });
});
