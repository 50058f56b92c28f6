/**
 * The cgroup v1 / v2 layout on a fake directory tree laid out like each hierarchy (fake-cgroupfs.ts):
 * detection from mountinfo and /proc/self/cgroup, the files and values each limit writes, usage and
 * OOM counters read back, v2's controller enabling (and the move into the leaf), removal.
 * The real hierarchies are exercised by container.test.ts and cgroup-v2-real.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DvsError } from '../../../src/ipc/errors.js';
import { DcCgroup, cgroupName, detectCgroups, parseCgroupMounts, validateLimits, type CgroupHost, type DetectCgroupsOptions } from '../../../src/vos/container/cgroups.js';
import { FakeCgroupFs, mountLine } from './fake-cgroupfs.js';

let fake: FakeCgroupFs | undefined;
afterEach(() => {
  fake?.remove();
  fake = undefined;
});

const NO_PID = 99_999_999; // above PID_MAX_LIMIT: kill(2) always says ESRCH.

async function hostOf(opts: DetectCgroupsOptions): Promise<CgroupHost> {
  const d = await detectCgroups({ io: fake!.io, root: fake!.root, ...opts });
  if (d.host === undefined) throw new Error(`no host: ${d.reason}`);
  return d.host;
}

/** This machine's shape: separate cpu and cpuacct hierarchies, memory nested in a job's cgroup, a controller-less v2 at unified. */
function v1Tree(opts: { coMounted?: boolean } = {}): DetectCgroupsOptions {
  fake = new FakeCgroupFs('v1');
  const cpu = opts.coMounted ? '/sys/fs/cgroup/cpu,cpuacct' : '/sys/fs/cgroup/cpu';
  fake.cgroup(cpu);
  if (!opts.coMounted) fake.cgroup('/sys/fs/cgroup/cpuacct');
  fake.cgroup('/sys/fs/cgroup/memory/process_api/job1');
  fake.cgroup('/sys/fs/cgroup/pids');
  const mountinfo = [
    '22 1 8:1 / / rw,relatime - ext4 /dev/vda rw',
    ...(opts.coMounted ? [mountLine(30, cpu, 'cgroup', 'rw,cpu,cpuacct')] : [mountLine(30, cpu, 'cgroup', 'rw,cpu'), mountLine(31, '/sys/fs/cgroup/cpuacct', 'cgroup', 'rw,cpuacct')]),
    mountLine(32, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
    mountLine(33, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids'),
    mountLine(34, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'),
    mountLine(35, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
  ].join('\n');
  const selfCgroup = (opts.coMounted ? ['1:cpu,cpuacct:/'] : ['1:cpu:/', '2:cpuacct:/']).concat(['4:memory:/process_api/job1', '8:pids:/', '9:name=systemd:/', '0::/']).join('\n');
  return { mountinfo, selfCgroup };
}

/** A pure v2 host: one hierarchy at /sys/fs/cgroup, this process in a service's cgroup. */
function v2Tree(opts: { controllers?: string; procs?: number[]; self?: string } = {}): DetectCgroupsOptions {
  fake = new FakeCgroupFs('v2');
  fake.cgroup('/sys/fs/cgroup', { controllers: 'cpuset cpu io memory hugetlb pids', hierarchyRoot: true });
  fake.write('/sys/fs/cgroup/cgroup.subtree_control', 'cpu memory pids');
  fake.cgroup('/sys/fs/cgroup/system.slice');
  fake.write('/sys/fs/cgroup/system.slice/cgroup.subtree_control', opts.controllers ?? 'cpu memory pids');
  fake.cgroup('/sys/fs/cgroup/system.slice/dvsd.service', { procs: opts.procs ?? [] });
  return { mountinfo: [mountLine(30, '/sys/fs/cgroup', 'cgroup2', 'rw,nsdelegate,memory_recursiveprot')].join('\n'), selfCgroup: `0::${opts.self ?? '/system.slice/dvsd.service'}\n` };
}

const LIMITS = { cpu: 0.5, memoryMB: 32, pids: 8 };

describe('cgroup v1 layout', () => {
  it('is chosen on a hybrid host, with a parent per controller under this process\'s own cgroup in each hierarchy', async () => {
    const host = await hostOf(v1Tree());
    expect(host.version).toBe('v1');
    expect(host.parents).toEqual({
      cpu: fake!.path('/sys/fs/cgroup/cpu'),
      cpuacct: fake!.path('/sys/fs/cgroup/cpuacct'),
      memory: fake!.path('/sys/fs/cgroup/memory/process_api/job1'),
      pids: fake!.path('/sys/fs/cgroup/pids'),
    });
    expect(host.missing).toEqual([]);
    // The probe cgroup it made to check the parents are writable is gone again.
    expect(fake!.exists('/sys/fs/cgroup/memory/process_api/job1/dvs-probe-' + process.pid)).toBe(false);
  });

  it('reads a mount whose root is this process\'s cgroup (a container\'s view) and co-mounted cpu,cpuacct', async () => {
    const opts = v1Tree({ coMounted: true });
    const mountinfo = opts.mountinfo!.replace(mountLine(32, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'), mountLine(32, '/sys/fs/cgroup/memory/process_api/job1', 'cgroup', 'rw,memory', '/process_api/job1'));
    const host = await hostOf({ ...opts, mountinfo });
    expect(host.parents.memory).toBe(fake!.path('/sys/fs/cgroup/memory/process_api/job1'));
    expect(host.parents.cpu).toBe(host.parents.cpuacct);
    const cg = await DcCgroup.create({ host, name: cgroupName('t-', 3, 2) });
    expect(cg.name).toBe('t-dc3-n2');
    expect(cg.dirList()).toHaveLength(3);
    expect(cg.procsFiles()).toEqual(cg.dirList().map((d) => `${d}/cgroup.procs`));
  });

  it('writes the limits: CFS quota over a 100 ms period, memory and memsw in bytes, pids.max; {} resets them', async () => {
    const cg = await DcCgroup.create({ host: await hostOf(v1Tree()), name: 'dvs-dc1-n1', limits: LIMITS });
    const cpu = '/sys/fs/cgroup/cpu/dvs-dc1-n1';
    const mem = '/sys/fs/cgroup/memory/process_api/job1/dvs-dc1-n1';
    expect(fake!.read(`${cpu}/cpu.cfs_quota_us`)).toBe('50000');
    expect(fake!.read(`${cpu}/cpu.cfs_period_us`)).toBe('100000');
    expect(fake!.read(`${mem}/memory.limit_in_bytes`)).toBe(String(32 * 1024 * 1024));
    expect(fake!.read(`${mem}/memory.memsw.limit_in_bytes`)).toBe(String(32 * 1024 * 1024));
    expect(fake!.read('/sys/fs/cgroup/pids/dvs-dc1-n1/pids.max')).toBe('8');
    await cg.setLimits({ cpu: 2.25 });
    expect(fake!.read(`${cpu}/cpu.cfs_quota_us`)).toBe('225000');
    expect(fake!.read(`${mem}/memory.limit_in_bytes`)).toBe('-1');
    expect(fake!.read(`${mem}/memory.memsw.limit_in_bytes`)).toBe('-1');
    expect(fake!.read('/sys/fs/cgroup/pids/dvs-dc1-n1/pids.max')).toBe('max');
    await cg.setLimits({});
    expect(fake!.read(`${cpu}/cpu.cfs_quota_us`)).toBe('-1');
  });

  it('skips memsw where the host has no swap accounting', async () => {
    const opts = v1Tree();
    fake!.omit.add('memory.memsw.limit_in_bytes');
    await DcCgroup.create({ host: await hostOf(opts), name: 'dvs-dc1-n1', limits: { memoryMB: 16 } });
    const mem = '/sys/fs/cgroup/memory/process_api/job1/dvs-dc1-n1';
    expect(fake!.read(`${mem}/memory.limit_in_bytes`)).toBe(String(16 * 1024 * 1024));
    expect(fake!.exists(`${mem}/memory.memsw.limit_in_bytes`)).toBe(false);
  });

  it('reads usage (cpuacct ns, memory bytes, pids, throttling, refused forks) and OOM kills (oom_kill, else under_oom)', async () => {
    const cg = await DcCgroup.create({ host: await hostOf(v1Tree()), name: 'dvs-dc1-n1' });
    fake!.write('/sys/fs/cgroup/cpuacct/dvs-dc1-n1/cpuacct.usage', '1500000000\n');
    fake!.write('/sys/fs/cgroup/memory/process_api/job1/dvs-dc1-n1/memory.usage_in_bytes', '1048576\n');
    fake!.write('/sys/fs/cgroup/pids/dvs-dc1-n1/pids.current', '3\n');
    fake!.write('/sys/fs/cgroup/pids/dvs-dc1-n1/pids.events', 'max 4\n');
    fake!.write('/sys/fs/cgroup/cpu/dvs-dc1-n1/cpu.stat', 'nr_periods 10\nnr_throttled 5\nthrottled_time 250000000\n');
    expect(await cg.usage()).toEqual({ cpuSeconds: 1.5, memoryBytes: 1048576, pids: 3, throttledSeconds: 0.25, pidsLimitHits: 4 });
    expect(await cg.oomKills()).toBe(0);
    fake!.write('/sys/fs/cgroup/memory/process_api/job1/dvs-dc1-n1/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    expect(await cg.oomKills()).toBe(2);
    expect(cg.oomKillsSync()).toBe(2);
    fake!.write('/sys/fs/cgroup/memory/process_api/job1/dvs-dc1-n1/memory.oom_control', 'oom_kill_disable 0\nunder_oom 1\n');
    expect(await cg.oomKills()).toBe(1);
  });

  it('adds a pid to every hierarchy, adopts an empty leftover, refuses one with processes (EDVSBUSY) unless replace', async () => {
    const opts = v1Tree();
    const cg = await DcCgroup.create({ host: await hostOf(opts), name: 'dvs-dc1-n1' });
    await cg.addPid(NO_PID);
    for (const file of cg.procsFiles()) expect(fake!.read(file).trim()).toBe(String(NO_PID));
    expect(await cg.pids()).toEqual([NO_PID]);
    const err = await DcCgroup.create({ host: await hostOf(opts), name: 'dvs-dc1-n1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DvsError);
    expect((err as DvsError).code).toBe('EDVSBUSY');
    for (const file of cg.procsFiles()) fake!.write(file, '');
    const adopted = await DcCgroup.create({ host: await hostOf(opts), name: 'dvs-dc1-n1', limits: { pids: 5 } });
    expect(fake!.read('/sys/fs/cgroup/pids/dvs-dc1-n1/pids.max')).toBe('5');
    await adopted.remove(1000);
  });

  it('removes every directory; with a process that will not leave, EDVSBUSY at the deadline', async () => {
    const cg = await DcCgroup.create({ host: await hostOf(v1Tree()), name: 'dvs-dc1-n1' });
    await cg.addPid(NO_PID);
    const started = Date.now();
    const err = await cg.remove(300).catch((e: unknown) => e);
    expect((err as DvsError).code).toBe('EDVSBUSY');
    expect(Date.now() - started).toBeLessThan(3000);
    for (const file of cg.procsFiles()) fake!.write(file, '');
    await cg.remove(1000);
    for (const dir of cg.dirList()) expect(fake!.exists(dir)).toBe(false);
    await cg.remove(); // idempotent
  });
});

describe('cgroup v2 layout', () => {
  it('is chosen on a unified host: one parent for all, the controllers its cgroup.controllers offers', async () => {
    const host = await hostOf(v2Tree());
    expect(host.version).toBe('v2');
    const base = fake!.path('/sys/fs/cgroup/system.slice/dvsd.service');
    expect(host.parents).toEqual({ cpu: base, cpuacct: base, memory: base, pids: base });
    expect(host.missing).toEqual([]);
  });

  it('names a controller the parent does not offer as missing, and applies no limit there', async () => {
    const host = await hostOf(v2Tree({ controllers: 'memory pids' }));
    expect(host.missing).toEqual([expect.stringMatching(/^cpu: controller not available/)]);
    const cg = await DcCgroup.create({ host, name: 'dvs-dc1-n1', limits: LIMITS });
    expect(cg.dirs.cpu).toBeUndefined();
    expect(fake!.read('/sys/fs/cgroup/system.slice/dvsd.service/dvs-dc1-n1/cpu.max')).toBe('max 100000');
    expect(fake!.read('/sys/fs/cgroup/system.slice/dvsd.service/dvs-dc1-n1/memory.max')).toBe(String(32 * 1024 * 1024));
  });

  it('enables cpu, memory and pids in the parent\'s subtree_control and writes cpu.max, memory.max, memory.swap.max, pids.max', async () => {
    const cg = await DcCgroup.create({ host: await hostOf(v2Tree()), name: 'dvs-dc1-n1', limits: LIMITS });
    const base = '/sys/fs/cgroup/system.slice/dvsd.service';
    expect(fake!.read(`${base}/cgroup.subtree_control`).split(' ').sort()).toEqual(['cpu', 'memory', 'pids']);
    expect(cg.dirList()).toEqual([fake!.path(`${base}/dvs-dc1-n1`)]);
    expect(fake!.read(`${base}/dvs-dc1-n1/cpu.max`)).toBe('50000 100000');
    expect(fake!.read(`${base}/dvs-dc1-n1/memory.max`)).toBe(String(32 * 1024 * 1024));
    expect(fake!.read(`${base}/dvs-dc1-n1/memory.swap.max`)).toBe('0');
    expect(fake!.read(`${base}/dvs-dc1-n1/pids.max`)).toBe('8');
    await cg.setLimits({ cpu: 0.01 });
    expect(fake!.read(`${base}/dvs-dc1-n1/cpu.max`)).toBe('1000 100000');
    expect(fake!.read(`${base}/dvs-dc1-n1/memory.max`)).toBe('max');
    expect(fake!.read(`${base}/dvs-dc1-n1/memory.swap.max`)).toBe('max');
    expect(fake!.read(`${base}/dvs-dc1-n1/pids.max`)).toBe('max');
  });

  it('moves the processes of its own cgroup into dvs-leaf when the no-internal-processes rule refuses the controllers', async () => {
    const opts = v2Tree({ procs: [NO_PID, NO_PID - 1] });
    await DcCgroup.create({ host: await hostOf(opts), name: 'dvs-dc1-n1', limits: LIMITS });
    const base = '/sys/fs/cgroup/system.slice/dvsd.service';
    expect(fake!.read(`${base}/cgroup.procs`)).toBe('');
    expect(fake!.read(`${base}/dvs-leaf/cgroup.procs`).trim().split('\n').map(Number).sort()).toEqual([NO_PID - 1, NO_PID]);
    expect(fake!.read(`${base}/cgroup.subtree_control`).split(' ').sort()).toEqual(['cpu', 'memory', 'pids']);
    // Later, /proc/self/cgroup names the leaf: DC cgroups are still made beside it.
    const later = await hostOf({ ...opts, selfCgroup: '0::/system.slice/dvsd.service/dvs-leaf\n' });
    expect(later.parents.memory).toBe(fake!.path(base));
  });

  it('reads usage (cpu.stat usage_usec, memory.current, pids.current) and OOM kills from memory.events', async () => {
    const cg = await DcCgroup.create({ host: await hostOf(v2Tree()), name: 'dvs-dc1-n1' });
    const dir = '/sys/fs/cgroup/system.slice/dvsd.service/dvs-dc1-n1';
    fake!.write(`${dir}/cpu.stat`, 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 4\nnr_throttled 2\nthrottled_usec 100000\n');
    fake!.write(`${dir}/memory.current`, '4096\n');
    fake!.write(`${dir}/pids.current`, '2\n');
    fake!.write(`${dir}/pids.events`, 'max 7\n');
    expect(await cg.usage()).toEqual({ cpuSeconds: 2.5, memoryBytes: 4096, pids: 2, throttledSeconds: 0.1, pidsLimitHits: 7 });
    fake!.write(`${dir}/memory.events`, 'low 0\nhigh 0\nmax 12\noom 3\noom_kill 3\n');
    expect(await cg.oomKills()).toBe(3);
  });

  it('empties the cgroup with cgroup.kill before removing it', async () => {
    const cg = await DcCgroup.create({ host: await hostOf(v2Tree()), name: 'dvs-dc1-n1' });
    await cg.addPid(NO_PID);
    expect(await cg.pids()).toEqual([NO_PID]);
    await cg.remove(1000);
    expect(fake!.exists('/sys/fs/cgroup/system.slice/dvsd.service/dvs-dc1-n1')).toBe(false);
  });
});

describe('detection and validation', () => {
  it('reports no cgroups when none is mounted, or the parent is not writable', async () => {
    expect(await detectCgroups({ mountinfo: '22 1 8:1 / / rw - ext4 /dev/vda rw\n', selfCgroup: '0::/\n' })).toEqual({ host: undefined, reason: 'no cgroup file system is mounted' });
    const opts = v2Tree();
    const failing = { ...fake!.io, mkdir: () => Promise.reject(Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' })) };
    const d = await detectCgroups({ ...opts, io: failing, root: fake!.root });
    expect(d.host).toBeUndefined();
    expect(d.reason).toMatch(/cannot make a cgroup under .*dvsd\.service: EACCES/);
  });

  it('parses mountinfo escapes and ignores named hierarchies', () => {
    const mounts = parseCgroupMounts([mountLine(1, '/sys/fs/cgroup/my\\040cg', 'cgroup', 'rw,memory'), mountLine(2, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,name=systemd')].join('\n'));
    expect(mounts.map((m) => [m.mountPoint, m.controllers])).toEqual([
      ['/sys/fs/cgroup/my cg', ['memory']],
      ['/sys/fs/cgroup/systemd', []],
    ]);
  });

  it('refuses bad limits with EDVSINVAL naming the field', () => {
    const bad: [object, string][] = [
      [{ cpu: 0 }, 'cpu'],
      [{ cpu: Number.NaN }, 'cpu'],
      [{ cpu: '1' }, 'cpu'],
      [{ memoryMB: 1.5 }, 'memoryMB'],
      [{ memoryMB: 2 }, 'memoryMB'],
      [{ pids: 0 }, 'pids'],
      [{ pids: -3 }, 'pids'],
      [{ disk: 1 }, 'disk'],
    ];
    for (const [limits, field] of bad) {
      const err = (() => {
        try {
          validateLimits(limits);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, JSON.stringify(limits)).toBeInstanceOf(DvsError);
      expect((err as DvsError).code).toBe('EDVSINVAL');
      expect((err as DvsError).details?.field).toBe(field);
    }
    expect(() => validateLimits({ cpu: 0.5, memoryMB: 32, pids: 8 })).not.toThrow();
    expect(() => cgroupName('a/b', 1, 1)).toThrow(/EDVSINVAL/);
    expect(() => cgroupName('dvs-', -1, 1)).toThrow(/EDVSBADDCID/);
  });
});
