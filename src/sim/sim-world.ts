/**
 * The world a simulation runs in: one virtual clock, a seeded network between nodes, simulated
 * processes (async functions) and a trace. The scheduler lets every pending microtask run, then
 * fires the next timer or frame delivery; events due at the same virtual instant run in an order
 * drawn from the seeded PRNG. A seed therefore fixes the whole interleaving. `Simulation` (kernels
 * with a static directory) and `SimCluster` (kernels, store, directories and reconcilers) build on it.
 */
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { Prng } from './prng.js';
import { SimClock } from './sim-clock.js';
import { SimNetwork, type LatencyRange } from './sim-network.js';

export interface WorldOptions {
  readonly seed: number;
  /** Frame latency in virtual ms (integers, inclusive). Default 1..10. */
  readonly latency?: LatencyRange;
  /** Virtual ms from a crash to nodeDown on the other nodes. Default 100. */
  readonly detectionDelay?: number;
  /** Range of `jitter()` in virtual ms (integers, inclusive). Default 0..5. */
  readonly jitter?: LatencyRange;
  /** Trace lines kept (the oldest are dropped beyond it). Default 20000; 0 disables tracing. */
  readonly traceLimit?: number;
}

export interface RunOptions {
  /** Stop before any event due after this virtual time. Default: no bound. */
  readonly maxTime?: number;
  /** Stop after this many events in this call. Default 1e6. */
  readonly maxSteps?: number;
  /**
   * 'done' (default): stop once every non-daemon process has finished.
   * 'idle': ignore processes; run until no event is pending (or a bound is hit).
   */
  readonly until?: 'done' | 'idle';
}

export type StopReason = 'done' | 'idle' | 'maxTime' | 'maxSteps';

export interface ProcessFailure {
  readonly name: string;
  readonly error: unknown;
}

export interface SimResult {
  readonly seed: number;
  readonly reason: StopReason;
  /** Virtual time at the end. */
  readonly time: number;
  /** Events run by this call. */
  readonly steps: number;
  /** Processes that threw or rejected, in the order they failed. */
  readonly errors: readonly ProcessFailure[];
  /** Non-daemon processes still running (blocked, or cut short by a bound). */
  readonly unfinished: readonly string[];
}

/** What a simulated process gets: virtual-time helpers labelled with its name. */
export interface SimContext {
  readonly name: string;
  readonly sim: SimWorld;
  sleep(ms: number): Promise<void>;
  jitter(): Promise<void>;
  log(event: string): void;
}

export interface SimTask {
  readonly name: string;
  readonly daemon: boolean;
  /** Settles (never rejects) when the process ends. */
  readonly done: Promise<void>;
  readonly finished: boolean;
  readonly error: unknown;
}

interface TaskState {
  name: string;
  daemon: boolean;
  done: Promise<void>;
  finished: boolean;
  error: unknown;
}

/** Lets every pending microtask run: one macrotask turn drains the whole microtask queue. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function formatTime(t: number): string {
  return Number.isInteger(t) ? String(t) : t.toFixed(3);
}


export class SimWorld {
  readonly seed: number;
  readonly clock: SimClock;
  readonly network: SimNetwork;
  /** A PRNG stream for workloads, independent of the network's and the scheduler's streams. */
  readonly random: Prng;
  private readonly jitterRange: LatencyRange;
  private readonly traceLimit: number;
  private readonly traceLines: string[] = [];
  private traceDropped = 0;
  private readonly tasks: TaskState[] = [];
  private running = false;
  private totalSteps = 0;

  constructor(opts: WorldOptions) {
    this.seed = opts.seed >>> 0;
    const root = new Prng(this.seed);
    const tieBreak = root.fork();
    const netRandom = root.fork();
    this.random = root.fork();
    this.jitterRange = opts.jitter ?? { min: 0, max: 5 };
    if (!Number.isInteger(this.jitterRange.min) || !Number.isInteger(this.jitterRange.max) || this.jitterRange.min < 0 || this.jitterRange.max < this.jitterRange.min) {
      throw new RangeError('jitter must be integers with 0 <= min <= max');
    }
    this.traceLimit = opts.traceLimit ?? 20_000;
    this.clock = new SimClock({ tieBreak: () => tieBreak.nextU32() });
    this.network = new SimNetwork(this.clock, netRandom, { latency: opts.latency, detectionDelay: opts.detectionDelay, trace: (e) => this.log(e) });
  }

  now(): number {
    return this.clock.now();
  }

  /** Events run so far, over every `run`. */
  get steps(): number {
    return this.totalSteps;
  }

  // ---------------------------------------------------------------- processes and time

  /**
   * Runs `fn` as a simulated process, starting at the next scheduler turn. Its failure is collected
   * (see `run`'s result) rather than thrown. Daemons (e.g. server loops) do not keep `run` going.
   */
  spawn(name: string, fn: (ctx: SimContext) => Promise<unknown>, opts: { daemon?: boolean } = {}): SimTask {
    const ctx: SimContext = {
      name,
      sim: this,
      sleep: (ms) => this.timer(ms, `${name} wake`),
      jitter: () => this.timer(this.random.int(this.jitterRange.min, this.jitterRange.max), `${name} wake`),
      log: (e) => this.log(`${name} ${e}`),
    };
    const state: TaskState = { name, daemon: opts.daemon ?? false, done: Promise.resolve(), finished: false, error: undefined };
    state.done = Promise.resolve()
      .then(() => {
        this.log(`start ${name}`);
        return fn(ctx);
      })
      .then(
        () => {
          state.finished = true;
          this.log(`end ${name}`);
        },
        (err: unknown) => {
          state.finished = true;
          state.error = err ?? new Error('rejected without a reason');
          this.log(`fail ${name} ${err instanceof Error ? err.message : String(err)}`);
        },
      );
    this.tasks.push(state);
    return state;
  }

  /** Resolves after `ms` of virtual time. */
  sleep(ms: number): Promise<void> {
    return this.timer(ms, 'wake');
  }

  /** Resolves after a small random virtual delay drawn from the seeded PRNG. */
  jitter(): Promise<void> {
    return this.timer(this.random.int(this.jitterRange.min, this.jitterRange.max), 'wake');
  }

  /** Runs `fn` after `ms` of virtual time (e.g. to abort a call or crash a node mid-run). */
  after(ms: number, fn: () => void, label = 'after'): TimerHandle {
    return this.clock.setTimer(ms, () => {
      this.log(label);
      fn();
    });
  }

  private timer(ms: number, label: string): Promise<void> {
    return new Promise((resolve) => {
      this.clock.setTimer(ms, () => {
        this.log(label);
        resolve();
      });
    });
  }

  crash(node: number): void {
    this.network.crash(node);
  }

  restore(node: number): void {
    this.network.restore(node);
  }

  // ---------------------------------------------------------------- the scheduler

  /** Runs the simulation until the stop condition or a bound; see `RunOptions`. */
  async run(opts: RunOptions = {}): Promise<SimResult> {
    if (this.running) throw new Error('Simulation.run is already running');
    this.running = true;
    const maxTime = opts.maxTime ?? Infinity;
    const maxSteps = opts.maxSteps ?? 1_000_000;
    const until = opts.until ?? 'done';
    let steps = 0;
    let reason: StopReason;
    try {
      for (;;) {
        await macrotask();
        if (until === 'done' && this.tasks.every((t) => t.finished || t.daemon)) {
          reason = 'done';
          break;
        }
        const next = this.clock.peekTime();
        if (next === undefined) {
          reason = 'idle';
          break;
        }
        if (next > maxTime) {
          this.clock.advanceTo(maxTime);
          reason = 'maxTime';
          break;
        }
        if (steps >= maxSteps) {
          reason = 'maxSteps';
          break;
        }
        this.clock.step();
        steps++;
        this.totalSteps++;
      }
    } finally {
      this.running = false;
    }
    return {
      seed: this.seed,
      reason,
      time: this.clock.now(),
      steps,
      errors: this.tasks.filter((t) => t.error !== undefined).map((t) => ({ name: t.name, error: t.error })),
      unfinished: this.tasks.filter((t) => !t.finished && !t.daemon).map((t) => t.name),
    };
  }

  // ---------------------------------------------------------------- trace

  /** Appends one line to the trace, stamped with the virtual time. */
  log(event: string): void {
    if (this.traceLimit <= 0) return;
    this.traceLines.push(`${formatTime(this.clock.now())} ${event}`);
    if (this.traceLines.length > this.traceLimit * 2) {
      const cut = this.traceLines.length - this.traceLimit;
      this.traceLines.splice(0, cut);
      this.traceDropped += cut;
    }
  }

  /** The trace kept so far (oldest lines beyond the limit are gone). */
  get trace(): readonly string[] {
    return this.traceLimit > 0 && this.traceLines.length > this.traceLimit ? this.traceLines.slice(-this.traceLimit) : this.traceLines;
  }

  /** The last `lines` of the trace as text, headed by the seed, for printing a failing run. */
  formatTrace(lines = 200): string {
    const t = this.trace;
    const shown = t.slice(Math.max(0, t.length - lines));
    const skipped = this.traceDropped + (this.traceLines.length - this.trace.length) + (t.length - shown.length);
    return [`simulation seed=${this.seed}${skipped > 0 ? ` (${skipped} earlier lines not shown)` : ''}`, ...shown].join('\n');
  }

  /** A kernel's view of the clock: the world's, with its timeouts traced. */
  protected kernelClock(node: number): Clock {
    return {
      now: () => this.clock.now(),
      setTimer: (ms, fn) =>
        this.clock.setTimer(ms, () => {
          this.log(`n${node} timeout`);
          fn();
        }),
      clearTimer: (h) => this.clock.clearTimer(h),
    };
  }
}
