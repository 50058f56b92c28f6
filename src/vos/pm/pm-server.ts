/**
 * PM, the DC's process manager (docs/vos/pm.md): the table of the DC's processes across its nodes,
 * kept by talking to the SYSTASK of each node. It starts processes (on a node asked for, or the
 * least loaded), answers waits for them (deferred replies, reaping at SYSTASK before replying, so
 * an exit is never reported twice), kills and lists them, and watches the SYSTASKs: an exit is
 * notified, every poll asks each SYSTASK what runs there, and a SYSTASK that is gone or restarted
 * makes its processes `lost`. PM holds nothing the SYSTASKs do not also hold (but the waiters): a
 * PM started again rebuilds its table from them. It moves like any service (snapshot/restore).
 *
 * PM loops on `receive(ANY)`, not `receiveRequest`: only `receive` takes the notifications the
 * SYSTASKs send when a child exits.
 */
import type { M3Ipc } from '../../ipc/calls.js';
import { ANY, EndpointSpace, type Endpoint } from '../../ipc/endpoint.js';
import { DvsError, isDvsError, type DvsErrorCode } from '../../ipc/errors.js';
import { resolveDcLimits, type DcLimits } from '../../ipc/limits.js';
import { isNotification, type Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { Service, ServiceContext } from '../../services/service.js';
import { encodeValue } from '../../transport/codec.js';
import { asInt, isPlainMap } from '../../transport/proc-protocol.js';
import { isCallFailure, SystaskClient, type PsPage } from '../systask/systask-client.js';
import { errorReply, exitPayload, okReply, type ExitInfo } from '../systask/systask-messages.js';
import { FIRST_PID, INIT_PID, PM_MAX_WAITERS, PM_PS_PAGE_BYTES, parsePmRequest, type PmKillRequest, type PmPsRequest, type PmRequest, type PmSpawnRequest, type PmWaitRequest } from './pm-messages.js';
import { decodePmState, encodePmState } from './pm-state.js';
import { PmWaiterSet, type PmWaiter } from './pm-waiters.js';
import { PmProcessTable, type PmProcess } from './process-table.js';

/** The service args PM is created from. */
export interface PmArgs {
  readonly dcid: number;
  /** The DC's nodes; each has a SYSTASK at `space.systask(node)`. */
  readonly nodes: readonly number[];
  /** Bound of PM's receive: every pollMs it asks each SYSTASK what runs there (default 1000). */
  readonly pollMs?: number;
  /** The DC's endpoint-space limits (default the kernel's defaults): PM computes the SYSTASK endpoints from them, and their next generations when a SYSTASK was bound again. */
  readonly limits?: Partial<DcLimits>;
}

export interface PmOptions extends PmArgs {
  /** Clock of deadlines and tombstones, ms (default performance.now). */
  readonly now?: () => number;
  /** Wall clock of startedAt, ms (default Date.now). */
  readonly wallNow?: () => number;
  /** Bound of each call to a SYSTASK but spawn (default min(1000, pollMs)). */
  readonly callTimeoutMs?: number;
  /** Bound of a SYS_SPAWN (the first one starts the node's container; default 15000). */
  readonly spawnTimeoutMs?: number;
  /** How long a SYSTASK that answered counts as reachable for placement (default 3 × pollMs). */
  readonly freshMs?: number;
  readonly maxWaiters?: number;
}

export interface PmNodeInfo {
  readonly node: number;
  readonly reachable: boolean;
  readonly running: number;
  readonly incarnation: string | undefined;
  readonly endpoint: Endpoint;
}

export interface PmInfo {
  readonly nodes: PmNodeInfo[];
  readonly processes: number;
  readonly waiters: number;
  readonly nextPid: number;
  readonly requests: number;
}

interface NodeState {
  readonly node: number;
  endpoint: Endpoint;
  incarnation: string | undefined;
  /** It knows this PM (answered our hello at its current incarnation). */
  helloed: boolean;
  /** Gone for good (unbound, node down): reaps are not asked there. */
  gone: boolean;
  lastOk: number | undefined;
}

type Reply = { readonly type: number; readonly payload: Payload };

/** Errors of a call to a SYSTASK that say it is gone (its node down, its endpoint unbound). */
const GONE: readonly DvsErrorCode[] = ['EDVSDSTDIED', 'EDVSDEADSRCDST', 'EDVSNOTCONN', 'EDVSNONODE', 'EDVSNODCNODE', 'EDVSNOPROXY'];
/** How many newer generations of a SYSTASK slot PM tries after EDVSENDPOINT. */
const MAX_GENERATION_HOPS = 64;

export class PmServer implements Service {
  private readonly table: PmProcessTable;
  private readonly waiters: PmWaiterSet;
  private readonly nodes = new Map<number, NodeState>();
  private readonly space: EndpointSpace;
  private readonly now: () => number;
  private readonly wallNow: () => number;
  private readonly pollMs: number;
  private readonly callTimeoutMs: number;
  private readonly spawnTimeoutMs: number;
  private readonly freshMs: number;
  private nextPid = FIRST_PID;
  private ipc: M3Ipc | undefined;
  private requests = 0;

  constructor(opts: PmOptions) {
    if (!Number.isInteger(opts.dcid) || opts.dcid < 0) throw new DvsError('EDVSINVAL', 'PM: dcid must be a non-negative integer', { details: { field: 'dcid' } });
    if (!Array.isArray(opts.nodes) || opts.nodes.length === 0 || !opts.nodes.every((n) => Number.isInteger(n) && n >= 0)) throw new DvsError('EDVSINVAL', 'PM: nodes must be a non-empty array of node ids', { details: { field: 'nodes' } });
    this.space = new EndpointSpace(resolveDcLimits(opts.limits ?? {}));
    this.now = opts.now ?? (() => performance.now());
    this.wallNow = opts.wallNow ?? (() => Date.now());
    this.pollMs = opts.pollMs ?? 1000;
    if (!Number.isInteger(this.pollMs) || this.pollMs < 1) throw new DvsError('EDVSINVAL', 'PM: pollMs must be a positive integer', { details: { field: 'pollMs' } });
    this.callTimeoutMs = opts.callTimeoutMs ?? Math.min(1000, this.pollMs);
    this.spawnTimeoutMs = opts.spawnTimeoutMs ?? 15_000;
    this.freshMs = opts.freshMs ?? 3 * this.pollMs;
    this.table = new PmProcessTable(this.now);
    this.waiters = new PmWaiterSet(opts.maxWaiters ?? PM_MAX_WAITERS);
    for (const node of [...new Set(opts.nodes)].sort((a, b) => a - b)) this.nodes.set(node, { node, endpoint: this.space.systask(node), incarnation: undefined, helloed: false, gone: false, lastOk: undefined });
  }

  info(): PmInfo {
    const now = this.now();
    return {
      nodes: [...this.nodes.values()].map((n) => ({ node: n.node, reachable: this.fresh(n, now), running: this.table.running(n.node), incarnation: n.incarnation, endpoint: n.endpoint })),
      processes: this.table.size,
      waiters: this.waiters.size,
      nextPid: this.nextPid,
      requests: this.requests,
    };
  }

  async run(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    this.ipc = ipc;
    // Start (or after a restore): every SYSTASK learns who PM is, and PM what runs where.
    await this.syncAll(true);
    await this.dispatch();
    let nextPoll = this.now() + this.pollMs;
    for (;;) {
      if (ctx.signal.aborted) return;
      await this.expire();
      if (this.now() >= nextPoll) {
        await this.syncAll(false);
        await this.dispatch();
        nextPoll = this.now() + this.pollMs;
      }
      const deadline = Math.min(nextPoll, this.waiters.nextDeadline() ?? Infinity);
      const timeoutMs = Math.max(1, Math.ceil(deadline - this.now()));
      let m: Message;
      try {
        // Not with ctx.signal: a move drains the endpoint while PM is blocked here (see DS).
        m = await ipc.receive(ANY, { timeoutMs });
      } catch (err) {
        if (isDvsError(err, 'EDVSTIMEDOUT') || isDvsError(err, 'EDVSWOKENUP')) continue;
        if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) return;
        throw err;
      }
      if (isNotification(m)) {
        const ns = [...this.nodes.values()].find((n) => n.endpoint === m.source);
        if (ns !== undefined) {
          await this.sync(ns, false);
          await this.dispatch();
        }
        continue;
      }
      this.requests++;
      await this.serve(m);
    }
  }

  snapshot(): Uint8Array {
    const now = this.now();
    return encodePmState({
      nextPid: this.nextPid,
      nodes: [...this.nodes.values()].map((n) => ({ node: n.node, endpoint: n.endpoint, incarnation: n.incarnation })),
      procs: this.table.all(),
      tombs: this.table.tombstones().map((t) => ({ waitId: t.waitId, pid: t.pid, node: t.node, exit: t.exit, ageMs: Math.max(0, Math.round(now - t.at)) })),
      waiters: this.waiters.all().map((w) => ({ source: w.source, pid: w.pid, parent: w.parent, waitId: w.waitId, remainingMs: Number.isFinite(w.deadline) ? Math.max(0, Math.ceil(w.deadline - now)) : -1 })),
    });
  }

  restore(state: Uint8Array): void {
    const s = decodePmState(state);
    this.table.clear();
    this.waiters.clear();
    const now = this.now();
    this.nextPid = s.nextPid;
    for (const n of s.nodes) {
      const ns = this.nodes.get(n.node);
      if (ns === undefined) continue;
      ns.endpoint = n.endpoint;
      ns.incarnation = n.incarnation;
      ns.helloed = false;
    }
    for (const p of s.procs) this.table.set({ ...p, args: [...p.args] });
    for (const t of s.tombs) this.table.addTombstone({ waitId: t.waitId, pid: t.pid, node: t.node, exit: t.exit }, now - t.ageMs);
    for (const w of s.waiters) this.waiters.add({ source: w.source, pid: w.pid, parent: w.parent, waitId: w.waitId, deadline: w.remainingMs < 0 ? Infinity : now + w.remainingMs });
  }

  movable(): true {
    return true;
  }

  // ---------------------------------------------------------------- requests

  private async serve(m: Message): Promise<void> {
    // A caller blocked in sendrec has one call in flight: a new one means it waits no longer.
    this.waiters.remove(m.source);
    let out: Reply | undefined;
    try {
      out = await this.handle(m.source, parsePmRequest(m.type, m.payload));
    } catch (err) {
      out = errorReply(err);
    }
    if (out !== undefined) await this.answer(m.source, out);
  }

  private async handle(source: Endpoint, req: PmRequest): Promise<Reply | undefined> {
    switch (req.op) {
      case 'spawn':
        return this.spawn(req);
      case 'wait':
        return this.wait(source, req);
      case 'kill':
        return this.kill(req);
      case 'ps':
        return this.ps(req);
      case 'info': {
        const i = this.info();
        return okReply({ nodes: i.nodes.map((n) => ({ node: n.node, reachable: n.reachable, running: n.running, ...(n.incarnation !== undefined ? { incarnation: n.incarnation } : {}) })), processes: i.processes, waiters: i.waiters, nextPid: i.nextPid });
      }
    }
  }

  private async spawn(req: PmSpawnRequest): Promise<Reply> {
    let ns: NodeState | undefined;
    if (req.node !== undefined) {
      ns = this.nodes.get(req.node);
      if (ns === undefined) throw new DvsError('EDVSBADNODEID', `node ${req.node} is not one of the DC's nodes (${[...this.nodes.keys()].join(', ')})`, { details: { field: 'node', node: req.node } });
    } else ns = this.leastLoaded();
    if (req.parent !== INIT_PID) {
      const parent = this.table.get(req.parent);
      if (parent === undefined || parent.state !== 'running') throw new DvsError('EDVSNOENT', `parent ${req.parent} is not a running process of the DC`, { details: { field: 'parent', pid: req.parent } });
    }
    if (!ns.helloed) await this.hello(ns).catch((err: unknown) => this.failed(ns, err));
    const pid = this.nextPid++;
    const spawnReq = { pid, program: req.program, args: req.args, parent: req.parent, ...(req.env !== undefined ? { env: req.env } : {}), ...(req.cwd !== undefined ? { cwd: req.cwd } : {}) };
    let res;
    try {
      res = await this.callSys(ns, (c) => c.spawn(spawnReq, this.spawnTimeoutMs));
    } catch (err) {
      if (isCallFailure(err)) this.failed(ns, err);
      throw err;
    }
    this.table.set({ pid, parent: req.parent, node: ns.node, program: req.program, args: [...req.args], state: 'running', startedAt: this.wallNow(), exit: undefined, usage: { cpuMs: 0, rssKB: 0 }, hostPid: res.hostPid });
    return okReply({ pid, node: ns.node });
  }

  private async wait(source: Endpoint, req: PmWaitRequest): Promise<Reply | undefined> {
    const t = this.table.tombstone(req.waitId);
    // The retry of a wait whose first answer was lost: the same answer.
    if (t !== undefined && (req.pid === undefined || req.pid === t.pid)) return waitReply(t.pid, t.node, t.exit);
    if (req.pid !== undefined) {
      if (this.table.get(req.pid) === undefined) throw noSuch(req.pid);
    } else if (this.table.children(req.parent).length === 0) {
      throw new DvsError('EDVSCHILD', `process ${req.parent} has no children to wait for`, { details: { parent: req.parent } });
    }
    const w = this.waiters.add({ source, pid: req.pid, parent: req.parent, waitId: req.waitId, deadline: req.timeoutMs < 0 ? Infinity : this.now() + req.timeoutMs });
    await this.tryWaiter(w);
    if (w.live && req.timeoutMs === 0) {
      this.waiters.remove(source);
      throw timedOut(req);
    }
    return undefined;
  }

  private async kill(req: PmKillRequest): Promise<Reply> {
    const p = this.table.get(req.pid);
    if (p === undefined || p.state !== 'running') throw new DvsError('EDVSNOENT', `no running process ${req.pid}`, { details: { pid: req.pid } });
    const ns = this.nodes.get(p.node)!;
    try {
      await this.callSys(ns, (c) => c.kill(p.pid, req.signal, this.callTimeoutMs));
    } catch (err) {
      if (isCallFailure(err)) this.failed(ns, err);
      throw err;
    }
    return okReply({});
  }

  private async ps(req: PmPsRequest): Promise<Reply> {
    if (req.node !== undefined && !this.nodes.has(req.node)) throw new DvsError('EDVSBADNODEID', `node ${req.node} is not one of the DC's nodes`, { details: { field: 'node', node: req.node } });
    // Fresh usage and states first (each SYSTASK bounded by callTimeoutMs), only on a first page.
    if (req.after === 0) {
      for (const ns of this.nodes.values()) if (req.node === undefined || ns.node === req.node) await this.sync(ns, false);
      await this.dispatch();
    }
    const rows: Payload[] = [];
    let bytes = 0;
    let next: number | undefined;
    for (const p of this.table.all()) {
      if (p.pid <= req.after || (req.node !== undefined && p.node !== req.node)) continue;
      const row = psRow(p);
      const size = encodeValue(row).length;
      if (bytes + size > PM_PS_PAGE_BYTES && rows.length > 0) {
        next = asInt((rows[rows.length - 1] as { pid: number }).pid);
        break;
      }
      bytes += size;
      rows.push(row);
    }
    return okReply(next === undefined ? { processes: rows } : { processes: rows, next });
  }

  // ---------------------------------------------------------------- waiters

  /** Answers every waiter that can be answered now, in arrival order. */
  private async dispatch(): Promise<void> {
    for (const w of this.waiters.all()) if (w.live) await this.tryWaiter(w);
  }

  private async tryWaiter(w: PmWaiter): Promise<void> {
    if (w.pid !== undefined) {
      const p = this.table.get(w.pid);
      if (p === undefined) {
        this.waiters.remove(w.source);
        await this.answer(w.source, errorReply(new DvsError('EDVSNOENT', `process ${w.pid} was reported to another wait`, { details: { pid: w.pid } })));
        return;
      }
      if (p.state !== 'running') await this.report(p, w);
      return;
    }
    const children = this.table.children(w.parent);
    if (children.length === 0) {
      this.waiters.remove(w.source);
      await this.answer(w.source, errorReply(new DvsError('EDVSCHILD', `process ${w.parent} has no children left to wait for`, { details: { parent: w.parent } })));
      return;
    }
    const ended = children.filter((c) => c.state !== 'running').sort((a, b) => (a.exit?.endedAt ?? 0) - (b.exit?.endedAt ?? 0) || a.pid - b.pid)[0];
    if (ended !== undefined) await this.report(ended, w);
  }

  /**
   * Reports an ended process to a waiter: SYS_REAP at its SYSTASK first, then the reply, so a PM
   * that dies in between finds it reaped (a tombstone with this waitId) and never reports it twice.
   * A SYSTASK that does not answer now leaves the waiter waiting (tried again at the next poll).
   */
  private async report(p: PmProcess, w: PmWaiter): Promise<void> {
    const ns = this.nodes.get(p.node);
    if (p.state === 'exited' && ns !== undefined && !ns.gone) {
      try {
        await this.callSys(ns, (c) => c.reap(p.pid, w.waitId, this.callTimeoutMs));
      } catch (err) {
        if (isCallFailure(err)) {
          this.failed(ns, err);
          if (!ns.gone) return;
        } else if (!isDvsError(err, 'EDVSNOENT')) return;
      }
    }
    if (!w.live || this.table.get(p.pid) !== p) return;
    const exit = p.exit ?? {};
    this.table.delete(p.pid);
    this.table.addTombstone({ waitId: w.waitId, pid: p.pid, node: p.node, exit });
    this.waiters.remove(w.source);
    await this.answer(w.source, waitReply(p.pid, p.node, exit));
  }

  private async expire(): Promise<void> {
    for (const w of this.waiters.expired(this.now())) await this.answer(w.source, errorReply(timedOut(w)));
  }

  // ---------------------------------------------------------------- SYSTASKs

  private fresh(ns: NodeState, now: number): boolean {
    return !ns.gone && ns.lastOk !== undefined && now - ns.lastOk <= this.freshMs;
  }

  /** Fewest running processes among the nodes whose SYSTASK answered lately; ties to the lowest node id. */
  private leastLoaded(): NodeState {
    const now = this.now();
    let best: NodeState | undefined;
    let bestLoad = Infinity;
    for (const ns of this.nodes.values()) {
      if (!this.fresh(ns, now)) continue;
      const load = this.table.running(ns.node);
      if (load < bestLoad) {
        best = ns;
        bestLoad = load;
      }
    }
    if (best === undefined) throw new DvsError('EDVSAGAIN', 'no SYSTASK of the DC answered lately: nowhere to start a process', { details: { nodes: [...this.nodes.keys()].join(',') } });
    return best;
  }

  private client(ns: NodeState): SystaskClient {
    return new SystaskClient(this.ipc!, ns.endpoint, { timeoutMs: this.callTimeoutMs });
  }

  /**
   * A call to a node's SYSTASK. EDVSENDPOINT says its slot holds a newer generation now (it was
   * bound again): PM follows to the next generations, says hello there (a new incarnation makes
   * the processes it had there lost) and calls again.
   */
  private async callSys<T>(ns: NodeState, fn: (c: SystaskClient) => Promise<T>, helloOnHop = true): Promise<T> {
    for (let hop = 0; ; hop++) {
      try {
        return await fn(this.client(ns));
      } catch (err) {
        if (!(isCallFailure(err) && err.code === 'EDVSENDPOINT') || hop >= MAX_GENERATION_HOPS) throw err;
        const slot = this.space.slotOf(ns.endpoint);
        ns.endpoint = this.space.make(this.space.generationOf(ns.endpoint) + 1, slot);
        ns.helloed = false;
        if (helloOnHop) await this.hello(ns);
      }
    }
  }

  /** SYS_HELLO: the SYSTASK notifies this PM from now on; a new incarnation means the old one's processes are lost. */
  private async hello(ns: NodeState): Promise<void> {
    const r = await this.callSys(ns, (c) => c.hello(this.callTimeoutMs), false);
    if (ns.incarnation !== undefined && r.incarnation !== ns.incarnation) this.loseNode(ns, 'SYSTASK restarted');
    ns.incarnation = r.incarnation;
    ns.helloed = true;
    ns.gone = false;
    ns.lastOk = this.now();
  }

  private async syncAll(rebuild: boolean): Promise<void> {
    for (const ns of this.nodes.values()) await this.sync(ns, rebuild);
    if (rebuild) this.table.fixParents();
  }

  /** Asks a SYSTASK what runs on its node and brings the table in line; `rebuild` also reads its tombstones. */
  private async sync(ns: NodeState, rebuild: boolean): Promise<void> {
    try {
      if (!ns.helloed || rebuild) await this.hello(ns);
      let page = await this.callSys(ns, (c) => c.ps({ reaped: rebuild }, this.callTimeoutMs));
      if (page.incarnation !== ns.incarnation) {
        await this.hello(ns);
        page = await this.callSys(ns, (c) => c.ps({ reaped: rebuild }, this.callTimeoutMs));
      }
      ns.lastOk = this.now();
      this.merge(ns, page, rebuild);
    } catch (err) {
      this.failed(ns, err);
    }
  }

  private merge(ns: NodeState, page: PsPage, rebuild: boolean): void {
    const seen = new Set<number>();
    const ended: PmProcess[] = [];
    for (const row of page.processes) {
      seen.add(row.pid);
      this.nextPid = Math.max(this.nextPid, row.pid + 1);
      let p = this.table.get(row.pid);
      if (p !== undefined && p.node !== ns.node) continue;
      if (p === undefined) {
        // Reported already (its reap reached SYSTASK only after PM's answer was lost): not again.
        if (this.table.wasReaped(row.pid)) continue;
        p = { pid: row.pid, parent: row.parent, node: ns.node, program: row.program, args: [...row.args], state: 'running', startedAt: row.startedAt, exit: undefined, usage: row.usage, hostPid: row.hostPid };
        this.table.set(p);
      }
      p.usage = row.usage;
      p.hostPid = row.hostPid;
      p.startedAt = row.startedAt;
      if (row.state === 'exited' && p.state === 'running') {
        p.state = 'exited';
        p.exit = row.exit ?? {};
        ended.push(p);
      }
    }
    for (const t of page.reaped) {
      this.nextPid = Math.max(this.nextPid, t.pid + 1);
      this.table.addTombstone({ waitId: t.waitId, pid: t.pid, node: ns.node, exit: t.exit });
      if (this.table.get(t.pid)?.node === ns.node) this.table.delete(t.pid);
    }
    if (rebuild) {
      // A complete listing: what PM had there and the SYSTASK neither runs nor reaped is gone.
      for (const p of this.table.onNode(ns.node)) {
        if (p.state === 'running' && !seen.has(p.pid)) this.end(p, 'lost', { reason: `vanished from node ${ns.node}`, endedAt: this.wallNow() });
      }
    }
    for (const p of ended) this.table.reparent(p.pid);
  }

  private end(p: PmProcess, state: 'exited' | 'lost', exit: ExitInfo): void {
    p.state = state;
    p.exit = exit;
    this.table.reparent(p.pid);
  }

  /** A call to a SYSTASK failed: gone for good (its processes are lost), or only not answering now. */
  private failed(ns: NodeState, err: unknown): void {
    if (isCallFailure(err) && GONE.includes(err.code)) {
      ns.helloed = false;
      ns.lastOk = undefined;
      if (!ns.gone) {
        ns.gone = true;
        this.loseNode(ns, `node ${ns.node} lost`);
      }
      return;
    }
    if (isCallFailure(err) || (err instanceof DvsError && err.code === 'EDVSIO')) ns.lastOk = undefined;
  }

  private loseNode(ns: NodeState, reason: string): void {
    for (const p of this.table.onNode(ns.node)) if (p.state === 'running') this.end(p, 'lost', { reason, endedAt: this.wallNow() });
  }

  /** Replies; a caller that no longer waits is not PM's failure. */
  private async answer(dst: Endpoint, out: Reply): Promise<void> {
    try {
      await this.ipc!.reply(dst, out);
    } catch (err) {
      if (!(err instanceof DvsError)) throw err;
    }
  }
}

function waitReply(pid: number, node: number, exit: ExitInfo): Reply {
  return okReply({ pid, node, exit: exitPayload(exit) });
}

function noSuch(pid: number): DvsError {
  return new DvsError('EDVSNOENT', `no process ${pid} (never started, or already reported to a wait)`, { details: { pid } });
}

function timedOut(w: { pid: number | undefined; parent: number }): DvsError {
  return new DvsError('EDVSTIMEDOUT', w.pid !== undefined ? `process ${w.pid} did not end in time` : `no child of ${w.parent} ended in time`, w.pid !== undefined ? { details: { pid: w.pid } } : { details: { parent: w.parent } });
}

function psRow(p: PmProcess): Payload {
  const row: Record<string, Payload> = { pid: p.pid, parent: p.parent, node: p.node, program: p.program, args: [...p.args], state: p.state, startedAt: p.startedAt, usage: { cpuMs: p.usage.cpuMs, rssKB: p.usage.rssKB }, hostPid: p.hostPid };
  if (p.exit !== undefined) row.exit = exitPayload(p.exit);
  return row;
}

function argsOf(args: Payload): PmArgs {
  if (!isPlainMap(args)) throw new DvsError('EDVSINVAL', 'PM args: must be a map {dcid, nodes, pollMs?, limits?}', { details: { field: 'args' } });
  const a = args as Record<string, unknown>;
  for (const k of Object.keys(a)) if (!['dcid', 'nodes', 'pollMs', 'limits'].includes(k)) throw new DvsError('EDVSINVAL', `PM args: unknown field ${k} (fields: dcid, nodes, pollMs, limits)`, { details: { field: k } });
  const dcid = asInt(a.dcid);
  if (dcid === undefined) throw new DvsError('EDVSINVAL', 'PM args: dcid must be an integer', { details: { field: 'dcid' } });
  if (!Array.isArray(a.nodes)) throw new DvsError('EDVSINVAL', 'PM args: nodes must be an array of node ids', { details: { field: 'nodes' } });
  const nodes = a.nodes.map((n: unknown) => {
    const v = asInt(n);
    if (v === undefined) throw new DvsError('EDVSINVAL', 'PM args: nodes must be an array of node ids', { details: { field: 'nodes' } });
    return v;
  });
  const out: { -readonly [K in keyof PmArgs]: PmArgs[K] } = { dcid, nodes };
  if (a.pollMs !== undefined && a.pollMs !== null) {
    const p = asInt(a.pollMs);
    if (p === undefined || p < 1) throw new DvsError('EDVSINVAL', 'PM args: pollMs must be a positive integer', { details: { field: 'pollMs' } });
    out.pollMs = p;
  }
  if (a.limits !== undefined && a.limits !== null) {
    if (!isPlainMap(a.limits)) throw new DvsError('EDVSINVAL', 'PM args: limits must be a map of DC limits', { details: { field: 'limits' } });
    out.limits = a.limits as Partial<DcLimits>;
  }
  return out;
}

/** The factory a service host loads PM by: `createService({dcid, nodes, pollMs?, limits?})`. */
export function createService(args: Payload): Service {
  return new PmServer(argsOf(args));
}
