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
  copyRelay: 14,
  replyCancelAck: 15,
  moved: 16,
  svc: 17,
} as const;

/** Most ids one send-acks element carries. */
export const MAX_GROUPED_ACKS = 4096;

/** A "moved to node N (at epoch E)" answer's tail: the node, then the epoch when known. */
function withMoved(head: unknown[], node: number, epoch: number | undefined): unknown[] {
  head.push(node);
  if (epoch !== undefined) head.push(epoch);
  return head;
}

/** The positional form of a kernel frame (bulk `data`, when present, is the last element). */
export function kernelFrameToWire(f: KernelFrame): unknown[] {
  switch (f.k) {
    case 'send':
      return [KIND.send, f.dc, f.id, f.src, f.dst, f.type, f.payload, f.rec];
    case 'send-ack':
      return f.node === undefined ? [KIND.sendAck, f.dc, f.id, f.rc] : withMoved([KIND.sendAck, f.dc, f.id, f.rc], f.node, f.epoch);
    case 'cancel':
      return [KIND.cancel, f.dc, f.id];
    case 'cancel-ack':
      return f.node === undefined ? [KIND.cancelAck, f.dc, f.id] : withMoved([KIND.cancelAck, f.dc, f.id], f.node, f.epoch);
    case 'reply':
      return [KIND.reply, f.dc, f.id, f.src, f.dst, f.type, f.payload];
    case 'reply-cancel':
      return [KIND.replyCancel, f.dc, f.id, f.client, f.server];
    case 'reply-cancel-ack':
      return f.node === undefined ? [KIND.replyCancelAck, f.dc, f.id, f.client] : withMoved([KIND.replyCancelAck, f.dc, f.id, f.client], f.node, f.epoch);
    case 'moved':
      return [KIND.moved, f.dc, f.ep, f.epoch, f.ids];
    case 'notify':
      return f.origin === undefined ? [KIND.notify, f.dc, f.src, f.dst, f.arg] : [KIND.notify, f.dc, f.src, f.dst, f.arg, f.origin];
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
    case 'svc':
      return f.data === undefined ? [KIND.svc, f.dc, f.body] : [KIND.svc, f.dc, f.body, f.data];
    case 'copy-relay':
      return [KIND.copyRelay, f.dc, f.id, f.requester, f.owner, f.grant, f.offset, f.length, f.dstNode, f.dstOwner, f.dstGrant, f.dstOffset];
  }
}

/** The bulk bytes of a frame that carries them (copy-data, copy-write), else undefined. */
export function bulkOf(f: KernelFrame): Uint8Array | undefined {
  return f.k === 'copy-data' || f.k === 'copy-write' || f.k === 'svc' ? f.data : undefined;
}

/** Bytes msgpack needs for a number (ints in their smallest form, others as float64). */
function numberBytes(n: number): number {
  if (Number.isInteger(n) && n >= -0x8000_0000 && n <= 0xffff_ffff) {
    if (n >= -32 && n <= 127) return 1;
    if (n >= -128 && n <= 255) return 2;
    if (n >= -32768 && n <= 65535) return 3;
    return 5;
  }
  return 9;
}

/** Writes a number as numberBytes measures it; returns the end. */
export function writeNumber(buf: Buffer, at: number, n: number): number {
  if (Number.isInteger(n) && n >= -0x8000_0000 && n <= 0xffff_ffff) {
    if (n >= 0) {
      if (n <= 127) {
        buf[at] = n;
        return at + 1;
      }
      if (n <= 255) {
        buf[at] = 0xcc;
        buf[at + 1] = n;
        return at + 2;
      }
      if (n <= 65535) {
        buf[at] = 0xcd;
        buf.writeUInt16BE(n, at + 1);
        return at + 3;
      }
      buf[at] = 0xce;
      buf.writeUInt32BE(n, at + 1);
      return at + 5;
    }
    if (n >= -32) {
      buf[at] = n & 0xff;
      return at + 1;
    }
    if (n >= -128) {
      buf[at] = 0xd0;
      buf.writeInt8(n, at + 1);
      return at + 2;
    }
    if (n >= -32768) {
      buf[at] = 0xd1;
      buf.writeInt16BE(n, at + 1);
      return at + 3;
    }
    buf[at] = 0xd2;
    buf.writeInt32BE(n, at + 1);
    return at + 5;
  }
  buf[at] = 0xcb;
  buf.writeDoubleBE(n, at + 1);
  return at + 9;
}

function binHeaderBytes(n: number): number {
  return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** A msgpack bin header for `n` bytes, as msgpackr writes it; returns the end. */
function writeBinHeader(buf: Buffer, at: number, n: number): number {
  if (n < 0x100) {
    buf[at] = 0xc4;
    buf[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    buf[at] = 0xc5;
    buf.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  buf[at] = 0xc6;
  buf.writeUInt32BE(n, at + 1);
  return at + 5;
}

/** The non-primitive element measured by the last sizeWireArray, for the writeWireArray that follows. */
let measured: Uint8Array | undefined;
let measuredAt = -1;

/**
 * Bytes of a kernel frame's positional form (at most 15 elements) as msgpack. Numbers, booleans,
 * nil, undefined and bytes are measured here; the one other value (a payload) is packed by `packValue`,
 * whose bytes stay valid only until the next pack: call writeWireArray right after.
 */
export function sizeWireArray(wire: readonly unknown[], packValue: (v: unknown) => Uint8Array): number {
  let size = 1;
  measured = undefined;
  measuredAt = -1;
  for (let i = 0; i < wire.length; i++) {
    const v = wire[i];
    if (typeof v === 'number') size += numberBytes(v);
    else if (typeof v === 'boolean' || v === null) size += 1;
    else if (v === undefined) size += 3;
    else if (v instanceof Uint8Array) size += binHeaderBytes(v.byteLength) + v.byteLength;
    else {
      if (measured !== undefined) throw new Error('sizeWireArray: one packed element at most');
      measured = packValue(v);
      measuredAt = i;
      size += measured.byteLength;
    }
  }
  return size;
}

/** Writes the array measured by the sizeWireArray just before at `at` of `buf`; returns the end. */
export function writeWireArray(buf: Buffer, at: number, wire: readonly unknown[]): number {
  buf[at++] = 0x90 | wire.length;
  for (let i = 0; i < wire.length; i++) {
    const v = wire[i];
    if (typeof v === 'number') at = writeNumber(buf, at, v);
    else if (v === true) buf[at++] = 0xc3;
    else if (v === false) buf[at++] = 0xc2;
    else if (v === null) buf[at++] = 0xc0;
    else if (v === undefined) {
      // msgpackr's undefined: fixext 1, type 0, data 0.
      buf[at] = 0xd4;
      buf[at + 1] = 0;
      buf[at + 2] = 0;
      at += 3;
    } else if (v instanceof Uint8Array) {
      at = writeBinHeader(buf, at, v.byteLength);
      buf.set(v, at);
      at += v.byteLength;
    } else if (i === measuredAt) {
      buf.set(measured!, at);
      at += measured!.byteLength;
    }
  }
  measured = undefined;
  return at;
}

/**
 * Encodes a kernel frame's positional form as msgpack: the same bytes msgpackr would produce,
 * without its per-call cost (only a payload goes through `packValue`).
 */
export function encodeWireArray(wire: readonly unknown[], packValue: (v: unknown) => Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(sizeWireArray(wire, packValue));
  writeWireArray(buf, 0, wire);
  return buf;
}
