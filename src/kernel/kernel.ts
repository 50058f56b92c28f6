/**
 * The rendezvous kernel of one node: the M3-IPC state machine for the endpoints this host owns,
 * descriptors for endpoints owned elsewhere, and the kernel-to-kernel protocol that carries calls
 * between nodes. Pure and deterministic: time and the outgoing transport are injected.
 */
import type { CallOptions, CopyFromOptions, GrantOptions, GrantRef, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
import { ANY, HARDWARE, NONE, SELF, type Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError, type DvsErrorCode } from '../ipc/errors.js';
import { resolveDcLimits, resolveKernelLimits, type DcLimits, type KernelLimits } from '../ipc/limits.js';
import { checkMessageType, NOTIFY_MESSAGE, type Message, type OutgoingMessage } from '../ipc/message.js';
import { checkPayload, type Payload } from '../ipc/payload.js';
import { CALL_BIT, callMask, callsOfMask, checkPrivileges, defaultPrivileges, SYSTEM_ONLY_CALLS, type Privileges } from '../ipc/privileges.js';
import type { Clock } from './clock.js';
import { DcState, type BindWatch } from './dc.js';
import type { CopyAckFrame, CopyDataFrame, CopyReadFrame, CopyRelayFrame, CopyWriteFrame, KernelFrame, KernelTransport, SendAckFrame, SendFrame } from './frames.js';
import { LocalProc, RecvMode, ReplyWaits, type Grant, type GrantBackend, type ProcEntry, type QueuedSend, type RecvWait, type RemoteProc } from './proc.js';
import { Process } from './process.js';
import { buildProcTable, type ProcInfo } from './procfs.js';
import { IdTable } from './id-table.js';
import { checkNotAborted, checkTimeout, Waiter } from './waiter.js';

export interface KernelOptions {
  readonly nodeId: number;
  readonly clock: Clock;
  /** Where frames for other nodes go; without one the kernel serves a single node. */
  readonly transport?: KernelTransport;
  readonly limits?: Partial<KernelLimits>;
  /** How many "moved to node N" redirects one send follows before failing with EDVSNONODE. */
  readonly maxRedirects?: number;
  /** Chunks of one remote copy in flight at once. */
  readonly copyWindow?: number;
  /** Told after a local bind and after a local unbind, e.g. to publish the endpoint in the directory. */
  readonly observer?: KernelObserver;
}

export interface KernelObserver {
  bound?(dcid: number, endpoint: Endpoint, name: string): void;
  unbound?(dcid: number, endpoint: Endpoint): void;
}

export interface CreateDcOptions {
  readonly dcid: number;
  readonly name?: string;
  /** Member nodes; this kernel's node is always a member. */
  readonly nodes?: readonly number[];
  readonly limits?: Partial<DcLimits>;
}

export interface DcInfo {
  readonly dcid: number;
  readonly name: string;
  readonly nodes: number[];
  readonly limits: DcLimits;
  readonly localProcs: number;
  readonly remoteProcs: number;
}

export interface BindOptions {
  /** Slot to bind; the next generation of the slot is used. Defaults to the lowest free user slot. */
  readonly slot?: number;
  /** Exact endpoint (slot and generation), e.g. as claimed in the directory. */
  readonly endpoint?: Endpoint;
  readonly name?: string;
  readonly privileges?: Privileges;
}

export interface KernelStats {
  framesIn: number;
  framesOut: number;
  /** Frames refused: unknown DC, sender node not a member, malformed content. */
  framesRefused: number;
  /** Replies that found no sendrec waiting for them (the client gave up or died). */
  repliesDropped: number;
}

const NAME_MAX = 32;
const SYSTEM_ONLY_MASK = callMask(SYSTEM_ONLY_CALLS);
const DEFAULT_MAX_REDIRECTS = 4;
const DEFAULT_COPY_WINDOW = 4;

/** A call waiting on another node: a send (or sendrec's send phase) or one copy chunk. */
interface RemoteSendOp {
  readonly kind: 'send';
  id: number;
  node: number;
  readonly dc: DcState;
  readonly proc: LocalProc;
  readonly dst: Endpoint;
  readonly type: number;
  readonly payload: Payload;
  readonly sendrec: boolean;
  /** Plain send: the caller's waiter. Sendrec: undefined, the waiter is `proc.recv`. */
  readonly waiter: Waiter<void> | undefined;
  redirects: number;
  cancelling: boolean;
}

interface RemoteChunkOp {
  readonly kind: 'chunk';
  readonly id: number;
  readonly node: number;
  readonly dc: DcState;
  /** The local process copying; undefined for a chunk this node relays for another node's requester. */
  readonly proc: LocalProc | undefined;
  done(rc: number, data: Uint8Array | undefined): void;
}

type RemoteOp = RemoteSendOp | RemoteChunkOp;

function fail(code: DvsErrorCode, message?: string, details?: Readonly<Record<string, unknown>>): never {
  throw new DvsError(code, message, details === undefined ? {} : { details });
}

function errnoOf(err: unknown): number {
  if (isDvsError(err)) return err.errno;
  return new DvsError('EDVSINVAL').errno;
}

function checkName(name: string | undefined, fallback: string): string {
  const n = name ?? fallback;
  if (typeof n !== 'string' || n.length > NAME_MAX) fail('EDVSNAMESIZE', `name must be a string of at most ${NAME_MAX} characters`);
  return n;
}

function checkCount(name: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0 || v > max) fail('EDVSRANGE', `${name} ${String(v)} outside 0..${max}`);
  return v;
}

/** Whether a blocked receive-side call takes a message from `src`. */
function accepts(w: RecvWait | undefined, src: Endpoint): boolean {
  if (w === undefined) return false;
  switch (w.mode) {
    case RecvMode.Receive:
      return w.from === ANY || w.from === src;
    case RecvMode.Request:
      return true;
    case RecvMode.SendrecReply:
      return w.from === src;
    default:
      return false;
  }
}

export class Kernel {
  readonly nodeId: number;
  readonly clock: Clock;
  readonly limits: KernelLimits;
  readonly stats: KernelStats = { framesIn: 0, framesOut: 0, framesRefused: 0, repliesDropped: 0 };
  private readonly transport: KernelTransport | undefined;
  private readonly maxRedirects: number;
  private readonly copyWindow: number;
  private readonly dcs = new Map<number, DcState>();
  private readonly outstanding = new IdTable<RemoteOp>();
  /** Sends from other nodes queued here, by node then frame id, so a cancel can withdraw them. */
  private readonly remoteQueued = new Map<number, IdTable<QueuedSend>>();
  private readonly downNodes = new Set<number>();
  private readonly observer: KernelObserver | undefined;
  private nextId = 1;
  private running = true;

  constructor(opts: KernelOptions) {
    if (!Number.isInteger(opts.nodeId) || opts.nodeId < 0) fail('EDVSBADNODEID', `node id must be a non-negative integer, got ${String(opts.nodeId)}`);
    this.nodeId = opts.nodeId;
    this.clock = opts.clock;
    this.transport = opts.transport;
    this.limits = resolveKernelLimits(opts.limits);
    this.maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    this.copyWindow = opts.copyWindow ?? DEFAULT_COPY_WINDOW;
    this.observer = opts.observer;
  }

  // ---------------------------------------------------------------- DC management

  createDc(opts: CreateDcOptions): DcInfo {
    this.checkRunning();
    const dcid = opts.dcid;
    if (!Number.isInteger(dcid) || dcid < 0 || dcid > 0xffff) fail('EDVSBADDCID', `DC id must be an integer in 0..65535, got ${String(dcid)}`);
    if (this.dcs.has(dcid)) fail('EDVSDCRUN', `DC ${dcid} already runs on node ${this.nodeId}`);
    const limits = resolveDcLimits(opts.limits);
    const nodes = new Set(opts.nodes ?? []);
    nodes.add(this.nodeId);
    for (const n of nodes) this.checkNodeId(n, limits);
    const dc = new DcState(dcid, checkName(opts.name, `DC${dcid}`), limits, nodes);
    this.dcs.set(dcid, dc);
    return this.describe(dc);
  }

  destroyDc(dcid: number): void {
    const dc = this.dc(dcid);
    for (const p of [...dc.locals()]) this.unbindLocal(dc, p, false);
    for (const w of dc.watches) w.waiter.reject(new DvsError('EDVSSHUTDOWN', `DC ${dcid} destroyed`));
    dc.watches.clear();
    this.dcs.delete(dcid);
  }

  addNode(dcid: number, node: number): DcInfo {
    const dc = this.dc(dcid);
    this.checkNodeId(node, dc.limits);
    if (dc.nodes.has(node)) fail('EDVSDCNODE', `node ${node} is already a member of DC ${dcid}`);
    dc.nodes.add(node);
    return this.describe(dc);
  }

  removeNode(dcid: number, node: number): DcInfo {
    const dc = this.dc(dcid);
    if (node === this.nodeId) fail('EDVSBADNODEID', 'a kernel cannot remove its own node from a DC; destroy the DC instead');
    if (!dc.nodes.delete(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`);
    for (const r of [...dc.remotes()]) if (r.node === node) this.dropRemote(dc, r);
    this.failNode(node, 'EDVSNODCNODE', dc);
    return this.describe(dc);
  }

  dcInfo(dcid: number): DcInfo {
    return this.describe(this.dc(dcid));
  }

  listDcs(): DcInfo[] {
    return [...this.dcs.values()].map((dc) => this.describe(dc));
  }

  /** The node this kernel serves, its DCs and whether it runs (the original's getdvsinfo). */
  info(): { nodeId: number; running: boolean; dcs: number[]; limits: KernelLimits; downNodes: number[] } {
    return { nodeId: this.nodeId, running: this.running, dcs: [...this.dcs.keys()], limits: this.limits, downNodes: [...this.downNodes] };
  }

  /** Stops the kernel: every DC is destroyed, every pending call fails with EDVSSHUTDOWN. */
  shutdown(): void {
    if (!this.running) return;
    for (const dcid of [...this.dcs.keys()]) this.destroyDc(dcid);
    for (const op of this.outstanding.values()) this.failOp(op, 'EDVSSHUTDOWN');
    this.running = false;
  }

  // ---------------------------------------------------------------- binding

  /** Binds a new process in this kernel and returns its handle. */
  bind(dcid: number, opts: BindOptions = {}): Process {
    const dc = this.dc(dcid);
    const space = dc.space;
    let slot: number;
    let endpoint: Endpoint;
    if (opts.endpoint !== undefined) {
      slot = space.checkEndpoint(opts.endpoint);
      if (opts.slot !== undefined && opts.slot !== slot) fail('EDVSBADVALUE', `endpoint ${opts.endpoint} is not in slot ${opts.slot}`);
      endpoint = opts.endpoint;
      if (space.generationOf(endpoint) <= dc.lastGeneration(slot) && dc.entryAt(slot)?.endpoint !== endpoint) {
        fail('EDVSENDPOINT', `endpoint ${space.format(endpoint)} is older than generation ${dc.lastGeneration(slot)} already seen in slot ${slot}`);
      }
    } else {
      slot = opts.slot === undefined ? dc.freeUserSlot() : space.checkSlot(opts.slot);
      endpoint = space.make(dc.lastGeneration(slot) + 1, slot);
    }
    if (slot === HARDWARE) fail('EDVSBADPROC', 'the KERNEL/HARDWARE slot cannot be bound');
    if (dc.entryAt(slot) !== undefined) fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} is in use`, { slot });
    const isSystem = space.isSystemSlot(slot);
    const priv = checkPrivileges(opts.privileges ?? defaultPrivileges(slot, isSystem));
    const proc = new LocalProc(dcid, slot, endpoint, space.privId(slot), isSystem, checkName(opts.name, `ep${slot}`), priv.level, callMask(priv.allowedCalls), NONE);
    proc.ipcTo = priv.ipcTo === 'all' ? null : new Set(priv.ipcTo);
    dc.set(slot, proc);
    this.fireWatches(dc, slot);
    this.observer?.bound?.(dcid, endpoint, proc.name);
    return new Process(this, dc, proc);
  }

  /**
   * Records that `endpoint` lives on `node` (the original's rmtbind; later fed by the directory).
   * Replaces an older remote descriptor of the same slot, failing waiters on the old incarnation.
   */
  bindRemote(dcid: number, endpoint: Endpoint, node: number, name?: string): void {
    const dc = this.dc(dcid);
    const slot = dc.space.checkEndpoint(endpoint);
    if (node === this.nodeId) fail('EDVSBADNODEID', `a remote bind cannot name the local node ${node}`);
    if (!dc.nodes.has(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`);
    const existing = dc.entryAt(slot);
    if (existing?.kind === 'local') fail('EDVSSLOTUSED', `slot ${slot} is bound locally`, { slot });
    if (existing !== undefined && existing.endpoint === endpoint) {
      existing.node = node;
      if (name !== undefined) existing.name = checkName(name, existing.name);
      return;
    }
    if (dc.space.generationOf(endpoint) < dc.lastGeneration(slot)) fail('EDVSENDPOINT', `endpoint ${dc.space.format(endpoint)} is older than the slot's generation`);
    if (existing !== undefined) this.dropRemote(dc, existing);
    const remote: RemoteProc = { kind: 'remote', endpoint, slot, node, name: checkName(name, `ep${slot}`) };
    dc.set(slot, remote);
    this.fireWatches(dc, slot);
  }

  /** Unbinds a local process or drops a remote descriptor, cascading errors to everyone waiting on it. */
  unbind(dcid: number, endpoint: Endpoint): void {
    const dc = this.dc(dcid);
    const entry = dc.lookup(endpoint);
    if (entry.kind === 'local') this.unbindLocal(dc, entry, true);
    else this.dropRemote(dc, entry);
  }

  /** Resolves with the endpoint once `target`'s slot is bound at `target`'s generation or later. */
  waitForBind(dcid: number, target: Endpoint, opts?: CallOptions): Promise<Endpoint> {
    try {
      const dc = this.dc(dcid);
      const slot = dc.space.checkEndpoint(target);
      const gen = dc.space.generationOf(target);
      const entry = dc.entryAt(slot);
      if (entry !== undefined && dc.space.generationOf(entry.endpoint) >= gen) return Promise.resolve(entry.endpoint);
      return this.watch(dc, { slot, endpoint: target, unbind: false, waiter: new Waiter<Endpoint>() }, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Resolves once `endpoint` is no longer bound (here or as a known remote descriptor). */
  waitForUnbind(dcid: number, endpoint: Endpoint, opts?: CallOptions): Promise<Endpoint> {
    try {
      const dc = this.dc(dcid);
      const slot = dc.space.checkEndpoint(endpoint);
      if (dc.entryAt(slot)?.endpoint !== endpoint) return Promise.resolve(endpoint);
      return this.watch(dc, { slot, endpoint, unbind: true, waiter: new Waiter<Endpoint>() }, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private watch(dc: DcState, w: BindWatch, opts: CallOptions | undefined): Promise<Endpoint> {
    checkTimeout(opts);
    checkNotAborted(opts);
    if (opts?.timeoutMs === 0) fail('EDVSTIMEDOUT');
    dc.watches.add(w);
    w.waiter.arm(this.clock, opts, () => {
      dc.watches.delete(w);
      w.waiter.rejectExpired();
    });
    return w.waiter.promise;
  }

  private fireWatches(dc: DcState, slot: number): void {
    if (dc.watches.size === 0) return;
    const entry = dc.entryAt(slot);
    for (const w of dc.watches) {
      if (w.slot !== slot) continue;
      if (w.unbind ? entry?.endpoint !== w.endpoint : entry !== undefined && dc.space.generationOf(entry.endpoint) >= dc.space.generationOf(w.endpoint ?? 0)) {
        dc.watches.delete(w);
        w.waiter.resolve(w.endpoint !== undefined && w.unbind ? w.endpoint : (entry?.endpoint ?? slot));
      }
    }
  }

  // ---------------------------------------------------------------- privileges, wakeup, introspection

  setPrivileges(dcid: number, endpoint: Endpoint, priv: Privileges): void {
    const proc = this.localProc(this.dc(dcid), endpoint);
    checkPrivileges(priv);
    proc.level = priv.level;
    proc.callMask = callMask(priv.allowedCalls);
    proc.ipcTo = priv.ipcTo === 'all' ? null : new Set(priv.ipcTo);
  }

  getPrivileges(dcid: number, endpoint: Endpoint): Privileges {
    const proc = this.localProc(this.dc(dcid), endpoint);
    return { level: proc.level, allowedCalls: callsOfMask(proc.callMask), ipcTo: proc.ipcTo === null ? 'all' : [...proc.ipcTo] };
  }

  /**
   * Wakes a process blocked in receive or receiveRequest with EDVSWOKENUP; if it is not blocked there,
   * its next receive(ANY) or receiveRequest fails with EDVSWOKENUP instead.
   */
  wakeup(dcid: number, endpoint: Endpoint): void {
    const proc = this.localProc(this.dc(dcid), endpoint);
    const w = proc.recv;
    if (w !== undefined && (w.mode === RecvMode.Receive || w.mode === RecvMode.Request)) {
      proc.recv = undefined;
      w.waiter.reject(new DvsError('EDVSWOKENUP'));
    } else {
      proc.wokenUp = true;
    }
  }

  /** The DC's process table, like the original's /proc/dvs/DCx/procs. */
  procs(dcid: number): ProcInfo[] {
    const dc = this.dc(dcid);
    return buildProcTable(dc, this.nodeId);
  }

  // ---------------------------------------------------------------- IPC calls (used by Process)

  /** @internal */
  send(dc: DcState, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<void> {
    try {
      const entry = this.checkSend(dc, proc, dst, msg, opts, CALL_BIT.send);
      const payload = msg.payload;
      if (entry.kind === 'local') {
        const w = entry.recv;
        if (accepts(w, proc.endpoint)) {
          proc.counters.lclSent++;
          this.deliver(entry, w!, proc.endpoint, msg.type, payload);
          return Promise.resolve();
        }
        if (opts?.timeoutMs === 0) fail('EDVSTIMEDOUT');
        const waiter = new Waiter<void>();
        const rec = this.queueLocal(entry, proc, msg.type, payload, false, waiter);
        if (opts !== undefined) {
          waiter.arm(this.clock, opts, () => {
            if (rec.queuedOn === undefined) return;
            entry.dequeue(rec);
            proc.sending--;
            waiter.rejectExpired({ endpoint: dst });
          });
        }
        return waiter.promise;
      }
      const waiter = new Waiter<void>();
      const op = this.startRemoteSend(dc, proc, entry, dst, msg.type, payload, false, waiter);
      if (opts !== undefined) waiter.arm(this.clock, opts, () => this.expireRemoteSend(op));
      return waiter.promise;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** @internal */
  sendrec(dc: DcState, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message> {
    try {
      const entry = this.checkSend(dc, proc, dst, msg, opts, CALL_BIT.sendrec);
      if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
      const payload = msg.payload;
      const waiter = new Waiter<Message>();
      const recv: RecvWait = { mode: RecvMode.SendrecSending, from: dst, waiter };
      if (entry.kind === 'local') {
        const w = entry.recv;
        if (accepts(w, proc.endpoint)) {
          proc.counters.lclSent++;
          recv.mode = RecvMode.SendrecReply;
          proc.recv = recv;
          this.deliver(entry, w!, proc.endpoint, msg.type, payload);
        } else {
          if (opts?.timeoutMs === 0) fail('EDVSTIMEDOUT');
          proc.recv = recv;
          const rec = this.queueLocal(entry, proc, msg.type, payload, true, undefined);
          if (opts !== undefined) {
            waiter.arm(this.clock, opts, () => {
              if (rec.queuedOn !== undefined) {
                entry.dequeue(rec);
                proc.sending--;
              }
              if (proc.recv === recv) proc.recv = undefined;
              waiter.rejectExpired({ endpoint: dst });
            });
          }
          return waiter.promise;
        }
        if (opts !== undefined) {
          waiter.arm(this.clock, opts, () => {
            if (proc.recv === recv) proc.recv = undefined;
            waiter.rejectExpired({ endpoint: dst });
          });
        }
        return waiter.promise;
      }
      proc.recv = recv;
      const op = this.startRemoteSend(dc, proc, entry, dst, msg.type, payload, true, undefined);
      if (opts !== undefined) waiter.arm(this.clock, opts, () => this.expireRemoteSend(op));
      return waiter.promise;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** @internal */
  receive(dc: DcState, proc: LocalProc, src: Endpoint, opts: CallOptions | undefined): Promise<Message> {
    try {
      this.checkCaller(proc, CALL_BIT.receive);
      if (src !== ANY) {
        if (src === proc.endpoint || src === SELF) fail('EDVSBADSRCDST', 'a process cannot receive from itself');
        const from = dc.lookup(src, 'EDVSSRCDIED');
        // Reference §2.2: receiving from a remote endpoint needs its node connected; a node already
        // declared down would never send, and no later nodeDown would wake this receive.
        if (from.kind === 'remote' && this.downNodes.has(from.node)) fail('EDVSNOTCONN', `node ${from.node} is down`, { node: from.node });
      }
      return this.receiveCommon(dc, proc, src, RecvMode.Receive, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** @internal */
  receiveRequest(dc: DcState, proc: LocalProc, opts: CallOptions | undefined): Promise<Message> {
    try {
      this.checkCaller(proc, CALL_BIT.receiveRequest);
      return this.receiveCommon(dc, proc, ANY, RecvMode.Request, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private receiveCommon(dc: DcState, proc: LocalProc, src: Endpoint, mode: RecvMode, opts: CallOptions | undefined): Promise<Message> {
    checkTimeout(opts);
    checkNotAborted(opts);
    if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
    if (src === ANY && proc.wokenUp) {
      proc.wokenUp = false;
      fail('EDVSWOKENUP');
    }
    if (mode === RecvMode.Receive && proc.notifies !== undefined) {
      const note = this.takeNotify(dc, proc, src);
      if (note !== undefined) return Promise.resolve(note);
    }
    const rec = proc.findQueued(src, ANY);
    if (rec !== undefined) return Promise.resolve(this.take(dc, proc, rec));
    if (opts?.timeoutMs === 0) fail('EDVSTIMEDOUT');
    const waiter = new Waiter<Message>();
    const recv: RecvWait = { mode, from: src, waiter };
    proc.recv = recv;
    if (opts !== undefined) {
      waiter.arm(this.clock, opts, () => {
        if (proc.recv === recv) proc.recv = undefined;
        waiter.rejectExpired();
      });
    }
    return waiter.promise;
  }

  /** @internal Non-blocking: succeeds only if `dst` is blocked in sendrec with the caller and its request was taken. */
  reply(dc: DcState, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage): Promise<void> {
    try {
      this.replyNow(dc, proc, dst, msg);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * @internal reply, then receiveRequest. What would stop the receive before it waits (a bad
   * timeout, an abort, another receive in progress) fails the call before the reply goes out; a
   * failed reply fails it before it receives.
   */
  replyAndReceive(dc: DcState, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message> {
    try {
      this.checkCaller(proc, CALL_BIT.receiveRequest);
      checkTimeout(opts);
      checkNotAborted(opts);
      if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
      this.replyNow(dc, proc, dst, msg);
      return this.receiveCommon(dc, proc, ANY, RecvMode.Request, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private replyNow(dc: DcState, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage): void {
    this.checkCaller(proc, CALL_BIT.reply);
    checkMessageType(msg.type);
    checkPayload(msg.payload, this.limits.maxPayloadBytes);
    if (dst === proc.endpoint || dst === SELF) fail('EDVSBADDEST', 'a process cannot reply to itself');
    const entry = dc.lookup(dst);
    if (entry.kind === 'local') {
      const w = entry.recv;
      if (w === undefined || w.mode !== RecvMode.SendrecReply || w.from !== proc.endpoint) {
        fail('EDVSPROCSTS', `endpoint ${dc.space.format(dst)} is not waiting for a reply from ${dc.space.format(proc.endpoint)}`);
      }
      proc.counters.lclSent++;
      this.deliver(entry, w, proc.endpoint, msg.type, msg.payload);
      return;
    }
    const pending = proc.replyTo?.get(dst);
    if (pending === undefined) fail('EDVSPROCSTS', `endpoint ${dc.space.format(dst)} is not waiting for a reply from ${dc.space.format(proc.endpoint)}`);
    proc.replyTo!.answered(dst);
    proc.counters.rmtSent++;
    this.emit(pending.node, { k: 'reply', dc: dc.dcid, id: pending.id, src: proc.endpoint, dst, type: msg.type, payload: msg.payload });
  }

  /** @internal */
  notify(dc: DcState, proc: LocalProc, dst: Endpoint, opts: NotifyOptions | undefined): Promise<NotifyOutcome> {
    try {
      this.checkCaller(proc, CALL_BIT.notify);
      const arg = opts?.arg ?? 0;
      if (!Number.isInteger(arg) || arg < 0 || arg > 0xffffffff) fail('EDVSBADVALUE', 'notify arg must be a 32-bit unsigned integer');
      if (dst === proc.endpoint || dst === SELF) fail('EDVSBADDEST', 'a process cannot notify itself');
      const slot = dc.space.checkEndpoint(dst);
      if (!dc.space.isSystemSlot(slot)) fail('EDVSPRIVILEGES', `endpoint ${dc.space.format(dst)} is not a system process and cannot be notified`);
      this.checkIpcTo(proc, dc, slot);
      const entry = dc.lookup(dst);
      if (entry.kind === 'local') return Promise.resolve(this.notifyLocal(entry, proc.endpoint, proc.privId, arg));
      this.checkRoute(dc, entry);
      proc.counters.rmtSent++;
      this.emit(entry.node, { k: 'notify', dc: dc.dcid, src: proc.endpoint, dst, arg });
      // Never waits for the destination, but a flood toward a node that does not keep up waits for the link.
      const room = this.transport?.backpressure?.(entry.node);
      return room === undefined ? Promise.resolve('sent') : room.then(() => 'sent' as const);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private notifyLocal(dst: LocalProc, src: Endpoint, srcPrivId: number, arg: number): NotifyOutcome {
    const w = dst.recv;
    if (w !== undefined && w.mode === RecvMode.Receive && (w.from === ANY || w.from === src) && dst.notifies?.get(srcPrivId) === undefined) {
      dst.recv = undefined;
      dst.counters.received++;
      w.waiter.resolve({ source: src, type: NOTIFY_MESSAGE | srcPrivId, payload: { arg, timestamp: this.clock.now() } });
      return 'delivered';
    }
    const notes = (dst.notifies ??= new Map());
    const pending = notes.get(srcPrivId);
    if (pending !== undefined && pending.src === src) {
      pending.arg = (pending.arg | arg) >>> 0;
      return 'overrun';
    }
    notes.set(srcPrivId, { src, arg });
    return 'pending';
  }

  /** The lowest-numbered pending notification acceptable to receive(src), removed and built as a message. */
  private takeNotify(dc: DcState, proc: LocalProc, src: Endpoint): Message | undefined {
    const notes = proc.notifies!;
    let best = -1;
    if (src === ANY) {
      for (const id of notes.keys()) if (best < 0 || id < best) best = id;
    } else {
      const id = dc.space.privId(dc.space.slotOf(src));
      if (notes.get(id)?.src === src) best = id;
    }
    if (best < 0) return undefined;
    const note = notes.get(best)!;
    notes.delete(best);
    if (notes.size === 0) proc.notifies = undefined;
    proc.counters.received++;
    return { source: note.src, type: NOTIFY_MESSAGE | best, payload: { arg: note.arg, timestamp: this.clock.now() } };
  }

  // ---------------------------------------------------------------- send machinery

  private checkCaller(proc: LocalProc, bit: number): void {
    this.checkRunning();
    if (!proc.alive) fail('EDVSNOTBIND', 'the calling process is no longer bound');
    // System-only calls (reference §2.2/2.3) fail with EDVSTRAPDENIED for users, whatever their allowedCalls say.
    if (!proc.isSystem && (bit & SYSTEM_ONLY_MASK) !== 0) fail('EDVSTRAPDENIED', 'call reserved for system processes');
    if ((proc.callMask & bit) === 0) fail('EDVSBADCALL', 'call not allowed for this process');
  }

  private checkIpcTo(proc: LocalProc, dc: DcState, dstSlot: number): void {
    if (proc.ipcTo !== null && dc.space.isSystemSlot(dstSlot) && !proc.ipcTo.has(dstSlot)) {
      fail('EDVSTRAPDENIED', `no permission to send to system slot ${dstSlot}`);
    }
  }

  private checkSend(dc: DcState, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined, bit: number): ProcEntry {
    this.checkCaller(proc, bit);
    if (opts !== undefined) {
      checkTimeout(opts);
      checkNotAborted(opts);
    }
    if (dst === proc.endpoint || dst === SELF || dst === HARDWARE) fail('EDVSBADDEST', `cannot send to ${dc.space.format(dst)}`);
    checkMessageType(msg.type);
    checkPayload(msg.payload, this.limits.maxPayloadBytes);
    const entry = dc.lookup(dst);
    this.checkIpcTo(proc, dc, entry.slot);
    if (entry.kind === 'remote') this.checkRoute(dc, entry);
    return entry;
  }

  private checkRoute(dc: DcState, entry: RemoteProc): void {
    if (!dc.nodes.has(entry.node)) fail('EDVSNODCNODE', `node ${entry.node} is not a member of DC ${dc.dcid}`);
    if (this.transport === undefined) fail('EDVSNOPROXY', 'this kernel has no transport to other nodes');
    if (this.downNodes.has(entry.node)) fail('EDVSNOTCONN', `node ${entry.node} is down`, { node: entry.node });
  }

  private deliver(dst: LocalProc, w: RecvWait, src: Endpoint, type: number, payload: Payload): void {
    dst.recv = undefined;
    dst.counters.received++;
    w.waiter.resolve({ source: src, type, payload });
  }

  private queueLocal(dst: LocalProc, sender: LocalProc, type: number, payload: Payload, sendrec: boolean, waiter: Waiter<void> | undefined): QueuedSend {
    const rec: QueuedSend = { src: sender.endpoint, type, payload, sendrec, sender, waiter, node: this.nodeId, id: 0, prev: undefined, next: undefined, queuedOn: undefined };
    dst.enqueue(rec);
    sender.sending++;
    sender.sendto = dst.endpoint;
    return rec;
  }

  /** Completes a queued send: the receiver takes it, the sender learns (locally or by send-ack). */
  private take(dc: DcState, dst: LocalProc, rec: QueuedSend): Message {
    dst.dequeue(rec);
    dst.counters.received++;
    const sender = rec.sender;
    if (sender !== undefined) {
      sender.sending--;
      sender.counters.lclSent++;
      if (rec.sendrec) {
        if (sender.recv !== undefined) sender.recv.mode = RecvMode.SendrecReply;
      } else {
        rec.waiter!.resolve();
      }
    } else {
      this.remoteQueued.get(rec.node)?.delete(rec.id);
      // A taken sendrec is acknowledged by its reply (see impliedAck); a plain send right away.
      if (rec.sendrec) (dst.replyTo ??= new ReplyWaits()).set(rec.src, rec.node, rec.id);
      else this.emit(rec.node, { k: 'send-ack', dc: dc.dcid, id: rec.id, rc: 0 });
    }
    return { source: rec.src, type: rec.type, payload: rec.payload };
  }

  private startRemoteSend(dc: DcState, proc: LocalProc, entry: RemoteProc, dst: Endpoint, type: number, payload: Payload, sendrec: boolean, waiter: Waiter<void> | undefined): RemoteSendOp {
    const op: RemoteSendOp = { kind: 'send', id: this.nextId++, node: entry.node, dc, proc, dst, type, payload, sendrec, waiter, redirects: 0, cancelling: false };
    proc.sending++;
    proc.sendto = dst;
    if (sendrec) proc.sendrecOpId = op.id;
    // Answering a client's sendrec with a plain send (MINIX style): the request's implied ack goes first.
    const pending = proc.replyTo?.get(dst);
    if (pending !== undefined) {
      proc.replyTo!.answered(dst);
      this.emit(pending.node, { k: 'send-ack', dc: dc.dcid, id: pending.id, rc: 0 });
    }
    this.outstanding.set(op);
    this.emit(op.node, { k: 'send', dc: dc.dcid, id: op.id, src: proc.endpoint, dst, type, payload, rec: sendrec });
    return op;
  }

  /**
   * A message from the server of a remote sendrec still in its send phase proves the request was
   * taken: the owner sends no separate send-ack for a taken sendrec, the reply carries it.
   */
  private impliedAck(p: LocalProc, server: Endpoint, node: number, id: number): void {
    const w = p.recv;
    if (w === undefined || w.mode !== RecvMode.SendrecSending || w.from !== server || p.sendrecOpId !== id) return;
    const op = this.outstanding.get(id);
    if (op?.kind !== 'send' || op.proc !== p || op.dst !== server) return;
    this.outstanding.delete(op.id);
    p.sending--;
    p.counters.rmtSent++;
    w.mode = RecvMode.SendrecReply;
    w.node = node;
  }

  /** Timeout or abort of a remote send/sendrec: withdraw if still queued there; delivery wins otherwise. */
  private expireRemoteSend(op: RemoteSendOp): void {
    if (this.outstanding.get(op.id) === op) {
      op.cancelling = true;
      this.emit(op.node, { k: 'cancel', dc: op.dc.dcid, id: op.id });
      return;
    }
    // Sendrec past its send phase: withdraw the reply wait.
    const proc = op.proc;
    const w = proc.recv;
    if (w !== undefined && w.mode === RecvMode.SendrecReply && w.from === op.dst && proc.sendrecOpId === op.id) this.abandonReply(op.dc, proc, w);
  }

  /**
   * The caller of a remote sendrec whose request was taken gave up (timeout, abort). The server's
   * node is asked to refuse the reply from now on, and the call stays blocked until it confirms: a
   * reply sent before that arrives first (links are FIFO) and completes the call. Delivery wins, and
   * a server whose reply succeeded knows its client got it.
   */
  private abandonReply(dc: DcState, proc: LocalProc, w: RecvWait): void {
    const node = w.node;
    if (node !== undefined && node !== this.nodeId && dc.nodes.has(node) && !this.downNodes.has(node)) {
      this.emit(node, { k: 'reply-cancel', dc: dc.dcid, id: proc.sendrecOpId, client: proc.endpoint, server: w.from });
      return;
    }
    proc.recv = undefined;
    w.waiter.rejectExpired({ endpoint: w.from });
  }

  private onSendAck(op: RemoteSendOp, frame: SendAckFrame): void {
    this.outstanding.delete(op.id);
    const proc = op.proc;
    if (frame.rc === 0) {
      proc.sending--;
      proc.counters.rmtSent++;
      if (!op.sendrec) {
        op.waiter!.resolve();
        return;
      }
      const w = proc.recv;
      if (w === undefined || w.mode !== RecvMode.SendrecSending) return;
      w.mode = RecvMode.SendrecReply;
      w.node = op.node;
      // The request was delivered, but the caller gave up meanwhile: withdraw the reply wait.
      if (op.cancelling) this.abandonReply(op.dc, proc, w);
      return;
    }
    const err = DvsError.fromErrno(frame.rc, undefined, { details: { endpoint: op.dst, node: op.node } });
    if (err.code === 'EDVSNONODE' && frame.node !== undefined && !op.cancelling && op.redirects < this.maxRedirects) {
      if (this.redirect(op, frame.node)) return;
    }
    if (op.cancelling && err.code === 'EDVSNONODE') {
      // Delivered nowhere and the caller gave up meanwhile: report its timeout or abort.
      const reason = (op.waiter?.expired ?? op.proc.recv?.waiter.expired) ?? 'EDVSTIMEDOUT';
      this.settleSendOp(op, new DvsError(reason, undefined, { details: { endpoint: op.dst } }));
      return;
    }
    this.settleSendOp(op, err);
  }

  /** Follows "moved to node N": updates the descriptor and resends. A move to this very node is not followed (it fails EDVSNONODE): the directory binds it here first. */
  private redirect(op: RemoteSendOp, node: number): boolean {
    const dc = op.dc;
    const entry = dc.entryAt(dc.space.slotOf(op.dst));
    if (entry === undefined || entry.endpoint !== op.dst) return false;
    if (entry.kind === 'remote') {
      if (node === this.nodeId || !dc.nodes.has(node) || this.downNodes.has(node)) return false;
      entry.node = node;
      op.redirects++;
      op.node = node;
      op.id = this.nextId++;
      if (op.sendrec) op.proc.sendrecOpId = op.id;
      op.cancelling = false;
      this.outstanding.set(op);
      this.emit(node, { k: 'send', dc: dc.dcid, id: op.id, src: op.proc.endpoint, dst: op.dst, type: op.type, payload: op.payload, rec: op.sendrec });
      return true;
    }
    return false;
  }

  private settleSendOp(op: RemoteSendOp, err: DvsError): void {
    const proc = op.proc;
    proc.sending--;
    if (op.sendrec) {
      const w = proc.recv;
      if (w !== undefined && w.from === op.dst && (w.mode === RecvMode.SendrecSending || w.mode === RecvMode.SendrecReply)) {
        proc.recv = undefined;
        w.waiter.reject(err);
      }
    } else {
      op.waiter!.reject(err);
    }
  }

  private failOp(op: RemoteOp, code: DvsErrorCode): void {
    this.outstanding.delete(op.id);
    if (op.kind === 'chunk') op.done(new DvsError(code).errno, undefined);
    else this.settleSendOp(op, new DvsError(code, undefined, { details: { endpoint: op.dst, node: op.node } }));
  }

  // ---------------------------------------------------------------- grants and copies

  /** @internal */
  grant(proc: LocalProc, dc: DcState, buffer: Uint8Array, opts: GrantOptions, id?: number): number {
    if (!(buffer instanceof Uint8Array)) fail('EDVSBADVALUE', 'a grant needs a Uint8Array');
    const offset = checkCount('grant offset', opts.offset, 0, buffer.byteLength);
    const length = checkCount('grant length', opts.length, buffer.byteLength - offset, buffer.byteLength - offset);
    return this.addGrant(proc, dc, buffer, undefined, offset, length, opts, id);
  }

  /**
   * Registers a grant whose bytes live elsewhere (a client OS process): `length` bytes reached
   * through `backend`. `id`, when given, is the grant id the owner chose; it must be unused.
   */
  grantExternal(dcid: number, endpoint: Endpoint, backend: GrantBackend, length: number, opts: GrantOptions, id?: number): number {
    const dc = this.dc(dcid);
    const proc = this.localProc(dc, endpoint);
    checkCount('grant length', length, 0, Number.MAX_SAFE_INTEGER);
    return this.addGrant(proc, dc, undefined, backend, 0, length, opts, id);
  }

  private addGrant(proc: LocalProc, dc: DcState, buffer: Uint8Array | undefined, backend: GrantBackend | undefined, offset: number, length: number, opts: GrantOptions, requestedId: number | undefined): number {
    this.checkCaller(proc, CALL_BIT.grant);
    const access = opts.access;
    if (access !== 'read' && access !== 'write' && access !== 'readwrite') fail('EDVSBADVALUE', `grant access must be read, write or readwrite, got ${String(access)}`);
    if (opts.grantee !== ANY) dc.space.checkEndpoint(opts.grantee);
    let id: number;
    if (requestedId === undefined) {
      while (proc.grants?.has(proc.nextGrant) === true) proc.nextGrant++;
      id = proc.nextGrant++;
    } else {
      if (!Number.isSafeInteger(requestedId) || requestedId <= 0) fail('EDVSBADVALUE', `grant id must be a positive integer, got ${String(requestedId)}`);
      if (proc.grants?.has(requestedId) === true) fail('EDVSEXIST', `grant ${requestedId} already exists`);
      id = requestedId;
    }
    const g: Grant = { id, buffer, backend, offset, length, read: access !== 'write', write: access !== 'read', grantee: opts.grantee, whileWaiting: opts.whileWaiting ?? true };
    (proc.grants ??= new Map()).set(id, g);
    return id;
  }

  /** @internal */
  revoke(proc: LocalProc, id: number): void {
    if (proc.grants?.delete(id) !== true) fail('EDVSBADVALUE', `no grant ${id}`);
  }

  /** Checks a copy against the owner's grant and returns the grant; the owner is local. */
  private grantFor(owner: LocalProc, requester: Endpoint, id: number, offset: number, length: number, write: boolean): Grant {
    const g = owner.grants?.get(id);
    if (g === undefined) fail('EDVSBADVALUE', `endpoint ${owner.endpoint} has no grant ${id}`, { grant: id });
    if (g.grantee !== ANY && g.grantee !== requester && requester !== owner.endpoint) fail('EDVSACCES', `grant ${id} is not for endpoint ${requester}`, { grant: id });
    if (write ? !g.write : !g.read) fail('EDVSACCES', `grant ${id} does not allow ${write ? 'writing' : 'reading'}`, { grant: id });
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > g.length) {
      fail('EDVSRANGE', `bytes ${offset}..${offset + length} outside grant ${id} of ${g.length} bytes`, { grant: id });
    }
    if (g.whileWaiting && requester !== owner.endpoint && !this.isWaitingFor(owner, requester)) {
      fail('EDVSPROCSTS', `grant owner ${owner.endpoint} is not blocked in IPC with ${requester}`, { grant: id });
    }
    return g;
  }

  private isWaitingFor(owner: LocalProc, peer: Endpoint): boolean {
    return (owner.recv !== undefined && owner.recv.from === peer) || (owner.sending > 0 && owner.sendto === peer);
  }

  private resolveOwner(dc: DcState, proc: LocalProc, ref: GrantRef): ProcEntry {
    const owner = ref.owner === SELF ? proc.endpoint : ref.owner;
    if (owner === proc.endpoint) return proc;
    const entry = dc.lookup(owner);
    if (entry.kind === 'remote') this.checkRoute(dc, entry);
    return entry;
  }

  /** @internal Copies from someone's grant into a local buffer, in chunks. */
  copyFrom(dc: DcState, proc: LocalProc, src: GrantRef, into: Uint8Array, opts: CopyFromOptions | undefined): Promise<number> {
    try {
      if (!(into instanceof Uint8Array)) fail('EDVSBADVALUE', 'copyFrom needs a Uint8Array to copy into');
      const intoOffset = checkCount('intoOffset', opts?.intoOffset, 0, into.byteLength);
      const length = checkCount('length', opts?.length, into.byteLength - intoOffset, into.byteLength - intoOffset);
      const sink = (at: number, data: Uint8Array): void => into.set(data, intoOffset + at);
      return this.runCopy(dc, proc, src, undefined, length, sink, undefined, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** @internal Copies a local buffer into someone's grant, in chunks. */
  copyTo(dc: DcState, proc: LocalProc, dst: GrantRef, data: Uint8Array, opts: CallOptions | undefined): Promise<number> {
    try {
      if (!(data instanceof Uint8Array)) fail('EDVSBADVALUE', 'copyTo needs a Uint8Array of data');
      const source = (at: number, len: number): Uint8Array => data.subarray(at, at + len);
      return this.runCopy(dc, proc, undefined, dst, data.byteLength, undefined, source, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** @internal Third-party copy between two grants, neither necessarily the caller's. */
  copy(dc: DcState, proc: LocalProc, src: GrantRef, dst: GrantRef, length: number, opts: CallOptions | undefined): Promise<number> {
    try {
      checkCount('length', length, 0, Number.MAX_SAFE_INTEGER);
      return this.runCopy(dc, proc, src, dst, length, undefined, undefined, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * The copy engine. Each chunk is read from `src` (a grant, or the caller's `source` buffer) and
   * written to `dst` (a grant, or the caller's `sink`); local chunks move at once, remote ones travel
   * as copy-read / copy-write frames with up to `copyWindow` chunks in flight. When both grants live
   * on other nodes, the source's node moves each chunk straight to the destination (copy-relay).
   */
  private runCopy(
    dc: DcState,
    proc: LocalProc,
    src: GrantRef | undefined,
    dst: GrantRef | undefined,
    length: number,
    sink: ((at: number, data: Uint8Array) => void) | undefined,
    source: ((at: number, len: number) => Uint8Array) | undefined,
    opts: CallOptions | undefined,
  ): Promise<number> {
    this.checkCaller(proc, CALL_BIT.copy);
    checkTimeout(opts);
    checkNotAborted(opts);
    if (proc.copying) fail('EDVSBUSY', 'a copy is already in progress for this process');
    const srcEntry = src === undefined ? undefined : this.resolveOwner(dc, proc, src);
    const dstEntry = dst === undefined ? undefined : this.resolveOwner(dc, proc, dst);
    const srcBase = checkCount('source offset', src?.offset, 0, Number.MAX_SAFE_INTEGER);
    const dstBase = checkCount('destination offset', dst?.offset, 0, Number.MAX_SAFE_INTEGER);
    const me = proc.endpoint;
    // Validate both local ends up front so a bad request fails before any byte moves.
    if (srcEntry?.kind === 'local') this.grantFor(srcEntry, me, src!.grant, srcBase, length, false);
    if (dstEntry?.kind === 'local') this.grantFor(dstEntry, me, dst!.grant, dstBase, length, true);
    const chunk = this.limits.maxCopyChunk;

    const inMemory = (entry: ProcEntry | undefined, ref: GrantRef | undefined): boolean =>
      entry === undefined || (entry.kind === 'local' && entry.grants?.get(ref!.grant)?.buffer !== undefined);
    if (inMemory(srcEntry, src) && inMemory(dstEntry, dst)) {
      for (let at = 0; at < length; at += chunk) {
        const len = Math.min(chunk, length - at);
        const data = srcEntry !== undefined ? (this.readLocal(srcEntry as LocalProc, me, src!.grant, srcBase + at, len) as Uint8Array) : source!(at, len);
        if (dstEntry !== undefined) void this.writeLocal(dstEntry as LocalProc, me, dst!.grant, dstBase + at, data);
        else sink!(at, data);
      }
      proc.counters.lclCopies++;
      return Promise.resolve(length);
    }

    // Both grants on other nodes: the source's node moves each chunk to the destination itself.
    const relay = srcEntry?.kind === 'remote' && dstEntry?.kind === 'remote';
    proc.copying = true;
    proc.counters.rmtCopies++;
    const waiter = new Waiter<number>();
    let next = 0;
    let inFlight = 0;
    let failed = false;
    const finish = (err: DvsError | undefined): void => {
      if (waiter.settled) return;
      proc.copying = false;
      if (err !== undefined) waiter.reject(err);
      else waiter.resolve(length);
    };
    const pump = (): void => {
      while (!failed && !waiter.settled && inFlight < this.copyWindow && next < length) {
        const at = next;
        const len = Math.min(chunk, length - at);
        next += len;
        inFlight++;
        const moved = relay
          ? this.relayChunk(dc, proc, srcEntry as RemoteProc, src!, srcBase + at, len, dstEntry as RemoteProc, dst!, dstBase + at)
          : this.readChunk(dc, proc, srcEntry, src, srcBase + at, len, source, at).then((data) => this.writeChunk(dc, proc, dstEntry, dst, dstBase + at, data, sink, at));
        moved.then(
          () => {
            inFlight--;
            if (next >= length && inFlight === 0) finish(undefined);
            else pump();
          },
          (err: unknown) => {
            inFlight--;
            failed = true;
            finish(isDvsError(err) ? err : new DvsError('EDVSIO', String(err)));
          },
        );
      }
    };
    if (opts !== undefined) {
      waiter.arm(this.clock, opts, () => {
        failed = true;
        proc.copying = false;
        waiter.rejectExpired();
      });
    }
    if (length === 0) finish(undefined);
    else pump();
    return waiter.promise;
  }

  /** Bytes of a grant window: a view of in-process memory, or a promise of bytes from its backend. */
  private readLocal(owner: LocalProc, requester: Endpoint, grant: number, offset: number, len: number): Uint8Array | Promise<Uint8Array> {
    const g = this.grantFor(owner, requester, grant, offset, len, false);
    const start = g.offset + offset;
    if (g.buffer === undefined) return g.backend!.read(start, len);
    return g.buffer.subarray(start, start + len);
  }

  private writeLocal(owner: LocalProc, requester: Endpoint, grant: number, offset: number, data: Uint8Array): void | Promise<void> {
    const g = this.grantFor(owner, requester, grant, offset, data.byteLength, true);
    if (g.buffer === undefined) return g.backend!.write(g.offset + offset, data);
    g.buffer.set(data, g.offset + offset);
  }

  private readChunk(dc: DcState, proc: LocalProc, entry: ProcEntry | undefined, ref: GrantRef | undefined, offset: number, len: number, source: ((at: number, len: number) => Uint8Array) | undefined, at: number): Promise<Uint8Array> {
    if (entry === undefined) return Promise.resolve(source!(at, len));
    if (entry.kind === 'local') {
      try {
        const data = this.readLocal(entry, proc.endpoint, ref!.grant, offset, len);
        // Copy out: the bytes may travel on after the owner's buffer changes.
        if (data instanceof Uint8Array) return Promise.resolve(data.slice());
        return data.then((bytes) => {
          if (!(bytes instanceof Uint8Array) || bytes.byteLength !== len) throw new DvsError('EDVSPACKSIZE', `grant backend returned ${bytes instanceof Uint8Array ? bytes.byteLength : 'no'} bytes where ${len} were asked`);
          return bytes;
        });
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    return this.chunkRequest(dc, entry.node, proc, (id) => ({ k: 'copy-read', dc: dc.dcid, id, requester: proc.endpoint, owner: entry.endpoint, grant: ref!.grant, offset, length: len })).then((data) => {
      if (data === undefined || data.byteLength !== len) throw new DvsError('EDVSPACKSIZE', `copy chunk of ${data?.byteLength ?? 0} bytes where ${len} were asked`);
      return data;
    });
  }

  private writeChunk(dc: DcState, proc: LocalProc, entry: ProcEntry | undefined, ref: GrantRef | undefined, offset: number, data: Uint8Array, sink: ((at: number, data: Uint8Array) => void) | undefined, at: number): Promise<void> {
    if (entry === undefined) {
      sink!(at, data);
      return Promise.resolve();
    }
    if (entry.kind === 'local') {
      try {
        return this.writeLocal(entry, proc.endpoint, ref!.grant, offset, data) ?? Promise.resolve();
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const bytes = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    return this.chunkRequest(dc, entry.node, proc, (id) => ({ k: 'copy-write', dc: dc.dcid, id, requester: proc.endpoint, owner: entry.endpoint, grant: ref!.grant, offset, data: bytes })).then(() => undefined);
  }

  /** Both grants on other nodes: the source's node moves the chunk to the destination itself (copy-relay). */
  private relayChunk(dc: DcState, proc: LocalProc, src: RemoteProc, srcRef: GrantRef, offset: number, len: number, dst: RemoteProc, dstRef: GrantRef, dstOffset: number): Promise<void> {
    return this.chunkRequest(dc, src.node, proc, (id) => ({
      k: 'copy-relay',
      dc: dc.dcid,
      id,
      requester: proc.endpoint,
      owner: src.endpoint,
      grant: srcRef.grant,
      offset,
      length: len,
      dstNode: dst.node,
      dstOwner: dst.endpoint,
      dstGrant: dstRef.grant,
      dstOffset,
    })).then(() => undefined);
  }

  private chunkRequest(dc: DcState, node: number, proc: LocalProc | undefined, build: (id: number) => CopyReadFrame | CopyWriteFrame | CopyRelayFrame): Promise<Uint8Array | undefined> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const op: RemoteChunkOp = {
        kind: 'chunk',
        id,
        node,
        dc,
        proc,
        done: (rc, data) => (rc === 0 ? resolve(data) : reject(DvsError.fromErrno(rc, undefined, { details: { node } }))),
      };
      this.outstanding.set(op);
      this.emit(node, build(id));
    });
  }

  // ---------------------------------------------------------------- unbind and failure cascades

  private unbindLocal(dc: DcState, proc: LocalProc, broadcast: boolean): void {
    if (!proc.alive) return;
    proc.alive = false;
    dc.clear(proc.slot);
    const ep = proc.endpoint;
    // Senders queued on the dying process learn it died.
    for (let rec = proc.queueHead; rec !== undefined; rec = proc.queueHead) {
      proc.dequeue(rec);
      const code: DvsErrorCode = rec.sendrec ? 'EDVSDEADSRCDST' : 'EDVSDSTDIED';
      if (rec.sender !== undefined) {
        rec.sender.sending--;
        if (rec.sendrec) {
          const w = rec.sender.recv;
          rec.sender.recv = undefined;
          w?.waiter.reject(new DvsError(code, undefined, { details: { endpoint: ep } }));
        } else {
          rec.waiter!.reject(new DvsError(code, undefined, { details: { endpoint: ep } }));
        }
      } else {
        this.remoteQueued.get(rec.node)?.delete(rec.id);
        this.emit(rec.node, { k: 'send-ack', dc: dc.dcid, id: rec.id, rc: new DvsError(code).errno });
      }
    }
    // The process's own calls end.
    const shutdown = (): DvsError => new DvsError('EDVSSHUTDOWN', 'endpoint unbound', { details: { endpoint: ep } });
    for (const other of dc.locals()) {
      for (let rec = other.queueHead; rec !== undefined; ) {
        const next = rec.next;
        if (rec.sender === proc) {
          other.dequeue(rec);
          rec.waiter?.reject(shutdown());
        }
        rec = next;
      }
    }
    for (const op of this.outstanding.values()) {
      if (op.proc !== proc) continue;
      this.outstanding.delete(op.id);
      if (op.kind === 'chunk') op.done(shutdown().errno, undefined);
      else op.waiter?.reject(shutdown());
    }
    proc.sending = 0;
    const w = proc.recv;
    proc.recv = undefined;
    w?.waiter.reject(shutdown());
    proc.notifies = undefined;
    proc.grants = undefined;
    proc.replyTo = undefined;
    this.failWaitersOn(dc, ep);
    if (broadcast && this.transport !== undefined) {
      for (const node of dc.nodes) if (node !== this.nodeId && !this.downNodes.has(node)) this.emit(node, { k: 'unbound', dc: dc.dcid, ep });
    }
    this.fireWatches(dc, proc.slot);
    this.observer?.unbound?.(dc.dcid, ep);
  }

  private dropRemote(dc: DcState, entry: RemoteProc): void {
    if (dc.entryAt(entry.slot) === entry) dc.clear(entry.slot);
    this.failWaitersOn(dc, entry.endpoint);
    this.fireWatches(dc, entry.slot);
  }

  /** Everyone local waiting on `ep` (receiving from it, awaiting its reply, queued as it) is told it died. */
  private failWaitersOn(dc: DcState, ep: Endpoint, ownerSaidSo = false): void {
    for (const p of dc.locals()) {
      const w = p.recv;
      if (w !== undefined && w.from === ep) {
        if (w.mode === RecvMode.Receive) {
          p.recv = undefined;
          w.waiter.reject(new DvsError('EDVSSRCDIED', undefined, { details: { endpoint: ep } }));
        } else if (w.mode === RecvMode.SendrecReply) {
          p.recv = undefined;
          w.waiter.reject(new DvsError('EDVSDEADSRCDST', undefined, { details: { endpoint: ep } }));
        } else if (w.mode === RecvMode.SendrecSending && ownerSaidSo) {
          // A remote sendrec the dead server had taken: its implied ack (the reply) will never come.
          // (Requests still queued there were already answered with an error, ahead of this news.)
          const op = this.outstanding.get(p.sendrecOpId);
          if (op?.kind === 'send' && op.proc === p && op.dst === ep) {
            this.outstanding.delete(op.id);
            p.sending--;
          }
          p.recv = undefined;
          w.waiter.reject(new DvsError('EDVSDEADSRCDST', undefined, { details: { endpoint: ep } }));
        }
      }
      p.replyTo?.forget(ep);
      for (let rec = p.queueHead; rec !== undefined; ) {
        const next = rec.next;
        if (rec.src === ep && rec.sender === undefined) {
          p.dequeue(rec);
          this.remoteQueued.get(rec.node)?.delete(rec.id);
        }
        rec = next;
      }
    }
  }

  /** The link to `node` is gone for good: fail every call waiting on it with EDVSNOTCONN. */
  nodeDown(node: number): void {
    if (node === this.nodeId) return;
    this.downNodes.add(node);
    this.failNode(node, 'EDVSNOTCONN', undefined);
  }

  /** The link to `node` is usable again. */
  nodeUp(node: number): void {
    this.downNodes.delete(node);
  }

  private failNode(node: number, code: DvsErrorCode, only: DcState | undefined): void {
    for (const op of this.outstanding.values()) {
      if (op.node !== node) continue;
      if (only !== undefined && op.dc !== only) continue;
      this.failOp(op, code);
    }
    for (const dc of only === undefined ? this.dcs.values() : [only]) {
      for (const p of dc.locals()) {
        const w = p.recv;
        if (w !== undefined && w.from !== ANY && (w.mode === RecvMode.Receive || w.mode === RecvMode.SendrecReply)) {
          const e = dc.entryAt(dc.space.slotOf(w.from));
          // By the reply's node too: the directory may have dropped the server's descriptor already.
          if ((e?.kind === 'remote' && e.node === node) || w.node === node) {
            p.recv = undefined;
            w.waiter.reject(new DvsError(code, undefined, { details: { endpoint: w.from, node } }));
          }
        }
        p.replyTo?.forgetNode(node);
        for (let rec = p.queueHead; rec !== undefined; ) {
          const next = rec.next;
          if (rec.sender === undefined && rec.node === node) p.dequeue(rec);
          rec = next;
        }
      }
    }
    if (only === undefined) this.remoteQueued.delete(node);
  }

  // ---------------------------------------------------------------- incoming frames

  /** Handles one frame from `from`'s kernel. Never throws: bad frames are refused and counted. */
  receiveFrame(from: number, frame: KernelFrame): void {
    this.stats.framesIn++;
    if (!this.running) return;
    const dc = this.dcs.get(frame.dc);
    if (dc === undefined || !dc.nodes.has(from)) {
      this.refuse(from, frame, dc === undefined ? 'EDVSBADDCID' : 'EDVSNODCNODE');
      return;
    }
    try {
      switch (frame.k) {
        case 'send':
          this.onSendFrame(dc, from, frame);
          break;
        case 'send-ack': {
          const op = this.outstanding.get(frame.id);
          if (op?.kind === 'send' && op.node === from) this.onSendAck(op, frame);
          break;
        }
        case 'cancel': {
          const rec = this.remoteQueued.get(from)?.get(frame.id);
          if (rec?.queuedOn !== undefined) {
            rec.queuedOn.dequeue(rec);
            this.remoteQueued.get(from)?.delete(frame.id);
            this.emit(from, { k: 'cancel-ack', dc: dc.dcid, id: frame.id });
          } else if (this.dropReplyWait(dc, from, frame.id)) {
            // A sendrec taken but not answered yet: withdrawn too; the server's reply now fails with EDVSPROCSTS.
            this.emit(from, { k: 'cancel-ack', dc: dc.dcid, id: frame.id });
          } else {
            // Already answered (the reply or the plain send went ahead of this ack) or a plain send taken: delivery wins.
            this.emit(from, { k: 'send-ack', dc: dc.dcid, id: frame.id, rc: 0 });
          }
          break;
        }
        case 'cancel-ack': {
          const op = this.outstanding.get(frame.id);
          if (op?.kind === 'send' && op.node === from && op.cancelling) {
            this.outstanding.delete(op.id);
            const reason = (op.waiter?.expired ?? op.proc.recv?.waiter.expired) ?? 'EDVSTIMEDOUT';
            this.settleSendOp(op, new DvsError(reason, undefined, { details: { endpoint: op.dst } }));
          }
          break;
        }
        case 'reply': {
          const entry = dc.entryAt(dc.space.checkEndpoint(frame.dst));
          const client = entry?.kind === 'local' && entry.endpoint === frame.dst ? entry : undefined;
          if (client !== undefined) this.impliedAck(client, frame.src, from, frame.id);
          const w = client?.recv;
          // Only the reply to the current request: one to an abandoned earlier sendrec carries another id.
          if (w !== undefined && w.mode === RecvMode.SendrecReply && w.from === frame.src && client!.sendrecOpId === frame.id) this.deliver(client!, w, frame.src, frame.type, frame.payload);
          else this.stats.repliesDropped++;
          break;
        }
        case 'reply-cancel': {
          const entry = dc.entryAt(dc.space.checkEndpoint(frame.server));
          if (entry?.kind === 'local' && entry.endpoint === frame.server) {
            const pending = entry.replyTo?.get(frame.client);
            if (pending !== undefined && pending.node === from && pending.id === frame.id) entry.replyTo!.answered(frame.client);
          }
          // Always answered: whatever reply to it went out did so before this ack, on the same link.
          this.emit(from, { k: 'reply-cancel-ack', dc: dc.dcid, id: frame.id, client: frame.client });
          break;
        }
        case 'reply-cancel-ack': {
          const entry = dc.entryAt(dc.space.checkEndpoint(frame.client));
          if (entry?.kind !== 'local' || entry.endpoint !== frame.client) break;
          const w = entry.recv;
          if (w !== undefined && w.mode === RecvMode.SendrecReply && w.node === from && w.waiter.expired !== undefined && entry.sendrecOpId === frame.id) {
            entry.recv = undefined;
            w.waiter.rejectExpired({ endpoint: w.from });
          }
          break;
        }
        case 'notify': {
          const entry = dc.lookup(frame.dst);
          const srcSlot = dc.space.checkEndpoint(frame.src);
          if (entry.kind === 'local' && dc.space.isSystemSlot(srcSlot) && dc.space.isSystemSlot(entry.slot)) {
            this.notifyLocal(entry, frame.src, dc.space.privId(srcSlot), frame.arg >>> 0);
          }
          break;
        }
        case 'unbound': {
          const slot = dc.space.checkEndpoint(frame.ep);
          const entry = dc.entryAt(slot);
          if (entry?.kind === 'remote' && entry.endpoint === frame.ep) {
            this.dropRemote(dc, entry);
            this.failWaitersOn(dc, frame.ep, true);
          }
          // Even when the slot now holds a newer incarnation (here or elsewhere): someone may still
          // wait on the dead one, e.g. a sendrec whose ack landed after the directory moved the slot.
          else if (entry?.endpoint !== frame.ep) this.failWaitersOn(dc, frame.ep, true);
          break;
        }
        case 'copy-read':
          this.onCopyRead(dc, from, frame);
          break;
        case 'copy-write':
          this.onCopyWrite(dc, from, frame);
          break;
        case 'copy-relay':
          this.onCopyRelay(dc, from, frame);
          break;
        case 'copy-data':
        case 'copy-ack': {
          const op = this.outstanding.get(frame.id);
          if (op?.kind === 'chunk' && op.node === from) {
            this.outstanding.delete(op.id);
            op.done(frame.rc, frame.k === 'copy-data' ? frame.data : undefined);
          }
          break;
        }
        default:
          this.stats.framesRefused++;
      }
    } catch (err) {
      this.refuse(from, frame, isDvsError(err) ? err.code : 'EDVSBADREQUEST');
    }
  }

  /** Answers a refused request with its error where the frame expects an answer; counts it. */
  private refuse(from: number, frame: KernelFrame, code: DvsErrorCode): void {
    this.stats.framesRefused++;
    const rc = new DvsError(code).errno;
    if (frame.k === 'send') this.emit(from, { k: 'send-ack', dc: frame.dc, id: frame.id, rc });
    else if (frame.k === 'copy-read') this.emit(from, { k: 'copy-data', dc: frame.dc, id: frame.id, rc });
    else if (frame.k === 'copy-write' || frame.k === 'copy-relay') this.emit(from, { k: 'copy-ack', dc: frame.dc, id: frame.id, rc });
    // No reply can come from a node that refuses the DC: let the client's call end.
    else if (frame.k === 'reply-cancel') this.emit(from, { k: 'reply-cancel-ack', dc: frame.dc, id: frame.id, client: frame.client });
  }

  /** Forgets that a local server owes request `id` of `node` a reply; whether one was owed. Scans: cancels are rare. */
  private dropReplyWait(dc: DcState, node: number, id: number): boolean {
    for (const p of dc.locals()) if (p.replyTo?.withdraw(node, id) === true) return true;
    return false;
  }

  private onSendFrame(dc: DcState, from: number, frame: SendFrame): void {
    const srcSlot = dc.space.checkEndpoint(frame.src);
    const srcEntry = dc.entryAt(srcSlot);
    if (srcEntry?.kind === 'local') {
      // A peer may not speak for an endpoint this node owns.
      this.refuse(from, frame, 'EDVSBADSRCDST');
      return;
    }
    checkMessageType(frame.type);
    checkPayload(frame.payload, this.limits.maxPayloadBytes);
    this.autobind(dc, frame.src, srcEntry, from);
    // A sender older than the incarnation this node knows for its slot is dead: refuse its message.
    if (dc.entryAt(srcSlot)?.endpoint !== frame.src) {
      this.refuse(from, frame, 'EDVSENDPOINT');
      return;
    }
    let entry: ProcEntry;
    try {
      entry = dc.lookup(frame.dst);
    } catch (err) {
      this.refuse(from, frame, isDvsError(err) ? err.code : 'EDVSBADREQUEST');
      return;
    }
    if (entry.kind === 'remote') {
      this.stats.framesRefused++;
      this.emit(from, { k: 'send-ack', dc: dc.dcid, id: frame.id, rc: new DvsError('EDVSNONODE').errno, node: entry.node });
      return;
    }
    const w = entry.recv;
    if (accepts(w, frame.src)) {
      this.deliver(entry, w!, frame.src, frame.type, frame.payload);
      if (frame.rec) (entry.replyTo ??= new ReplyWaits()).set(frame.src, from, frame.id);
      else this.emit(from, { k: 'send-ack', dc: dc.dcid, id: frame.id, rc: 0 });
      return;
    }
    const rec: QueuedSend = { src: frame.src, type: frame.type, payload: frame.payload, sendrec: frame.rec, sender: undefined, waiter: undefined, node: from, id: frame.id, prev: undefined, next: undefined, queuedOn: undefined };
    entry.enqueue(rec);
    let byId = this.remoteQueued.get(from);
    if (byId === undefined) this.remoteQueued.set(from, (byId = new IdTable()));
    byId.set(rec);
  }

  /** Learns a sender's location from its traffic (the original's autobind), replacing older incarnations. */
  private autobind(dc: DcState, src: Endpoint, entry: ProcEntry | undefined, node: number): void {
    if (entry === undefined) {
      if (dc.space.generationOf(src) <= dc.lastGeneration(dc.space.slotOf(src))) return;
      dc.set(dc.space.slotOf(src), { kind: 'remote', endpoint: src, slot: dc.space.slotOf(src), node, name: `ep${dc.space.slotOf(src)}` });
      this.fireWatches(dc, dc.space.slotOf(src));
    } else if (entry.kind === 'remote') {
      if (entry.endpoint === src) entry.node = node;
      else if (dc.space.generationOf(src) > dc.space.generationOf(entry.endpoint)) {
        this.dropRemote(dc, entry);
        dc.set(entry.slot, { kind: 'remote', endpoint: src, slot: entry.slot, node, name: entry.name });
        this.fireWatches(dc, entry.slot);
      }
    }
  }

  private onCopyRead(dc: DcState, from: number, frame: CopyReadFrame): void {
    const owner = this.localProc(dc, frame.owner);
    const data = this.readLocal(owner, frame.requester, frame.grant, frame.offset, frame.length);
    if (data instanceof Uint8Array) {
      this.emit(from, { k: 'copy-data', dc: dc.dcid, id: frame.id, rc: 0, data: data.slice() } satisfies CopyDataFrame);
      return;
    }
    data.then(
      (bytes) => this.emit(from, { k: 'copy-data', dc: dc.dcid, id: frame.id, rc: 0, data: bytes }),
      (err: unknown) => this.emit(from, { k: 'copy-data', dc: dc.dcid, id: frame.id, rc: errnoOf(err) }),
    );
  }

  private onCopyWrite(dc: DcState, from: number, frame: CopyWriteFrame): void {
    const owner = this.localProc(dc, frame.owner);
    if (!(frame.data instanceof Uint8Array)) fail('EDVSBADVALUE', 'copy-write without bytes');
    const done = this.writeLocal(owner, frame.requester, frame.grant, frame.offset, frame.data);
    if (done === undefined) {
      this.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc: 0 } satisfies CopyAckFrame);
      return;
    }
    done.then(
      () => this.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc: 0 }),
      (err: unknown) => this.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc: errnoOf(err) }),
    );
  }

  /**
   * A chunk of another node's third-party copy whose source grant lives here: read it (checked for
   * the requester) and store it at the destination (checked there for the same requester), then ack.
   */
  private onCopyRelay(dc: DcState, from: number, frame: CopyRelayFrame): void {
    const owner = this.localProc(dc, frame.owner);
    const read = this.readLocal(owner, frame.requester, frame.grant, frame.offset, frame.length);
    const store = (bytes: Uint8Array): void | Promise<unknown> => {
      if (frame.dstNode === this.nodeId) return this.writeLocal(this.localProc(dc, frame.dstOwner), frame.requester, frame.dstGrant, frame.dstOffset, bytes);
      if (!dc.nodes.has(frame.dstNode)) fail('EDVSNODCNODE', `node ${frame.dstNode} is not a member of DC ${dc.dcid}`);
      if (this.downNodes.has(frame.dstNode)) fail('EDVSNOTCONN', `node ${frame.dstNode} is down`, { node: frame.dstNode });
      // Copied out of in-process memory: the bytes travel on after the owner's buffer may change.
      const data = read instanceof Uint8Array ? bytes.slice() : bytes;
      return this.chunkRequest(dc, frame.dstNode, undefined, (id) => ({ k: 'copy-write', dc: dc.dcid, id, requester: frame.requester, owner: frame.dstOwner, grant: frame.dstGrant, offset: frame.dstOffset, data }));
    };
    const answer = (rc: number): void => this.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc } satisfies CopyAckFrame);
    Promise.resolve(read)
      .then((bytes) => {
        if (!(bytes instanceof Uint8Array) || bytes.byteLength !== frame.length) throw new DvsError('EDVSPACKSIZE', `grant backend returned ${bytes instanceof Uint8Array ? bytes.byteLength : 'no'} bytes where ${frame.length} were asked`);
        return store(bytes);
      })
      .then(
        () => answer(0),
        (err: unknown) => answer(errnoOf(err)),
      );
  }

  // ---------------------------------------------------------------- helpers

  private emit(node: number, frame: KernelFrame): void {
    if (this.transport === undefined) return;
    this.stats.framesOut++;
    this.transport.send(node, frame);
  }

  private checkRunning(): void {
    if (!this.running) fail('EDVSDVSINIT', `the kernel of node ${this.nodeId} is shut down`);
  }

  private checkNodeId(node: number, limits: DcLimits): void {
    if (!Number.isInteger(node) || node < 0 || node >= limits.nrNodes) fail('EDVSBADNODEID', `node ${String(node)} outside 0..${limits.nrNodes - 1}`);
  }

  private dc(dcid: number): DcState {
    this.checkRunning();
    const dc = this.dcs.get(dcid);
    if (dc === undefined) fail('EDVSBADDCID', `no DC ${String(dcid)} on node ${this.nodeId}`);
    return dc;
  }

  private localProc(dc: DcState, endpoint: Endpoint): LocalProc {
    const entry = dc.lookup(endpoint);
    if (entry.kind !== 'local') fail('EDVSRMTPROC', `endpoint ${dc.space.format(endpoint)} lives on node ${entry.node}`);
    return entry;
  }

  private describe(dc: DcState): DcInfo {
    let localProcs = 0;
    let remoteProcs = 0;
    for (const e of dc.all()) {
      if (e.kind === 'local') localProcs++;
      else remoteProcs++;
    }
    return { dcid: dc.dcid, name: dc.name, nodes: [...dc.nodes].sort((a, b) => a - b), limits: dc.limits, localProcs, remoteProcs };
  }
}
