/**
 * What one host process uses, read from /proc (best effort: a process that is gone, or a host
 * without /proc, reads as undefined). CPU from /proc/<pid>/stat (utime + stime, in clock ticks of
 * USER_HZ = 100 on Linux), resident memory from /proc/<pid>/statm (pages of 4 KiB).
 */
import { readFile } from 'node:fs/promises';
import type { ProcUsage } from './systask-messages.js';

const TICK_MS = 10;
const PAGE_KB = 4;

export async function readProcUsage(hostPid: number): Promise<ProcUsage | undefined> {
  try {
    const [stat, statm] = await Promise.all([readFile(`/proc/${hostPid}/stat`, 'utf8'), readFile(`/proc/${hostPid}/statm`, 'utf8')]);
    // Fields after the command (which may hold spaces and parentheses): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    const resident = Number(statm.split(' ')[1]);
    if (!Number.isFinite(ticks) || !Number.isFinite(resident)) return undefined;
    return { cpuMs: ticks * TICK_MS, rssKB: resident * PAGE_KB };
  } catch {
    return undefined;
  }
}
