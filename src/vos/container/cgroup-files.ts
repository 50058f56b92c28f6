/** Reading the small text files of cgroupfs, shared by the v1 and v2 flavors. */
import { posix } from 'node:path';
import type { CgroupDirs, CgroupIo, CgroupResource } from './cgroups.js';

/** A `key value` line file (cpu.stat, memory.events, memory.oom_control, pids.events) → its numbers. */
export function parseKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key !== undefined && value !== undefined && /^-?\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

/** The text of `file` in the resource's directory, or undefined where there is none. */
export async function readIn(dirs: CgroupDirs, resource: CgroupResource, file: string, io: CgroupIo): Promise<string | undefined> {
  const dir = dirs[resource];
  if (dir === undefined) return undefined;
  try {
    return await io.readFile(posix.join(dir, file));
  } catch {
    return undefined;
  }
}

/** A file holding one integer (memory.current, pids.current, cpuacct.usage), or undefined. */
export async function readNumber(dirs: CgroupDirs, resource: CgroupResource, file: string, io: CgroupIo): Promise<number | undefined> {
  const text = (await readIn(dirs, resource, file, io))?.trim();
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

/** The processes of the cgroup, counted from cgroup.procs of any of its directories (when pids.current is missing). */
export async function countProcs(dirs: CgroupDirs, io: CgroupIo): Promise<number> {
  for (const dir of new Set(Object.values(dirs))) {
    try {
      return (await io.readFile(posix.join(dir, 'cgroup.procs'))).split('\n').filter((l) => /^\d+$/.test(l.trim())).length;
    } catch {
      // Try the next hierarchy.
    }
  }
  return 0;
}

/** The CFS period DVS uses in both versions: 100 ms, the kernel's default. */
export const CPU_PERIOD_US = 100_000;

/** A CPU limit in cores as a CFS quota per CPU_PERIOD_US (the kernel's minimum quota is 1 ms). */
export const cpuQuotaUs = (cores: number): number => Math.max(1000, Math.round(cores * CPU_PERIOD_US));

export const MIB = 1024 * 1024;
