/** Shared helpers of the kernel scenario tests. */
import type { Clock, TimerHandle } from '../../src/kernel/index.js';

/** Deterministic clock: timers fire only when the test advances time. */
export class ManualClock implements Clock {
  /** Current virtual time; tests may set it directly. */
  t = 0;
  private next = 1;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimer(ms: number, fn: () => void): TimerHandle {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimer(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (due === undefined || e[1].at < due[1].at)) due = e;
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
}

export function track<V>(p: Promise<V>): Promise<V> {
  p.catch(() => undefined);
  return p;
}

export async function isPending(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  const winner = await Promise.race([p.then(() => 'settled', () => 'settled'), new Promise((r) => setImmediate(() => r(marker)))]);
  return winner === marker;
}
