/**
 * Encoding of link frames. A data frame's body is assembled from kernel frames encoded once, at
 * `send` time, so a batch costs one copy: `{t:'data', s, a, f:[frame, ...]}` as a plain msgpack
 * map, exactly what `encodeValue` would produce for the same value (modulo integer widths). Bulk
 * bytes (copy chunks) are not copied at all: they go to the socket as segments of the frame.
 */
import { encodeValue, encodeValueView } from './codec.js';
import type { KernelFrame } from '../kernel/frames.js';
import { checkBodySize, encodeFrame, FRAME_HEADER_BYTES, frameFromBody, writeFrameHeader, type FramingOptions } from './framing.js';
import { bulkOf, encodeWireArray, KIND, kernelFrameToWire, sizeWireArray, writeNumber, writeWireArray } from './kernel-wire.js';
import type { LinkFrame } from './frame-schema.js';

/** Bytes a data frame adds around its kernel frames, at most (map, keys, two u64s, array header). */
export const DATA_FRAME_OVERHEAD = 48;

// fixmap(4) "t" "data" "s"
const HEAD = Buffer.from([0x84, 0xa1, 0x74, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xa1, 0x73]);
const KEY_A = Buffer.from([0xa1, 0x61]);
const KEY_F = Buffer.from([0xa1, 0x66]);

function writeArrayHeader(buf: Buffer, at: number, n: number): number {
  if (n < 16) {
    buf[at] = 0x90 | n;
    return at + 1;
  }
  if (n <= 0xffff) {
    buf[at] = 0xdc;
    buf.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  buf[at] = 0xdd;
  buf.writeUInt32BE(n, at + 1);
  return at + 5;
}

/**
 * A kernel frame encoded once, at send time: its msgpack bytes, or, for a frame carrying bulk bytes
 * (`data` of at least BULK_MIN_BYTES), `[head, bytes]` whose concatenation is that msgpack array;
 * the bytes are then written to the socket without being copied again.
 */
export type EncodedFrame = Buffer | readonly [head: Buffer, data: Buffer];

/** A wire frame ready to write: one buffer, or segments written together (writev). */
export type Wire = Buffer | readonly Buffer[];

/** Bulk `data` at least this large travels as its own segment. */
export const BULK_MIN_BYTES = 8 * 1024;

export function encodedBytes(f: EncodedFrame): number {
  return Buffer.isBuffer(f) ? f.byteLength : f[0].byteLength + f[1].byteLength;
}

export function wireBytes(w: Wire): number {
  if (Buffer.isBuffer(w)) return w.byteLength;
  let n = 0;
  for (const b of w) n += b.byteLength;
  return n;
}

/** The bytes of a wire frame as one buffer (a copy when it is segmented). */
export function flattenWire(w: Wire): Buffer {
  return Buffer.isBuffer(w) ? w : Buffer.concat(w);
}

/** Encodes one kernel frame for a later batch (EDVSBADVALUE when msgpack cannot carry it). */
export function encodeKernelFrame(frame: KernelFrame): EncodedFrame {
  const data = bulkOf(frame);
  const wire = kernelFrameToWire(frame);
  if (data === undefined || data.byteLength < BULK_MIN_BYTES) return encodeWireArray(wire, encodeValueView);
  wire.pop(); // the data, last: it follows as its own segment
  // The array without it, its fixarray header counting it, then a bin32 header for its bytes.
  const size = sizeWireArray(wire, encodeValueView);
  const head = Buffer.allocUnsafe(size + 5);
  writeWireArray(head, 0, wire);
  head[0] = 0x90 | (wire.length + 1);
  head[size] = 0xc6;
  head.writeUInt32BE(data.byteLength, size + 1);
  return [head, Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
}

/** Several successful send-acks of one DC as one element (kernel-wire.ts). */
export function encodeSendAcks(dc: number, ids: readonly number[]): Buffer {
  return encodeValue([KIND.sendAcks, dc, ids]);
}

/** Writes the data frame's own fields and the array header of its `count` kernel frames. */
function writeDataHead(body: Buffer, at: number, seq: number, ack: number, count: number): number {
  at += HEAD.copy(body, at);
  at = writeNumber(body, at, seq);
  at += KEY_A.copy(body, at);
  at = writeNumber(body, at, ack);
  at += KEY_F.copy(body, at);
  return writeArrayHeader(body, at, count);
}

/**
 * A complete wire frame carrying the pre-encoded kernel frames `frames[start, end)` (totalling
 * `bytes`; `count` elements of `f` in all, when a part holds several back to back): one buffer
 * built with a single copy, or, when some frame carries bulk bytes and the frame is not to be
 * compressed, segments that leave those bytes where they are. With `tagBytes`, the wire ends with
 * that much room after the frame, for the tag a sealed connection writes there (frame-mac.ts).
 */
export function encodeDataFrame(seq: number, ack: number, frames: readonly EncodedFrame[], bytes: number, opts: FramingOptions, count = frames.length, start = 0, end = frames.length, tagBytes = 0): Wire {
  const compress = opts.compressMinBytes !== undefined && bytes >= opts.compressMinBytes;
  let bulk = 0;
  if (!compress) {
    for (let k = start; k < end; k++) {
      const f = frames[k]!;
      if (!Buffer.isBuffer(f)) bulk += f[1].byteLength;
    }
  }
  if (compress) {
    const body = Buffer.allocUnsafe(DATA_FRAME_OVERHEAD + bytes);
    let at = writeDataHead(body, 0, seq, ack, count);
    for (let k = start; k < end; k++) at = copyEncoded(frames[k]!, body, at);
    const frame = frameFromBody(body.subarray(0, at), opts);
    return tagBytes === 0 ? frame : [frame, Buffer.alloc(tagBytes)];
  }
  // Frame header, data head and every byte but the bulk ones in one buffer; cut where bulk goes.
  const glue = Buffer.allocUnsafe(FRAME_HEADER_BYTES + DATA_FRAME_OVERHEAD + bytes - bulk + tagBytes);
  let at = writeDataHead(glue, FRAME_HEADER_BYTES, seq, ack, count);
  const segments: Buffer[] = [];
  let cut = 0;
  for (let k = start; k < end; k++) {
    const f = frames[k]!;
    if (Buffer.isBuffer(f)) {
      glue.set(f, at);
      at += f.byteLength;
      continue;
    }
    glue.set(f[0], at);
    at += f[0].byteLength;
    segments.push(glue.subarray(cut, at), f[1]);
    cut = at;
  }
  const bodyBytes = at - FRAME_HEADER_BYTES + bulk;
  checkBodySize(bodyBytes, opts);
  writeFrameHeader(glue, bodyBytes, 0);
  if (segments.length === 0) return glue.subarray(0, at + tagBytes);
  if (at + tagBytes > cut) segments.push(glue.subarray(cut, at + tagBytes));
  return segments;
}

function copyEncoded(f: EncodedFrame, into: Buffer, at: number): number {
  if (Buffer.isBuffer(f)) return at + f.copy(into, at);
  at += f[0].copy(into, at);
  return at + f[1].copy(into, at);
}

/** Any other link frame (handshake, ack, ping); with `tagBytes` of room after it (see encodeDataFrame). */
export function encodeLinkFrame(frame: LinkFrame, opts: FramingOptions, tagBytes = 0): Buffer {
  const encoded = encodeFrame(frame, opts);
  if (tagBytes === 0) return encoded;
  const out = Buffer.allocUnsafe(encoded.byteLength + tagBytes);
  encoded.copy(out, 0);
  return out;
}
