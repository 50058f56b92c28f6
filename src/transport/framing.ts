/**
 * Length-prefixed, versioned frames, shared by node links, the process socket and the embedded
 * store: `length:u32be | version:u8 | flags:u8 | body`, where `length` counts version, flags and
 * body, and the body is one msgpack value (LZ4-compressed when flags bit 0 is set). See
 * docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import { decodeValue, encodeValueView } from './codec.js';
import { compress, decompress } from './compress.js';

export const WIRE_VERSION = 1;
export const FLAG_LZ4 = 0x01;
const KNOWN_FLAGS = FLAG_LZ4;
export const FRAME_HEADER_BYTES = 6;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

export interface FramingOptions {
  /** Largest body (after decompression) accepted or produced. */
  readonly maxFrameBytes?: number;
  /** Compress bodies of at least this many bytes when that makes them smaller; undefined = never. */
  readonly compressMinBytes?: number;
}

/** Encodes one value as a complete frame. EDVSMSGSIZE above maxFrameBytes. */
export function encodeFrame(value: unknown, opts: FramingOptions = {}): Buffer {
  const body = encodeValueView(value);
  if (opts.compressMinBytes !== undefined && body.byteLength >= opts.compressMinBytes) return frameFromBody(Buffer.from(body), opts);
  // The common case: msgpack's scratch bytes straight into the frame, one copy.
  checkBodySize(body.byteLength, opts);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.byteLength);
  writeFrameHeader(frame, body.byteLength, 0);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/** A top-level binary field at least this large is written where it lies, not copied into the frame. */
export const SEGMENT_MIN_BYTES = 8 * 1024;
const EMPTY_BIN = Buffer.alloc(0);

/**
 * Encodes a map as a frame like `encodeFrame`, except that its first binary field of at least
 * SEGMENT_MIN_BYTES becomes the map's last entry and is not copied: the frame is `[head, bytes]`,
 * to be written together (writev), whose concatenation is an ordinary frame (the field as bin32).
 * Such frames are never compressed. The caller must not change `bytes` until the socket has them.
 */
export function encodeFrameSegments(value: Readonly<Record<string, unknown>>, opts: FramingOptions = {}): Buffer | Buffer[] {
  let key: string | undefined;
  for (const k in value) {
    const v = value[k];
    if (v instanceof Uint8Array && v.byteLength >= SEGMENT_MIN_BYTES) {
      key = k;
      break;
    }
  }
  if (key === undefined) return encodeFrame(value, opts);
  const bytes = value[key] as Uint8Array;
  const rest: Record<string, unknown> = { ...value };
  delete rest[key];
  rest[key] = EMPTY_BIN; // last, so its encoding ends the body: bin8 of length 0
  const body = encodeValueView(rest);
  const cut = body.byteLength - 2;
  if (body[cut] !== 0xc4 || body[cut + 1] !== 0) return encodeFrame(value, opts);
  const bodyBytes = cut + 5 + bytes.byteLength;
  checkBodySize(bodyBytes, opts);
  const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES + cut + 5);
  writeFrameHeader(head, bodyBytes, 0);
  head.set(body.subarray(0, cut), FRAME_HEADER_BYTES);
  head[FRAME_HEADER_BYTES + cut] = 0xc6; // bin32
  head.writeUInt32BE(bytes.byteLength, FRAME_HEADER_BYTES + cut + 1);
  return [head, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)];
}

/** EDVSMSGSIZE for a body above the frame limit. */
export function checkBodySize(bytes: number, opts: FramingOptions): void {
  const max = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (bytes > max) throw new DvsError('EDVSMSGSIZE', `frame body of ${bytes} bytes exceeds ${max}`);
}

/** Writes the 6-byte header of a frame whose body of `bodyBytes` follows at FRAME_HEADER_BYTES. */
export function writeFrameHeader(frame: Buffer, bodyBytes: number, flags: number): void {
  frame.writeUInt32BE(bodyBytes + 2, 0);
  frame[4] = WIRE_VERSION;
  frame[5] = flags;
}

/**
 * Wraps an already msgpack-encoded body (e.g. one assembled from pre-encoded parts) in a frame,
 * compressing it as `encodeFrame` would. EDVSMSGSIZE above maxFrameBytes.
 */
export function frameFromBody(body: Buffer, opts: FramingOptions = {}): Buffer {
  checkBodySize(body.byteLength, opts);
  let flags = 0;
  if (opts.compressMinBytes !== undefined && body.byteLength >= opts.compressMinBytes) {
    const packed = compress(body);
    if (packed.byteLength < body.byteLength) {
      body = packed;
      flags |= FLAG_LZ4;
    }
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.byteLength);
  writeFrameHeader(frame, body.byteLength, flags);
  body.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Incremental decoder for a byte stream. `push` returns the values of every complete frame; it
 * throws a DvsError on a protocol violation (bad version or flags, oversized or malformed frame),
 * after which the stream must be closed.
 */
export class FrameDecoder {
  private readonly max: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private broken = false;

  constructor(opts: FramingOptions = {}) {
    this.max = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  push(chunk: Buffer): unknown[] {
    if (this.broken) throw new DvsError('EDVSBADREQUEST', 'stream already violated the protocol');
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    const out: unknown[] = [];
    try {
      while (this.pendingBytes >= 4) {
        const head = this.peek(4);
        const length = head.readUInt32BE(0);
        if (length < 2) throw new DvsError('EDVSBADREQUEST', `frame length ${length} below the header size`);
        // A compressed body may be larger than its bound only by LZ4's worst case; refuse early.
        if (length - 2 > this.max + (this.max >>> 6) + 64) throw new DvsError('EDVSPACKSIZE', `frame of ${length} bytes exceeds the limit of ${this.max}`);
        if (this.pendingBytes < 4 + length) break;
        const frame = this.take(4 + length);
        const version = frame[4]!;
        const flags = frame[5]!;
        if (version !== WIRE_VERSION) throw new DvsError('EDVSBADREQUEST', `unsupported wire version ${version}`);
        if ((flags & ~KNOWN_FLAGS) !== 0) throw new DvsError('EDVSBADREQUEST', `unknown frame flags 0x${flags.toString(16)}`);
        let body = frame.subarray(FRAME_HEADER_BYTES);
        if (flags & FLAG_LZ4) body = decompress(body, this.max);
        else if (body.byteLength > this.max) throw new DvsError('EDVSPACKSIZE', `frame body of ${body.byteLength} bytes exceeds ${this.max}`);
        out.push(decodeValue(body));
      }
    } catch (err) {
      this.broken = true;
      this.pending = [];
      this.pendingBytes = 0;
      throw err;
    }
    return out;
  }

  private peek(n: number): Buffer {
    const first = this.pending[0]!;
    if (first.byteLength >= n) return first;
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (let i = 0; at < n; i++) at += this.pending[i]!.copy(out, at, 0, Math.min(this.pending[i]!.byteLength, n - at));
    return out;
  }

  /** The next n bytes: a view when one chunk holds them, else one copy of exactly those bytes. */
  private take(n: number): Buffer {
    const first = this.pending[0]!;
    this.pendingBytes -= n;
    if (first.byteLength >= n) {
      if (first.byteLength === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    let used = 0;
    while (at < n) {
      const c = this.pending[used]!;
      const k = Math.min(c.byteLength, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.byteLength) used++;
      else this.pending[used] = c.subarray(k);
    }
    this.pending.splice(0, used);
    return out;
  }
}
