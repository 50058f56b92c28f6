/**
 * SYSTASK: one per node of a DC, bound at the DC's task slot of its node (`space.systask(node)`, the
 * host binds it). It starts and stops the DC's processes on its node for PM, inside the DC's
 * container (src/vos/container/), keeps them after they exit until PM reaps them, and tells PM
 * (M3-IPC notify) when one exits. docs/vos/systask.md is its protocol. It is not movable: its
 * processes are OS processes of this node.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, mkdirSync, openSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve as resolvePath } from 'node:path';
import type { StdioOptions } from 'node:child_process';
import type { M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import type { Message } from '../../ipc/message.js';
import { isNotification } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import { silentLogger, type Logger } from '../../runtime/logger.js';
import type { Service, ServiceContext } from '../../services/service.js';
import { replyQuietly } from '../server-replies.js';
import { encodeValue } from '../../transport/codec.js';
import { asInt, isPlainMap } from '../../transport/proc-protocol.js';
import type { CgroupLimits } from '../container/cgroups.js';
import type { DcExit } from '../container/container.js';
import { readProcUsage } from './proc-usage.js';
import { SysProcessTable, type SysProcess } from './process-table.js';
import { containerSpawner, type ContainerUsage, type Spawner } from './spawner.js';
import { checkEnv, errorReply, exitPayload, okReply, parseSysRequest, SYS_PS_PAGE_BYTES, type ExitInfo, type KillRequest, type PsRequest, type ReapRequest, type SpawnRequest, type SysRequest } from './systask-messages.js';

/** The service args SYSTASK is created from (docs/vos/systask.md §5). */
export interface SystaskArgs {
  readonly dcid: number;
  readonly node: number;
  /** Added to every child's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Each child's stdout and stderr go to `<logDir>/<pid>.log` (appended); absent: discarded. */
  readonly logDir?: string;
  readonly limits?: CgroupLimits;
  readonly isolation?: 'auto' | 'plain';
  /** Cgroup name prefix (default `dvs-`). */
  readonly prefix?: string;
}

export interface SystaskOptions extends SystaskArgs {
  /** Default: the DC's real container on this node. */
  readonly spawner?: Spawner;
  /** Clock of the tombstones' age, ms (default performance.now). */
  readonly now?: () => number;
  /** Wall clock of startedAt/endedAt, ms (default Date.now). */
  readonly wallNow?: () => number;
  readonly logger?: Logger;
  /** The cwd of a spawn that names none (default `/`). */
  readonly defaultCwd?: string;
}

export interface SystaskInfo {
  readonly node: number;
  readonly incarnation: string;
  readonly pm: Endpoint | undefined;
  readonly processes: number;
  readonly running: number;
  readonly requests: number;
  /** The container's kind once started ('container', 'namespaces', 'cgroups', 'plain'). */
  readonly mode: string | undefined;
}

type Reply = { readonly type: number; readonly payload: Payload };

export class SystaskServer implements Service {
  readonly node: number;
  readonly dcid: number;
  /** Random per start: PM sees a restarted SYSTASK by a new incarnation. */
  readonly incarnation = randomBytes(8).toString('hex');
  private readonly table: SysProcessTable;
  private readonly spawner: Spawner;
  private readonly wallNow: () => number;
  private readonly logger: Logger;
  private readonly env: Record<string, string>;
  private pm: Endpoint | undefined;
  private ipc: M3Ipc | undefined;
  private started: Promise<string> | undefined;
  private mode: string | undefined;
  private requests = 0;
  private stopped = false;

  constructor(private readonly opts: SystaskOptions) {
    if (!Number.isInteger(opts.dcid) || opts.dcid < 0) throw new DvsError('EDVSINVAL', `dcid: must be a non-negative integer, got ${String(opts.dcid)}`, { details: { field: 'dcid' } });
    if (!Number.isInteger(opts.node) || opts.node < 0) throw new DvsError('EDVSINVAL', `node: must be a non-negative integer, got ${String(opts.node)}`, { details: { field: 'node' } });
    this.node = opts.node;
    this.dcid = opts.dcid;
    this.env = checkEnv(opts.env ?? {});
    this.table = new SysProcessTable(opts.now ?? (() => performance.now()));
    this.wallNow = opts.wallNow ?? (() => Date.now());
    this.logger = opts.logger ?? silentLogger;
    this.spawner =
      opts.spawner ??
      containerSpawner({
        dcid: opts.dcid,
        node: opts.node,
        ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
        ...(opts.isolation !== undefined ? { isolation: opts.isolation } : {}),
        ...(opts.prefix !== undefined ? { prefix: opts.prefix } : {}),
        logger: this.logger,
      });
  }

  info(): SystaskInfo {
    return { node: this.node, incarnation: this.incarnation, pm: this.pm, processes: this.table.size, running: this.table.running().length, requests: this.requests, mode: this.mode };
  }

  async run(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    this.ipc = ipc;
    try {
      for (;;) {
        if (ctx.signal.aborted || this.stopped) return;
        let m: Message;
        try {
          // Not with ctx.signal (see DS): the host stops SYSTASK by unbinding its endpoint.
          m = await ipc.receiveRequest();
        } catch (err) {
          if (isDvsError(err, 'EDVSWOKENUP') || isDvsError(err, 'EDVSTIMEDOUT')) continue;
          if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) return;
          throw err;
        }
        this.requests++;
        await this.serve(ipc, m);
      }
    } finally {
      await this.stop();
    }
  }

  /** Stops the container: every process of the DC on this node is killed. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.started === undefined) return;
    await this.started.catch(() => undefined);
    await this.spawner.stop().catch((err: unknown) => this.logger.error({ dcid: this.dcid, node: this.node, err: String(err) }, 'SYSTASK: the container did not stop cleanly'));
  }

  movable(): string {
    return `SYSTASK belongs to node ${this.node}: its processes are OS processes there`;
  }

  // ---------------------------------------------------------------- requests

  private async serve(ipc: M3Ipc, m: Message): Promise<void> {
    if (isNotification(m)) return;
    let out: Reply;
    try {
      out = await this.handle(m.source, parseSysRequest(m.type, m.payload));
    } catch (err) {
      out = errorReply(err);
    }
    await replyQuietly(ipc, m.source, out);
  }

  private async handle(source: Endpoint, req: SysRequest): Promise<Reply> {
    switch (req.op) {
      case 'hello':
        this.pm = source;
        return okReply({ node: this.node, incarnation: this.incarnation });
      case 'spawn':
        return this.spawn(req);
      case 'kill':
        return this.kill(req);
      case 'ps':
        return this.ps(req);
      case 'reap':
        return this.reap(req);
    }
  }

  private async spawn(req: SpawnRequest): Promise<Reply> {
    if (this.stopped) throw new DvsError('EDVSDCNOTRUN', `SYSTASK of node ${this.node} is stopping`);
    this.table.checkFree(req.pid);
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.env, ...req.env, DVS_VOS_PID: String(req.pid), DVS_NODE: String(this.node), DVS_DC: String(this.dcid) };
    const cwd = checkDir(req.cwd === undefined ? (this.opts.defaultCwd ?? '/') : resolvePath(this.opts.defaultCwd ?? '/', req.cwd));
    const program = resolveProgram(req.program, cwd, env.PATH ?? '/usr/local/bin:/usr/bin:/bin');
    await this.startContainer();
    let log: string | undefined;
    let fd: number | undefined;
    let stdio: StdioOptions = 'ignore';
    if (this.opts.logDir !== undefined) {
      try {
        mkdirSync(this.opts.logDir, { recursive: true });
        log = join(this.opts.logDir, `${req.pid}.log`);
        fd = openSync(log, 'a');
      } catch (err) {
        throw new DvsError('EDVSIO', `cannot open the log ${log ?? this.opts.logDir}: ${(err as Error).message}`, { details: { field: 'logDir' } });
      }
      stdio = ['ignore', fd, fd];
    }
    let child;
    try {
      child = this.spawner.spawn(program, req.args, { env, cwd, stdio });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    if (child.pid === undefined) {
      const e = await child.exit;
      throw new DvsError('EDVSNOEXEC', `${req.program}: ${e.reason}`, { details: { field: 'program' } });
    }
    const p: SysProcess = { pid: req.pid, parent: req.parent, program: req.program, args: [...req.args], startedAt: this.wallNow(), child, hostPid: child.pid, state: 'running', exit: undefined, usage: { cpuMs: 0, rssKB: 0 }, log };
    this.table.add(p);
    void child.exit.then((e) => this.exited(p, e));
    const inner = await child.program(2000);
    if (inner !== undefined) p.hostPid = inner.hostPid;
    this.logger.debug({ dcid: this.dcid, node: this.node, pid: p.pid, hostPid: p.hostPid, program: p.program }, 'SYSTASK: spawned');
    return okReply(log === undefined ? { pid: p.pid, hostPid: p.hostPid } : { pid: p.pid, hostPid: p.hostPid, log });
  }

  private kill(req: KillRequest): Reply {
    const p = this.table.get(req.pid);
    if (p === undefined || p.state !== 'running' || p.child === undefined) throw new DvsError('EDVSNOENT', `no running process ${req.pid} on node ${this.node}`, { details: { pid: req.pid } });
    if (!p.child.kill(req.signal)) throw new DvsError('EDVSNOENT', `process ${req.pid} on node ${this.node} is gone`, { details: { pid: req.pid } });
    return okReply({ pid: req.pid });
  }

  private async ps(req: PsRequest): Promise<Reply> {
    for (const p of this.table.running()) {
      const u = await readProcUsage(p.hostPid);
      if (u !== undefined) p.usage = u;
    }
    const rows: { pid: number; row: Payload; reaped: boolean }[] = this.table.processes().filter((p) => p.pid > req.after).map((p) => ({ pid: p.pid, row: procRow(p), reaped: false }));
    if (req.reaped) {
      for (const t of this.table.tombstones()) if (t.pid > req.after) rows.push({ pid: t.pid, row: { pid: t.pid, waitId: t.waitId, exit: exitPayload(t.exit) }, reaped: true });
      rows.sort((a, b) => a.pid - b.pid);
    }
    const processes: Payload[] = [];
    const reaped: Payload[] = [];
    let bytes = 0;
    let next: number | undefined;
    for (const r of rows) {
      const size = encodeValue(r.row).length;
      if (bytes + size > SYS_PS_PAGE_BYTES && processes.length + reaped.length > 0) {
        next = lastPid(processes, reaped);
        break;
      }
      bytes += size;
      (r.reaped ? reaped : processes).push(r.row);
    }
    const fields: Record<string, Payload> = { node: this.node, incarnation: this.incarnation, processes, reaped };
    const container = await this.containerUsage();
    if (container !== undefined) fields.container = container as Record<string, Payload>;
    if (next !== undefined) fields.next = next;
    return okReply(fields);
  }

  private reap(req: ReapRequest): Reply {
    const p = this.table.get(req.pid);
    if (p !== undefined) {
      if (p.state === 'running') throw new DvsError('EDVSBUSY', `process ${req.pid} on node ${this.node} is still running`, { details: { pid: req.pid } });
      const t = this.table.reap(p, req.waitId);
      return okReply({ pid: t.pid, waitId: t.waitId, exit: exitPayload(t.exit) });
    }
    const t = this.table.tombstone(req.pid);
    if (t !== undefined && t.waitId === req.waitId) return okReply({ pid: t.pid, waitId: t.waitId, exit: exitPayload(t.exit) });
    throw new DvsError('EDVSNOENT', t === undefined ? `no process ${req.pid} on node ${this.node}` : `process ${req.pid} was reaped by another wait`, { details: { pid: req.pid } });
  }

  // ---------------------------------------------------------------- internals

  private startContainer(): Promise<string> {
    this.started ??= this.spawner.start().then((kind) => (this.mode = kind));
    return this.started.catch((err: unknown) => {
      this.started = undefined;
      throw new DvsError('EDVSDCNOTRUN', `DC ${this.dcid} container on node ${this.node} could not start: ${(err as Error).message}`);
    });
  }

  private async containerUsage(): Promise<ContainerUsage | undefined> {
    if (this.mode === undefined || this.stopped) return undefined;
    try {
      return await this.spawner.usage();
    } catch {
      return undefined;
    }
  }

  private exited(p: SysProcess, e: DcExit): void {
    const exit: ExitInfo = {
      ...(e.code !== null ? { code: e.code } : {}),
      ...(e.signal !== null ? { signal: e.signal } : {}),
      reason: e.reason,
      ...(e.oomKilled ? { oomKilled: true } : {}),
      endedAt: this.wallNow(),
    };
    p.state = 'exited';
    p.exit = exit;
    this.logger.debug({ dcid: this.dcid, node: this.node, pid: p.pid, exit }, 'SYSTASK: exited');
    const pm = this.pm;
    // notify never blocks, and is allowed while SYSTASK waits in its receiveRequest.
    if (pm !== undefined && this.ipc !== undefined && !this.stopped) void this.ipc.notify(pm).catch(() => undefined);
  }
}

function lastPid(processes: Payload[], reaped: Payload[]): number {
  const pids = [...processes, ...reaped].map((r) => (isPlainMap(r) ? (asInt(r.pid) ?? 0) : 0));
  return Math.max(...pids);
}

function procRow(p: SysProcess): Payload {
  const row: Record<string, Payload> = { pid: p.pid, parent: p.parent, hostPid: p.hostPid, program: p.program, args: [...p.args], state: p.state, startedAt: p.startedAt, usage: { cpuMs: p.usage.cpuMs, rssKB: p.usage.rssKB } };
  if (p.exit !== undefined) row.exit = exitPayload(p.exit);
  if (p.log !== undefined) row.log = p.log;
  return row;
}

function checkDir(dir: string): string {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new DvsError('EDVSNOENT', `cwd ${JSON.stringify(dir)} does not exist`, { details: { field: 'cwd' } });
  }
  if (!st.isDirectory()) throw new DvsError('EDVSNOTDIR', `cwd ${JSON.stringify(dir)} is not a directory`, { details: { field: 'cwd' } });
  return dir;
}

/**
 * The file a program name starts: a path (with a `/`) relative to cwd, or the first executable
 * match in PATH. EDVSNOENT when there is none, EDVSPERM when there is one but it may not be
 * executed (or is a directory): checked before spawning, because inside the container the failed
 * exec would only show as exit code 127 or 126.
 */
export function resolveProgram(program: string, cwd: string, path: string): string {
  const candidates = program.includes('/') ? [isAbsolute(program) ? program : resolvePath(cwd, program)] : path.split(delimiter).filter(Boolean).map((d) => join(isAbsolute(d) ? d : resolvePath(cwd, d), program));
  let denied: string | undefined;
  for (const file of candidates) {
    let st;
    try {
      st = statSync(file);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      denied ??= file;
      continue;
    }
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      denied ??= file;
    }
  }
  if (denied !== undefined) throw new DvsError('EDVSPERM', `${program}: permission denied (${denied} is not an executable file)`, { details: { field: 'program', program } });
  throw new DvsError('EDVSNOENT', `${program}: no such program${program.includes('/') ? '' : ' in PATH'}`, { details: { field: 'program', program } });
}

function argsOf(args: Payload): SystaskArgs {
  if (!isPlainMap(args)) throw new DvsError('EDVSINVAL', 'SYSTASK args: must be a map {dcid, node, env?, logDir?, limits?, isolation?, prefix?}', { details: { field: 'args' } });
  const a = args as Record<string, unknown>;
  const allowed = ['dcid', 'node', 'env', 'logDir', 'limits', 'isolation', 'prefix'];
  for (const k of Object.keys(a)) if (!allowed.includes(k)) throw new DvsError('EDVSINVAL', `SYSTASK args: unknown field ${k} (fields: ${allowed.join(', ')})`, { details: { field: k } });
  const dcid = asInt(a.dcid);
  const node = asInt(a.node);
  if (dcid === undefined || node === undefined) throw new DvsError('EDVSINVAL', 'SYSTASK args: dcid and node must be integers', { details: { field: dcid === undefined ? 'dcid' : 'node' } });
  const out: { -readonly [K in keyof SystaskArgs]: SystaskArgs[K] } = { dcid, node };
  if (a.env !== undefined && a.env !== null) out.env = checkEnv(a.env, 'env');
  if (a.logDir !== undefined && a.logDir !== null) {
    if (typeof a.logDir !== 'string' || a.logDir.length === 0) throw new DvsError('EDVSINVAL', 'SYSTASK args: logDir must be a path', { details: { field: 'logDir' } });
    out.logDir = a.logDir;
  }
  if (a.limits !== undefined && a.limits !== null) {
    if (!isPlainMap(a.limits)) throw new DvsError('EDVSINVAL', 'SYSTASK args: limits must be a map {cpu?, memoryMB?, pids?}', { details: { field: 'limits' } });
    const l = a.limits as Record<string, unknown>;
    const limits: { cpu?: number; memoryMB?: number; pids?: number } = {};
    for (const k of Object.keys(l)) {
      if (k !== 'cpu' && k !== 'memoryMB' && k !== 'pids') throw new DvsError('EDVSINVAL', `SYSTASK args: unknown limit ${k}`, { details: { field: `limits.${k}` } });
      const v = l[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number') throw new DvsError('EDVSINVAL', `SYSTASK args: limits.${k} must be a number`, { details: { field: `limits.${k}` } });
      limits[k] = v;
    }
    out.limits = limits;
  }
  if (a.isolation !== undefined && a.isolation !== null) {
    if (a.isolation !== 'auto' && a.isolation !== 'plain') throw new DvsError('EDVSINVAL', "SYSTASK args: isolation must be 'auto' or 'plain'", { details: { field: 'isolation' } });
    out.isolation = a.isolation;
  }
  if (a.prefix !== undefined && a.prefix !== null) {
    if (typeof a.prefix !== 'string') throw new DvsError('EDVSINVAL', 'SYSTASK args: prefix must be a string', { details: { field: 'prefix' } });
    out.prefix = a.prefix;
  }
  return out;
}

/** The factory a service host loads SYSTASK by: `createService({dcid, node, env?, logDir?, limits?, isolation?, prefix?})`. */
export function createService(args: Payload): Service {
  return new SystaskServer(argsOf(args));
}
