/**
 * SYSTASK's processes on its node: the running ones, the exited ones nobody reaped yet (zombies, kept
 * with their exit and last usage until PM reaps them), and the tombstones of reaped ones: the last
 * SYS_MAX_TOMBSTONES, each for SYS_TOMBSTONE_MS, with the waitId of the wait that reaped it, so a PM
 * that restarted answers a retried wait again and never takes a reaped process for a zombie.
 */
import { DvsError } from '../../ipc/errors.js';
import type { SpawnedChild } from './spawner.js';
import { SYS_MAX_PROCESSES, SYS_MAX_TOMBSTONES, SYS_TOMBSTONE_MS, type ExitInfo, type ProcUsage } from './systask-messages.js';

export interface SysProcess {
  readonly pid: number;
  readonly parent: number;
  readonly program: string;
  readonly args: readonly string[];
  readonly startedAt: number;
  readonly child: SpawnedChild | undefined;
  hostPid: number;
  state: 'running' | 'exited';
  exit: ExitInfo | undefined;
  usage: ProcUsage;
  log: string | undefined;
}

export interface Tombstone {
  readonly pid: number;
  readonly waitId: string;
  readonly exit: ExitInfo;
  /** On the server's clock (ms), when it was reaped. */
  readonly at: number;
}

export class SysProcessTable {
  private readonly procs = new Map<number, SysProcess>();
  /** Reaped, oldest first (insertion order of the Map). */
  private readonly tombs = new Map<number, Tombstone>();

  constructor(
    private readonly now: () => number,
    private readonly limits = { processes: SYS_MAX_PROCESSES, tombstones: SYS_MAX_TOMBSTONES, tombstoneMs: SYS_TOMBSTONE_MS },
  ) {}

  get size(): number {
    return this.procs.size;
  }

  get(pid: number): SysProcess | undefined {
    return this.procs.get(pid);
  }

  tombstone(pid: number): Tombstone | undefined {
    this.prune();
    return this.tombs.get(pid);
  }

  /** EDVSEXIST when the pid is in use (or was reaped lately); EDVSAGAIN when the table is full. */
  checkFree(pid: number): void {
    if (this.procs.has(pid) || this.tombstone(pid) !== undefined) throw new DvsError('EDVSEXIST', `pid ${pid} is already in use on this node`, { details: { pid } });
    if (this.procs.size >= this.limits.processes) throw new DvsError('EDVSAGAIN', `${this.limits.processes} processes on this node, SYSTASK's limit (reap exited ones)`, { details: { limit: this.limits.processes } });
  }

  add(p: SysProcess): void {
    this.checkFree(p.pid);
    this.procs.set(p.pid, p);
  }

  /** Moves an exited process to the tombstones. */
  reap(p: SysProcess, waitId: string): Tombstone {
    this.procs.delete(p.pid);
    const t: Tombstone = { pid: p.pid, waitId, exit: p.exit ?? {}, at: this.now() };
    this.tombs.set(p.pid, t);
    this.prune();
    return t;
  }

  processes(): SysProcess[] {
    return [...this.procs.values()].sort((a, b) => a.pid - b.pid);
  }

  tombstones(): Tombstone[] {
    this.prune();
    return [...this.tombs.values()].sort((a, b) => a.pid - b.pid);
  }

  running(): SysProcess[] {
    return this.processes().filter((p) => p.state === 'running');
  }

  private prune(): void {
    const old = this.now() - this.limits.tombstoneMs;
    for (const [pid, t] of this.tombs) {
      if (this.tombs.size <= this.limits.tombstones && t.at > old) break;
      this.tombs.delete(pid);
    }
  }
}
