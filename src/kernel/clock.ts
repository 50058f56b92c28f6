/** Time as the kernel sees it: injected, so the simulator can run a whole cluster on virtual time. */
export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds on a monotonic scale. */
  now(): number;
  setTimer(ms: number, fn: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}
