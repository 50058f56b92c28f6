/**
 * The callers PM owes a deferred PM_WAIT reply to: each waits for one pid or for any child of a
 * parent, until a deadline (Infinity: none). As in DS: no timer per waiter, the deadlines sit in
 * one heap and PM bounds its next receive by the earliest; one waiter per caller.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import { MinHeap } from '../../kernel/min-heap.js';
import { PM_MAX_WAITERS } from './pm-messages.js';

export interface PmWaiter {
  readonly source: Endpoint;
  readonly pid: number | undefined;
  readonly parent: number;
  readonly waitId: string;
  readonly deadline: number;
  readonly seq: number;
  live: boolean;
}

export class PmWaiterSet {
  private readonly bySource = new Map<Endpoint, PmWaiter>();
  private readonly heap = new MinHeap<PmWaiter>((a, b) => a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq));
  private seq = 0;

  constructor(private readonly limit = PM_MAX_WAITERS) {}

  get size(): number {
    return this.bySource.size;
  }

  /** EDVSAGAIN when the bound is reached. */
  add(w: Omit<PmWaiter, 'seq' | 'live'>): PmWaiter {
    this.remove(w.source);
    if (this.bySource.size >= this.limit) throw new DvsError('EDVSAGAIN', `${this.limit} callers already wait, PM's limit`, { details: { limit: this.limit } });
    const out: PmWaiter = { ...w, seq: this.seq++, live: true };
    this.bySource.set(w.source, out);
    if (Number.isFinite(out.deadline)) this.heap.push(out);
    return out;
  }

  remove(source: Endpoint): PmWaiter | undefined {
    const w = this.bySource.get(source);
    if (w === undefined) return undefined;
    w.live = false;
    this.bySource.delete(source);
    if (this.heap.size > 2 * this.bySource.size + 64) this.heap.retain((x) => x.live);
    return w;
  }

  /** Takes every waiter whose deadline is at or before `now`. */
  expired(now: number): PmWaiter[] {
    const out: PmWaiter[] = [];
    for (;;) {
      const top = this.peek();
      if (top === undefined || top.deadline > now) return out;
      this.heap.pop();
      this.remove(top.source);
      out.push(top);
    }
  }

  nextDeadline(): number | undefined {
    return this.peek()?.deadline;
  }

  /** Live waiters in arrival order. */
  all(): PmWaiter[] {
    return [...this.bySource.values()].sort((a, b) => a.seq - b.seq);
  }

  clear(): void {
    for (const w of this.bySource.values()) w.live = false;
    this.bySource.clear();
    this.heap.retain(() => false);
  }

  private peek(): PmWaiter | undefined {
    while (this.heap.peek()?.live === false) this.heap.pop();
    return this.heap.peek();
  }
}
