/**
 * Remote calls: sends and sendrecs of local processes to endpoints on other nodes (with their
 * acks, redirects on "moved", cancels and reply-cancels), the sends other nodes queue here, and
 * the bookkeeping both need: the table of outstanding requests by frame id, the index of remote
 * senders queued here, and the tombstones of senders handed over to another node.
 */
import { type Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError, type DvsErrorCode } from '../ipc/errors.js';
import { checkMessageType } from '../ipc/message.js';
import { checkPayload, type Payload } from '../ipc/payload.js';
import type { TimerHandle } from './clock.js';
import type { KernelCore } from './core.js';
import type { DcState } from './dc.js';
import type { CancelAckFrame, CancelFrame, CopyReadFrame, CopyRelayFrame, CopyWriteFrame, NotifyFrame, ReplyCancelAckFrame, ReplyCancelFrame, ReplyFrame, SendAckFrame, SendFrame } from './frames.js';
import { IdTable } from './id-table.js';
import type { RemoteQueued } from './mailbox.js';
import { RecvMode, type LocalProc, type RecvWait } from './proc.js';
import { accepts, owedOf } from './rendezvous.js';
import { nodeOf, ownerOf, TRAFFIC_EPOCH, type Route } from './routes.js';
import type { Waiter } from './waiter.js';

/** Resends to a node still on an older epoch: 10 ms doubling to 200 ms, about 5 s in all. */
const LAG_RETRIES = 30;
const LAG_BACKOFF_MS = 10;
const LAG_BACKOFF_MAX_MS = 200;

interface SendOpBase {
  id: number;
  /** The node the request was sent to (and whose answers are accepted). */
  node: number;
  readonly dc: DcState;
  readonly proc: LocalProc;
  readonly dst: Endpoint;
  readonly type: number;
  readonly payload: Payload;
  redirects: number;
  /** Resends to a node that lags behind this one's directory (see `retryLater`). */
  lagRetries?: number;
  /** The timer of a resend `retryLater` has planned: no node holds the request meanwhile. */
  backoff?: TimerHandle;
  /** The caller gave up (timeout, abort) and a cancel went out. */
  cancelling: boolean;
}

/** A plain send waiting on another node: its caller's waiter. */
export interface SendOp extends SendOpBase {
  readonly kind: 'send';
  readonly waiter: Waiter<void>;
}

/** A sendrec in its send phase on another node: its caller waits as `proc.recv`. */
export interface SendrecOp extends SendOpBase {
  readonly kind: 'sendrec';
}

/** One chunk of a copy on another node. */
export interface ChunkOp {
  readonly kind: 'chunk';
  readonly id: number;
  readonly node: number;
  readonly dc: DcState;
  /** The local process copying; undefined for a chunk this node relays for another node's requester. */
  readonly proc: LocalProc | undefined;
  done(rc: number, data: Uint8Array | undefined): void;
}

export type RemoteOp = SendOp | SendrecOp | ChunkOp;

/** Where a request handed over with its destination went: late cancels for it are answered "ask there". */
interface Tombstone {
  readonly node: number;
  readonly epoch: number;
  readonly at: number;
}

function expiredReason(op: SendOp | SendrecOp): DvsErrorCode {
  return (op.kind === 'send' ? op.waiter.expired : op.proc.recv?.waiter.expired) ?? 'EDVSTIMEDOUT';
}

export class RemoteCalls {
  /** Requests of this node waiting on others, by frame id. */
  readonly outstanding = new IdTable<RemoteOp>();
  /** Sends from other nodes queued here, by node then frame id, so a cancel can withdraw them. */
  private readonly queued = new Map<number, IdTable<RemoteQueued>>();
  /** Requests of other nodes handed over with an endpoint that moved away, by node then id. */
  private readonly tombstones = new Map<number, Map<number, Tombstone>>();

  constructor(private readonly k: KernelCore) {}

  // ---------------------------------------------------------------- requests of local processes

  startSend(proc: LocalProc, node: number, dst: Endpoint, type: number, payload: Payload, waiter: Waiter<void>): SendOp {
    const op: SendOp = { kind: 'send', id: this.k.newId(), node, dc: proc.dc, proc, dst, type, payload, waiter, redirects: 0, cancelling: false };
    this.start(op, false);
    return op;
  }

  startSendrec(proc: LocalProc, node: number, dst: Endpoint, type: number, payload: Payload): SendrecOp {
    const op: SendrecOp = { kind: 'sendrec', id: this.k.newId(), node, dc: proc.dc, proc, dst, type, payload, redirects: 0, cancelling: false };
    proc.sendrecOpId = op.id;
    this.start(op, true);
    return op;
  }

  private start(op: SendOp | SendrecOp, rec: boolean): void {
    const proc = op.proc;
    proc.sending++;
    proc.sendto = op.dst;
    // Answering a client's sendrec with a plain send (MINIX style): the request's implied ack goes first.
    const owed = proc.mailbox.owed;
    const pending = owed?.get(op.dst);
    if (owed !== undefined && pending !== undefined) {
      owed.answered(op.dst);
      this.k.emit(pending.node, { k: 'send-ack', dc: op.dc.dcid, id: pending.id, rc: 0 });
    }
    this.outstanding.set(op);
    this.k.emit(op.node, { k: 'send', dc: op.dc.dcid, id: op.id, src: proc.endpoint, dst: op.dst, type: op.type, payload: op.payload, rec });
  }

  /** Timeout or abort of a remote send/sendrec: withdraw if still queued there; delivery wins otherwise. */
  expire(op: SendOp | SendrecOp): void {
    if (this.outstanding.get(op.id) === op && op.backoff !== undefined) {
      // Waiting to be sent again: no node holds it, so it is withdrawn here.
      this.k.clock.clearTimer(op.backoff);
      op.backoff = undefined;
      this.outstanding.delete(op.id);
      this.settle(op, new DvsError(expiredReason(op), undefined, { details: { endpoint: op.dst } }));
      return;
    }
    if (this.outstanding.get(op.id) === op) {
      op.cancelling = true;
      this.k.emit(op.node, { k: 'cancel', dc: op.dc.dcid, id: op.id });
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
  abandonReply(dc: DcState, proc: LocalProc, w: RecvWait): void {
    const node = w.node;
    if (node !== undefined && node !== this.k.nodeId && dc.nodes.has(node) && !this.k.downNodes.has(node)) {
      this.k.emit(node, { k: 'reply-cancel', dc: dc.dcid, id: proc.sendrecOpId, client: proc.endpoint, server: w.from });
      return;
    }
    proc.recv = undefined;
    w.waiter.rejectExpired({ endpoint: w.from });
  }

  /**
   * A message from the server of a remote sendrec still in its send phase proves the request was
   * taken: the owner sends no separate send-ack for a taken sendrec, the reply carries it.
   */
  private impliedAck(p: LocalProc, server: Endpoint, node: number, id: number): void {
    const w = p.recv;
    if (w === undefined || w.mode !== RecvMode.SendrecSending || w.from !== server || p.sendrecOpId !== id) return;
    const op = this.outstanding.get(id);
    if (op?.kind !== 'sendrec' || op.proc !== p || op.dst !== server) return;
    this.outstanding.delete(op.id);
    p.sending--;
    p.counters.rmtSent++;
    w.mode = RecvMode.SendrecReply;
    w.node = node;
  }

  onSendAck(from: number, frame: SendAckFrame): void {
    const op = this.outstanding.get(frame.id);
    if ((op?.kind !== 'send' && op?.kind !== 'sendrec') || op.node !== from) return;
    this.outstanding.delete(op.id);
    const proc = op.proc;
    if (frame.rc === 0) {
      proc.sending--;
      proc.counters.rmtSent++;
      if (op.kind === 'send') {
        op.waiter.resolve();
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
    if (err.code === 'EDVSNONODE' && frame.node !== undefined) {
      // Delivered nowhere and the caller gave up meanwhile: report its timeout or abort.
      if (op.cancelling) {
        this.settle(op, new DvsError(expiredReason(op), undefined, { details: { endpoint: op.dst } }));
        return;
      }
      // An instance group's member that has no instance: the call goes to another member instead.
      if (op.dc.routes.instancesOf(op.dst) === undefined && op.redirects < this.k.maxRedirects && this.redirect(op, from, frame.node, frame.epoch ?? TRAFFIC_EPOCH)) return;
    }
    if (err.code === 'EDVSBADSRCDST') {
      if (op.cancelling) {
        this.settle(op, new DvsError(expiredReason(op), undefined, { details: { endpoint: op.dst } }));
        return;
      }
      // The caller is bound here, so that node's routes lag behind the directory (a slot claimed
      // here just now, an endpoint that moved here): ask again shortly rather than fail.
      if (this.retryLater(op)) return;
    }
    this.settle(op, err);
  }

  /**
   * Follows "moved to node N at epoch E" from `from`: the route learns it (epoch-checked), and the
   * call goes wherever the route now says: resent to another node, delivered here, or parked.
   * False when the route gives no other place (the call then fails EDVSNONODE).
   */
  private redirect(op: SendOp | SendrecOp, from: number, node: number, epoch: number): boolean {
    const dc = op.dc;
    if (dc.routes.at(dc.space.slotOf(op.dst))?.endpoint !== op.dst) return false;
    if (node !== this.k.nodeId && dc.nodes.has(node)) this.k.moves.learn(dc, op.dst, node, epoch);
    const route = dc.routes.at(dc.space.slotOf(op.dst));
    if (route === undefined || route.endpoint !== op.dst) return false;
    const proc = op.proc;
    if (route.kind === 'remote' || route.kind === 'group') {
      const target = nodeOf(route);
      // It answered from an older epoch than the route's: the endpoint is on its way there (its
      // mailbox not absorbed yet), so ask again shortly rather than fail.
      if (target === from && epoch !== TRAFFIC_EPOCH && epoch < route.epoch && dc.nodes.has(target) && !this.k.downNodes.has(target)) return this.retryLater(op);
      if (target === from || !dc.nodes.has(target) || this.k.downNodes.has(target)) return false;
      op.redirects++;
      op.node = target;
      op.id = this.k.newId();
      if (op.kind === 'sendrec') proc.sendrecOpId = op.id;
      op.cancelling = false;
      this.outstanding.set(op);
      this.k.emit(target, { k: 'send', dc: dc.dcid, id: op.id, src: proc.endpoint, dst: op.dst, type: op.type, payload: op.payload, rec: op.kind === 'sendrec' });
      return true;
    }
    // The endpoint lives here now (it moved in), or is moving: the call continues locally.
    proc.sending--;
    const msg = { type: op.type, payload: op.payload };
    if (op.kind === 'send') {
      this.k.rendezvous.routeSend(proc, route, op.dst, msg, op.waiter, true);
      return true;
    }
    const w = proc.recv;
    if (w === undefined || w.mode !== RecvMode.SendrecSending || w.from !== op.dst) return true;
    this.k.rendezvous.routeSendrec(proc, route, op.dst, msg, w, true);
    return true;
  }

  /**
   * Sends `op` again to the same node after a backoff, a bounded number of times. It stays
   * outstanding meanwhile, so a node going down fails it, and a timeout or abort withdraws it here
   * (`expire`: no node holds it until it is sent again).
   */
  private retryLater(op: SendOp | SendrecOp): boolean {
    const n = op.lagRetries ?? 0;
    if (n >= LAG_RETRIES) return false;
    op.lagRetries = n + 1;
    this.outstanding.set(op);
    op.backoff = this.k.clock.setTimer(Math.min(LAG_BACKOFF_MAX_MS, LAG_BACKOFF_MS * 2 ** n), () => {
      op.backoff = undefined;
      if (this.outstanding.get(op.id) !== op || op.cancelling) return;
      this.outstanding.delete(op.id);
      op.id = this.k.newId();
      if (op.kind === 'sendrec') op.proc.sendrecOpId = op.id;
      this.outstanding.set(op);
      this.k.emit(op.node, { k: 'send', dc: op.dc.dcid, id: op.id, src: op.proc.endpoint, dst: op.dst, type: op.type, payload: op.payload, rec: op.kind === 'sendrec' });
    });
    return true;
  }

  settle(op: SendOp | SendrecOp, err: DvsError): void {
    const proc = op.proc;
    proc.sending--;
    if (op.kind === 'sendrec') {
      const w = proc.recv;
      if (w !== undefined && w.from === op.dst && (w.mode === RecvMode.SendrecSending || w.mode === RecvMode.SendrecReply)) {
        proc.recv = undefined;
        w.waiter.reject(err);
      }
    } else {
      op.waiter.reject(err);
    }
  }

  /** Ends an outstanding request with `code` (its node failed, the kernel stops). */
  failOp(op: RemoteOp, code: DvsErrorCode): void {
    this.outstanding.delete(op.id);
    if (op.kind === 'chunk') op.done(new DvsError(code).errno, undefined);
    else this.settle(op, new DvsError(code, undefined, { details: { endpoint: op.dst, node: op.node } }));
  }

  onCancelAck(from: number, frame: CancelAckFrame): void {
    const op = this.outstanding.get(frame.id);
    if ((op?.kind !== 'send' && op?.kind !== 'sendrec') || op.node !== from || !op.cancelling) return;
    if (frame.node !== undefined) {
      // Handed over with its destination: withdraw it where it went.
      const dc = op.dc;
      if (frame.node !== this.k.nodeId && dc.nodes.has(frame.node) && !this.k.downNodes.has(frame.node)) {
        this.k.moves.learn(dc, op.dst, frame.node, frame.epoch ?? TRAFFIC_EPOCH);
        op.node = frame.node;
        this.k.emit(frame.node, { k: 'cancel', dc: dc.dcid, id: op.id });
        return;
      }
    }
    this.outstanding.delete(op.id);
    this.settle(op, new DvsError(expiredReason(op), undefined, { details: { endpoint: op.dst } }));
  }

  onReply(dc: DcState, from: number, frame: ReplyFrame): void {
    const route = dc.routes.at(dc.space.checkEndpoint(frame.dst));
    const owner = ownerOf(route);
    const client = owner !== undefined && owner.endpoint === frame.dst ? owner : undefined;
    if (client === undefined) {
      this.k.stats.repliesDropped++;
      return;
    }
    this.impliedAck(client, frame.src, from, frame.id);
    const w = client.recv;
    // Only the reply to the current request: one to an abandoned earlier sendrec carries another id.
    if (w !== undefined && w.mode === RecvMode.SendrecReply && w.from === frame.src && client.sendrecOpId === frame.id) this.k.rendezvous.deliver(client, w, frame.src, frame.type, frame.payload);
    else this.k.stats.repliesDropped++;
  }

  onReplyCancelAck(dc: DcState, from: number, frame: ReplyCancelAckFrame): void {
    const entry = ownerOf(dc.routes.at(dc.space.checkEndpoint(frame.client)));
    if (entry === undefined || entry.endpoint !== frame.client) return;
    const w = entry.recv;
    if (w === undefined || w.mode !== RecvMode.SendrecReply || w.node !== from || w.waiter.expired === undefined || entry.sendrecOpId !== frame.id) return;
    if (frame.node !== undefined && frame.node !== this.k.nodeId && dc.nodes.has(frame.node) && !this.k.downNodes.has(frame.node)) {
      // The server moved there with the reply it owes: withdraw it there.
      w.node = frame.node;
      this.k.emit(frame.node, { k: 'reply-cancel', dc: dc.dcid, id: frame.id, client: frame.client, server: w.from });
      return;
    }
    entry.recv = undefined;
    w.waiter.rejectExpired({ endpoint: w.from });
  }

  // ---------------------------------------------------------------- requests of other nodes

  /**
   * A message from another node for an endpoint here. Its source must be that node's by this
   * node's routes (`RouteTable.sourceFrom`): refused (EDVSBADSRCDST, counted) when they place it
   * elsewhere, held while it is moving and comes from another node than the one it was on; an
   * unknown source is learnt (autobind), a dead one refused (EDVSENDPOINT). Its destination is then
   * delivered, queued, parked when frozen, or answered "moved".
   */
  onSend(dc: DcState, from: number, frame: SendFrame): void {
    const srcSlot = dc.space.checkEndpoint(frame.src);
    const source = dc.routes.sourceFrom(frame.src, from);
    if (source === 'foreign') {
      this.k.stats.sourcesRefused++;
      this.refuseSend(from, frame, 'EDVSBADSRCDST');
      return;
    }
    checkMessageType(frame.type);
    checkPayload(frame.payload, this.k.limits.maxPayloadBytes);
    const srcRoute = dc.routes.at(srcSlot);
    if (source === 'moving' && srcRoute?.kind === 'frozen') {
      this.k.moves.holdFrame(srcRoute, from, frame);
      return;
    }
    if (source === 'new') this.k.moves.autobind(dc, frame.src, from);
    // A sender older than the incarnation this node knows for its slot is dead: refuse its message.
    if (dc.routes.at(srcSlot)?.endpoint !== frame.src) {
      this.refuseSend(from, frame, 'EDVSENDPOINT');
      return;
    }
    let route: Route;
    try {
      route = dc.routes.lookup(frame.dst);
    } catch (err) {
      this.refuseSend(from, frame, isDvsError(err) ? err.code : 'EDVSBADREQUEST');
      return;
    }
    this.deliverSend(dc, from, frame, route);
  }

  /**
   * A notification from another node (or passed on by one, with `origin`: its source is checked
   * against `origin`). Refused and dropped (counted) when the routes place its source elsewhere,
   * held like a send while its source is moving; both ends must be system slots.
   */
  onNotify(dc: DcState, from: number, frame: NotifyFrame): void {
    const srcSlot = dc.space.checkEndpoint(frame.src);
    const route = dc.routes.lookup(frame.dst);
    const source = dc.routes.sourceFrom(frame.src, frame.origin ?? from);
    if (source === 'foreign') {
      this.k.stats.sourcesRefused++;
      this.k.refused(from, frame.k, 'EDVSBADSRCDST');
      return;
    }
    const srcRoute = dc.routes.at(srcSlot);
    if (source === 'moving' && srcRoute?.kind === 'frozen') {
      this.k.moves.holdFrame(srcRoute, from, frame);
      return;
    }
    if (dc.space.isSystemSlot(srcSlot) && dc.space.isSystemSlot(route.slot)) this.k.moves.notifyFrame(dc, from, frame, route);
  }

  /** A frame held while its source was moving, handled as if it arrived now; never throws. */
  receiveAgain(dc: DcState, from: number, frame: SendFrame | NotifyFrame): void {
    try {
      if (frame.k === 'send') this.onSend(dc, from, frame);
      else this.onNotify(dc, from, frame);
    } catch (err) {
      const code = isDvsError(err) ? err.code : 'EDVSBADREQUEST';
      if (frame.k === 'send') this.refuseSend(from, frame, code);
      else this.k.refused(from, frame.k, code);
    }
  }

  /** Delivers, queues, parks or redirects a send frame whose destination route is `route`. */
  deliverSend(dc: DcState, from: number, frame: SendFrame, route: Route): void {
    switch (route.kind) {
      case 'remote':
      case 'group':
        this.k.stats.framesRefused++;
        this.k.emit(from, { k: 'send-ack', dc: dc.dcid, id: frame.id, rc: new DvsError('EDVSNONODE').errno, node: nodeOf(route), epoch: route.epoch });
        return;
      case 'frozen':
        this.k.moves.parkFrame(route, from, frame);
        return;
      case 'local':
        break;
    }
    const w = route.recv;
    if (accepts(w, frame.src)) {
      this.k.rendezvous.deliver(route, w, frame.src, frame.type, frame.payload);
      if (frame.rec) owedOf(route).set(frame.src, from, frame.id);
      else this.k.emit(from, { k: 'send-ack', dc: dc.dcid, id: frame.id, rc: 0 });
      return;
    }
    const rec: RemoteQueued = { kind: 'remote', src: frame.src, type: frame.type, payload: frame.payload, sendrec: frame.rec, node: from, id: frame.id, prev: undefined, next: undefined, queuedOn: undefined };
    route.mailbox.enqueue(rec);
    this.index(rec);
  }

  /** Indexes a remote sender queued here, for its cancel. */
  index(rec: RemoteQueued): void {
    let byId = this.queued.get(rec.node);
    if (byId === undefined) this.queued.set(rec.node, (byId = new IdTable()));
    byId.set(rec);
  }

  unindex(rec: RemoteQueued): void {
    this.queued.get(rec.node)?.delete(rec.id);
  }

  /** A queued remote sender was taken by `dst`: a sendrec is acknowledged by its reply, a send now. */
  taken(dst: LocalProc, rec: RemoteQueued): void {
    this.unindex(rec);
    if (rec.sendrec) owedOf(dst).set(rec.src, rec.node, rec.id);
    else this.k.emit(rec.node, { k: 'send-ack', dc: dst.dcid, id: rec.id, rc: 0 });
  }

  onCancel(dc: DcState, from: number, frame: CancelFrame): void {
    const rec = this.queued.get(from)?.get(frame.id);
    if (rec?.queuedOn !== undefined) {
      rec.queuedOn.dequeue(rec);
      this.unindex(rec);
      this.k.emit(from, { k: 'cancel-ack', dc: dc.dcid, id: frame.id });
    } else if (this.dropReplyWait(dc, from, frame.id) || this.k.moves.unparkFrame(dc, from, frame.id)) {
      // A sendrec taken but not answered yet (the server's reply now fails with EDVSPROCSTS), or a
      // send parked on a frozen route: withdrawn too.
      this.k.emit(from, { k: 'cancel-ack', dc: dc.dcid, id: frame.id });
    } else {
      const moved = this.tombstone(from, frame.id);
      if (moved !== undefined) this.k.emit(from, { k: 'cancel-ack', dc: dc.dcid, id: frame.id, node: moved.node, epoch: moved.epoch });
      // Already answered (the reply or the plain send went ahead of this ack) or a plain send taken: delivery wins.
      else this.k.emit(from, { k: 'send-ack', dc: dc.dcid, id: frame.id, rc: 0 });
    }
  }

  onReplyCancel(dc: DcState, from: number, frame: ReplyCancelFrame): void {
    const entry = ownerOf(dc.routes.at(dc.space.checkEndpoint(frame.server)));
    if (entry !== undefined && entry.endpoint === frame.server) {
      const owed = entry.mailbox.owed;
      const pending = owed?.get(frame.client);
      if (pending !== undefined && pending.node === from && pending.id === frame.id) owed?.answered(frame.client);
    } else {
      const moved = this.tombstone(from, frame.id);
      if (moved !== undefined) {
        this.k.emit(from, { k: 'reply-cancel-ack', dc: dc.dcid, id: frame.id, client: frame.client, node: moved.node, epoch: moved.epoch });
        return;
      }
    }
    // Always answered: whatever reply to it went out did so before this ack, on the same link.
    this.k.emit(from, { k: 'reply-cancel-ack', dc: dc.dcid, id: frame.id, client: frame.client });
  }

  /** Forgets that a local server owes request `id` of `node` a reply; whether one was owed. Scans: cancels are rare. */
  private dropReplyWait(dc: DcState, node: number, id: number): boolean {
    for (const p of dc.routes.locals()) if (p.mailbox.owed?.withdraw(node, id) === true) return true;
    return false;
  }

  /** Answers a refused send with its error. */
  refuseSend(from: number, frame: SendFrame, code: DvsErrorCode): void {
    this.k.refused(from, frame.k, code);
    this.k.emit(from, { k: 'send-ack', dc: frame.dc, id: frame.id, rc: new DvsError(code).errno });
  }

  // ---------------------------------------------------------------- handovers

  /** Requests of other nodes that left with a handover to `node`: late cancels are sent there. */
  handedOver(requests: readonly { readonly node: number; readonly id: number }[], node: number, epoch: number): void {
    const now = this.k.clock.now();
    this.pruneTombstones(now);
    for (const r of requests) {
      if (r.node === this.k.nodeId || r.node === node) continue;
      let byId = this.tombstones.get(r.node);
      if (byId === undefined) this.tombstones.set(r.node, (byId = new Map()));
      byId.set(r.id, { node, epoch, at: now });
    }
  }

  private tombstone(node: number, id: number): Tombstone | undefined {
    return this.tombstones.get(node)?.get(id);
  }

  private pruneTombstones(now: number): void {
    for (const [node, byId] of this.tombstones) {
      for (const [id, t] of byId) if (now - t.at > this.k.tombstoneMs) byId.delete(id);
      if (byId.size === 0) this.tombstones.delete(node);
    }
  }

  /** Another node now holds these requests of ours for `ep` (its `moved` frame): their answers come from there. */
  /**
   * A sendrec of this node whose request `ep` took was handed over to this very node (the server
   * moved here): its outstanding send phase ends as if acknowledged, and the caller waits for the
   * reply locally. False if no such call is outstanding.
   */
  takeHome(dc: DcState, ep: Endpoint, id: number): boolean {
    const op = this.outstanding.get(id);
    if (op?.kind !== 'sendrec' || op.dc !== dc || op.dst !== ep) return false;
    this.outstanding.delete(id);
    const proc = op.proc;
    proc.sending--;
    proc.counters.rmtSent++;
    const w = proc.recv;
    if (w === undefined || w.mode !== RecvMode.SendrecSending || w.from !== ep) return false;
    if (op.cancelling) {
      // The caller gave up meanwhile: nothing is owed to it any more.
      proc.recv = undefined;
      w.waiter.rejectExpired({ endpoint: ep });
      return false;
    }
    w.mode = RecvMode.SendrecReply;
    w.node = undefined;
    return true;
  }

  retarget(dc: DcState, ep: Endpoint, node: number, ids: readonly number[]): void {
    for (const id of ids) {
      const op = this.outstanding.get(id);
      if ((op?.kind === 'send' || op?.kind === 'sendrec') && op.dc === dc && op.dst === ep) {
        op.node = node;
        // A cancel sent to the old owner may be answered "ask there", or not at all: ask again.
        if (op.cancelling) this.k.emit(node, { k: 'cancel', dc: dc.dcid, id });
        continue;
      }
      for (const p of dc.routes.locals()) {
        const w = p.recv;
        if (w !== undefined && w.mode === RecvMode.SendrecReply && w.from === ep && p.sendrecOpId === id) {
          w.node = node;
          if (w.waiter.expired !== undefined) this.k.emit(node, { k: 'reply-cancel', dc: dc.dcid, id, client: p.endpoint, server: ep });
          break;
        }
      }
    }
  }

  // ---------------------------------------------------------------- copy chunks

  chunkRequest(dc: DcState, node: number, proc: LocalProc | undefined, build: (id: number) => CopyReadFrame | CopyWriteFrame | CopyRelayFrame): Promise<Uint8Array | undefined> {
    return new Promise((resolve, reject) => {
      const id = this.k.newId();
      const op: ChunkOp = {
        kind: 'chunk',
        id,
        node,
        dc,
        proc,
        done: (rc, data) => (rc === 0 ? resolve(data) : reject(DvsError.fromErrno(rc, undefined, { details: { node } }))),
      };
      this.outstanding.set(op);
      this.k.emit(node, build(id));
    });
  }

  onChunkAnswer(from: number, id: number, rc: number, data: Uint8Array | undefined): void {
    const op = this.outstanding.get(id);
    if (op?.kind !== 'chunk' || op.node !== from) return;
    this.outstanding.delete(op.id);
    op.done(rc, data);
  }

  // ---------------------------------------------------------------- failures

  /** `node` failed (or left `only`): its requests here end, what it queued here goes. */
  failNode(node: number, code: DvsErrorCode, only: DcState | undefined): void {
    for (const op of this.outstanding.values()) {
      if (op.node !== node || (only !== undefined && op.dc !== only)) continue;
      this.failOp(op, code);
    }
    if (only === undefined) {
      this.queued.delete(node);
      this.tombstones.delete(node);
    }
  }

  /** The calls of an unbound process end with `err`. */
  failProc(proc: LocalProc, err: () => DvsError): void {
    for (const op of this.outstanding.values()) {
      if (op.proc !== proc) continue;
      this.outstanding.delete(op.id);
      if (op.kind === 'chunk') op.done(err().errno, undefined);
      else if (op.kind === 'send') op.waiter.reject(err());
    }
  }

  /** The sendrec op of `p` toward `ep`, if still in its send phase. */
  sendrecOp(p: LocalProc, ep: Endpoint): SendrecOp | undefined {
    const op = this.outstanding.get(p.sendrecOpId);
    return op?.kind === 'sendrec' && op.proc === p && op.dst === ep ? op : undefined;
  }

  shutdown(): void {
    for (const op of this.outstanding.values()) this.failOp(op, 'EDVSSHUTDOWN');
  }
}

