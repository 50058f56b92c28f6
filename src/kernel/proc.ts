/** Per-endpoint state held by the kernel that owns it, and the descriptors of remote endpoints. */
import type { Endpoint } from '../ipc/endpoint.js';
import type { Message } from '../ipc/message.js';
import type { Payload } from '../ipc/payload.js';
import type { PrivLevel } from '../ipc/privileges.js';
import type { Waiter } from './waiter.js';

/** What a blocked receive-side call accepts. */
export const RecvMode = {
  /** receive(src|ANY): notifications and messages. */
  Receive: 0,
  /** receiveRequest: messages only. */
  Request: 1,
  /** sendrec whose request is not yet taken: accepts nothing. */
  SendrecSending: 2,
  /** sendrec whose request was taken: accepts the reply (reply or send) from the destination only. */
  SendrecReply: 3,
} as const;
export type RecvMode = (typeof RecvMode)[keyof typeof RecvMode];

export interface RecvWait {
  mode: RecvMode;
  /** ANY, or the only endpoint accepted. For sendrec, the destination. */
  from: Endpoint;
  waiter: Waiter<Message>;
  /** Remote sendrec past its send phase: the node that took the request, whence the reply must come. */
  node?: number;
}

/** A message waiting in its destination's queue for a receive to take it. */
export interface QueuedSend {
  readonly src: Endpoint;
  readonly type: number;
  readonly payload: Payload;
  readonly sendrec: boolean;
  /** Local sender (same kernel) and its blocked call; undefined for a remote sender. */
  readonly sender: LocalProc | undefined;
  readonly waiter: Waiter<void> | undefined;
  /** Remote sender: its node and the frame id to acknowledge. */
  readonly node: number;
  readonly id: number;
  prev: QueuedSend | undefined;
  next: QueuedSend | undefined;
  queuedOn: LocalProc | undefined;
}

/**
 * Grant memory that lives outside this kernel's process, such as in a client OS process served by a
 * node daemon: copies reach it asynchronously. Offsets are relative to the granted window.
 */
export interface GrantBackend {
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
}

export interface Grant {
  readonly id: number;
  /** In-process memory; undefined when `backend` holds the bytes. */
  readonly buffer: Uint8Array | undefined;
  readonly backend: GrantBackend | undefined;
  readonly offset: number;
  readonly length: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly grantee: Endpoint;
  readonly whileWaiting: boolean;
}

/** A remote client whose sendrec request this process took: where it waits, and its request id (the reply carries it). */
export interface PendingReply {
  readonly node: number;
  readonly id: number;
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
}

export interface PendingNotify {
  readonly src: Endpoint;
  arg: number;
}

export interface ProcCounters {
  lclSent: number;
  rmtSent: number;
  lclCopies: number;
  rmtCopies: number;
  received: number;
}

/** An endpoint bound in this kernel. */
export class LocalProc {
  readonly kind = 'local' as const;
  readonly dcid: number;
  readonly slot: number;
  readonly endpoint: Endpoint;
  readonly privId: number;
  readonly isSystem: boolean;
  name: string;
  level: PrivLevel;
  callMask: number;
  /** System slots this process may send to; null = all. */
  ipcTo: ReadonlySet<number> | null;
  alive = true;

  queueHead: QueuedSend | undefined;
  queueTail: QueuedSend | undefined;
  queueLength = 0;
  recv: RecvWait | undefined;
  /** Pending notifications by the source's privId. */
  notifies: Map<number, PendingNotify> | undefined;
  wokenUp = false;
  /** Blocked sends of this process not yet taken (local or remote). */
  sending = 0;
  /** Destination of the latest blocking send (the original's `sendto`). */
  sendto: Endpoint;
  /** Remote clients whose sendrec request this process took and has not replied to. */
  replyTo: ReplyWaits | undefined;
  grants: Map<number, Grant> | undefined;
  nextGrant = 1;
  copying = false;
  /** Id of this process's remote sendrec still in its send phase (its ack may be implied by the reply). */
  sendrecOpId = 0;
  readonly counters: ProcCounters = { lclSent: 0, rmtSent: 0, lclCopies: 0, rmtCopies: 0, received: 0 };

  constructor(dcid: number, slot: number, endpoint: Endpoint, privId: number, isSystem: boolean, name: string, level: PrivLevel, callMask: number, none: Endpoint) {
    this.dcid = dcid;
    this.slot = slot;
    this.endpoint = endpoint;
    this.privId = privId;
    this.isSystem = isSystem;
    this.name = name;
    this.level = level;
    this.callMask = callMask;
    this.ipcTo = null;
    this.sendto = none;
  }

  enqueue(rec: QueuedSend): void {
    rec.queuedOn = this;
    rec.prev = this.queueTail;
    rec.next = undefined;
    if (this.queueTail === undefined) this.queueHead = rec;
    else this.queueTail.next = rec;
    this.queueTail = rec;
    this.queueLength++;
  }

  dequeue(rec: QueuedSend): void {
    if (rec.queuedOn !== this) return;
    if (rec.prev === undefined) this.queueHead = rec.next;
    else rec.prev.next = rec.next;
    if (rec.next === undefined) this.queueTail = rec.prev;
    else rec.next.prev = rec.prev;
    rec.prev = rec.next = undefined;
    rec.queuedOn = undefined;
    this.queueLength--;
  }

  /** First queued send acceptable to receive(src). */
  findQueued(src: Endpoint, any: Endpoint): QueuedSend | undefined {
    for (let r = this.queueHead; r !== undefined; r = r.next) {
      if (src === any || r.src === src) return r;
    }
    return undefined;
  }
}

/** The descriptor of an endpoint owned by another node (the directory cache). */
export interface RemoteProc {
  readonly kind: 'remote';
  readonly endpoint: Endpoint;
  readonly slot: number;
  node: number;
  name: string;
}

export type ProcEntry = LocalProc | RemoteProc;
