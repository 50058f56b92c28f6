/**
 * The periodic check of a node's links (heartbeats, silence), and what it knows about stalls of
 * its own event loop: after one (GC, a long synchronous task) timers run before the input that
 * waited meanwhile, so peers are judged one tick later, once that input is read.
 * See docs/link-protocol.md ("Heartbeats and failure states").
 */
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { LinkTiming } from './link-options.js';

export class LinkTicker {
  /** How often the links are checked. */
  readonly periodMs: number;
  private timer: TimerHandle | undefined;
  private lastTick = 0;
  private skipped = false;

  /** `onTick(now, judge)`: judge is false on the tick right after a stall. */
  constructor(
    private readonly clock: Clock,
    timing: LinkTiming,
    private readonly onTick: (now: number, judge: boolean) => void,
  ) {
    this.periodMs = Math.max(5, Math.min(250, Math.floor(Math.min(timing.heartbeatMs, timing.suspectMs) / 4)));
  }

  start(): void {
    this.lastTick = this.clock.now();
    this.timer = this.clock.setTimer(this.periodMs, this.tick);
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /** A periodic tick is a timer re-armed each time it fires. */
  private readonly tick = (): void => {
    this.timer = this.clock.setTimer(this.periodMs, this.tick);
    const now = this.clock.now();
    const stalled = now - this.lastTick > 2 * this.periodMs + 100 && !this.skipped;
    this.skipped = stalled;
    this.lastTick = now;
    this.onTick(now, !stalled);
  };
}
