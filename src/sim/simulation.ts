/**
 * A whole DVS cluster in one process, on virtual time: one Kernel per node, a simulated network,
 * and simulated processes (async functions). The scheduler lets every pending microtask run, then
 * fires the next timer or frame delivery; events due at the same virtual instant run in an order
 * drawn from the seeded PRNG. A seed therefore fixes the whole interleaving: to replay a run,
 * construct the simulation again with the same options and workload.
 */
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { KernelFrame } from '../kernel/frames.js';
import { Kernel, type BindOptions } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { resolveDcLimits, type DcLimits, type KernelLimits } from '../ipc/limits.js';
import { Prng } from './prng.js';
import { SimClock } from './sim-clock.js';
import { SimNetwork, type LatencyRange } from './sim-network.js';

export interface SimulationOptions {
  readonly seed: number;
  /** Number of nodes; their ids are 0 .. nodes-1. */
  readonly nodes: number;
  /** Frame latency in virtual ms (integers, inclusive). Default 1..10. */
  readonly latency?: LatencyRange;
  /** Virtual ms from a crash to nodeDown on the other nodes. Default 100. */
  readonly detectionDelay?: number;
  /** The DC created on every node (all nodes are members). Default dcid 0 with default limits. */
  readonly dc?: { readonly dcid?: number; readonly name?: string; readonly limits?: Partial<DcLimits> };
  /** Options of every kernel. */
  readonly kernel?: { readonly limits?: Partial<KernelLimits>; readonly maxRedirects?: number; readonly copyWindow?: number };
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
  readonly sim: Simulation;
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

export class Simulation {
  readonly seed: number;
  readonly clock: SimClock;
  readonly network: SimNetwork;
  readonly dcid: number;
  readonly space: EndpointSpace;
  /** A PRNG stream for workloads, independent of the network's and the scheduler's streams. */
  readonly random: Prng;
  private readonly kernels: Kernel[] = [];
  private readonly jitterRange: LatencyRange;
  private readonly traceLimit: number;
  private readonly traceLines: string[] = [];
  private traceDropped = 0;
  private readonly tasks: TaskState[] = [];
  private readonly lastGen = new Map<number, number>();
  private running = false;
  private totalSteps = 0;

  constructor(opts: SimulationOptions) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new RangeError(`nodes must be a positive integer, got ${String(opts.nodes)}`);
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

    const dcid = opts.dc?.dcid ?? 0;
    const limits = resolveDcLimits({ ...opts.dc?.limits, nrNodes: opts.dc?.limits?.nrNodes ?? Math.max(opts.nodes, 4) });
    this.dcid = dcid;
    this.space = new EndpointSpace(limits);
    const all = Array.from({ length: opts.nodes }, (_, n) => n);
    for (const n of all) {
      const clock = this.kernelClock(n);
      const peer = {
        receiveFrame: (from: number, frame: KernelFrame) => this.kernel(n).receiveFrame(from, frame),
        nodeDown: (node: number) => this.kernel(n).nodeDown(node),
        nodeUp: (node: number) => this.kernel(n).nodeUp(node),
      };
      const transport = this.network.attach(n, peer);
      const k = new Kernel({ nodeId: n, clock, transport, limits: opts.kernel?.limits, maxRedirects: opts.kernel?.maxRedirects, copyWindow: opts.kernel?.copyWindow });
      k.createDc({ dcid, name: opts.dc?.name, nodes: all, limits });
      this.kernels.push(k);
    }
  }

  /** Node ids. */
  get nodes(): number[] {
    return this.kernels.map((k) => k.nodeId);
  }

  kernel(node: number): Kernel {
    const k = this.kernels[node];
    if (k === undefined) throw new RangeError(`no node ${String(node)} in this simulation`);
    return k;
  }

  now(): number {
    return this.clock.now();
  }

  /** Events run so far, over every `run`. */
  get steps(): number {
    return this.totalSteps;
  }

  // ---------------------------------------------------------------- directory

  /**
   * Binds a process on `node` and records a remote descriptor for it on every other node, as the
   * directory would. Without `slot` or `endpoint`, takes the lowest user slot free on every node.
   * The generation is one above any this simulation has seen for the slot, so a rebound slot gets a
   * new incarnation. A stale remote descriptor on `node` is dropped first; a slot bound (locally) on
   * any node is refused with EDVSSLOTUSED.
   */
  bind(node: number, opts: BindOptions = {}): Process {
    const k = this.kernel(node);
    let endpoint = opts.endpoint;
    if (endpoint === undefined) {
      const slot = opts.slot === undefined ? this.freeUserSlot() : this.space.checkSlot(opts.slot);
      endpoint = this.space.make(this.nextGeneration(slot), slot);
    }
    const slot = this.space.checkEndpoint(endpoint);
    for (const other of this.kernels) {
      const e = other.procs(this.dcid).find((r) => r.slot === slot);
      if (e?.kind === 'local') throw new DvsError('EDVSSLOTUSED', `slot ${slot} is bound on node ${other.nodeId}`, { details: { slot } });
      if (e !== undefined && other === k) k.unbind(this.dcid, e.endpoint);
    }
    const p = k.bind(this.dcid, { name: opts.name, privileges: opts.privileges, endpoint });
    this.noteGeneration(slot, this.space.generationOf(endpoint));
    for (const other of this.kernels) if (other !== k) other.bindRemote(this.dcid, endpoint, node, p.name);
    this.log(`bind n${node} ${p.name}=${endpoint}`);
    return p;
  }

  private freeUserSlot(): number {
    const { nrTasks, nrSysProcs, nrProcs } = this.space.limits;
    const used = new Set<number>();
    for (const k of this.kernels) for (const r of k.procs(this.dcid)) used.add(r.slot);
    for (let slot = Math.max(0, nrSysProcs - nrTasks); slot < nrProcs; slot++) if (!used.has(slot)) return slot;
    throw new DvsError('EDVSNOSPC', `DC ${this.dcid} has no user slot free on every node`);
  }

  private nextGeneration(slot: number): number {
    let gen = this.lastGen.get(slot) ?? -1;
    for (const k of this.kernels) {
      const e = k.procs(this.dcid).find((r) => r.slot === slot);
      if (e !== undefined && e.generation > gen) gen = e.generation;
    }
    return gen + 1;
  }

  private noteGeneration(slot: number, gen: number): void {
    if (gen > (this.lastGen.get(slot) ?? -1)) this.lastGen.set(slot, gen);
  }

  /** Where `endpoint` is bound locally, if anywhere. */
  whereIs(endpoint: Endpoint): number | undefined {
    for (const k of this.kernels) if (k.procs(this.dcid).some((r) => r.kind === 'local' && r.endpoint === endpoint)) return k.nodeId;
    return undefined;
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

  private kernelClock(node: number): Clock {
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
