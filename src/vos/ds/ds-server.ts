/**
 * DS, the DC's name server: names → endpoints, usable by servers and applications (docs/vos/ds.md).
 * A service like any other: one loop of receiveRequest and reply, so it runs as a coroutine in a
 * unikernel or as its own process, and moves with its table. `wait` is a deferred reply: the request
 * is taken, the caller stays blocked in its sendrec, and DS serves others until the name is
 * published or the wait's deadline passes; the earliest deadline bounds DS's next receive, so no
 * waiter needs a timer of its own.
 */
import type { M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import { isNotification, type Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { Service, ServiceContext } from '../../services/service.js';
import { replyQuietly } from '../server-replies.js';
import { decodeDsState, encodeDsState } from './ds-state.js';
import { replyProbe, type Liveness } from './ds-liveness.js';
import { DS_MAX_NAMES, DS_MAX_WAITERS, DS_MAX_WAITERS_PER_NAME, errorReply, okReply, parseDsRequest, type DsRequest } from './ds-messages.js';
import { NameTable, notFound } from './name-table.js';
import { WaiterSet } from './waiters.js';

export interface DsLimits {
  readonly maxNames: number;
  readonly waitersPerName: number;
  readonly waitersTotal: number;
}

export interface DsOptions {
  /** The clock of the waiters' deadlines, in ms; the kernel's clock (a simulation's virtual time). Default performance.now. */
  readonly now?: () => number;
  /** How DS learns a holder is gone (ds-liveness.ts); default the reply probe. */
  readonly alive?: Liveness;
  readonly limits?: Partial<DsLimits>;
}

export interface DsInfo {
  readonly names: number;
  readonly waiters: number;
  /** Requests taken since this incarnation started. */
  readonly requests: number;
}

type Reply = { readonly type: number; readonly payload: Payload };

export class DsServer implements Service {
  private readonly table: NameTable;
  private readonly waiters: WaiterSet;
  private readonly now: () => number;
  private readonly alive: Liveness;
  private requests = 0;

  constructor(opts: DsOptions = {}) {
    this.now = opts.now ?? (() => performance.now());
    this.alive = opts.alive ?? replyProbe;
    this.table = new NameTable(opts.limits?.maxNames ?? DS_MAX_NAMES);
    this.waiters = new WaiterSet({ perName: opts.limits?.waitersPerName ?? DS_MAX_WAITERS_PER_NAME, total: opts.limits?.waitersTotal ?? DS_MAX_WAITERS });
  }

  info(): DsInfo {
    return { names: this.table.size, waiters: this.waiters.size, requests: this.requests };
  }

  async run(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    for (;;) {
      if (ctx.signal.aborted) return;
      await this.expire(ipc);
      const next = this.waiters.nextDeadline();
      const timeoutMs = next === undefined ? -1 : Math.max(1, Math.ceil(next - this.now()));
      let m: Message;
      try {
        // Not with ctx.signal: a move retires this incarnation (aborting the signal) before it
        // drains the endpoint, and the drain needs DS still blocked in this receive.
        m = await ipc.receiveRequest({ timeoutMs });
      } catch (err) {
        if (isDvsError(err, 'EDVSTIMEDOUT') || isDvsError(err, 'EDVSWOKENUP')) continue;
        // The endpoint was unbound (the host stopped DS): nothing more to serve.
        if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) return;
        throw err;
      }
      this.requests++;
      await this.serve(ipc, m);
    }
  }

  snapshot(): Uint8Array {
    const now = this.now();
    return encodeDsState({
      names: this.table.entries().map(([name, r]) => ({ name, endpoint: r.endpoint, publisher: r.publisher })),
      waiters: this.waiters.all().map((w) => ({ source: w.source, name: w.name, remainingMs: Math.max(0, Math.ceil(w.deadline - now)) })),
    });
  }

  restore(state: Uint8Array): void {
    const s = decodeDsState(state);
    this.table.clear();
    this.waiters.clear();
    for (const n of s.names) this.table.set(n.name, { endpoint: n.endpoint, publisher: n.publisher });
    const now = this.now();
    for (const w of s.waiters) this.waiters.add(w.source, w.name, now + w.remainingMs);
  }

  movable(): true {
    return true;
  }

  // ---------------------------------------------------------------- requests

  private async serve(ipc: M3Ipc, m: Message): Promise<void> {
    if (isNotification(m)) return;
    // A caller blocked in sendrec has one call in flight: a new one means it waits no longer.
    this.waiters.remove(m.source);
    let out: Reply | undefined;
    try {
      out = await this.handle(ipc, m.source, parseDsRequest(m.type, m.payload));
    } catch (err) {
      out = errorReply(err);
    }
    if (out !== undefined) await answer(ipc, m.source, out);
  }

  /** The reply, or undefined when it is deferred (a waiter). */
  private async handle(ipc: M3Ipc, source: Endpoint, req: DsRequest): Promise<Reply | undefined> {
    switch (req.op) {
      case 'publish': {
        const endpoint = req.endpoint ?? source;
        const cur = this.table.get(req.name);
        let replaced: Endpoint | undefined;
        if (cur !== undefined && cur.endpoint !== endpoint) {
          if (!req.replace && (await this.isAlive(ipc, cur.endpoint, source))) {
            throw new DvsError('EDVSEXIST', `name ${JSON.stringify(req.name)} is held by endpoint ${cur.endpoint}; publish with replace to take it over`, { details: { name: req.name, endpoint: cur.endpoint } });
          }
          replaced = cur.endpoint;
        }
        this.table.set(req.name, { endpoint, publisher: source });
        // Waiters first: once the publisher hears back, everyone waiting has been answered.
        for (const w of this.waiters.take(req.name)) await answer(ipc, w.source, okReply({ name: req.name, endpoint }));
        return okReply(replaced === undefined ? { name: req.name, endpoint } : { name: req.name, endpoint, replaced });
      }
      case 'lookup': {
        const endpoint = await this.current(ipc, req.name, source);
        if (endpoint === undefined) throw notFound(req.name);
        return okReply({ name: req.name, endpoint });
      }
      case 'wait': {
        const endpoint = await this.current(ipc, req.name, source);
        if (endpoint !== undefined) return okReply({ name: req.name, endpoint });
        if (req.timeoutMs === 0) throw timedOut(req.name, 0);
        this.waiters.add(source, req.name, this.now() + req.timeoutMs);
        return undefined;
      }
      case 'unpublish': {
        const rec = this.table.remove(req.name, source, req.force);
        return okReply({ name: req.name, endpoint: rec.endpoint });
      }
      case 'list': {
        const { entries, more } = this.table.list(req.prefix, req.after, req.limit);
        const page = entries.map((e) => ({ name: e.name, endpoint: e.endpoint }));
        return okReply(more ? { entries: page, next: entries[entries.length - 1]!.name } : { entries: page });
      }
    }
  }

  /** The endpoint `name` maps to, after dropping a holder found gone. */
  private async current(ipc: M3Ipc, name: string, source: Endpoint): Promise<Endpoint | undefined> {
    const cur = this.table.get(name);
    if (cur === undefined) return undefined;
    if (await this.isAlive(ipc, cur.endpoint, source)) return cur.endpoint;
    this.table.drop(name, cur.endpoint);
    return undefined;
  }

  private async isAlive(ipc: M3Ipc, endpoint: Endpoint, source: Endpoint): Promise<boolean> {
    // The caller and DS's own waiters are blocked in sendrec with DS: alive, and never probed.
    if (endpoint === source || endpoint === ipc.endpoint || this.waiters.has(endpoint)) return true;
    return this.alive(ipc, endpoint);
  }

  /** Answers every waiter whose deadline has passed. */
  private async expire(ipc: M3Ipc): Promise<void> {
    for (const w of this.waiters.expired(this.now())) await answer(ipc, w.source, errorReply(timedOut(w.name, undefined)));
  }
}

function timedOut(name: string, timeoutMs: number | undefined): DvsError {
  return new DvsError('EDVSTIMEDOUT', `name ${JSON.stringify(name)} was not published ${timeoutMs === 0 ? 'yet' : 'in time'}`, { details: { name } });
}

/** Replies; a caller that no longer waits (its call timed out, or it died) is not DS's failure. */
function answer(ipc: M3Ipc, dst: Endpoint, out: Reply): Promise<void> {
  return replyQuietly(ipc, dst, out);
}

/** The factory a service host loads DS by (docs/migration.md): `createService(args)`; args unused. */
export function createService(_args?: Payload): Service {
  return new DsServer();
}
