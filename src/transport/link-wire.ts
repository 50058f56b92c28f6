/**
 * Encoding of link frames. A data frame's body is assembled from kernel frames encoded once, at
 * `send` time, so a batch costs one copy: `{t:'data', s, a, f:[frame, ...]}` as a plain msgpack
 * map, exactly what `encodeValue` would produce for the same value (modulo integer widths).
 */
import { encodeValue } from './codec.js';
import { encodeFrame, frameFromBody, type FramingOptions } from './framing.js';
import type { LinkFrame } from './frame-schema.js';

/** Bytes a data frame adds around its kernel frames, at most (map, keys, two u64s, array header). */
export const DATA_FRAME_OVERHEAD = 48;

// fixmap(4) "t" "data" "s"
const HEAD = Buffer.from([0x84, 0xa1, 0x74, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xa1, 0x73]);
const KEY_A = Buffer.from([0xa1, 0x61]);
const KEY_F = Buffer.from([0xa1, 0x66]);

/** A non-negative safe integer in msgpack's smallest uint form, or float64 above 32 bits. */
function writeUint(buf: Buffer, at: number, n: number): number {
  if (n <= 0x7f) {
    buf[at] = n;
    return at + 1;
  }
  if (n <= 0xff) {
    buf[at] = 0xcc;
    buf[at + 1] = n;
    return at + 2;
  }
  if (n <= 0xffff) {
    buf[at] = 0xcd;
    buf.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  if (n <= 0xffff_ffff) {
    buf[at] = 0xce;
    buf.writeUInt32BE(n, at + 1);
    return at + 5;
  }
  buf[at] = 0xcb;
  buf.writeDoubleBE(n, at + 1);
  return at + 9;
}

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

/** Encodes one kernel frame for a later batch (EDVSBADVALUE when msgpack cannot carry it). */
export function encodeKernelFrame(frame: unknown): Buffer {
  return encodeValue(frame);
}

/** A complete wire frame carrying pre-encoded kernel frames `frames` (totalling `bytes`). */
export function encodeDataFrame(seq: number, ack: number, frames: readonly Buffer[], bytes: number, opts: FramingOptions): Buffer {
  const body = Buffer.allocUnsafe(DATA_FRAME_OVERHEAD + bytes);
  let at = HEAD.copy(body, 0);
  at = writeUint(body, at, seq);
  at += KEY_A.copy(body, at);
  at = writeUint(body, at, ack);
  at += KEY_F.copy(body, at);
  at = writeArrayHeader(body, at, frames.length);
  for (const f of frames) at += f.copy(body, at);
  return frameFromBody(body.subarray(0, at), opts);
}

/** Any other link frame (handshake, ack, ping). */
export function encodeLinkFrame(frame: LinkFrame, opts: FramingOptions): Buffer {
  return encodeFrame(frame, opts);
}
