/**
 * Typed calls to PM over any M3-IPC handle (docs/vos/pm.md). `wait` makes the waitId and, when its
 * call fails because PM went away (it moved, restarted or is being restarted), calls again with the
 * same waitId, a bounded number of times with backoff: PM answers a retried wait whose process it
 * already reported with the same exit. The PM endpoint may be given as a function, told when a call
 * is a retry (a restarted PM has a new generation of its slot).
 */
import { randomBytes } from 'node:crypto';
import type { AbortLike, M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import type { DvsErrorCode } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { asInt, isPlainMap } from '../../transport/proc-protocol.js';
import { isCallFailure, malformed, request } from '../systask/systask-client.js';
import { readExit, type ExitInfo, type KillSignal, type ProcUsage } from '../systask/systask-messages.js';
import { PM_INFO, PM_KILL, PM_PS, PM_SPAWN, PM_WAIT } from './pm-messages.js';
import type { PmState } from './process-table.js';

/** Errors of a wait call (not PM's answer) after which `wait` calls again with the same waitId. */
export const PM_WAIT_RETRIED: readonly DvsErrorCode[] = ['EDVSDEADSRCDST', 'EDVSDSTDIED', 'EDVSENDPOINT', 'EDVSNOTBIND', 'EDVSSHUTDOWN', 'EDVSNOTCONN'];

export interface PmClientOptions {
  /** Bound of each call but `wait`, in ms. Default 10 s. */
  readonly timeoutMs?: number;
  /** How much longer than its wait a `wait` call waits for PM's answer. Default 2 s. */
  readonly graceMs?: number;
  /** Retries of a wait after PM went away (default 5), the first after `backoffMs` (default 100), doubling up to 2 s. */
  readonly retries?: number;
  readonly backoffMs?: number;
  readonly signal?: AbortLike;
}

export interface PmSpawnOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly node?: number;
  /** The caller's own VOS pid (its DVS_VOS_PID); default 1. */
  readonly parent?: number;
}

export interface PmWaitOptions {
  readonly pid?: number;
  readonly parent?: number;
  /** 0 .. 86400000, or -1: no deadline. */
  readonly timeoutMs: number;
  /** Default: a fresh random id. */
  readonly waitId?: string;
}

export interface PmWaitResult {
  readonly pid: number;
  readonly node: number;
  readonly exit: ExitInfo;
}

export interface PmPsRow {
  readonly pid: number;
  readonly parent: number;
  readonly node: number;
  readonly program: string;
  readonly args: string[];
  readonly state: PmState;
  readonly startedAt: number;
  readonly exit?: ExitInfo;
  readonly usage: ProcUsage;
  readonly hostPid: number;
}

export interface PmInfoReply {
  readonly nodes: { node: number; reachable: boolean; running: number; incarnation?: string }[];
  readonly processes: number;
  readonly waiters: number;
  readonly nextPid: number;
}

const int = (v: unknown, what: string): number => asInt(v) ?? malformed('PM', `${what} is not an integer`);

export function newWaitId(): string {
  return randomBytes(12).toString('hex');
}

export class PmClient {
  private readonly timeoutMs: number;
  private readonly graceMs: number;

  constructor(
    private readonly ipc: M3Ipc,
    /** The PM endpoint of the caller's DC, or how to find it. */
    /** The PM endpoint, or how to find it: `retry` is true when a wait is being retried after PM went away. */
    private readonly pm: Endpoint | ((retry: boolean) => Endpoint | Promise<Endpoint>),
    private readonly opts: PmClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.graceMs = opts.graceMs ?? 2000;
  }

  async spawn(program: string, args: readonly string[] = [], o: PmSpawnOptions = {}): Promise<{ pid: number; node: number }> {
    const payload: Record<string, Payload> = { program, args: [...args] };
    if (o.env !== undefined) payload.env = { ...o.env };
    if (o.cwd !== undefined) payload.cwd = o.cwd;
    if (o.node !== undefined) payload.node = o.node;
    if (o.parent !== undefined) payload.parent = o.parent;
    const r = await this.call(PM_SPAWN, payload, this.timeoutMs);
    return { pid: int(r.pid, 'pid'), node: int(r.node, 'node') };
  }

  /** How a process (or any child of `parent`) ended; EDVSTIMEDOUT, EDVSNOENT, EDVSCHILD as PM answers. */
  async wait(o: PmWaitOptions): Promise<PmWaitResult> {
    const waitId = o.waitId ?? newWaitId();
    const payload: Record<string, Payload> = { waitId, timeoutMs: o.timeoutMs };
    if (o.pid !== undefined) payload.pid = o.pid;
    if (o.parent !== undefined) payload.parent = o.parent;
    const callTimeout = o.timeoutMs < 0 || this.timeoutMs < 0 ? -1 : o.timeoutMs + this.graceMs;
    const retries = this.opts.retries ?? 5;
    let backoff = this.opts.backoffMs ?? 100;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.call(PM_WAIT, payload, callTimeout, attempt > 0);
        return { pid: int(r.pid, 'pid'), node: int(r.node, 'node'), exit: readExit(r.exit) };
      } catch (err) {
        if (attempt >= retries || !isCallFailure(err) || !PM_WAIT_RETRIED.includes(err.code) || this.opts.signal?.aborted === true) throw err;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(2000, backoff * 2);
      }
    }
  }

  async kill(pid: number, signal?: KillSignal): Promise<void> {
    await this.call(PM_KILL, signal === undefined ? { pid } : { pid, signal }, this.timeoutMs);
  }

  /** Every process PM knows (of one node, if given), following the pages. */
  async ps(node?: number): Promise<PmPsRow[]> {
    const out: PmPsRow[] = [];
    let after: number | undefined;
    for (let i = 0; i < 256; i++) {
      const payload: Record<string, Payload> = {};
      if (node !== undefined) payload.node = node;
      if (after !== undefined) payload.after = after;
      const r = await this.call(PM_PS, payload, this.timeoutMs);
      if (!Array.isArray(r.processes)) malformed('PM', 'processes is not an array');
      for (const v of r.processes as unknown[]) out.push(readRow(v));
      after = asInt(r.next);
      if (after === undefined) break;
    }
    return out;
  }

  async info(): Promise<PmInfoReply> {
    const r = await this.call(PM_INFO, {}, this.timeoutMs);
    if (!Array.isArray(r.nodes)) malformed('PM', 'nodes is not an array');
    const nodes = (r.nodes as unknown[]).map((n) => {
      if (!isPlainMap(n)) malformed('PM', 'a node is not a map');
      const base = { node: int(n.node, 'node'), reachable: n.reachable === true, running: int(n.running, 'running') };
      return typeof n.incarnation === 'string' ? { ...base, incarnation: n.incarnation } : base;
    });
    return { nodes, processes: int(r.processes, 'processes'), waiters: int(r.waiters, 'waiters'), nextPid: int(r.nextPid, 'nextPid') };
  }

  private async call(type: number, payload: Payload, timeoutMs: number, retry = false): Promise<Record<string, unknown>> {
    const dst = typeof this.pm === 'function' ? await this.pm(retry) : this.pm;
    return request(this.ipc, dst, 'PM', type, payload, this.opts.signal === undefined ? { timeoutMs } : { timeoutMs, signal: this.opts.signal });
  }
}

function readRow(v: unknown): PmPsRow {
  if (!isPlainMap(v)) malformed('PM', 'a process row is not a map');
  const state = v.state === 'running' || v.state === 'exited' || v.state === 'lost' ? v.state : malformed('PM', 'a state is not running|exited|lost');
  if (typeof v.program !== 'string' || !Array.isArray(v.args)) malformed('PM', 'program/args');
  const usage = isPlainMap(v.usage) ? { cpuMs: asInt(v.usage.cpuMs) ?? 0, rssKB: asInt(v.usage.rssKB) ?? 0 } : { cpuMs: 0, rssKB: 0 };
  const row: PmPsRow = { pid: int(v.pid, 'pid'), parent: int(v.parent, 'parent'), node: int(v.node, 'node'), program: v.program, args: (v.args as unknown[]).map(String), state, startedAt: typeof v.startedAt === 'number' ? v.startedAt : 0, usage, hostPid: asInt(v.hostPid) ?? 0 };
  return v.exit === undefined || v.exit === null ? row : { ...row, exit: readExit(v.exit) };
}
