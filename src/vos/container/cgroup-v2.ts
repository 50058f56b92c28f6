/**
 * cgroup v2 (docs/vos/containers.md, "cgroup v2"): one unified hierarchy; the DC's cgroup is one
 * directory whose controllers are enabled in the parent's cgroup.subtree_control. Limits: cpu.max
 * ("quota period"), memory.max (and memory.swap.max 0), pids.max. Usage: cpu.stat usage_usec,
 * memory.current, pids.current. OOM kills: memory.events oom_kill. Removal: cgroup.kill (Linux 5.14+).
 *
 * The "no internal processes" rule: a non-root cgroup with processes in it cannot enable controllers
 * for its children. When this process's own cgroup is such a one, its processes move into a leaf
 * child, `dvs-leaf`, first (what a container's init does on a v2 host), and DC cgroups are made
 * beside that leaf.
 */
import { posix } from 'node:path';
import type { CgroupFlavor, CgroupIo, CgroupLimits, CgroupResource, LimitWrite } from './cgroups.js';
import { CPU_PERIOD_US, MIB, countProcs, cpuQuotaUs, parseKeyed, readIn, readNumber } from './cgroup-files.js';

/** The leaf cgroup this process's cgroup's own processes move into, so its children may have controllers. */
export const V2_LEAF = 'dvs-leaf';

const errText = (err: unknown): string => (err as Error).message;

async function enabled(parent: string, io: CgroupIo): Promise<Set<string>> {
  try {
    return new Set((await io.readFile(posix.join(parent, 'cgroup.subtree_control'))).trim().split(/\s+/).filter(Boolean));
  } catch {
    return new Set();
  }
}

/** Moves every process of `parent` into its leaf child (made if need be). */
async function evacuate(parent: string, io: CgroupIo): Promise<void> {
  const leaf = posix.join(parent, V2_LEAF);
  try {
    await io.mkdir(leaf);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const procs = (await io.readFile(posix.join(parent, 'cgroup.procs'))).split('\n').filter((l) => /^\d+$/.test(l.trim()));
  for (const pid of procs) {
    try {
      await io.writeFile(posix.join(leaf, 'cgroup.procs'), pid.trim());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

export const cgroupV2: CgroupFlavor = {
  version: 'v2',

  async prepareParent(parent: string, wanted: readonly CgroupResource[], io: CgroupIo): Promise<string[]> {
    const lacking: string[] = [];
    const on = await enabled(parent, io);
    for (const controller of wanted.filter((r) => r !== 'cpuacct' && !on.has(r))) {
      const file = posix.join(parent, 'cgroup.subtree_control');
      try {
        await io.writeFile(file, `+${controller}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EBUSY') {
          lacking.push(`${controller}: cannot enable in ${file}: ${errText(err)}`);
          continue;
        }
        try {
          await evacuate(parent, io);
          await io.writeFile(file, `+${controller}`);
        } catch (again) {
          lacking.push(`${controller}: cannot enable in ${file} (processes in ${parent}): ${errText(again)}`);
        }
      }
    }
    return lacking;
  },

  limitWrites(limits: CgroupLimits): LimitWrite[] {
    return [
      { resource: 'cpu', file: 'cpu.max', value: limits.cpu === undefined ? `max ${CPU_PERIOD_US}` : `${cpuQuotaUs(limits.cpu)} ${CPU_PERIOD_US}` },
      { resource: 'memory', file: 'memory.max', value: limits.memoryMB === undefined ? 'max' : String(limits.memoryMB * MIB) },
      { resource: 'memory', file: 'memory.swap.max', value: limits.memoryMB === undefined ? 'max' : '0', optional: true },
      { resource: 'pids', file: 'pids.max', value: limits.pids === undefined ? 'max' : String(limits.pids) },
    ];
  },

  async readUsage(dirs, io) {
    const stat = parseKeyed((await readIn(dirs, 'cpuacct', 'cpu.stat', io)) ?? '');
    const memory = await readNumber(dirs, 'memory', 'memory.current', io);
    const pids = (await readNumber(dirs, 'pids', 'pids.current', io)) ?? (await countProcs(dirs, io));
    const throttled = stat.get('throttled_usec');
    const hits = parseKeyed((await readIn(dirs, 'pids', 'pids.events', io)) ?? '').get('max');
    return {
      cpuSeconds: (stat.get('usage_usec') ?? 0) / 1e6,
      memoryBytes: memory ?? 0,
      pids,
      ...(throttled === undefined ? {} : { throttledSeconds: throttled / 1e6 }),
      ...(hits === undefined ? {} : { pidsLimitHits: hits }),
    };
  },

  oomFile: { resource: 'memory', file: 'memory.events' },

  parseOomKills: (text: string): number => parseKeyed(text).get('oom_kill') ?? 0,

  async killAll(dirs, io): Promise<boolean> {
    const dir = Object.values(dirs)[0];
    if (dir === undefined) return false;
    const file = posix.join(dir, 'cgroup.kill');
    if (!(await io.exists(file))) return false;
    try {
      await io.writeFile(file, '1');
      return true;
    } catch {
      return false;
    }
  },
};
