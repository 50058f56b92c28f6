/**
 * PM's table of the DC's processes across its nodes, and its tombstones: the answers of waits
 * already reported (waitId → pid, node, exit), so a retried wait gets the same answer again. The
 * SYSTASKs keep tombstones of their own (of what PM reaped there), from which a restarted PM
 * rebuilds these.
 */
import type { ExitInfo, ProcUsage } from '../systask/systask-messages.js';
import { INIT_PID, PM_MAX_TOMBSTONES, PM_TOMBSTONE_MS } from './pm-messages.js';

export type PmState = 'running' | 'exited' | 'lost';

export interface PmProcess {
  readonly pid: number;
  parent: number;
  readonly node: number;
  readonly program: string;
  readonly args: readonly string[];
  state: PmState;
  startedAt: number;
  exit: ExitInfo | undefined;
  usage: ProcUsage;
  hostPid: number;
}

export interface PmTombstone {
  readonly waitId: string;
  readonly pid: number;
  readonly node: number;
  readonly exit: ExitInfo;
  /** On PM's clock. */
  readonly at: number;
}

export class PmProcessTable {
  private readonly procs = new Map<number, PmProcess>();
  private readonly tombs = new Map<string, PmTombstone>();
  private readonly reapedPids = new Map<number, string>();

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.procs.size;
  }

  get(pid: number): PmProcess | undefined {
    return this.procs.get(pid);
  }

  set(p: PmProcess): void {
    this.procs.set(p.pid, p);
  }

  delete(pid: number): void {
    this.procs.delete(pid);
  }

  all(): PmProcess[] {
    return [...this.procs.values()].sort((a, b) => a.pid - b.pid);
  }

  onNode(node: number): PmProcess[] {
    return this.all().filter((p) => p.node === node);
  }

  children(parent: number): PmProcess[] {
    return this.all().filter((p) => p.parent === parent);
  }

  running(node: number): number {
    let n = 0;
    for (const p of this.procs.values()) if (p.node === node && p.state === 'running') n++;
    return n;
  }

  /** The children of `pid` become init's. */
  reparent(pid: number): void {
    for (const p of this.procs.values()) if (p.parent === pid) p.parent = INIT_PID;
  }

  /** A process whose parent is not a running process of the table is init's (after a rebuild). */
  fixParents(): void {
    for (const p of this.procs.values()) {
      if (p.parent === INIT_PID) continue;
      const parent = this.procs.get(p.parent);
      if (parent === undefined || parent.state !== 'running') p.parent = INIT_PID;
    }
  }

  tombstone(waitId: string): PmTombstone | undefined {
    this.prune();
    return this.tombs.get(waitId);
  }

  /** Whether `pid` was reported (reaped) lately. */
  wasReaped(pid: number): boolean {
    this.prune();
    return this.reapedPids.has(pid);
  }

  addTombstone(t: Omit<PmTombstone, 'at'>, at = this.now()): void {
    if (this.tombs.has(t.waitId)) return;
    this.tombs.set(t.waitId, { ...t, at });
    this.reapedPids.set(t.pid, t.waitId);
    this.prune();
  }

  tombstones(): PmTombstone[] {
    this.prune();
    return [...this.tombs.values()];
  }

  clear(): void {
    this.procs.clear();
    this.tombs.clear();
    this.reapedPids.clear();
  }

  private prune(): void {
    const old = this.now() - PM_TOMBSTONE_MS;
    for (const [id, t] of this.tombs) {
      if (this.tombs.size <= PM_MAX_TOMBSTONES && t.at > old) break;
      this.tombs.delete(id);
      if (this.reapedPids.get(t.pid) === id) this.reapedPids.delete(t.pid);
    }
  }
}
