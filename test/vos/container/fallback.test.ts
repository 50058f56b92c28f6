/**
 * The fallback (docs/vos/containers.md, "Fallback"): with container support forced off, a DC's
 * programs still run, plainly; the mode says plain, the logger gets exactly one warning with the
 * reason, and ps, usage, kill and stop work on the processes DVS started.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pollUntil } from '../../../src/vos/container/cgroups.js';
import { containerSupport } from '../../../src/vos/container/support.js';
import { Containers, alive, captureLogger, run } from './helpers.js';

const containers = new Containers();
afterEach(() => containers.cleanup(), 60_000);

describe('a DC without container support', () => {
  it('reports no support when forced, without probing', async () => {
    expect(await containerSupport({ isolation: 'plain' })).toEqual({ namespaces: false, cgroups: undefined, reason: 'isolation is plain (set by option)' });
  });

  it('runs programs plainly, says plain, and warns once with the reason (limits not applied named too)', async () => {
    const log = captureLogger();
    const c = containers.make({ dcid: 201, isolation: 'plain', logger: log.logger, limits: { memoryMB: 32, pids: 8 } });
    const mode = await c.start();
    expect(mode).toMatchObject({ kind: 'plain', namespaces: false, cgroups: undefined });
    expect(mode.reason).toMatch(/isolation is plain/);
    expect(mode.reason).toMatch(/limits .* not applied/);
    expect(c.mode).toBe(mode);
    expect(c.cgroupDirs).toEqual([]);
    expect(c.holder).toBeUndefined();

    const r = await run(c, 'sh', ['-c', 'echo "$DVS_X $$"; exit 4'], { env: { ...process.env, DVS_X: 'plain' } });
    expect(r.stdout).toMatch(/^plain \d+\n$/);
    expect(r.exit).toMatchObject({ code: 4, signal: null, oomKilled: false, reason: 'exited with code 4' });
    // The host's own hostname: no UTS namespace.
    expect((await run(c, 'hostname')).stdout).not.toBe('dc201\n');

    const sleeper = c.spawn('sleep', ['300']);
    expect(sleeper.contained).toBe(false);
    const pids = await sleeper.program();
    expect(pids).toEqual({ hostPid: sleeper.pid, nsPid: sleeper.pid });
    expect(await c.ps()).toEqual([{ hostPid: sleeper.pid, nsPid: sleeper.pid, comm: 'sleep' }]);
    const u = await c.usage();
    expect(u).toMatchObject({ source: 'proc', pids: 1 });
    expect(u.memoryBytes).toBeGreaterThan(0);
    expect(await c.oomKills()).toBe(0);
    await c.setLimits({ cpu: 1 }); // accepted, and a no-op

    const log2 = log.warnings();
    expect(log2).toHaveLength(1);
    expect(log2[0]!.msg).toMatch(/plainly/);
    expect(log2[0]!.obj).toMatchObject({ dcid: 201, mode: 'plain', reason: mode.reason });

    await c.stop({ graceMs: 1000 });
    expect((await sleeper.exit).signal).toBe('SIGTERM');
    expect(await pollUntil(() => !alive(sleeper.pid!), 2000)).toBe(true);
    expect(log.warnings()).toHaveLength(1);
  });

  it('reports a program that cannot start in its exit, never by a crash', async () => {
    const c = containers.make({ dcid: 202, isolation: 'plain' });
    await c.start();
    const r = await run(c, 'dvs-no-such-program');
    expect(r.exit.code).toBeNull();
    expect(r.exit.reason).toMatch(/could not start: .*(ENOENT|EACCES)/); // EACCES: a PATH entry this user cannot search
    expect(r.exit.error).toBeInstanceOf(Error);
    await c.stop();
  });
});
