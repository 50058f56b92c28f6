/**
 * The periodic check of a node's links (heartbeats, silence), and what it knows about stalls of
 * its own event loop: after one (GC, a long synchronous task) timers run before the input that
 * waited meanwhile, so peers are judged one tick later, once that input is read.
 * See docs/link-protocol.md ("Heartbeats and failure states").
 */
import type { LinkTiming } from './link-options.js';

export class LinkTicker {
  /** How often the links are checked. */
  readonly periodMs: number;
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private skipped = false;

  /** `onTick(now, judge)`: judge is false on the tick right after a stall. */
  constructor(
    timing: LinkTiming,
    private readonly onTick: (now: number, judge: boolean) => void,
  ) {
    this.periodMs = Math.max(5, Math.min(250, Math.floor(Math.min(timing.heartbeatMs, timing.suspectMs) / 4)));
  }

  start(): void {
    this.lastTick = Date.now();
    this.timer = setInterval(this.tick, this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly tick = (): void => {
    const now = Date.now();
    const stalled = now - this.lastTick > 2 * this.periodMs + 100 && !this.skipped;
    this.skipped = stalled;
    this.lastTick = now;
    this.onTick(now, !stalled);
  };
}
