/**
 * The rendezvous kernel of one node, its public face: DCs, binding, routes and their moves, node
 * up/down, and the dispatch of frames from other nodes' kernels to the modules that handle them
 * (core.ts lists them). Pure and deterministic: time and the outgoing transport are injected.
 */
import type { CallOptions, GrantOptions } from '../ipc/calls.js';
import type { Payload } from '../ipc/payload.js';
import { HARDWARE, NONE, type Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError, type DvsErrorCode } from '../ipc/errors.js';
import { resolveDcLimits, resolveKernelLimits, type DcLimits, type KernelLimits } from '../ipc/limits.js';
import { callMask, callsOfMask, checkPrivileges, defaultPrivileges, type Privileges } from '../ipc/privileges.js';
import type { Clock } from './clock.js';
import { fail, KernelCore, type KernelObserver, type KernelStats } from './core.js';
import { DcState, type BindWatch } from './dc.js';
import type { KernelFrame, KernelTransport } from './frames.js';
import type { Handover } from './mailbox.js';
import { seededRandom, type InstanceInfo } from './instances.js';
import { checkName, type AbsorbOptions, type Quiescence } from './moves.js';
import { LocalProc, type GrantBackend } from './proc.js';
import { Process, type ProcessCalls } from './process.js';
import { buildProcTable, type ProcInfo } from './procfs.js';
import { isLearnt, ownerOf } from './routes.js';
import { checkNotAborted, checkTimeout, Waiter } from './waiter.js';

export type { KernelObserver, KernelStats } from './core.js';
export type { Handover } from './mailbox.js';
export type { AbsorbOptions, Quiescence } from './moves.js';
export type { InstanceInfo } from './instances.js';

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
  /** Where `svc` frames from other nodes go (migration's steps); without one they are refused. */
  readonly onServiceFrame?: ServiceFrameHandler;
  /** How long a node that handed an endpoint over still answers late cancels for it with "ask there" (default 60 s). */
  readonly tombstoneMs?: number;
  /** Uniform random numbers in [0, 1) for choosing among an instance group's members (default: a PRNG seeded by the node id). */
  readonly random?: () => number;
}

/** Takes the body of a `svc` frame from node `from` about DC `dcid`. */
export type ServiceFrameHandler = (from: number, dcid: number, body: Payload, data: Uint8Array | undefined) => void;

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
  /** Location epoch of the binding (default 0: a new endpoint). */
  readonly epoch?: number;
}

/** Where this kernel routes calls to an endpoint. */
export type RouteInfo =
  | { readonly kind: 'local'; readonly endpoint: Endpoint; readonly epoch: number }
  | { readonly kind: 'remote'; readonly endpoint: Endpoint; readonly node: number; readonly epoch: number }
  | { readonly kind: 'frozen'; readonly endpoint: Endpoint; readonly epoch: number; readonly parked: number }
  | { readonly kind: 'group'; readonly endpoint: Endpoint; readonly members: readonly number[]; readonly primary: number; readonly epoch: number };

const DEFAULT_MAX_REDIRECTS = 4;
const DEFAULT_COPY_WINDOW = 4;
const DEFAULT_TOMBSTONE_MS = 60_000;

export class Kernel {
  readonly nodeId: number;
  readonly clock: Clock;
  readonly limits: KernelLimits;
  readonly stats: KernelStats;
  /** Where `svc` frames from other nodes go (migration's steps); set once the node's services exist. */
  onServiceFrame: ServiceFrameHandler | undefined;
  private readonly core: KernelCore;
  private readonly calls: ProcessCalls;

  constructor(opts: KernelOptions) {
    if (!Number.isInteger(opts.nodeId) || opts.nodeId < 0) fail('EDVSBADNODEID', `node id must be a non-negative integer, got ${String(opts.nodeId)}`);
    this.nodeId = opts.nodeId;
    this.clock = opts.clock;
    this.limits = resolveKernelLimits(opts.limits);
    this.onServiceFrame = opts.onServiceFrame;
    this.core = new KernelCore({
      nodeId: opts.nodeId,
      clock: opts.clock,
      transport: opts.transport,
      limits: this.limits,
      maxRedirects: opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS,
      copyWindow: opts.copyWindow ?? DEFAULT_COPY_WINDOW,
      observer: opts.observer,
      tombstoneMs: opts.tombstoneMs ?? DEFAULT_TOMBSTONE_MS,
      random: opts.random ?? seededRandom(opts.nodeId),
    });
    this.stats = this.core.stats;
    const rv = this.core.rendezvous;
    const cp = this.core.copies;
    this.calls = {
      send: (p, dst, msg, o) => rv.send(p, dst, msg, o),
      receive: (p, src, o) => rv.receive(p, src, o),
      sendrec: (p, dst, msg, o) => rv.sendrec(p, dst, msg, o),
      receiveRequest: (p, o) => rv.receiveRequest(p, o),
      reply: (p, dst, msg) => rv.reply(p, dst, msg),
      replyAndReceive: (p, dst, msg, o) => rv.replyAndReceive(p, dst, msg, o),
      notify: (p, dst, o) => rv.notify(p, dst, o),
      grant: (p, buffer, o) => cp.grant(p, buffer, o),
      revoke: (p, id) => cp.revoke(p, id),
      copyFrom: (p, src, into, o) => cp.copyFrom(p, src, into, o),
      copyTo: (p, dst, data, o) => cp.copyTo(p, dst, data, o),
      copy: (p, src, dst, length, o) => cp.copy(p, src, dst, length, o),
      unbind: (p) => this.unbind(p.dcid, p.endpoint),
    };
  }

  // ---------------------------------------------------------------- DC management

  createDc(opts: CreateDcOptions): DcInfo {
    const k = this.core;
    k.checkRunning();
    const dcid = opts.dcid;
    if (!Number.isInteger(dcid) || dcid < 0 || dcid > 0xffff) fail('EDVSBADDCID', `DC id must be an integer in 0..65535, got ${String(dcid)}`);
    if (k.dcs.has(dcid)) fail('EDVSDCRUN', `DC ${dcid} already runs on node ${this.nodeId}`);
    const limits = resolveDcLimits(opts.limits);
    const nodes = new Set(opts.nodes ?? []);
    nodes.add(this.nodeId);
    for (const n of nodes) k.checkNodeId(n, limits);
    const dc = new DcState(dcid, checkName(opts.name, `DC${dcid}`), limits, nodes);
    k.dcs.set(dcid, dc);
    return this.describe(dc);
  }

  destroyDc(dcid: number): void {
    const dc = this.core.dc(dcid);
    for (const p of [...dc.routes.locals()]) this.core.cascade.unbindLocal(dc, p, false);
    for (const r of [...dc.routes.all()]) if (r.kind === 'frozen') this.core.moves.failParked(r, 'EDVSSHUTDOWN');
    for (const w of dc.watches) w.waiter.reject(new DvsError('EDVSSHUTDOWN', `DC ${dcid} destroyed`));
    dc.watches.clear();
    this.core.dcs.delete(dcid);
  }

  addNode(dcid: number, node: number): DcInfo {
    const dc = this.core.dc(dcid);
    this.core.checkNodeId(node, dc.limits);
    if (dc.nodes.has(node)) fail('EDVSDCNODE', `node ${node} is already a member of DC ${dcid}`);
    dc.nodes.add(node);
    return this.describe(dc);
  }

  removeNode(dcid: number, node: number): DcInfo {
    const dc = this.core.dc(dcid);
    if (node === this.nodeId) fail('EDVSBADNODEID', 'a kernel cannot remove its own node from a DC; destroy the DC instead');
    if (!dc.nodes.delete(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`);
    for (const inst of [...dc.routes.allInstances()]) if (inst.members.includes(node)) this.core.instances.memberGone(dc, inst, node);
    for (const r of [...dc.routes.all()]) {
      if (dc.routes.instancesOf(r.endpoint) !== undefined) continue;
      const where = r.kind === 'frozen' ? r.previous : r;
      if ((where.kind === 'remote' && where.node === node) || (where.kind === 'group' && where.primary === node)) this.core.cascade.dropRemote(dc, r);
    }
    this.core.cascade.failNode(node, 'EDVSNODCNODE', dc);
    return this.describe(dc);
  }

  dcInfo(dcid: number): DcInfo {
    return this.describe(this.core.dc(dcid));
  }

  listDcs(): DcInfo[] {
    return [...this.core.dcs.values()].map((dc) => this.describe(dc));
  }

  /** The node this kernel serves, its DCs and whether it runs (the original's getdvsinfo). */
  info(): { nodeId: number; running: boolean; dcs: number[]; limits: KernelLimits; downNodes: number[] } {
    const k = this.core;
    return { nodeId: this.nodeId, running: k.running, dcs: [...k.dcs.keys()], limits: this.limits, downNodes: [...k.downNodes] };
  }

  /** Stops the kernel: every DC is destroyed, every pending call fails with EDVSSHUTDOWN. */
  shutdown(): void {
    const k = this.core;
    if (!k.running) return;
    for (const dcid of [...k.dcs.keys()]) this.destroyDc(dcid);
    k.remote.shutdown();
    k.running = false;
  }

  // ---------------------------------------------------------------- binding

  /** Binds a new process in this kernel and returns its handle. */
  bind(dcid: number, opts: BindOptions = {}): Process {
    const k = this.core;
    const dc = k.dc(dcid);
    const space = dc.space;
    const routes = dc.routes;
    let slot: number;
    let endpoint: Endpoint;
    if (opts.endpoint !== undefined) {
      slot = space.checkEndpoint(opts.endpoint);
      if (opts.slot !== undefined && opts.slot !== slot) fail('EDVSBADVALUE', `endpoint ${opts.endpoint} is not in slot ${opts.slot}`);
      endpoint = opts.endpoint;
      // Only generations the directory, a move or a bind gave fence a bind: traffic may be forged.
      if (space.generationOf(endpoint) <= routes.knownGeneration(slot) && routes.at(slot)?.endpoint !== endpoint) {
        fail('EDVSENDPOINT', `endpoint ${space.format(endpoint)} is older than generation ${routes.knownGeneration(slot)} already seen in slot ${slot}`);
      }
      // The endpoint was claimed (in the directory): a route to the slot learnt from traffic gives way.
      const learnt = routes.at(slot);
      if (learnt !== undefined && isLearnt(learnt)) k.cascade.dropRemote(dc, learnt);
    } else {
      slot = opts.slot === undefined ? routes.freeUserSlot() : space.checkSlot(opts.slot);
      endpoint = space.make(routes.lastGeneration(slot) + 1, slot);
    }
    if (slot === HARDWARE) fail('EDVSBADPROC', 'the KERNEL/HARDWARE slot cannot be bound');
    // This node's instance of an instance group takes the slot from the group's route (calls in
    // flight to other members go on).
    const inst = routes.instancesAt(slot);
    if (inst !== undefined && inst.endpoint === endpoint && routes.at(slot)?.kind === 'group') routes.clear(slot);
    if (routes.at(slot) !== undefined) fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} is in use`, { slot });
    const epoch = opts.epoch ?? 0;
    if (!Number.isInteger(epoch) || epoch < 0) fail('EDVSBADVALUE', `epoch must be a non-negative integer, got ${String(epoch)}`);
    const priv = checkPrivileges(opts.privileges ?? defaultPrivileges(slot, space.isSystemSlot(slot)));
    const proc = new LocalProc(dc, slot, endpoint, epoch, checkName(opts.name, `ep${slot}`), priv.level, callMask(priv.allowedCalls), NONE);
    proc.ipcTo = priv.ipcTo === 'all' ? null : new Set(priv.ipcTo);
    routes.set(slot, proc);
    k.fireWatches(dc, slot);
    k.observer?.bound?.(dcid, endpoint, proc.name);
    return new Process(this.calls, proc);
  }

  /**
   * Records that `endpoint` lives on `node` at `epoch` (the original's rmtbind; the directory's
   * word). Epoch-checked: an older location is ignored (false). A newer incarnation of the slot
   * replaces the old one, whose waiters fail; a frozen route releases its parked calls to `node`.
   */
  bindRemote(dcid: number, endpoint: Endpoint, node: number, name?: string, epoch = 0): boolean {
    return this.core.moves.setRemote(this.core.dc(dcid), endpoint, node, epoch, name);
  }

  /** Unbinds a local process or drops a remote route, cascading errors to everyone waiting on it. */
  unbind(dcid: number, endpoint: Endpoint): void {
    const dc = this.core.dc(dcid);
    const route = dc.routes.lookup(endpoint);
    const owner = ownerOf(route);
    if (owner !== undefined) this.core.cascade.unbindLocal(dc, owner, true);
    else this.core.cascade.dropRemote(dc, route);
  }

  /** Resolves with the endpoint once `target`'s slot is bound at `target`'s generation or later. */
  waitForBind(dcid: number, target: Endpoint, opts?: CallOptions): Promise<Endpoint> {
    try {
      const dc = this.core.dc(dcid);
      const slot = dc.space.checkEndpoint(target);
      const gen = dc.space.generationOf(target);
      const entry = dc.routes.at(slot);
      if (entry !== undefined && dc.space.generationOf(entry.endpoint) >= gen) return Promise.resolve(entry.endpoint);
      return this.watch(dc, { slot, endpoint: target, unbind: false, waiter: new Waiter<Endpoint>() }, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Resolves once `endpoint` is no longer bound (here or as a known remote route). */
  waitForUnbind(dcid: number, endpoint: Endpoint, opts?: CallOptions): Promise<Endpoint> {
    try {
      const dc = this.core.dc(dcid);
      const slot = dc.space.checkEndpoint(endpoint);
      if (dc.routes.at(slot)?.endpoint !== endpoint) return Promise.resolve(endpoint);
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

  // ---------------------------------------------------------------- routes and moves

  /** Where calls to `endpoint` go from this node. */
  route(dcid: number, endpoint: Endpoint): RouteInfo {
    const r = this.core.dc(dcid).routes.lookup(endpoint);
    switch (r.kind) {
      case 'local':
        return { kind: 'local', endpoint, epoch: r.epoch };
      case 'remote':
        return { kind: 'remote', endpoint, node: r.node, epoch: r.epoch };
      case 'frozen':
        return { kind: 'frozen', endpoint, epoch: r.epoch, parked: r.parked.length };
      case 'group':
        return { kind: 'group', endpoint, members: r.members, primary: r.primary, epoch: r.epoch };
    }
  }

  /** A group route (calls go to `primary`), epoch-checked; room for replica groups. */
  setGroupRoute(dcid: number, endpoint: Endpoint, group: { readonly members: readonly number[]; readonly primary: number; readonly epoch: number; readonly name?: string }): boolean {
    return this.core.moves.setGroup(this.core.dc(dcid), endpoint, group.members, group.primary, group.epoch, group.name);
  }

  /**
   * Makes `endpoint` an instance group (docs/instances.md) whose instances run on `members` (the
   * directory's word; this node's own instance, when bound here, is a member whether listed or
   * not). Calls to it from here go to a live member by power of two choices and are sent again to
   * another member if theirs fails. A newer generation replaces an older group; false for an older one.
   */
  setInstances(dcid: number, endpoint: Endpoint, group: { readonly members: readonly number[]; readonly epoch?: number; readonly name?: string }): boolean {
    return this.core.instances.set(this.core.dc(dcid), endpoint, group.members, group.epoch ?? 0, group.name);
  }

  /** `endpoint` is no longer an instance group here: its route goes too, unless an instance is bound here. */
  clearInstances(dcid: number, endpoint: Endpoint): void {
    this.core.instances.clear(this.core.dc(dcid), endpoint);
  }

  /** The instance group of `endpoint` as this kernel sees it (members, live ones, calls per member), if it is one. */
  instanceInfo(dcid: number, endpoint: Endpoint): InstanceInfo | undefined {
    const dc = this.core.dc(dcid);
    dc.space.checkEndpoint(endpoint);
    const inst = dc.routes.instancesOf(endpoint);
    return inst === undefined ? undefined : this.core.instances.info(dc, inst);
  }

  /** Every instance group of `dcid` known here. */
  instanceGroups(dcid: number): InstanceInfo[] {
    const dc = this.core.dc(dcid);
    return [...dc.routes.allInstances()].map((inst) => this.core.instances.info(dc, inst));
  }

  /**
   * Freezes the route of `endpoint` at `epoch`: new calls to it, local and remote, park here until
   * the route is set again (bindRemote, absorb, thaw) or `deadlineMs` passes (the previous route
   * comes back). False when `epoch` is older than the route.
   */
  freeze(dcid: number, endpoint: Endpoint, epoch: number, deadlineMs: number): boolean {
    return this.core.moves.freeze(this.core.dc(dcid), endpoint, epoch, deadlineMs);
  }

  /** Ends a freeze where the endpoint was; its parked calls go there. */
  thaw(dcid: number, endpoint: Endpoint, epoch: number): boolean {
    return this.core.moves.thaw(this.core.dc(dcid), endpoint, epoch);
  }

  /**
   * Hands a frozen local endpoint's mailbox over for its move to `toNode` and retires it here (see
   * RouteMoves.drain). With `since` (from `quiescence`), EDVSBUSY unless the endpoint is still in
   * that same receive: nothing reached it after its state was taken.
   */
  drain(dcid: number, endpoint: Endpoint, toNode: number, since?: Quiescence): Handover {
    return this.core.moves.drain(this.core.dc(dcid), endpoint, toNode, since);
  }

  /**
   * A mark of the receive a local endpoint is blocked in, when it is quiescent (blocked in a
   * receive, no call of its own in progress); undefined otherwise. A state taken while it is
   * quiescent is consistent with the mailbox `drain(…, since)` hands over.
   */
  quiescence(dcid: number, endpoint: Endpoint): Quiescence | undefined {
    return this.core.moves.quiescence(this.core.dc(dcid), endpoint);
  }

  /** While too much waits unsent for `node` (flow control of the transport), a promise that resolves once it drained. */
  serviceBackpressure(node: number): Promise<void> | undefined {
    return this.core.transport?.backpressure?.(node);
  }

  /** Sends a `svc` frame to `node`'s service handler (EDVSNODCNODE unless both nodes are members of `dcid`; EDVSNONODE when it is down). */
  sendServiceFrame(node: number, dcid: number, body: Payload, data?: Uint8Array): void {
    const k = this.core;
    const dc = k.dc(dcid);
    if (node === k.nodeId || !dc.nodes.has(node)) fail('EDVSNODCNODE', `node ${node} is not another member of DC ${dcid}`);
    if (k.downNodes.has(node)) fail('EDVSNONODE', `node ${node} is down`);
    k.emit(node, data === undefined ? { k: 'svc', dc: dcid, body } : { k: 'svc', dc: dcid, body, data });
  }

  /** Binds a handed-over endpoint here and answers its senders from here (see RouteMoves.absorb). */
  absorb(handover: Handover, opts: AbsorbOptions = {}): Process {
    const proc = this.core.moves.absorb(this.core.dc(handover.dcid), handover, opts);
    return new Process(this.calls, proc);
  }

  // ---------------------------------------------------------------- privileges, wakeup, grants, introspection

  setPrivileges(dcid: number, endpoint: Endpoint, priv: Privileges): void {
    const k = this.core;
    const proc = k.localProc(k.dc(dcid), endpoint);
    checkPrivileges(priv);
    proc.level = priv.level;
    proc.callMask = callMask(priv.allowedCalls);
    proc.ipcTo = priv.ipcTo === 'all' ? null : new Set(priv.ipcTo);
  }

  getPrivileges(dcid: number, endpoint: Endpoint): Privileges {
    const k = this.core;
    const proc = k.localProc(k.dc(dcid), endpoint);
    return { level: proc.level, allowedCalls: callsOfMask(proc.callMask), ipcTo: proc.ipcTo === null ? 'all' : [...proc.ipcTo] };
  }

  /**
   * Wakes a process blocked in receive or receiveRequest with EDVSWOKENUP; if it is not blocked there,
   * its next receive(ANY) or receiveRequest fails with EDVSWOKENUP instead.
   */
  wakeup(dcid: number, endpoint: Endpoint): void {
    const k = this.core;
    k.rendezvous.wakeup(k.localProc(k.dc(dcid), endpoint));
  }

  /**
   * Registers a grant whose bytes live elsewhere (a client OS process): `length` bytes reached
   * through `backend`. `id`, when given, is the grant id the owner chose; it must be unused.
   */
  grantExternal(dcid: number, endpoint: Endpoint, backend: GrantBackend, length: number, opts: GrantOptions, id?: number): number {
    const k = this.core;
    return k.copies.grantExternal(k.localProc(k.dc(dcid), endpoint), backend, length, opts, id);
  }

  /** The slot of `endpoint` in `dcid` (EDVSENDPOINT / EDVSRANGE for a value that is no endpoint of the DC). */
  slotOf(dcid: number, endpoint: Endpoint): number {
    return this.core.dc(dcid).space.checkEndpoint(endpoint);
  }

  /** The generation of `endpoint` in `dcid`. */
  generationOf(dcid: number, endpoint: Endpoint): number {
    const space = this.core.dc(dcid).space;
    space.checkEndpoint(endpoint);
    return space.generationOf(endpoint);
  }

  /** The DC's process table, like the original's /proc/dvs/DCx/procs. */
  procs(dcid: number): ProcInfo[] {
    return buildProcTable(this.core.dc(dcid), this.nodeId);
  }

  // ---------------------------------------------------------------- nodes

  /** The link to `node` is gone for good: fail every call waiting on it with EDVSNOTCONN. */
  nodeDown(node: number): void {
    if (node === this.nodeId) return;
    this.core.downNodes.add(node);
    this.core.cascade.failNode(node, 'EDVSNOTCONN', undefined);
  }

  /** The link to `node` is usable again. */
  nodeUp(node: number): void {
    this.core.downNodes.delete(node);
  }

  // ---------------------------------------------------------------- incoming frames

  /** Handles one frame from `from`'s kernel. Never throws: bad frames are refused and counted. */
  receiveFrame(from: number, frame: KernelFrame): void {
    const k = this.core;
    k.stats.framesIn++;
    if (!k.running) return;
    const dc = k.dcs.get(frame.dc);
    if (dc === undefined || !dc.nodes.has(from)) {
      this.refuse(from, frame, dc === undefined ? 'EDVSBADDCID' : 'EDVSNODCNODE');
      return;
    }
    const remote = k.remote;
    try {
      switch (frame.k) {
        case 'send':
          remote.onSend(dc, from, frame);
          break;
        case 'send-ack':
          remote.onSendAck(from, frame);
          break;
        case 'cancel':
          remote.onCancel(dc, from, frame);
          break;
        case 'cancel-ack':
          remote.onCancelAck(from, frame);
          break;
        case 'reply':
          remote.onReply(dc, from, frame);
          break;
        case 'reply-cancel':
          remote.onReplyCancel(dc, from, frame);
          break;
        case 'reply-cancel-ack':
          remote.onReplyCancelAck(dc, from, frame);
          break;
        case 'notify':
          remote.onNotify(dc, from, frame);
          break;
        case 'unbound': {
          const slot = dc.space.checkEndpoint(frame.ep);
          const inst = dc.routes.instancesOf(frame.ep);
          if (inst !== undefined) {
            // One instance of a group is gone, not the endpoint: calls waiting on it go elsewhere.
            if (from !== k.nodeId) k.instances.memberGone(dc, inst, from);
            break;
          }
          const route = dc.routes.at(slot);
          if (route !== undefined && route.endpoint === frame.ep && ownerOf(route) === undefined) {
            k.cascade.dropRemote(dc, route);
            k.cascade.failWaitersOn(dc, frame.ep, true);
          }
          // Even when the slot now holds a newer incarnation (here or elsewhere): someone may still
          // wait on the dead one, e.g. a sendrec whose ack landed after the directory moved the slot.
          else if (route?.endpoint !== frame.ep) k.cascade.failWaitersOn(dc, frame.ep, true);
          break;
        }
        case 'moved':
          k.moves.onMoved(dc, from, frame);
          break;
        case 'svc':
          if (this.onServiceFrame === undefined) fail('EDVSNOSYS', 'no service handler on this node');
          this.onServiceFrame(from, dc.dcid, frame.body, frame.data);
          break;
        case 'copy-read':
          k.copies.onCopyRead(dc, from, frame);
          break;
        case 'copy-write':
          k.copies.onCopyWrite(dc, from, frame);
          break;
        case 'copy-relay':
          k.copies.onCopyRelay(dc, from, frame);
          break;
        case 'copy-data':
          remote.onChunkAnswer(from, frame.id, frame.rc, frame.data);
          break;
        case 'copy-ack':
          remote.onChunkAnswer(from, frame.id, frame.rc, undefined);
          break;
        default:
          k.refused(from, 'unknown', 'EDVSBADREQUEST');
      }
    } catch (err) {
      this.refuse(from, frame, isDvsError(err) ? err.code : 'EDVSBADREQUEST');
    }
  }

  /** Answers a refused request with its error where the frame expects an answer; counts it. */
  private refuse(from: number, frame: KernelFrame, code: DvsErrorCode): void {
    const k = this.core;
    k.refused(from, frame.k, code);
    const rc = new DvsError(code).errno;
    if (frame.k === 'send') k.emit(from, { k: 'send-ack', dc: frame.dc, id: frame.id, rc });
    else if (frame.k === 'copy-read') k.emit(from, { k: 'copy-data', dc: frame.dc, id: frame.id, rc });
    else if (frame.k === 'copy-write' || frame.k === 'copy-relay') k.emit(from, { k: 'copy-ack', dc: frame.dc, id: frame.id, rc });
    // No reply can come from a node that refuses the DC: let the client's call end.
    else if (frame.k === 'reply-cancel') k.emit(from, { k: 'reply-cancel-ack', dc: frame.dc, id: frame.id, client: frame.client });
  }

  private describe(dc: DcState): DcInfo {
    let localProcs = 0;
    let remoteProcs = 0;
    for (const r of dc.routes.all()) {
      if (ownerOf(r) !== undefined) localProcs++;
      else remoteProcs++;
    }
    return { dcid: dc.dcid, name: dc.name, nodes: [...dc.nodes].sort((a, b) => a - b), limits: dc.limits, localProcs, remoteProcs };
  }
}
