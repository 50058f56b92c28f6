/**
 * Kernel-to-kernel protocol: what one node's kernel says to another's about endpoints they own.
 * Frames are plain objects; the transport layer encodes them and guarantees per-link FIFO delivery
 * without loss or duplication until it declares the peer node down. See docs/kernel-protocol.md.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import type { Payload } from '../ipc/payload.js';

/**
 * Version of this protocol, exchanged when two nodes link: kernels of different versions never
 * talk. 2: "moved" answers carry the epoch; the `moved` frame; reply-cancel-ack can say "moved".
 * 3: the `svc` frame; a notify passed on after a move names its origin.
 */
export const KERNEL_PROTOCOL_VERSION = 3;

/** A message for `dst`, owned by the receiving node. Answered by send-ack when `dst` takes it. */
export interface SendFrame {
  readonly k: 'send';
  readonly dc: number;
  readonly id: number;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly type: number;
  readonly payload: Payload;
  /** Part of a sendrec: after taking it, `dst` may reply to `src`. */
  readonly rec: boolean;
}

/**
 * Result of a send: rc 0 once taken; an errno otherwise; EDVSNONODE with `node` and `epoch` when
 * `dst` lives elsewhere ("moved to node N at epoch E": the sender re-routes, epoch-checked).
 */
export interface SendAckFrame {
  readonly k: 'send-ack';
  readonly dc: number;
  readonly id: number;
  readonly rc: number;
  readonly node?: number;
  readonly epoch?: number;
}

/** The sender gave up (timeout or abort): withdraw the queued send if not yet taken. */
export interface CancelFrame {
  readonly k: 'cancel';
  readonly dc: number;
  readonly id: number;
}

/**
 * Answer to cancel, sent only when the send was still queued and is now withdrawn. With `node` and
 * `epoch`: it was handed over to that node with its destination; send the cancel there.
 */
export interface CancelAckFrame {
  readonly k: 'cancel-ack';
  readonly dc: number;
  readonly id: number;
  readonly node?: number;
  readonly epoch?: number;
}

/**
 * A server's reply to a client blocked in sendrec with it. Fire-and-forget. `id` is the request's
 * send-frame id: a taken sendrec gets no send-ack of its own, its reply acknowledges it.
 */
export interface ReplyFrame {
  readonly k: 'reply';
  readonly dc: number;
  readonly id: number;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly type: number;
  readonly payload: Payload;
}

/**
 * A sendrec client's call expired (timeout, abort) while it waited for `server`'s reply to request
 * `id`: from now on that reply gets EDVSPROCSTS. Always answered by reply-cancel-ack; a reply sent
 * before this frame arrived reaches the client first (FIFO), and then the call succeeds.
 */
export interface ReplyCancelFrame {
  readonly k: 'reply-cancel';
  readonly dc: number;
  readonly id: number;
  readonly client: Endpoint;
  readonly server: Endpoint;
}

/**
 * Answer to reply-cancel: no reply to request `id` of `client` is on its way; the call fails with its
 * expiry. With `node` and `epoch`: the server moved there with the reply it owes; ask it there.
 */
export interface ReplyCancelAckFrame {
  readonly k: 'reply-cancel-ack';
  readonly dc: number;
  readonly id: number;
  readonly client: Endpoint;
  readonly node?: number;
  readonly epoch?: number;
}

/**
 * `ep` now lives on the sending node at `epoch`: sent by a node that absorbed a handover, to every
 * node with senders or clients in it, ahead of any answer to them (links are FIFO).
 */
export interface MovedFrame {
  readonly k: 'moved';
  readonly dc: number;
  readonly ep: Endpoint;
  readonly epoch: number;
  /** The requests of the receiving node that came with the handover: its queued sends and the sendrecs owed a reply. */
  readonly ids: readonly number[];
}

export interface NotifyFrame {
  readonly k: 'notify';
  readonly dc: number;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly arg: number;
  /** Passed on by a node `dst` moved away from: the node of `src`, which sent it first. */
  readonly origin?: number;
}

/** `ep` was unbound on the sending node: fail whoever waits on it. */
export interface UnboundFrame {
  readonly k: 'unbound';
  readonly dc: number;
  readonly ep: Endpoint;
}

/** Read `length` bytes at `offset` of grant `grant` owned by `owner`. Answered by copy-data. */
export interface CopyReadFrame {
  readonly k: 'copy-read';
  readonly dc: number;
  readonly id: number;
  readonly requester: Endpoint;
  readonly owner: Endpoint;
  readonly grant: number;
  readonly offset: number;
  readonly length: number;
}

export interface CopyDataFrame {
  readonly k: 'copy-data';
  readonly dc: number;
  readonly id: number;
  readonly rc: number;
  readonly data?: Uint8Array;
}

/** Write `data` at `offset` of a grant owned by `owner`. Answered by copy-ack. */
export interface CopyWriteFrame {
  readonly k: 'copy-write';
  readonly dc: number;
  readonly id: number;
  readonly requester: Endpoint;
  readonly owner: Endpoint;
  readonly grant: number;
  readonly offset: number;
  readonly data: Uint8Array;
}

export interface CopyAckFrame {
  readonly k: 'copy-ack';
  readonly dc: number;
  readonly id: number;
  readonly rc: number;
}

/**
 * Third-party copy of one chunk between two grants on other nodes than the requester's, sent to
 * the node of the source: it reads `length` bytes at `offset` of `owner`'s grant and writes them
 * itself (copy-write to `dstNode`, or locally) at `dstOffset` of `dstOwner`'s grant `dstGrant`,
 * both checked for `requester`. Answered by copy-ack once the bytes are stored, so they never pass
 * through the requester's node.
 */
export interface CopyRelayFrame extends Omit<CopyReadFrame, 'k'> {
  readonly k: 'copy-relay';
  readonly dstNode: number;
  readonly dstOwner: Endpoint;
  readonly dstGrant: number;
  readonly dstOffset: number;
}

/**
 * A message between the services of two nodes about an endpoint of `dc` (migration's steps): the
 * kernel checks that both nodes are members of `dc` and hands `body` to the node's service handler.
 * It travels on the link in order with the kernel's own frames.
 */
export interface ServiceFrame {
  readonly k: 'svc';
  readonly dc: number;
  readonly body: Payload;
  /** Bulk bytes that go with `body` (a piece of a service's state), carried as a copy chunk is. */
  readonly data?: Uint8Array;
}

export type KernelFrame =
  | SendFrame
  | SendAckFrame
  | CancelFrame
  | CancelAckFrame
  | ReplyFrame
  | ReplyCancelFrame
  | ReplyCancelAckFrame
  | NotifyFrame
  | UnboundFrame
  | MovedFrame
  | CopyReadFrame
  | CopyDataFrame
  | CopyWriteFrame
  | CopyAckFrame
  | CopyRelayFrame
  | ServiceFrame;

export type FrameKind = KernelFrame['k'];

/** Where a kernel hands frames for other nodes. Reliable and FIFO per node until `nodeDown`. */
export interface KernelTransport {
  send(node: number, frame: KernelFrame): void;
  /**
   * Optional flow control for one-way frames (notify): while too much waits unsent for `node`, a
   * promise that resolves once that backlog has drained (or the node is declared down); undefined
   * when there is room. A notifier waits until its frame was taken, as the original's proxy did.
   */
  backpressure?(node: number): Promise<void> | undefined;
}
