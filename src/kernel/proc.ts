/** An endpoint bound in this kernel: its identity, privileges, blocked call, grants and mailbox. */
import type { Endpoint } from '../ipc/endpoint.js';
import type { Message } from '../ipc/message.js';
import type { PrivLevel } from '../ipc/privileges.js';
import type { DcState } from './dc.js';
import { Mailbox } from './mailbox.js';
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

/**
 * Grant memory that lives outside this kernel's process, such as in a client OS process served by a
 * node daemon: copies reach it asynchronously. Offsets are relative to the granted window.
 */
export interface GrantBackend {
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
}

interface GrantBase {
  readonly id: number;
  readonly offset: number;
  readonly length: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly grantee: Endpoint;
  readonly whileWaiting: boolean;
}

/** A grant of in-process memory, or of bytes reached through a backend (a client OS process). */
export type Grant = (GrantBase & { readonly buffer: Uint8Array; readonly backend: undefined }) | (GrantBase & { readonly buffer: undefined; readonly backend: GrantBackend });

export interface ProcCounters {
  lclSent: number;
  rmtSent: number;
  lclCopies: number;
  rmtCopies: number;
  received: number;
}

export class LocalProc {
  readonly kind = 'local' as const;
  readonly dc: DcState;
  readonly slot: number;
  readonly endpoint: Endpoint;
  readonly privId: number;
  readonly isSystem: boolean;
  /** Location epoch of this incarnation: 0 when bound, one more at every move (DESIGN.md, "Moving endpoints"). */
  epoch: number;
  name: string;
  level: PrivLevel;
  callMask: number;
  /** System slots this process may send to; null = all. */
  ipcTo: ReadonlySet<number> | null;
  alive = true;
  /** Its code let go before a move's drain (Process.silence): the receive the drain ends never settles. */
  silent = false;

  /** Queued senders, pending notifications and the replies owed to remote clients. */
  readonly mailbox = new Mailbox();
  recv: RecvWait | undefined;
  wokenUp = false;
  /** Blocked sends of this process not yet taken (local, remote or parked). */
  sending = 0;
  /** Destination of the latest blocking send (the original's `sendto`). */
  sendto: Endpoint;
  grants: Map<number, Grant> | undefined;
  nextGrant = 1;
  copying = false;
  /** Id of this process's remote sendrec (its ack may be implied by the reply, which carries it). */
  sendrecOpId = 0;
  readonly counters: ProcCounters = { lclSent: 0, rmtSent: 0, lclCopies: 0, rmtCopies: 0, received: 0 };

  constructor(dc: DcState, slot: number, endpoint: Endpoint, epoch: number, name: string, level: PrivLevel, callMask: number, none: Endpoint) {
    this.dc = dc;
    this.slot = slot;
    this.endpoint = endpoint;
    this.privId = dc.space.privId(slot);
    this.isSystem = dc.space.isSystemSlot(slot);
    this.epoch = epoch;
    this.name = name;
    this.level = level;
    this.callMask = callMask;
    this.ipcTo = null;
    this.sendto = none;
  }

  get dcid(): number {
    return this.dc.dcid;
  }
}
