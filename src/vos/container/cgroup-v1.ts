/**
 * cgroup v1 (docs/vos/containers.md, "cgroup v1"): one hierarchy per controller (cpu and cpuacct are
 * sometimes co-mounted), the DC's cgroup a directory in each. Limits: cpu.cfs_quota_us over
 * cpu.cfs_period_us, memory.limit_in_bytes (and memory.memsw.limit_in_bytes, so the DC cannot swap
 * past it), pids.max. Usage: cpuacct.usage (ns), memory.usage_in_bytes, pids.current. OOM kills:
 * the `oom_kill` counter of memory.oom_control (Linux 4.13+), else `under_oom` as a lower bound.
 */
import type { CgroupFlavor, CgroupLimits, LimitWrite } from './cgroups.js';
import { CPU_PERIOD_US, MIB, countProcs, cpuQuotaUs, parseKeyed, readIn, readNumber } from './cgroup-files.js';

export const cgroupV1: CgroupFlavor = {
  version: 'v1',

  // Nothing to enable: a v1 hierarchy's controller applies in every directory of it.
  prepareParent: () => Promise.resolve([]),

  limitWrites(limits: CgroupLimits): LimitWrite[] {
    const writes: LimitWrite[] = [];
    if (limits.cpu === undefined) writes.push({ resource: 'cpu', file: 'cpu.cfs_quota_us', value: '-1' });
    else writes.push({ resource: 'cpu', file: 'cpu.cfs_period_us', value: String(CPU_PERIOD_US) }, { resource: 'cpu', file: 'cpu.cfs_quota_us', value: String(cpuQuotaUs(limits.cpu)) });
    // memsw must stay >= the memory limit at every step: lift it, set the limit, then bring it down to the limit.
    writes.push({ resource: 'memory', file: 'memory.memsw.limit_in_bytes', value: '-1', optional: true });
    if (limits.memoryMB === undefined) writes.push({ resource: 'memory', file: 'memory.limit_in_bytes', value: '-1' });
    else {
      const bytes = String(limits.memoryMB * MIB);
      writes.push({ resource: 'memory', file: 'memory.limit_in_bytes', value: bytes }, { resource: 'memory', file: 'memory.memsw.limit_in_bytes', value: bytes, optional: true });
    }
    writes.push({ resource: 'pids', file: 'pids.max', value: limits.pids === undefined ? 'max' : String(limits.pids) });
    return writes;
  },

  async readUsage(dirs, io) {
    const cpuNs = await readNumber(dirs, 'cpuacct', 'cpuacct.usage', io);
    const memory = await readNumber(dirs, 'memory', 'memory.usage_in_bytes', io);
    const pids = (await readNumber(dirs, 'pids', 'pids.current', io)) ?? (await countProcs(dirs, io));
    const throttledNs = parseKeyed((await readIn(dirs, 'cpu', 'cpu.stat', io)) ?? '').get('throttled_time');
    const hits = parseKeyed((await readIn(dirs, 'pids', 'pids.events', io)) ?? '').get('max');
    return {
      cpuSeconds: (cpuNs ?? 0) / 1e9,
      memoryBytes: memory ?? 0,
      pids,
      ...(throttledNs === undefined ? {} : { throttledSeconds: throttledNs / 1e9 }),
      ...(hits === undefined ? {} : { pidsLimitHits: hits }),
    };
  },

  oomFile: { resource: 'memory', file: 'memory.oom_control' },

  parseOomKills(text: string): number {
    const keyed = parseKeyed(text);
    return keyed.get('oom_kill') ?? keyed.get('under_oom') ?? 0;
  },

  // v1 has no cgroup.kill: the caller signals each process.
  killAll: () => Promise.resolve(false),
};
