/**
 * The callers DS owes a deferred reply to: each waits for a name, until a deadline. No timer per
 * waiter: the deadlines sit in one heap and the server bounds its next receive by the earliest,
 * so a waiter costs memory only, and only up to the documented bounds. One waiter per source at
 * most: a caller blocked in sendrec has one call in flight, so a new request from it means it no
 * longer waits for the old one.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import { MinHeap } from '../../kernel/min-heap.js';
import { DS_MAX_WAITERS, DS_MAX_WAITERS_PER_NAME } from './ds-messages.js';

export interface Waiter {
  readonly source: Endpoint;
  readonly name: string;
  /** On the server's clock. */
  readonly deadline: number;
  /** Arrival order, to answer in it and to break deadline ties. */
  readonly seq: number;
  live: boolean;
}

export interface WaiterLimits {
  readonly perName: number;
  readonly total: number;
}

export class WaiterSet {
  private readonly bySource = new Map<Endpoint, Waiter>();
  private readonly byName = new Map<string, Set<Waiter>>();
  /** Min-heap by (deadline, seq); answered or withdrawn waiters stay until they surface or a rebuild. */
  private readonly heap = new MinHeap<Waiter>((a, b) => a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq));
  private seq = 0;

  constructor(private readonly limits: WaiterLimits = { perName: DS_MAX_WAITERS_PER_NAME, total: DS_MAX_WAITERS }) {}

  get size(): number {
    return this.bySource.size;
  }

  has(source: Endpoint): boolean {
    return this.bySource.has(source);
  }

  /** Registers `source` waiting for `name` until `deadline`; EDVSAGAIN when a bound is reached. */
  add(source: Endpoint, name: string, deadline: number): Waiter {
    this.remove(source);
    const same = this.byName.get(name);
    if ((same?.size ?? 0) >= this.limits.perName) {
      throw new DvsError('EDVSAGAIN', `${this.limits.perName} callers already wait for ${JSON.stringify(name)}, the limit per name`, { details: { name, limit: this.limits.perName } });
    }
    if (this.bySource.size >= this.limits.total) {
      throw new DvsError('EDVSAGAIN', `${this.limits.total} callers already wait, DS's limit`, { details: { limit: this.limits.total } });
    }
    const w: Waiter = { source, name, deadline, seq: this.seq++, live: true };
    this.bySource.set(source, w);
    if (same === undefined) this.byName.set(name, new Set([w]));
    else same.add(w);
    this.heap.push(w);
    return w;
  }

  /** Forgets the waiter of `source`, if any. */
  remove(source: Endpoint): Waiter | undefined {
    const w = this.bySource.get(source);
    if (w === undefined) return undefined;
    this.forget(w);
    return w;
  }

  /** Takes every waiter of `name`, in arrival order. */
  take(name: string): Waiter[] {
    const set = this.byName.get(name);
    if (set === undefined) return [];
    const out = [...set];
    for (const w of out) this.forget(w);
    return out;
  }

  /** Takes every waiter whose deadline is at or before `now`, earliest first. */
  expired(now: number): Waiter[] {
    const out: Waiter[] = [];
    for (;;) {
      const top = this.peek();
      if (top === undefined || top.deadline > now) return out;
      this.heap.pop();
      this.forget(top);
      out.push(top);
    }
  }

  /** The earliest deadline of a live waiter. */
  nextDeadline(): number | undefined {
    return this.peek()?.deadline;
  }

  /** Live waiters, in arrival order. */
  all(): Waiter[] {
    return [...this.bySource.values()].sort((a, b) => a.seq - b.seq);
  }

  clear(): void {
    for (const w of this.bySource.values()) w.live = false;
    this.bySource.clear();
    this.byName.clear();
    this.heap.retain(() => false);
  }

  // ---------------------------------------------------------------- internals

  private forget(w: Waiter): void {
    if (!w.live) return;
    w.live = false;
    this.bySource.delete(w.source);
    const set = this.byName.get(w.name);
    set?.delete(w);
    if (set?.size === 0) this.byName.delete(w.name);
    // Dead entries are dropped as they surface; rebuild when they outnumber the live ones.
    if (this.heap.size > 2 * this.bySource.size + 64) this.rebuild();
  }

  private peek(): Waiter | undefined {
    while (this.heap.peek()?.live === false) this.heap.pop();
    return this.heap.peek();
  }

  private rebuild(): void {
    this.heap.retain((w) => w.live);
  }
}

