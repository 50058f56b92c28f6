/**
 * Virtual time for the simulator: a `Clock` whose timers sit in a priority queue and fire only when
 * the scheduler steps it. Timers are ordered by (time, rank, sequence number): `rank` comes from an
 * optional tie-breaker (the simulation draws it from its seeded PRNG, so events due at the same
 * instant run in a seed-determined order); without one, ties fire in the order they were set.
 */
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { MinHeap } from '../kernel/min-heap.js';

interface Timer {
  readonly time: number;
  readonly rank: number;
  readonly seq: number;
  readonly fn: () => void;
  readonly label: string | undefined;
  cancelled: boolean;
}

/** What a step ran. */
export interface FiredTimer {
  readonly time: number;
  readonly label: string | undefined;
}

export interface SimClockOptions {
  /** Virtual time at start, in ms. Default 0. */
  readonly start?: number;
  /** Draws a rank for each new timer; equal-time timers fire by increasing rank, then by creation. */
  readonly tieBreak?: () => number;
}

function before(x: Timer, y: Timer): boolean {
  if (x.time !== y.time) return x.time < y.time;
  if (x.rank !== y.rank) return x.rank < y.rank;
  return x.seq < y.seq;
}

export class SimClock implements Clock {
  private current: number;
  private seq = 0;
  private live = 0;
  private readonly heap = new MinHeap<Timer>(before);
  private readonly tieBreak: (() => number) | undefined;

  constructor(opts: SimClockOptions = {}) {
    this.current = opts.start ?? 0;
    this.tieBreak = opts.tieBreak;
  }

  now(): number {
    return this.current;
  }

  /** Schedules `fn` after `ms` virtual milliseconds (negative or NaN counts as 0). */
  setTimer(ms: number, fn: () => void, label?: string): TimerHandle {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const t: Timer = { time: this.current + delay, rank: this.tieBreak?.() ?? 0, seq: this.seq++, fn, label, cancelled: false };
    this.heap.push(t);
    this.live++;
    return t;
  }

  clearTimer(handle: TimerHandle): void {
    const t = handle as Timer | undefined;
    if (t === undefined || t === null || typeof t !== 'object' || t.cancelled) return;
    t.cancelled = true;
    this.live--;
  }

  /** Timers set and neither fired nor cleared. */
  pending(): number {
    return this.live;
  }

  /** Due time of the next timer, or undefined when none is pending. */
  peekTime(): number | undefined {
    this.dropCancelled();
    return this.heap.peek()?.time;
  }

  /** Runs the next timer: advances time to it, then calls it. Returns what ran, or undefined if none. */
  step(): FiredTimer | undefined {
    this.dropCancelled();
    const t = this.heap.pop();
    if (t === undefined) return undefined;
    t.cancelled = true;
    this.live--;
    if (t.time > this.current) this.current = t.time;
    t.fn();
    return { time: t.time, label: t.label };
  }

  /** Moves time forward to `time` without running anything (never backwards). */
  advanceTo(time: number): void {
    if (time > this.current) this.current = time;
  }

  /** Synchronously runs every timer due at or before `time`, then sets time to `time`. Returns how many ran. */
  runUntil(time: number, maxSteps = 1_000_000): number {
    let n = 0;
    for (let at = this.peekTime(); at !== undefined && at <= time && n < maxSteps; at = this.peekTime()) {
      this.step();
      n++;
    }
    this.advanceTo(time);
    return n;
  }

  private dropCancelled(): void {
    while (this.heap.peek()?.cancelled === true) this.heap.pop();
  }
}

