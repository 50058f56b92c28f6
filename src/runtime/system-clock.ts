/** The real clock for kernels in a running host: monotonic time and Node timers. */
import { performance } from 'node:perf_hooks';
import type { Clock, TimerHandle } from '../kernel/clock.js';

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (ms: number, fn: () => void): TimerHandle => {
    const t = setTimeout(fn, ms);
    // A pending call's timeout must not keep a host process alive on its own.
    t.unref();
    return t;
  },
  clearTimer: (handle: TimerHandle) => clearTimeout(handle as NodeJS.Timeout),
};
