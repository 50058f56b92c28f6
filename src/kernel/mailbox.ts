/**
 * The mailbox of an owned endpoint: its queued senders (local and remote, in one FIFO list), its
 * pending notifications and the replies it owes to remote clients. `drain` turns all of it into a
 * `Handover`, plain data that can cross a link; `absorb` on the new owner takes it in, so every
 * one of those senders is answered from there (DESIGN.md, "Moving endpoints").
 */
import type { Endpoint } from '../ipc/endpoint.js';
import type { Payload } from '../ipc/payload.js';
import type { LocalProc } from './proc.js';
import type { Waiter } from './waiter.js';

interface QueuedBase {
  readonly src: Endpoint;
  readonly type: number;
  readonly payload: Payload;
  prev: QueuedSend | undefined;
  next: QueuedSend | undefined;
  queuedOn: Mailbox | undefined;
}

/** A plain send of a process of this kernel, blocked until taken. */
export interface LocalSendQueued extends QueuedBase {
  readonly kind: 'local-send';
  readonly sendrec: false;
  readonly sender: LocalProc;
  readonly waiter: Waiter<void>;
}

/** The request of a sendrec of a process of this kernel (its call waits as `sender.recv`). */
export interface LocalSendrecQueued extends QueuedBase {
  readonly kind: 'local-sendrec';
  readonly sendrec: true;
  readonly sender: LocalProc;
}

/** A send or sendrec request from another node: answered there by frame id. */
export interface RemoteQueued extends QueuedBase {
  readonly kind: 'remote';
  readonly sendrec: boolean;
  readonly node: number;
  readonly id: number;
}

export type LocalQueued = LocalSendQueued | LocalSendrecQueued;
export type QueuedSend = LocalQueued | RemoteQueued;

export interface PendingNotify {
  readonly src: Endpoint;
  arg: number;
}

/** A remote client whose sendrec request was taken: where it waits, and its request id (the reply carries it). */
export interface PendingReply {
  readonly node: number;
  readonly id: number;
}

/** A queued sender in a handover: answered at `node` by frame `id` (a sender of the new owner's own node included). */
export interface HandoverSend {
  readonly src: Endpoint;
  readonly type: number;
  readonly payload: Payload;
  readonly sendrec: boolean;
  readonly node: number;
  readonly id: number;
}

export interface HandoverNotify {
  readonly src: Endpoint;
  readonly privId: number;
  readonly arg: number;
}

/** A client blocked in sendrec whose request was taken: its reply goes to `node` with request id `id`. */
export interface HandoverReply {
  readonly client: Endpoint;
  readonly node: number;
  readonly id: number;
}

/** A drained mailbox: plain data (msgpack-encodable) that the new owner absorbs. */
export interface Handover {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  /** The epoch of the endpoint at its new owner. */
  readonly epoch: number;
  /** The node that drained it. */
  readonly from: number;
  readonly queued: readonly HandoverSend[];
  readonly notifies: readonly HandoverNotify[];
  readonly owed: readonly HandoverReply[];
  readonly wokenUp: boolean;
}

interface ReplyEntry {
  node: number;
  id: number;
  /** False once answered: the entry waits for the client's next request. */
  live: boolean;
}

/**
 * The remote clients a process owes a reply, by client endpoint. An answered entry stays as a
 * tombstone that the client's next request reuses: a request and its reply would otherwise cost a
 * Map insert and a delete each, and V8 shrinks (reallocates) a Map's table on a delete that leaves
 * it sparse. Entries go for good when their client dies or its node fails, so the table holds at
 * most the clients alive.
 */
export class ReplyWaits {
  private readonly byClient = new Map<Endpoint, ReplyEntry>();

  get(client: Endpoint): PendingReply | undefined {
    const e = this.byClient.get(client);
    return e !== undefined && e.live ? e : undefined;
  }

  set(client: Endpoint, node: number, id: number): void {
    const e = this.byClient.get(client);
    if (e === undefined) this.byClient.set(client, { node, id, live: true });
    else {
      e.node = node;
      e.id = id;
      e.live = true;
    }
  }

  /** The reply went out (or the wait was withdrawn): the entry is kept for the client's next request. */
  answered(client: Endpoint): void {
    const e = this.byClient.get(client);
    if (e !== undefined) e.live = false;
  }

  /** The client is gone: its entry too. */
  forget(client: Endpoint): void {
    this.byClient.delete(client);
  }

  /** Forgets every client waiting on `node` (it failed). */
  forgetNode(node: number): void {
    for (const [client, e] of this.byClient) if (e.node === node) this.byClient.delete(client);
  }

  /** Withdraws the wait for request `id` of `node`, if one is owed; whether it was. */
  withdraw(node: number, id: number): boolean {
    for (const e of this.byClient.values()) {
      if (e.live && e.node === node && e.id === id) {
        e.live = false;
        return true;
      }
    }
    return false;
  }

  /** The replies still owed, removed. */
  takeAll(): HandoverReply[] {
    const out: HandoverReply[] = [];
    for (const [client, e] of this.byClient) if (e.live) out.push({ client, node: e.node, id: e.id });
    this.byClient.clear();
    return out;
  }
}

export class Mailbox {
  head: QueuedSend | undefined;
  private tail: QueuedSend | undefined;
  length = 0;
  /** Pending notifications by the source's privId. */
  notifies: Map<number, PendingNotify> | undefined;
  /** Remote clients whose sendrec request was taken and not yet answered. */
  owed: ReplyWaits | undefined;

  enqueue(rec: QueuedSend): void {
    rec.queuedOn = this;
    rec.prev = this.tail;
    rec.next = undefined;
    if (this.tail === undefined) this.head = rec;
    else this.tail.next = rec;
    this.tail = rec;
    this.length++;
  }

  dequeue(rec: QueuedSend): void {
    if (rec.queuedOn !== this) return;
    if (rec.prev === undefined) this.head = rec.next;
    else rec.prev.next = rec.next;
    if (rec.next === undefined) this.tail = rec.prev;
    else rec.next.prev = rec.prev;
    rec.prev = rec.next = undefined;
    rec.queuedOn = undefined;
    this.length--;
  }

  /** First queued send acceptable to receive(src); `any` is the ANY endpoint. */
  findQueued(src: Endpoint, any: Endpoint): QueuedSend | undefined {
    for (let r = this.head; r !== undefined; r = r.next) {
      if (src === any || r.src === src) return r;
    }
    return undefined;
  }

  /** Sets or merges a pending notification: 'overrun' when one from the same source was already pending. */
  addNotify(privId: number, src: Endpoint, arg: number): 'pending' | 'overrun' {
    const notes = (this.notifies ??= new Map());
    const pending = notes.get(privId);
    if (pending !== undefined && pending.src === src) {
      pending.arg = (pending.arg | arg) >>> 0;
      return 'overrun';
    }
    notes.set(privId, { src, arg });
    return 'pending';
  }

  /** Removes and returns the notification of `privId`, if one is pending from `src` (or from anyone, without `src`). */
  takeNotify(privId: number, src?: Endpoint): PendingNotify | undefined {
    const notes = this.notifies;
    const note = notes?.get(privId);
    if (notes === undefined || note === undefined || (src !== undefined && note.src !== src)) return undefined;
    notes.delete(privId);
    if (notes.size === 0) this.notifies = undefined;
    return note;
  }

  /** The lowest privId with a pending notification, or -1. */
  lowestNotify(): number {
    let best = -1;
    if (this.notifies !== undefined) for (const id of this.notifies.keys()) if (best < 0 || id < best) best = id;
    return best;
  }

  /**
   * Empties the mailbox into handover parts. A local sender gets the address (node, id) its answer
   * will come back to from `addressLocal`, which also takes charge of its blocked call.
   */
  drain(addressLocal: (rec: LocalQueued) => HandoverSend): Pick<Handover, 'queued' | 'notifies' | 'owed'> {
    const queued: HandoverSend[] = [];
    for (let rec = this.head; rec !== undefined; rec = this.head) {
      this.dequeue(rec);
      queued.push(rec.kind === 'remote' ? { src: rec.src, type: rec.type, payload: rec.payload, sendrec: rec.sendrec, node: rec.node, id: rec.id } : addressLocal(rec));
    }
    const notifies: HandoverNotify[] = [];
    for (const [privId, n] of this.notifies ?? []) notifies.push({ src: n.src, privId, arg: n.arg });
    this.notifies = undefined;
    const owed = this.owed?.takeAll() ?? [];
    this.owed = undefined;
    return { queued, notifies, owed };
  }

  /**
   * Takes in a handover's parts, behind whatever is queued already. A sender or client of this
   * very node (`me`) is turned back into a local one by `localSender` (undefined: its call is gone)
   * and `localClient`; the remote senders added are returned, to be indexed for cancels.
   */
  absorb(
    h: Pick<Handover, 'queued' | 'notifies' | 'owed'>,
    me: number,
    localSender: (s: HandoverSend) => LocalQueued | undefined,
    localClient: (r: HandoverReply) => void,
  ): RemoteQueued[] {
    const remote: RemoteQueued[] = [];
    for (const s of h.queued) {
      if (s.node === me) {
        const rec = localSender(s);
        if (rec !== undefined) this.enqueue(rec);
        continue;
      }
      const rec: RemoteQueued = { kind: 'remote', src: s.src, type: s.type, payload: s.payload, sendrec: s.sendrec, node: s.node, id: s.id, prev: undefined, next: undefined, queuedOn: undefined };
      this.enqueue(rec);
      remote.push(rec);
    }
    for (const n of h.notifies) this.addNotify(n.privId, n.src, n.arg);
    for (const r of h.owed) {
      if (r.node === me) localClient(r);
      else (this.owed ??= new ReplyWaits()).set(r.client, r.node, r.id);
    }
    return remote;
  }
}
