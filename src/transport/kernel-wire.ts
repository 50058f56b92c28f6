/**
 * Kernel frames on the wire (docs/link-protocol.md, section 6): each is a msgpack array whose
 * first element is the kind's code, then `dc` and the kind's fields in a fixed order. Arrays
 * rather than maps: about half the bytes and half the encoding and decoding time per frame.
 * Successful send-acks of one DC that follow each other in a batch travel as one `send-acks`
 * element listing their ids.
 */
import type { KernelFrame } from '../kernel/frames.js';

export const KIND = {
  send: 1,
  sendAck: 2,
  cancel: 3,
  cancelAck: 4,
  reply: 5,
  replyCancel: 6,
  notify: 7,
  unbound: 8,
  copyRead: 9,
  copyData: 10,
  copyWrite: 11,
  copyAck: 12,
  /** Several successful send-acks of one DC: `[13, dc, [id, ...]]`. */
  sendAcks: 13,
} as const;

/** Most ids one send-acks element carries. */
export const MAX_GROUPED_ACKS = 4096;

/** The positional form of a kernel frame (bulk `data`, when present, is the last element). */
export function kernelFrameToWire(f: KernelFrame): unknown[] {
  switch (f.k) {
    case 'send':
      return [KIND.send, f.dc, f.id, f.src, f.dst, f.type, f.payload, f.rec];
    case 'send-ack':
      return f.node === undefined ? [KIND.sendAck, f.dc, f.id, f.rc] : [KIND.sendAck, f.dc, f.id, f.rc, f.node];
    case 'cancel':
      return [KIND.cancel, f.dc, f.id];
    case 'cancel-ack':
      return [KIND.cancelAck, f.dc, f.id];
    case 'reply':
      return [KIND.reply, f.dc, f.id, f.src, f.dst, f.type, f.payload];
    case 'reply-cancel':
      return [KIND.replyCancel, f.dc, f.client, f.server];
    case 'notify':
      return [KIND.notify, f.dc, f.src, f.dst, f.arg];
    case 'unbound':
      return [KIND.unbound, f.dc, f.ep];
    case 'copy-read':
      return [KIND.copyRead, f.dc, f.id, f.requester, f.owner, f.grant, f.offset, f.length];
    case 'copy-data':
      return f.data === undefined ? [KIND.copyData, f.dc, f.id, f.rc] : [KIND.copyData, f.dc, f.id, f.rc, f.data];
    case 'copy-write':
      return [KIND.copyWrite, f.dc, f.id, f.requester, f.owner, f.grant, f.offset, f.data];
    case 'copy-ack':
      return [KIND.copyAck, f.dc, f.id, f.rc];
  }
}

/** The bulk bytes of a frame that carries them (copy-data, copy-write), else undefined. */
export function bulkOf(f: KernelFrame): Uint8Array | undefined {
  return f.k === 'copy-data' || f.k === 'copy-write' ? f.data : undefined;
}
