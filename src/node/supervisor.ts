/**
 * The daemon's supervisor of OS programs (docs/protocol.md, "Running programs"): it starts a
 * program with the environment that lets it reach this daemon (DVS_SOCKET, DVS_TOKEN_FILE, DVS_RUN...),
 * appends its output to `<dataDir>/runs/<run>.log`, sees and logs its exit, stops it on request
 * (a signal, then SIGKILL after a grace) and stops every program when the daemon stops. Runs are
 * numbered per daemon incarnation; the last MAX_ENDED ended ones are kept for `runs`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { DvsError, type DvsErrorCode } from '../ipc/errors.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import type { RunEndpoint, RunInfo, RunSpec, RunState } from '../transport/run-spec.js';

/** Ended runs kept for `runs` and `get`. */
export const MAX_ENDED = 200;
export const DEFAULT_STOP_GRACE_MS = 3000;

export interface SupervisorOptions {
  readonly nodeId: number;
  /** The daemon's process socket and token file, handed to every program. */
  readonly socketPath: string;
  readonly tokenPath: string;
  /** Program logs go to `<dataDir>/runs/<run>.log`. */
  readonly dataDir: string;
  readonly logger?: Logger;
  /** The endpoints bound by connections that said they belong to `run` (hello field `run`). */
  readonly endpointsOf?: (run: number) => readonly RunEndpoint[];
  /** Told when a run has ended: exited, retired, or failed to start. */
  readonly onEnded?: (info: RunInfo) => void;
}

interface Run {
  readonly run: number;
  readonly spec: RunSpec;
  readonly startedAt: number;
  child: ChildProcess | undefined;
  pid: number | undefined;
  state: RunState;
  exitCode?: number;
  signal?: string;
  endedAt?: number;
  error?: string;
  /** Stopped because the program moved to another node: it ends `retired`, not `exited`. */
  retiring: boolean;
  /** A stop was asked for: its end is expected, logged as info. */
  stopping: boolean;
  /** Resolves once the run has ended (exited, or failed to start). */
  readonly ended: Promise<void>;
  markEnded: () => void;
}

function spawnErrorCode(err: NodeJS.ErrnoException): DvsErrorCode {
  if (err.code === 'ENOENT') return 'EDVSNOENT';
  if (err.code === 'EACCES') return 'EDVSACCES';
  if (err.code === 'ENOTDIR') return 'EDVSNOTDIR';
  return 'EDVSNOEXEC';
}

export class Supervisor {
  private readonly opts: SupervisorOptions;
  private readonly logger: Logger;
  private readonly runsDir: string;
  private nextRun = 1;
  private readonly live = new Map<number, Run>();
  private readonly endedRuns: Run[] = [];
  private closed = false;
  /** Starts not yet settled: stopAll waits for them, so none spawns a program after it. */
  private readonly starting = new Set<Promise<unknown>>();

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
    this.runsDir = path.join(opts.dataDir, 'runs');
  }

  /** Where run `run`'s stdout and stderr go. */
  logFile(run: number): string {
    return path.join(this.runsDir, `${run}.log`);
  }

  /**
   * Starts `spec`'s program (no shell) and resolves once it runs; a program that cannot start ends
   * `failed` and the call fails (EDVSNOENT, EDVSACCES, EDVSNOTDIR, EDVSNOEXEC). `extraEnv` goes last.
   */
  async start(spec: RunSpec, extraEnv: Readonly<Record<string, string>> = {}): Promise<RunInfo> {
    if (this.closed) throw new DvsError('EDVSSHUTDOWN', 'the daemon is stopping: it starts no program');
    const started = this.startRun(spec, extraEnv);
    this.starting.add(started);
    try {
      return await started;
    } finally {
      this.starting.delete(started);
    }
  }

  private async startRun(spec: RunSpec, extraEnv: Readonly<Record<string, string>>): Promise<RunInfo> {
    const id = this.nextRun++;
    let markEnded!: () => void;
    const ended = new Promise<void>((resolve) => (markEnded = resolve));
    const r: Run = { run: id, spec, startedAt: Date.now(), child: undefined, pid: undefined, state: 'running', retiring: false, stopping: false, ended, markEnded };
    await mkdir(this.runsDir, { recursive: true, mode: 0o700 });
    const log = await open(this.logFile(id), 'a', 0o600);
    try {
      return await this.spawnRun(r, log.fd, extraEnv);
    } finally {
      // The child holds its own copy of the descriptor.
      await log.close().catch(() => undefined);
    }
  }

  private environment(r: Run, extraEnv: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
    const { spec } = r;
    const env: NodeJS.ProcessEnv = { ...process.env, ...spec.env };
    // Inherited ones would name another run.
    delete env.DVS_SLOT;
    delete env.DVS_NAME;
    Object.assign(env, {
      DVS_SOCKET: this.opts.socketPath,
      DVS_TOKEN_FILE: this.opts.tokenPath,
      DVS_NODE: String(this.opts.nodeId),
      DVS_DC: String(spec.dcid),
      DVS_RUN: String(r.run),
      ...(spec.slot === undefined ? {} : { DVS_SLOT: String(spec.slot) }),
      ...(spec.name === undefined ? {} : { DVS_NAME: spec.name }),
      ...extraEnv,
    });
    return env;
  }

  private spawnRun(r: Run, logFd: number, extraEnv: Readonly<Record<string, string>>): Promise<RunInfo> {
    const { spec } = r;
    return new Promise<RunInfo>((resolve, reject) => {
      const fail = (err: NodeJS.ErrnoException): void => {
        const e = new DvsError(spawnErrorCode(err), `cannot run ${spec.program}: ${err.message}`, { details: { program: spec.program.slice(0, 200) } });
        r.state = 'failed';
        r.error = e.message;
        r.endedAt = Date.now();
        this.remember(r);
        r.markEnded();
        this.opts.onEnded?.(this.infoOf(r));
        this.logger.warn({ run: r.run, program: spec.program, err: err.message }, 'program failed to start');
        reject(e);
      };
      let child: ChildProcess;
      try {
        child = spawn(spec.program, [...spec.args], { cwd: spec.cwd, env: this.environment(r, extraEnv), stdio: ['ignore', logFd, logFd], shell: false });
      } catch (err) {
        fail(err as NodeJS.ErrnoException);
        return;
      }
      let started = false;
      child.once('spawn', () => {
        started = true;
        r.child = child;
        r.pid = child.pid;
        this.live.set(r.run, r);
        this.logger.info({ run: r.run, pid: r.pid, program: spec.program, dcid: spec.dcid }, 'program started');
        resolve(this.infoOf(r));
      });
      child.on('error', (err: NodeJS.ErrnoException) => {
        if (!started) fail(err);
        else this.logger.warn({ run: r.run, pid: r.pid, err: err.message }, 'program error');
      });
      child.once('exit', (code, signal) => {
        if (!started) return;
        this.onExit(r, code, signal);
      });
    });
  }

  private onExit(r: Run, code: number | null, signal: NodeJS.Signals | null): void {
    r.state = r.retiring ? 'retired' : 'exited';
    if (code !== null) r.exitCode = code;
    if (signal !== null) r.signal = signal;
    r.endedAt = Date.now();
    r.child = undefined;
    this.live.delete(r.run);
    this.remember(r);
    r.markEnded();
    this.opts.onEnded?.(this.infoOf(r));
    const fields = { run: r.run, pid: r.pid, code, signal, program: r.spec.program };
    if (r.retiring) this.logger.info(fields, 'program retired: it moved to another node');
    else if (code === 0 || r.stopping) this.logger.info(fields, 'program exited');
    else this.logger.warn(fields, 'program exited');
  }

  private remember(r: Run): void {
    this.endedRuns.push(r);
    if (this.endedRuns.length > MAX_ENDED) this.endedRuns.splice(0, this.endedRuns.length - MAX_ENDED);
  }

  private find(run: number): Run | undefined {
    return this.live.get(run) ?? this.endedRuns.find((r) => r.run === run);
  }

  private infoOf(r: Run): RunInfo {
    const { spec } = r;
    const endpoints = r.state === 'running' ? (this.opts.endpointsOf?.(r.run) ?? []) : [];
    return {
      run: r.run,
      node: this.opts.nodeId,
      dcid: spec.dcid,
      ...(r.pid === undefined ? {} : { pid: r.pid }),
      program: spec.program,
      args: spec.args,
      ...(spec.name === undefined ? {} : { name: spec.name }),
      ...(spec.slot === undefined ? {} : { slot: spec.slot }),
      state: r.state,
      ...(r.exitCode === undefined ? {} : { exitCode: r.exitCode }),
      ...(r.signal === undefined ? {} : { signal: r.signal }),
      startedAt: r.startedAt,
      ...(r.endedAt === undefined ? {} : { endedAt: r.endedAt }),
      ...(r.error === undefined ? {} : { error: r.error }),
      endpoints: endpoints.map((e) => ({ dcid: e.dcid, endpoint: e.endpoint, name: e.name })),
    };
  }

  get(run: number): RunInfo | undefined {
    const r = this.find(run);
    return r === undefined ? undefined : this.infoOf(r);
  }

  /** The RunSpec `run` was started with (to start it again elsewhere). */
  specOf(run: number): RunSpec | undefined {
    return this.find(run)?.spec;
  }

  /** Every live run and the kept ended ones, by run number. */
  list(): RunInfo[] {
    return [...this.endedRuns, ...this.live.values()].sort((a, b) => a.run - b.run).map((r) => this.infoOf(r));
  }

  /** The live run whose program has process id `pid`. */
  runOfPid(pid: number): number | undefined {
    for (const r of this.live.values()) if (r.pid === pid) return r.run;
    return undefined;
  }

  /** The live run one of whose connections bound `endpoint` in `dcid`. */
  runOfEndpoint(dcid: number, endpoint: number): number | undefined {
    const of = this.opts.endpointsOf;
    if (of === undefined) return undefined;
    for (const r of this.live.values()) if (of(r.run).some((e) => e.dcid === dcid && e.endpoint === endpoint)) return r.run;
    return undefined;
  }

  /**
   * Sends `signal`, then SIGKILL if the program still runs after `graceMs`; resolves with the run
   * once it has ended. An ended run is answered as it is; an unknown one is EDVSSRCH.
   */
  async stop(run: number, signal: NodeJS.Signals = 'SIGTERM', graceMs = DEFAULT_STOP_GRACE_MS): Promise<RunInfo> {
    const r = this.find(run);
    if (r === undefined) throw new DvsError('EDVSSRCH', `no run ${run} on node ${this.opts.nodeId}`, { details: { run } });
    const child = r.child;
    if (child !== undefined) {
      r.stopping = true;
      this.logger.info({ run, pid: r.pid, signal }, 'stopping program');
      child.kill(signal);
      const timer = signal === 'SIGKILL' ? undefined : setTimeout(() => r.child?.kill('SIGKILL'), graceMs);
      try {
        await r.ended;
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    }
    return this.infoOf(r);
  }

  /** Stops `run` because its program moved to another node: it ends `retired`. */
  retire(run: number, graceMs = DEFAULT_STOP_GRACE_MS): Promise<RunInfo> {
    const r = this.find(run);
    if (r !== undefined && r.state === 'running') r.retiring = true;
    return this.stop(run, 'SIGTERM', graceMs);
  }

  /** For daemon shutdown: starts nothing more and stops every program. */
  async stopAll(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.starting]);
    await Promise.all([...this.live.keys()].map((run) => this.stop(run, 'SIGTERM', graceMs).catch(() => undefined)));
  }
}
