/**
 * Route moves: every change of where an endpoint lives, epoch-checked (routes.ts `order`), and what
 * goes with it: calls parked on a frozen route and released where the route then points, a
 * freeze's deadline that restores the previous route, and the handover of a mailbox from the node
 * an endpoint leaves (`drain`) to the node it moves to (`absorb`).
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { NONE } from '../ipc/endpoint.js';
import { DvsError, type DvsErrorCode } from '../ipc/errors.js';
import type { OutgoingMessage } from '../ipc/message.js';
import { callMask, checkPrivileges, defaultPrivileges, type Privileges } from '../ipc/privileges.js';
import { fail, type KernelCore } from './core.js';
import type { DcState } from './dc.js';
import type { MovedFrame, NotifyFrame, SendFrame } from './frames.js';
import type { Handover, HandoverReply, HandoverSend, LocalQueued } from './mailbox.js';
import { LocalProc, RecvMode, type RecvWait } from './proc.js';
import type { SendOp, SendrecOp } from './remote-calls.js';
import { ownerOf, TRAFFIC_EPOCH, type FrozenRoute, type ParkedCall, type RemoteRoute, type Route, type SettledRoute } from './routes.js';
import type { Waiter } from './waiter.js';

const NAME_MAX = 32;

export function checkName(name: string | undefined, fallback: string): string {
  const n = name ?? fallback;
  if (typeof n !== 'string' || n.length > NAME_MAX) fail('EDVSNAMESIZE', `name must be a string of at most ${NAME_MAX} characters`);
  return n;
}

function remove<T>(list: T[], item: T): boolean {
  const i = list.indexOf(item);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}

/** The receive an endpoint was blocked in when found quiescent (opaque to callers). */
export interface Quiescence {
  readonly recv: object;
}

export interface AbsorbOptions {
  readonly name?: string;
  readonly privileges?: Privileges;
}

/** Blocked in a receive, with no call of its own in progress. */
function isQuiescent(proc: LocalProc): boolean {
  const w = proc.recv;
  return proc.sending === 0 && !proc.copying && w !== undefined && (w.mode === RecvMode.Receive || w.mode === RecvMode.Request);
}

export class RouteMoves {
  constructor(private readonly k: KernelCore) {}

  // ---------------------------------------------------------------- remote routes

  /**
   * Records that `endpoint` lives on `node` at `epoch` (the directory's word, or the original's
   * rmtbind). Applied only if it is not older than the route known (a newer incarnation replaces the
   * old one, whose waiters fail); a frozen route so set releases its parked calls to `node`.
   * Whether it was applied.
   */
  setRemote(dc: DcState, endpoint: Endpoint, node: number, epoch: number, name: string | undefined): boolean {
    const slot = dc.space.checkEndpoint(endpoint);
    if (node === this.k.nodeId) fail('EDVSBADNODEID', `a remote route cannot name the local node ${node}`);
    if (!dc.nodes.has(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dc.dcid}`);
    const cur = dc.routes.at(slot);
    const owner = ownerOf(cur);
    if (owner !== undefined) fail('EDVSSLOTUSED', `slot ${slot} is bound locally`, { slot });
    // An instance group's endpoint is routed by its members (instances.ts), not by a location.
    if (dc.routes.instancesOf(endpoint) !== undefined) return false;
    const order = dc.routes.order(endpoint, epoch);
    if (order === 'older') {
      if (cur === undefined || dc.space.generationOf(endpoint) < dc.space.generationOf(cur.endpoint)) fail('EDVSENDPOINT', `endpoint ${dc.space.format(endpoint)} is older than the slot's generation`);
      return false;
    }
    if (cur !== undefined && cur.endpoint === endpoint) {
      if (cur.kind === 'remote') {
        cur.node = node;
        cur.epoch = epoch;
        if (name !== undefined) cur.name = checkName(name, cur.name);
        // Recorded again: a route learnt from traffic may just have been confirmed.
        dc.routes.set(slot, cur);
        return true;
      }
      const route: RemoteRoute = { kind: 'remote', endpoint, slot, node, epoch, name: checkName(name, cur.name) };
      dc.routes.set(slot, route);
      if (cur.kind === 'frozen') this.release(dc, cur, route);
      return true;
    }
    if (cur !== undefined) this.k.cascade.dropRemote(dc, cur);
    dc.routes.set(slot, { kind: 'remote', endpoint, slot, node, epoch, name: checkName(name, `ep${slot}`) });
    this.k.fireWatches(dc, slot);
    return true;
  }

  /** A group route: calls go to the primary. Its local members come with replica groups. */
  setGroup(dc: DcState, endpoint: Endpoint, members: readonly number[], primary: number, epoch: number, name: string | undefined): boolean {
    const slot = dc.space.checkEndpoint(endpoint);
    if (!members.includes(primary)) fail('EDVSINVAL', `primary ${primary} is not a member of the group`);
    if (primary === this.k.nodeId) fail('EDVSINVAL', 'a group served by this node needs its local member bound here (replica groups)');
    for (const m of members) if (!dc.nodes.has(m)) fail('EDVSNODCNODE', `node ${m} is not a member of DC ${dc.dcid}`);
    const cur = dc.routes.at(slot);
    if (ownerOf(cur) !== undefined) fail('EDVSSLOTUSED', `slot ${slot} is bound locally`, { slot });
    if (dc.routes.order(endpoint, epoch) === 'older') return false;
    const route: SettledRoute = { kind: 'group', endpoint, slot, epoch, name: checkName(name, cur?.name ?? `ep${slot}`), members: [...members], primary };
    if (cur !== undefined && cur.endpoint !== endpoint) this.k.cascade.dropRemote(dc, cur);
    dc.routes.set(slot, route);
    if (cur?.kind === 'frozen' && cur.endpoint === endpoint) this.release(dc, cur, route);
    this.k.fireWatches(dc, slot);
    return true;
  }

  /**
   * A hint from traffic: "`endpoint` lives on `node` at `epoch`" (a moved answer, a moved frame).
   * Taken when not older than what the route says; an equal epoch naming another node is taken too
   * (the route was learnt from traffic or never moved).
   */
  learn(dc: DcState, endpoint: Endpoint, node: number, epoch: number): void {
    if (node === this.k.nodeId || !dc.nodes.has(node) || dc.routes.instancesOf(endpoint) !== undefined) return;
    const cur = dc.routes.at(dc.space.slotOf(endpoint));
    if (cur === undefined || cur.endpoint !== endpoint || ownerOf(cur) !== undefined) return;
    const order = dc.routes.order(endpoint, epoch);
    if (order === 'older') return;
    if (order === 'same' && cur.kind === 'remote' && cur.node === node) return;
    this.setRemote(dc, endpoint, node, Math.max(epoch, cur.epoch), undefined);
  }

  /**
   * Learns a sender's location from its traffic (the original's autobind, so that a reply to a
   * client bound just now goes out before the directory's news of it arrives): only into an empty
   * slot or over an older generation that was itself learnt from traffic (`order`), so it never
   * overrides the directory, a move or a local bind, at any generation.
   */
  autobind(dc: DcState, src: Endpoint, node: number): void {
    const slot = dc.space.slotOf(src);
    const cur = dc.routes.at(slot);
    if (ownerOf(cur) !== undefined || dc.routes.order(src, TRAFFIC_EPOCH) !== 'newer') return;
    if (cur !== undefined) this.k.cascade.dropRemote(dc, cur);
    dc.routes.set(slot, { kind: 'remote', endpoint: src, slot, node, epoch: TRAFFIC_EPOCH, name: cur?.name ?? `ep${slot}` });
    this.k.fireWatches(dc, slot);
  }

  // ---------------------------------------------------------------- freezes

  /**
   * Freezes `endpoint`'s route at `epoch`: new calls to it park here, for at most `deadlineMs`; then
   * the route it had comes back and they are released there. A freeze at an older epoch than the
   * route is ignored; one at the same epoch as a freeze in place renews its deadline.
   */
  freeze(dc: DcState, endpoint: Endpoint, epoch: number, deadlineMs: number): boolean {
    const slot = dc.space.checkEndpoint(endpoint);
    if (!Number.isInteger(deadlineMs) || deadlineMs < 1) fail('EDVSBADVALUE', `a freeze needs a positive integer deadline, got ${String(deadlineMs)}`);
    const cur = dc.routes.lookup(endpoint);
    if (cur.kind === 'frozen') {
      if (epoch !== cur.epoch) return false;
      this.armDeadline(dc, cur, deadlineMs);
      return true;
    }
    if (dc.routes.order(endpoint, epoch) === 'older') return false;
    const route: FrozenRoute = { kind: 'frozen', endpoint, slot, epoch, name: cur.name, previous: cur, parked: [], timer: undefined };
    dc.routes.set(slot, route);
    this.armDeadline(dc, route, deadlineMs);
    return true;
  }

  private armDeadline(dc: DcState, route: FrozenRoute, ms: number): void {
    if (route.timer !== undefined) this.k.clock.clearTimer(route.timer);
    route.timer = this.k.clock.setTimer(ms, () => {
      route.timer = undefined;
      if (dc.routes.at(route.slot) === route) this.unfreeze(dc, route);
    });
  }

  /** Ends a freeze at `epoch` where the endpoint was (a move that did not happen). */
  thaw(dc: DcState, endpoint: Endpoint, epoch: number): boolean {
    const cur = dc.routes.lookup(endpoint);
    if (cur.kind !== 'frozen' || cur.epoch > epoch) return false;
    this.unfreeze(dc, cur);
    return true;
  }

  private unfreeze(dc: DcState, route: FrozenRoute): void {
    if (route.timer !== undefined) this.k.clock.clearTimer(route.timer);
    route.timer = undefined;
    dc.routes.set(route.slot, route.previous);
    this.release(dc, route, route.previous);
  }

  // ---------------------------------------------------------------- parking

  parkSend(route: FrozenRoute, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, waiter: Waiter<void>, timed: boolean): void {
    const item: ParkedCall = { kind: 'send', proc, msg, waiter };
    route.parked.push(item);
    this.k.stats.parked++;
    proc.sending++;
    proc.sendto = dst;
    if (timed) {
      waiter.onExpire = () => {
        if (!remove(route.parked, item)) return;
        proc.sending--;
        waiter.rejectExpired({ endpoint: dst });
      };
    }
  }

  parkSendrec(route: FrozenRoute, proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, recv: RecvWait, timed: boolean): void {
    const item: ParkedCall = { kind: 'sendrec', proc, msg };
    route.parked.push(item);
    this.k.stats.parked++;
    proc.sending++;
    proc.sendto = dst;
    if (timed) {
      recv.waiter.onExpire = () => {
        if (!remove(route.parked, item)) return;
        proc.sending--;
        if (proc.recv === recv) proc.recv = undefined;
        recv.waiter.rejectExpired({ endpoint: dst });
      };
    }
  }

  parkNotify(route: FrozenRoute, proc: LocalProc, arg: number): void {
    route.parked.push({ kind: 'notify', proc, arg });
    this.k.stats.parked++;
  }

  parkFrame(route: FrozenRoute, from: number, frame: SendFrame | NotifyFrame): void {
    route.parked.push({ kind: 'frame', from, frame });
    this.k.stats.parked++;
  }

  /** Holds a frame whose source is the moving endpoint of `route`, from a node it was not on, until the route is set again. */
  holdFrame(route: FrozenRoute, from: number, frame: SendFrame | NotifyFrame): void {
    route.parked.push({ kind: 'held', from, frame });
    this.k.stats.parked++;
  }

  /** Withdraws a send frame of `from` parked or held in `dc` (its sender cancelled); whether one was. */
  unparkFrame(dc: DcState, from: number, id: number): boolean {
    for (const r of dc.routes.all()) {
      if (r.kind !== 'frozen') continue;
      const i = r.parked.findIndex((p) => (p.kind === 'frame' || p.kind === 'held') && p.from === from && p.frame.k === 'send' && p.frame.id === id);
      if (i >= 0) {
        r.parked.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  /** Calls parked on `frozen` go where `route` now says (each as if made now). */
  private release(dc: DcState, frozen: FrozenRoute, route: Route): void {
    const parked = frozen.parked.splice(0);
    const rv = this.k.rendezvous;
    for (const p of parked) {
      switch (p.kind) {
        case 'send':
          p.proc.sending--;
          if (!p.proc.alive) continue;
          try {
            rv.routeSend(p.proc, route, frozen.endpoint, p.msg, p.waiter, true);
          } catch (err) {
            p.waiter.reject(err instanceof DvsError ? err : new DvsError('EDVSIO', String(err)));
          }
          break;
        case 'sendrec': {
          p.proc.sending--;
          const w = p.proc.recv;
          if (!p.proc.alive || w === undefined || w.mode !== RecvMode.SendrecSending || w.from !== frozen.endpoint) continue;
          try {
            rv.routeSendrec(p.proc, route, frozen.endpoint, p.msg, w, true);
          } catch (err) {
            p.proc.recv = undefined;
            w.waiter.reject(err instanceof DvsError ? err : new DvsError('EDVSIO', String(err)));
          }
          break;
        }
        case 'notify':
          if (!p.proc.alive) continue;
          if (route.kind === 'local') rv.notifyLocal(route, p.proc.endpoint, p.proc.privId, p.arg);
          else if (route.kind === 'frozen') this.parkNotify(route, p.proc, p.arg);
          else if (!this.k.downNodes.has(route.kind === 'remote' ? route.node : route.primary)) {
            this.k.emit(route.kind === 'remote' ? route.node : route.primary, { k: 'notify', dc: dc.dcid, src: p.proc.endpoint, dst: frozen.endpoint, arg: p.arg });
          }
          break;
        case 'frame':
          if (p.frame.k === 'send') this.k.remote.deliverSend(dc, p.from, p.frame, route);
          else this.notifyFrame(dc, p.from, p.frame, route);
          break;
        case 'held':
          // Its source is checked again against the route now set, as if the frame arrived now.
          this.k.remote.receiveAgain(dc, p.from, p.frame);
          break;
      }
    }
  }

  /**
   * A notify frame for a destination whose route is `route`: delivered, parked, or passed on to
   * where the endpoint lives now (it moved on: a notification is never lost to a move). Dropped
   * only when that node is down, or would be the sender's own node again.
   */
  notifyFrame(dc: DcState, from: number, frame: NotifyFrame, route: Route): void {
    if (route.kind === 'local') this.k.rendezvous.notifyLocal(route, frame.src, dc.space.privId(dc.space.slotOf(frame.src)), frame.arg >>> 0);
    else if (route.kind === 'frozen') this.parkFrame(route, from, frame);
    else {
      const to = route.kind === 'remote' ? route.node : route.primary;
      const origin = frame.origin ?? from;
      // Passed on once: a frame passed on already, or going back to its origin, would risk a loop.
      if (frame.origin !== undefined || to === origin || this.k.downNodes.has(to)) this.k.stats.notifiesDropped++;
      else this.k.emit(to, { ...frame, origin });
    }
  }

  /** Parked calls fail: their destination is gone. */
  failParked(route: FrozenRoute, code: DvsErrorCode): void {
    const ep = route.endpoint;
    for (const p of route.parked.splice(0)) {
      switch (p.kind) {
        case 'send':
          p.proc.sending--;
          p.waiter.reject(new DvsError(code, undefined, { details: { endpoint: ep } }));
          break;
        case 'sendrec': {
          p.proc.sending--;
          const w = p.proc.recv;
          if (w !== undefined && w.from === ep) {
            p.proc.recv = undefined;
            w.waiter.reject(new DvsError(code === 'EDVSDSTDIED' ? 'EDVSDEADSRCDST' : code, undefined, { details: { endpoint: ep } }));
          }
          break;
        }
        case 'frame':
          if (p.frame.k === 'send') this.k.emit(p.from, { k: 'send-ack', dc: p.frame.dc, id: p.frame.id, rc: new DvsError(code === 'EDVSDSTDIED' && p.frame.rec ? 'EDVSDEADSRCDST' : code).errno });
          break;
        case 'held':
          // Its source, the endpoint that was moving, is gone from here: refused as a dead sender's.
          this.k.refused(p.from, p.frame.k, 'EDVSENDPOINT');
          if (p.frame.k === 'send') this.k.emit(p.from, { k: 'send-ack', dc: p.frame.dc, id: p.frame.id, rc: new DvsError('EDVSENDPOINT').errno });
          break;
        case 'notify':
          break;
      }
    }
    if (route.timer !== undefined) this.k.clock.clearTimer(route.timer);
    route.timer = undefined;
  }

  /** An unbound process's parked calls end. */
  dropParkedOf(dc: DcState, proc: LocalProc, err: () => DvsError): void {
    for (const r of dc.routes.all()) {
      if (r.kind !== 'frozen') continue;
      for (let i = r.parked.length - 1; i >= 0; i--) {
        const p = r.parked[i];
        if (p === undefined || p.kind === 'frame' || p.kind === 'held' || p.proc !== proc) continue;
        r.parked.splice(i, 1);
        if (p.kind === 'send') p.waiter.reject(err());
      }
    }
  }

  /** Frames parked from a node that failed are dropped (nobody waits for their answers). */
  failParkedFrom(dc: DcState, node: number): void {
    for (const r of dc.routes.all()) {
      if (r.kind !== 'frozen') continue;
      for (let i = r.parked.length - 1; i >= 0; i--) {
        const p = r.parked[i];
        if ((p?.kind === 'frame' || p?.kind === 'held') && p.from === node) r.parked.splice(i, 1);
      }
    }
  }

  // ---------------------------------------------------------------- handover

  /**
   * Takes a frozen endpoint's mailbox for its move to `toNode` and retires the incarnation here
   * without a cascade: its queued senders, pending notifications and owed replies leave in the
   * handover (local senders and clients now wait for `toNode`), the route here becomes
   * remote(toNode, epoch + 1), and calls parked here follow it there. EDVSBUSY unless the process is
   * quiescent (blocked in a receive, no call of its own in progress); that receive ends (EDVSSHUTDOWN),
   * or never settles when the process was silenced.
   */
  drain(dc: DcState, endpoint: Endpoint, toNode: number, since?: Quiescence): Handover {
    const route = dc.routes.lookup(endpoint);
    if (route.kind !== 'frozen' || route.previous.kind !== 'local') fail('EDVSPROCSTS', `endpoint ${dc.space.format(endpoint)} is not frozen here`);
    if (toNode === this.k.nodeId || !dc.nodes.has(toNode)) fail('EDVSNODCNODE', `node ${toNode} cannot take endpoint ${dc.space.format(endpoint)}`);
    const proc = route.previous;
    const w = proc.recv;
    if (w === undefined || !isQuiescent(proc)) fail('EDVSBUSY', `endpoint ${dc.space.format(endpoint)} is not quiescent (not blocked in a receive)`);
    if (since !== undefined && since.recv !== w) fail('EDVSBUSY', `endpoint ${dc.space.format(endpoint)} received something since its state was taken`);
    const me = this.k.nodeId;
    const epoch = route.epoch + 1;
    const remote = this.k.remote;
    const parts = proc.mailbox.drain((rec) => this.addressLocal(dc, rec, endpoint, toNode));
    const owed: HandoverReply[] = [...parts.owed];
    // Local clients waiting for this endpoint's reply now wait for it from the new owner.
    for (const p of dc.routes.locals()) {
      const cw = p.recv;
      if (p === proc || cw === undefined || cw.mode !== RecvMode.SendrecReply || cw.from !== endpoint || cw.node !== undefined) continue;
      const id = this.k.newId();
      p.sendrecOpId = id;
      cw.node = toNode;
      cw.waiter.onExpire = () => {
        if (p.recv === cw) remote.abandonReply(dc, p, cw);
      };
      owed.push({ client: p.endpoint, node: me, id });
    }
    const h: Handover = { dcid: dc.dcid, endpoint, epoch, from: me, queued: parts.queued, notifies: parts.notifies, owed, wokenUp: proc.wokenUp };
    remote.handedOver([...parts.queued, ...parts.owed], toNode, epoch);
    // Retire the incarnation here: no unbound news, no directory release; it lives on at toNode.
    proc.alive = false;
    proc.recv = undefined;
    proc.grants = undefined;
    if (!proc.silent) w?.waiter.reject(new DvsError('EDVSSHUTDOWN', `endpoint moved to node ${toNode}`, { details: { endpoint, node: toNode } }));
    if (route.timer !== undefined) this.k.clock.clearTimer(route.timer);
    route.timer = undefined;
    const next: RemoteRoute = { kind: 'remote', endpoint, slot: route.slot, node: toNode, epoch, name: proc.name };
    dc.routes.set(route.slot, next);
    this.release(dc, route, next);
    return h;
  }

  /** The receive a local endpoint is blocked in, when it is quiescent. */
  quiescence(dc: DcState, endpoint: Endpoint): Quiescence | undefined {
    const route = dc.routes.lookup(endpoint);
    const proc = route.kind === 'local' ? route : route.kind === 'frozen' && route.previous.kind === 'local' ? route.previous : undefined;
    if (proc === undefined || proc.endpoint !== endpoint) fail('EDVSPROCSTS', `endpoint ${dc.space.format(endpoint)} is not bound here`);
    const w = proc.recv;
    return w !== undefined && isQuiescent(proc) ? { recv: w } : undefined;
  }

  /** A local sender queued on a draining endpoint becomes a request waiting for `toNode`'s answer. */
  private addressLocal(dc: DcState, rec: LocalQueued, dst: Endpoint, toNode: number): HandoverSend {
    const remote = this.k.remote;
    if (rec.kind === 'local-send') {
      const op: SendOp = { kind: 'send', id: this.k.newId(), node: toNode, dc, proc: rec.sender, dst, type: rec.type, payload: rec.payload, waiter: rec.waiter, redirects: 0, cancelling: false };
      remote.outstanding.set(op);
      rec.waiter.onExpire = () => remote.expire(op);
      return { src: rec.src, type: rec.type, payload: rec.payload, sendrec: false, node: this.k.nodeId, id: op.id };
    }
    const op: SendrecOp = { kind: 'sendrec', id: this.k.newId(), node: toNode, dc, proc: rec.sender, dst, type: rec.type, payload: rec.payload, redirects: 0, cancelling: false };
    rec.sender.sendrecOpId = op.id;
    remote.outstanding.set(op);
    const w = rec.sender.recv;
    if (w !== undefined) w.waiter.onExpire = () => remote.expire(op);
    return { src: rec.src, type: rec.type, payload: rec.payload, sendrec: true, node: this.k.nodeId, id: op.id };
  }

  /**
   * Binds a handed-over endpoint here at the handover's epoch and takes in its mailbox: every
   * sender and client in it is answered from here. The nodes of remote senders and clients are told
   * first (`moved`, ahead of any answer on the same link); calls parked here are released to it.
   */
  absorb(dc: DcState, h: Handover, opts: AbsorbOptions): LocalProc {
    const slot = dc.space.checkEndpoint(h.endpoint);
    if (!Number.isInteger(h.epoch) || h.epoch < 0) fail('EDVSBADVALUE', `handover epoch must be a non-negative integer, got ${String(h.epoch)}`);
    const cur = dc.routes.at(slot);
    if (ownerOf(cur) !== undefined) fail('EDVSSLOTUSED', `slot ${slot} of DC ${dc.dcid} is bound here`, { slot });
    if (dc.routes.order(h.endpoint, h.epoch) === 'older') fail('EDVSENDPOINT', `handover of ${dc.space.format(h.endpoint)} at epoch ${h.epoch} is older than the route known`);
    const priv = checkPrivileges(opts.privileges ?? defaultPrivileges(slot, dc.space.isSystemSlot(slot)));
    const proc = new LocalProc(dc, slot, h.endpoint, h.epoch, checkName(opts.name, cur?.name ?? `ep${slot}`), priv.level, callMask(priv.allowedCalls), NONE);
    proc.ipcTo = priv.ipcTo === 'all' ? null : new Set(priv.ipcTo);
    proc.wokenUp = h.wokenUp;
    if (cur !== undefined && cur.endpoint !== h.endpoint) this.k.cascade.dropRemote(dc, cur);
    dc.routes.set(slot, proc);
    const me = this.k.nodeId;
    const remote = this.k.remote;
    // The nodes of remote parties learn where to expect answers before any answer leaves.
    const ids = new Map<number, number[]>();
    for (const r of [...h.queued, ...h.owed]) {
      if (r.node === me) continue;
      let list = ids.get(r.node);
      if (list === undefined) ids.set(r.node, (list = []));
      list.push(r.id);
    }
    for (const [node, list] of ids) if (dc.nodes.has(node) && !this.k.downNodes.has(node)) this.k.emit(node, { k: 'moved', dc: dc.dcid, ep: h.endpoint, epoch: h.epoch, ids: list } satisfies MovedFrame);
    const added = proc.mailbox.absorb(
      h,
      me,
      (s) => this.localSender(dc, proc, s),
      (r) => this.localClient(dc, h.endpoint, r),
    );
    for (const rec of added) remote.index(rec);
    this.k.fireWatches(dc, slot);
    if (cur?.kind === 'frozen' && cur.endpoint === h.endpoint) {
      if (cur.timer !== undefined) this.k.clock.clearTimer(cur.timer);
      cur.timer = undefined;
      this.release(dc, cur, proc);
    }
    return proc;
  }

  /** A sender of this node that waited for the endpoint at its old owner is queued here as local again. */
  private localSender(dc: DcState, dst: LocalProc, s: HandoverSend): LocalQueued | undefined {
    const remote = this.k.remote;
    const op = remote.outstanding.get(s.id);
    if ((op?.kind !== 'send' && op?.kind !== 'sendrec') || op.dc !== dc || op.dst !== dst.endpoint || !op.proc.alive) return undefined;
    remote.outstanding.delete(op.id);
    const sender = op.proc;
    sender.sendto = dst.endpoint;
    if (op.kind === 'send') {
      const rec: LocalQueued = { kind: 'local-send', sendrec: false, src: s.src, type: s.type, payload: s.payload, sender, waiter: op.waiter, prev: undefined, next: undefined, queuedOn: undefined };
      op.waiter.onExpire = () => {
        if (rec.queuedOn === undefined) return;
        dst.mailbox.dequeue(rec);
        sender.sending--;
        op.waiter.rejectExpired({ endpoint: dst.endpoint });
      };
      return rec;
    }
    const rec: LocalQueued = { kind: 'local-sendrec', sendrec: true, src: s.src, type: s.type, payload: s.payload, sender, prev: undefined, next: undefined, queuedOn: undefined };
    const w = sender.recv;
    if (w !== undefined) {
      w.waiter.onExpire = () => {
        if (rec.queuedOn !== undefined) {
          dst.mailbox.dequeue(rec);
          sender.sending--;
        }
        if (sender.recv === w) sender.recv = undefined;
        w.waiter.rejectExpired({ endpoint: dst.endpoint });
      };
    }
    return rec;
  }

  /** A client of this node waiting for the moved endpoint's reply now waits for it locally. */
  private localClient(dc: DcState, server: Endpoint, r: HandoverReply): void {
    const client = ownerOf(dc.routes.at(dc.space.slotOf(r.client)));
    if (client === undefined || client.endpoint !== r.client || client.sendrecOpId !== r.id) return;
    // A taken sendrec gets no send-ack of its own: the caller may still be in its send phase.
    if (client.recv?.mode === RecvMode.SendrecSending && client.recv.from === server) this.k.remote.takeHome(dc, server, r.id);
    const w = client.recv;
    if (w === undefined || w.mode !== RecvMode.SendrecReply || w.from !== server) return;
    w.node = undefined;
    w.waiter.onExpire = () => {
      if (client.recv === w) client.recv = undefined;
      w.waiter.rejectExpired({ endpoint: server });
    };
  }

  /** Another node absorbed `frame.ep`: the route follows (epoch-checked) and our requests in its handover are answered from there. */
  onMoved(dc: DcState, from: number, frame: MovedFrame): void {
    this.learn(dc, frame.ep, from, frame.epoch);
    this.k.remote.retarget(dc, frame.ep, from, frame.ids);
  }
}
