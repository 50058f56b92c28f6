/**
 * Typed calls to a SYSTASK over any M3-IPC handle: what PM uses (and tests). Each is one sendrec;
 * a failure reply is rethrown as the DvsError SYSTASK sent, a reply that does not parse as EDVSIO.
 * The wire format is docs/vos/systask.md.
 */
import type { AbortLike, M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { asInt, fromWireError, isPlainMap } from '../../transport/proc-protocol.js';
import { readExit, SYS_HELLO, SYS_KILL, SYS_OK, SYS_PS, SYS_REAP, SYS_SPAWN, type ExitInfo, type KillSignal, type SysProcessRow, type SysReapedRow } from './systask-messages.js';

export interface CallOpts {
  readonly timeoutMs?: number;
  readonly signal?: AbortLike;
}

export function malformed(who: string, what: string): never {
  throw new DvsError('EDVSIO', `${who} replied with a malformed answer: ${what}`);
}

/**
 * One request/reply: the reply's fields on success, the server's DvsError thrown otherwise. A
 * failure of the call itself (the kernel's: timeout, peer gone) is thrown as it is, marked with
 * `callFailed` so callers can tell the two apart.
 */
export async function request(ipc: M3Ipc, dst: Endpoint, who: string, type: number, payload: Payload, opts: CallOpts): Promise<Record<string, unknown>> {
  let m;
  try {
    m = await ipc.sendrec(dst, { type, payload }, opts.signal === undefined ? { timeoutMs: opts.timeoutMs ?? -1 } : { timeoutMs: opts.timeoutMs ?? -1, signal: opts.signal });
  } catch (err) {
    if (err instanceof DvsError) callFailures.add(err);
    throw err;
  }
  const r = m.payload;
  if (!isPlainMap(r) || typeof r.ok !== 'boolean') malformed(who, 'not {ok, ...}');
  if (!r.ok) throw fromWireError(r.error);
  if (m.type !== SYS_OK) malformed(who, `ok with reply type ${m.type}`);
  return r;
}

const callFailures = new WeakSet<DvsError>();

/** Whether an error came from the M3-IPC call itself (not from the server's reply). */
export function isCallFailure(err: unknown): err is DvsError {
  return err instanceof DvsError && callFailures.has(err);
}

export interface HelloResult {
  readonly node: number;
  readonly incarnation: string;
}

export interface SpawnResult {
  readonly pid: number;
  readonly hostPid: number;
  readonly log?: string;
}

export interface PsPage {
  readonly node: number;
  readonly incarnation: string;
  readonly processes: SysProcessRow[];
  readonly reaped: SysReapedRow[];
  readonly container?: { readonly memoryBytes?: number; readonly pids?: number; readonly cpuMs?: number };
  readonly next?: number;
}

export interface ReapResult {
  readonly pid: number;
  readonly waitId: string;
  readonly exit: ExitInfo;
}

function int(v: unknown, what: string): number {
  const n = asInt(v);
  if (n === undefined) malformed('SYSTASK', `${what} is not an integer`);
  return n;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') malformed('SYSTASK', `${what} is not a string`);
  return v;
}

function readRow(v: unknown): SysProcessRow {
  if (!isPlainMap(v)) malformed('SYSTASK', 'a process row is not a map');
  const state = v.state === 'running' || v.state === 'exited' ? v.state : malformed('SYSTASK', 'a process state is not running|exited');
  const usage = isPlainMap(v.usage) ? { cpuMs: asInt(v.usage.cpuMs) ?? 0, rssKB: asInt(v.usage.rssKB) ?? 0 } : { cpuMs: 0, rssKB: 0 };
  const args = Array.isArray(v.args) ? v.args.map((a: unknown) => str(a, 'an argument')) : [];
  const startedAt = typeof v.startedAt === 'number' ? v.startedAt : 0;
  const row: SysProcessRow = { pid: int(v.pid, 'pid'), parent: asInt(v.parent) ?? 1, hostPid: asInt(v.hostPid) ?? 0, program: str(v.program, 'program'), args, state, startedAt, usage };
  return v.exit === undefined || v.exit === null ? row : { ...row, exit: readExit(v.exit) };
}

export class SystaskClient {
  constructor(
    private readonly ipc: M3Ipc,
    /** The SYSTASK endpoint of the node. */
    public endpoint: Endpoint,
    private readonly opts: CallOpts = { timeoutMs: 5000 },
  ) {}

  private call(type: number, payload: Payload, timeoutMs?: number): Promise<Record<string, unknown>> {
    const t = timeoutMs ?? this.opts.timeoutMs;
    return request(this.ipc, this.endpoint, 'SYSTASK', type, payload, { ...this.opts, ...(t !== undefined ? { timeoutMs: t } : {}) });
  }

  /** Makes the caller this SYSTASK's PM (the endpoint it notifies of exits). */
  async hello(timeoutMs?: number): Promise<HelloResult> {
    const r = await this.call(SYS_HELLO, {}, timeoutMs);
    return { node: int(r.node, 'node'), incarnation: str(r.incarnation, 'incarnation') };
  }

  async spawn(req: { pid: number; program: string; args?: readonly string[]; env?: Readonly<Record<string, string>>; cwd?: string; parent?: number }, timeoutMs?: number): Promise<SpawnResult> {
    const payload: Record<string, Payload> = { pid: req.pid, program: req.program, args: [...(req.args ?? [])] };
    if (req.env !== undefined) payload.env = { ...req.env };
    if (req.cwd !== undefined) payload.cwd = req.cwd;
    if (req.parent !== undefined) payload.parent = req.parent;
    const r = await this.call(SYS_SPAWN, payload, timeoutMs);
    const out = { pid: int(r.pid, 'pid'), hostPid: int(r.hostPid, 'hostPid') };
    return typeof r.log === 'string' ? { ...out, log: r.log } : out;
  }

  async kill(pid: number, signal: KillSignal = 'SIGTERM', timeoutMs?: number): Promise<void> {
    await this.call(SYS_KILL, { pid, signal }, timeoutMs);
  }

  /** One page of SYS_PS. */
  async psPage(o: { after?: number; reaped?: boolean } = {}, timeoutMs?: number): Promise<PsPage> {
    const payload: Record<string, Payload> = {};
    if (o.after !== undefined) payload.after = o.after;
    if (o.reaped !== undefined) payload.reaped = o.reaped;
    const r = await this.call(SYS_PS, payload, timeoutMs);
    if (!Array.isArray(r.processes) || !Array.isArray(r.reaped)) malformed('SYSTASK', 'processes or reaped is not an array');
    const reaped = (r.reaped as unknown[]).map((t) => {
      if (!isPlainMap(t)) malformed('SYSTASK', 'a reaped row is not a map');
      return { pid: int(t.pid, 'pid'), waitId: str(t.waitId, 'waitId'), exit: readExit(t.exit) };
    });
    const page: PsPage = { node: int(r.node, 'node'), incarnation: str(r.incarnation, 'incarnation'), processes: (r.processes as unknown[]).map(readRow), reaped };
    const container = isPlainMap(r.container) ? { ...(asInt(r.container.memoryBytes) !== undefined ? { memoryBytes: asInt(r.container.memoryBytes)! } : {}), ...(asInt(r.container.pids) !== undefined ? { pids: asInt(r.container.pids)! } : {}), ...(asInt(r.container.cpuMs) !== undefined ? { cpuMs: asInt(r.container.cpuMs)! } : {}) } : undefined;
    const next = asInt(r.next);
    return { ...page, ...(container !== undefined ? { container } : {}), ...(next !== undefined ? { next } : {}) };
  }

  /** Every page of SYS_PS (bounded: at most 64 pages), merged. */
  async ps(o: { reaped?: boolean } = {}, timeoutMs?: number): Promise<PsPage> {
    let page = await this.psPage({ reaped: o.reaped ?? false }, timeoutMs);
    const processes = [...page.processes];
    const reaped = [...page.reaped];
    for (let i = 0; i < 64 && page.next !== undefined; i++) {
      const inc = page.incarnation;
      page = await this.psPage({ after: page.next, reaped: o.reaped ?? false }, timeoutMs);
      if (page.incarnation !== inc) malformed('SYSTASK', 'its incarnation changed between pages');
      processes.push(...page.processes);
      reaped.push(...page.reaped);
    }
    const { next: _next, ...rest } = page;
    return { ...rest, processes, reaped };
  }

  async reap(pid: number, waitId: string, timeoutMs?: number): Promise<ReapResult> {
    const r = await this.call(SYS_REAP, { pid, waitId }, timeoutMs);
    return { pid: int(r.pid, 'pid'), waitId: str(r.waitId, 'waitId'), exit: readExit(r.exit) };
  }
}
