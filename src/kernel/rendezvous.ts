/**
 * Rendezvous: the M3-IPC calls of the processes bound here (send, sendrec, receive,
 * receiveRequest, reply, notify, wakeup) and how a message meets its receiver: delivered to a
 * blocked receive, queued in the destination's mailbox, handed to remote calls for another node,
 * or parked on a frozen route.
 */
import type { CallOptions, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
import { ANY, HARDWARE, SELF, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { checkMessageType, NOTIFY_MESSAGE, type Message, type OutgoingMessage } from '../ipc/message.js';
import { checkPayload, type Payload } from '../ipc/payload.js';
import { CALL_BIT, callMask, SYSTEM_ONLY_CALLS } from '../ipc/privileges.js';
import { fail, type KernelCore } from './core.js';
import type { DcState } from './dc.js';
import { ReplyWaits, type LocalQueued, type QueuedSend } from './mailbox.js';
import { RecvMode, type LocalProc, type RecvWait } from './proc.js';
import type { Route } from './routes.js';
import { checkNotAborted, checkTimeout, Waiter } from './waiter.js';

const SYSTEM_ONLY_MASK = callMask(SYSTEM_ONLY_CALLS);

/** Whether a blocked receive-side call takes a message from `src`. */
export function accepts(w: RecvWait | undefined, src: Endpoint): w is RecvWait {
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

export class Rendezvous {
  constructor(private readonly k: KernelCore) {}

  // ---------------------------------------------------------------- checks

  checkCaller(proc: LocalProc, bit: number): void {
    this.k.checkRunning();
    if (!proc.alive) fail('EDVSNOTBIND', 'the calling process is no longer bound');
    // System-only calls (reference §2.2/2.3) fail with EDVSTRAPDENIED for users, whatever their allowedCalls say.
    if (!proc.isSystem && (bit & SYSTEM_ONLY_MASK) !== 0) fail('EDVSTRAPDENIED', 'call reserved for system processes');
    if ((proc.callMask & bit) === 0) fail('EDVSBADCALL', 'call not allowed for this process');
  }

  checkIpcTo(proc: LocalProc, dc: DcState, dstSlot: number): void {
    if (proc.ipcTo !== null && dc.space.isSystemSlot(dstSlot) && !proc.ipcTo.has(dstSlot)) {
      fail('EDVSTRAPDENIED', `no permission to send to system slot ${dstSlot}`);
    }
  }

  private checkSend(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined, bit: number): Route {
    this.checkCaller(proc, bit);
    if (opts !== undefined) {
      checkTimeout(opts);
      checkNotAborted(opts);
    }
    const dc = proc.dc;
    if (dst === proc.endpoint || dst === SELF || dst === HARDWARE) fail('EDVSBADDEST', `cannot send to ${dc.space.format(dst)}`);
    checkMessageType(msg.type);
    checkPayload(msg.payload, this.k.limits.maxPayloadBytes);
    const route = dc.routes.lookup(dst);
    this.checkIpcTo(proc, dc, route.slot);
    if ((route.kind === 'remote' || route.kind === 'group') && dc.routes.instancesOf(dst) === undefined) this.k.checkRoute(dc, route);
    return route;
  }

  // ---------------------------------------------------------------- send and sendrec

  send(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<void> {
    try {
      const route = this.checkSend(proc, dst, msg, opts, CALL_BIT.send);
      const inst = proc.dc.routes.instancesOf(dst);
      if (inst !== undefined) return this.k.instances.send(proc, inst, dst, msg, opts);
      if (route.kind === 'local') {
        const w = route.recv;
        if (accepts(w, proc.endpoint)) {
          proc.counters.lclSent++;
          this.deliver(route, w, proc.endpoint, msg.type, msg.payload);
          return Promise.resolve();
        }
        if (opts?.timeoutMs === 0) fail('EDVSTIMEDOUT');
      }
      const waiter = new Waiter<void>();
      this.routeSend(proc, route, dst, msg, waiter, opts !== undefined);
      if (opts !== undefined) waiter.start(this.k.clock, opts);
      return waiter.promise;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * A plain send that did not meet its receiver at once (or is released from a frozen route): queued
   * at a local destination, sent to a remote one, or parked. With `timed`, the waiter's expiry
   * withdraws it from wherever it went.
   */
  routeSend(proc: LocalProc, route: Route, dst: Endpoint, msg: OutgoingMessage, waiter: Waiter<void>, timed: boolean): void {
    switch (route.kind) {
      case 'local': {
        const w = route.recv;
        if (accepts(w, proc.endpoint)) {
          proc.counters.lclSent++;
          this.deliver(route, w, proc.endpoint, msg.type, msg.payload);
          waiter.resolve();
          return;
        }
        const rec: LocalQueued = { kind: 'local-send', sendrec: false, src: proc.endpoint, type: msg.type, payload: msg.payload, sender: proc, waiter, prev: undefined, next: undefined, queuedOn: undefined };
        this.queueLocal(route, rec);
        if (timed) {
          waiter.onExpire = () => {
            if (rec.queuedOn === undefined) return;
            route.mailbox.dequeue(rec);
            proc.sending--;
            waiter.rejectExpired({ endpoint: dst });
          };
        }
        return;
      }
      case 'remote':
      case 'group': {
        const op = this.k.remote.startSend(proc, this.k.checkRoute(proc.dc, route), dst, msg.type, msg.payload, waiter);
        if (timed) waiter.onExpire = () => this.k.remote.expire(op);
        return;
      }
      case 'frozen':
        this.k.moves.parkSend(route, proc, dst, msg, waiter, timed);
        return;
    }
  }

  sendrec(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message> {
    try {
      const route = this.checkSend(proc, dst, msg, opts, CALL_BIT.sendrec);
      const inst = proc.dc.routes.instancesOf(dst);
      if (inst !== undefined) return this.k.instances.sendrec(proc, inst, dst, msg, opts);
      if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
      if (route.kind === 'local' && opts?.timeoutMs === 0 && !accepts(route.recv, proc.endpoint)) fail('EDVSTIMEDOUT');
      const waiter = new Waiter<Message>();
      const recv: RecvWait = { mode: RecvMode.SendrecSending, from: dst, waiter };
      proc.recv = recv;
      this.routeSendrec(proc, route, dst, msg, recv, opts !== undefined);
      if (opts !== undefined) waiter.start(this.k.clock, opts);
      return waiter.promise;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** The request of a sendrec whose call waits as `recv` (in SendrecSending), routed like routeSend. */
  routeSendrec(proc: LocalProc, route: Route, dst: Endpoint, msg: OutgoingMessage, recv: RecvWait, timed: boolean): void {
    const waiter = recv.waiter;
    switch (route.kind) {
      case 'local': {
        const w = route.recv;
        if (accepts(w, proc.endpoint)) {
          proc.counters.lclSent++;
          recv.mode = RecvMode.SendrecReply;
          this.deliver(route, w, proc.endpoint, msg.type, msg.payload);
          if (timed) {
            waiter.onExpire = () => {
              if (proc.recv === recv) proc.recv = undefined;
              waiter.rejectExpired({ endpoint: dst });
            };
          }
          return;
        }
        const rec: LocalQueued = { kind: 'local-sendrec', sendrec: true, src: proc.endpoint, type: msg.type, payload: msg.payload, sender: proc, prev: undefined, next: undefined, queuedOn: undefined };
        this.queueLocal(route, rec);
        if (timed) {
          waiter.onExpire = () => {
            if (rec.queuedOn !== undefined) {
              route.mailbox.dequeue(rec);
              proc.sending--;
            }
            if (proc.recv === recv) proc.recv = undefined;
            waiter.rejectExpired({ endpoint: dst });
          };
        }
        return;
      }
      case 'remote':
      case 'group': {
        const op = this.k.remote.startSendrec(proc, this.k.checkRoute(proc.dc, route), dst, msg.type, msg.payload);
        if (timed) waiter.onExpire = () => this.k.remote.expire(op);
        return;
      }
      case 'frozen':
        this.k.moves.parkSendrec(route, proc, dst, msg, recv, timed);
        return;
    }
  }

  deliver(dst: LocalProc, w: RecvWait, src: Endpoint, type: number, payload: Payload): void {
    dst.recv = undefined;
    dst.counters.received++;
    w.waiter.resolve({ source: src, type, payload });
  }

  queueLocal(dst: LocalProc, rec: LocalQueued): void {
    dst.mailbox.enqueue(rec);
    const sender = rec.sender;
    sender.sending++;
    sender.sendto = dst.endpoint;
  }

  /** Completes a queued send: the receiver takes it, the sender learns (locally or by send-ack). */
  take(dst: LocalProc, rec: QueuedSend): Message {
    dst.mailbox.dequeue(rec);
    dst.counters.received++;
    switch (rec.kind) {
      case 'local-send':
        rec.sender.sending--;
        rec.sender.counters.lclSent++;
        rec.waiter.resolve();
        break;
      case 'local-sendrec': {
        const sender = rec.sender;
        sender.sending--;
        sender.counters.lclSent++;
        if (sender.recv !== undefined) sender.recv.mode = RecvMode.SendrecReply;
        break;
      }
      case 'remote':
        this.k.remote.taken(dst, rec);
        break;
    }
    return { source: rec.src, type: rec.type, payload: rec.payload };
  }

  // ---------------------------------------------------------------- receive

  receive(proc: LocalProc, src: Endpoint, opts: CallOptions | undefined): Promise<Message> {
    try {
      this.checkCaller(proc, CALL_BIT.receive);
      if (src !== ANY) {
        if (src === proc.endpoint || src === SELF) fail('EDVSBADSRCDST', 'a process cannot receive from itself');
        const from = proc.dc.routes.lookup(src, 'EDVSSRCDIED');
        // Reference §2.2: receiving from a remote endpoint needs its node connected; a node already
        // declared down would never send, and no later nodeDown would wake this receive.
        if (from.kind === 'remote' && this.k.downNodes.has(from.node)) fail('EDVSNOTCONN', `node ${from.node} is down`, { node: from.node });
      }
      return this.receiveCommon(proc, src, RecvMode.Receive, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  receiveRequest(proc: LocalProc, opts: CallOptions | undefined): Promise<Message> {
    try {
      this.checkCaller(proc, CALL_BIT.receiveRequest);
      return this.receiveCommon(proc, ANY, RecvMode.Request, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private receiveCommon(proc: LocalProc, src: Endpoint, mode: RecvMode, opts: CallOptions | undefined): Promise<Message> {
    checkTimeout(opts);
    checkNotAborted(opts);
    if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
    if (src === ANY && proc.wokenUp) {
      proc.wokenUp = false;
      fail('EDVSWOKENUP');
    }
    const box = proc.mailbox;
    if (mode === RecvMode.Receive && box.notifies !== undefined) {
      const note = this.takeNotify(proc, src);
      if (note !== undefined) return Promise.resolve(note);
    }
    const rec = box.findQueued(src, ANY);
    if (rec !== undefined) return Promise.resolve(this.take(proc, rec));
    if (opts?.timeoutMs === 0) fail('EDVSTIMEDOUT');
    const waiter = new Waiter<Message>();
    const recv: RecvWait = { mode, from: src, waiter };
    proc.recv = recv;
    if (opts !== undefined) {
      waiter.arm(this.k.clock, opts, () => {
        if (proc.recv === recv) proc.recv = undefined;
        waiter.rejectExpired();
      });
    }
    return waiter.promise;
  }

  /** A receive that is waiting takes what a handover or a release just put in its mailbox. */
  serveWaiting(proc: LocalProc): void {
    const w = proc.recv;
    if (w === undefined || (w.mode !== RecvMode.Receive && w.mode !== RecvMode.Request)) return;
    if (w.mode === RecvMode.Receive && proc.mailbox.notifies !== undefined) {
      const note = this.takeNotify(proc, w.from);
      if (note !== undefined) {
        proc.recv = undefined;
        w.waiter.resolve(note);
        return;
      }
    }
    const rec = proc.mailbox.findQueued(w.from, ANY);
    if (rec === undefined) return;
    proc.recv = undefined;
    w.waiter.resolve(this.take(proc, rec));
  }

  // ---------------------------------------------------------------- reply

  /** Non-blocking: succeeds only if `dst` is blocked in sendrec with the caller and its request was taken. */
  reply(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage): Promise<void> {
    try {
      this.replyNow(proc, dst, msg);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * reply, then receiveRequest. What would stop the receive before it waits (a bad timeout, an
   * abort, another receive in progress) fails the call before the reply goes out; a failed reply
   * fails it before it receives.
   */
  replyAndReceive(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message> {
    try {
      this.checkCaller(proc, CALL_BIT.receiveRequest);
      checkTimeout(opts);
      checkNotAborted(opts);
      if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
      this.replyNow(proc, dst, msg);
      return this.receiveCommon(proc, ANY, RecvMode.Request, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private replyNow(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage): void {
    this.checkCaller(proc, CALL_BIT.reply);
    checkMessageType(msg.type);
    checkPayload(msg.payload, this.k.limits.maxPayloadBytes);
    const dc = proc.dc;
    if (dst === proc.endpoint || dst === SELF) fail('EDVSBADDEST', 'a process cannot reply to itself');
    const route = dc.routes.lookup(dst);
    const client = route.kind === 'local' ? route : route.kind === 'frozen' && route.previous.kind === 'local' ? route.previous : undefined;
    if (client !== undefined) {
      const w = client.recv;
      if (w === undefined || w.mode !== RecvMode.SendrecReply || w.from !== proc.endpoint) {
        fail('EDVSPROCSTS', `endpoint ${dc.space.format(dst)} is not waiting for a reply from ${dc.space.format(proc.endpoint)}`);
      }
      proc.counters.lclSent++;
      this.deliver(client, w, proc.endpoint, msg.type, msg.payload);
      return;
    }
    const owed = proc.mailbox.owed;
    const pending = owed?.get(dst);
    if (owed === undefined || pending === undefined) fail('EDVSPROCSTS', `endpoint ${dc.space.format(dst)} is not waiting for a reply from ${dc.space.format(proc.endpoint)}`);
    owed.answered(dst);
    proc.counters.rmtSent++;
    this.k.emit(pending.node, { k: 'reply', dc: dc.dcid, id: pending.id, src: proc.endpoint, dst, type: msg.type, payload: msg.payload });
  }

  // ---------------------------------------------------------------- notify

  notify(proc: LocalProc, dst: Endpoint, opts: NotifyOptions | undefined): Promise<NotifyOutcome> {
    try {
      this.checkCaller(proc, CALL_BIT.notify);
      const arg = opts?.arg ?? 0;
      if (!Number.isInteger(arg) || arg < 0 || arg > 0xffffffff) fail('EDVSBADVALUE', 'notify arg must be a 32-bit unsigned integer');
      const dc = proc.dc;
      if (dst === proc.endpoint || dst === SELF) fail('EDVSBADDEST', 'a process cannot notify itself');
      const slot = dc.space.checkEndpoint(dst);
      if (!dc.space.isSystemSlot(slot)) fail('EDVSPRIVILEGES', `endpoint ${dc.space.format(dst)} is not a system process and cannot be notified`);
      this.checkIpcTo(proc, dc, slot);
      const route = dc.routes.lookup(dst);
      const inst = dc.routes.instancesOf(dst);
      if (inst !== undefined) return Promise.resolve(this.k.instances.notify(proc, inst, dst, arg));
      switch (route.kind) {
        case 'local':
          return Promise.resolve(this.notifyLocal(route, proc.endpoint, proc.privId, arg));
        case 'frozen':
          this.k.moves.parkNotify(route, proc, arg);
          return Promise.resolve('sent');
        default: {
          const node = this.k.checkRoute(dc, route);
          proc.counters.rmtSent++;
          this.k.emit(node, { k: 'notify', dc: dc.dcid, src: proc.endpoint, dst, arg });
          // Never waits for the destination, but a flood toward a node that does not keep up waits for the link.
          const room = this.k.transport?.backpressure?.(node);
          return room === undefined ? Promise.resolve('sent') : room.then(() => 'sent' as const);
        }
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  notifyLocal(dst: LocalProc, src: Endpoint, srcPrivId: number, arg: number): NotifyOutcome {
    const w = dst.recv;
    const box = dst.mailbox;
    if (w !== undefined && w.mode === RecvMode.Receive && (w.from === ANY || w.from === src) && box.notifies?.get(srcPrivId) === undefined) {
      dst.recv = undefined;
      dst.counters.received++;
      w.waiter.resolve({ source: src, type: NOTIFY_MESSAGE | srcPrivId, payload: { arg, timestamp: this.k.clock.now() } });
      return 'delivered';
    }
    return box.addNotify(srcPrivId, src, arg);
  }

  /** The lowest-numbered pending notification acceptable to receive(src), removed and built as a message. */
  private takeNotify(proc: LocalProc, src: Endpoint): Message | undefined {
    const box = proc.mailbox;
    const privId = src === ANY ? box.lowestNotify() : proc.dc.space.privId(proc.dc.space.slotOf(src));
    if (privId < 0) return undefined;
    const note = box.takeNotify(privId, src === ANY ? undefined : src);
    if (note === undefined) return undefined;
    proc.counters.received++;
    return { source: note.src, type: NOTIFY_MESSAGE | privId, payload: { arg: note.arg, timestamp: this.k.clock.now() } };
  }

  // ---------------------------------------------------------------- wakeup

  /**
   * Wakes a process blocked in receive or receiveRequest with EDVSWOKENUP; if it is not blocked there,
   * its next receive(ANY) or receiveRequest fails with EDVSWOKENUP instead.
   */
  wakeup(proc: LocalProc): void {
    const w = proc.recv;
    if (w !== undefined && (w.mode === RecvMode.Receive || w.mode === RecvMode.Request)) {
      proc.recv = undefined;
      w.waiter.reject(new DvsError('EDVSWOKENUP'));
    } else {
      proc.wokenUp = true;
    }
  }
}

/** Owed replies of `proc`, created on first use. */
export function owedOf(proc: LocalProc): ReplyWaits {
  return (proc.mailbox.owed ??= new ReplyWaits());
}
