/**
 * cgroup v2 against the kernel, on this host's v2 mount: on a hybrid host (v1 controllers, a v2
 * hierarchy at /sys/fs/cgroup/unified with none) the controller-free part of the v2 code (make,
 * join, count, cgroup.kill, remove) still runs for real; on a pure v2 host all of it does. Without
 * root, or without any v2 mount, the test asserts what detection says instead.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DcCgroup, detectCgroups, pollUntil } from '../../../src/vos/container/cgroups.js';
import { PREFIX, ROOT } from './helpers.js';

const HAS_V2 = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => / - cgroup2 /.test(l));
let made: DcCgroup | undefined;
afterEach(async () => {
  await made?.remove(5000).catch(() => undefined);
  made = undefined;
});

describe('cgroup v2 on this host', () => {
  const name = !HAS_V2 ? 'reports no cgroup v2 where none is mounted' : ROOT ? 'makes a DC cgroup on the v2 mount, joins a process, counts it, kills it with cgroup.kill, removes it' : 'without root, reports the v2 mount not writable';
  it(name, async () => {
    const d = await detectCgroups({ version: 'v2' });
    if (!HAS_V2) {
      expect(d.reason).toMatch(/no cgroup v2/);
      return;
    }
    if (!ROOT) {
      expect(d.host).toBeUndefined();
      expect(d.reason).toMatch(/cannot make a cgroup|EACCES|EPERM|read-only/);
      return;
    }
    expect(d.host?.version, d.reason).toBe('v2');
    made = await DcCgroup.create({ host: d.host!, name: `${PREFIX}v2-dc1-n1` });
    const [dir] = made.dirList();
    expect(dir && existsSync(dir)).toBe(true);
    const child = spawn('sh', ['-c', `echo $$ > ${made.procsFiles()[0]}; exec sleep 300`], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    expect(await pollUntil(async () => (await made!.pids()).includes(child.pid!), 5000)).toBe(true);
    const u = await made.usage();
    expect(u.pids).toBeGreaterThanOrEqual(1);
    expect(u.cpuSeconds).toBeGreaterThanOrEqual(0);
    expect(readFileSync(`/proc/${child.pid}/cgroup`, 'utf8')).toContain(`/${PREFIX}v2-dc1-n1`);
    expect(await made.killAll(5000)).toBe(true);
    expect(await exited).toBe('SIGKILL');
    await made.remove(5000);
    expect(existsSync(dir!)).toBe(false);
    made = undefined;
  });
});
