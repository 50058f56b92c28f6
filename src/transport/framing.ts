/**
 * Length-prefixed, versioned frames, shared by node links, the process socket and the embedded
 * store: `length:u32be | version:u8 | flags:u8 | body`, where `length` counts version, flags and
 * body, and the body is one msgpack value (LZ4-compressed when flags bit 0 is set). See
 * docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import { decodeValue, decodeValueIn, encodeValueAfter, encodeValueView } from './codec.js';
import { compress, decompress } from './compress.js';

export const WIRE_VERSION = 1;
export const FLAG_LZ4 = 0x01;
const KNOWN_FLAGS = FLAG_LZ4;
export const FRAME_HEADER_BYTES = 6;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

export interface FramingOptions {
  /** Largest body (after decompression) accepted or produced. */
  readonly maxFrameBytes?: number;
  /**
   * Decoding: the chunks given to `push` are reused once it returns (a socket's `onread` buffer),
   * so nothing decoded may point into them: binary fields of frames decoded in place are copies,
   * and the bytes of an incomplete frame are copied out.
   */
  readonly transientChunks?: boolean;
  /** Compress bodies of at least this many bytes when that makes them smaller; undefined = never. */
  readonly compressMinBytes?: number;
  /**
   * Decoding: assemble large frames as their bytes arrive (see ASSEMBLE_MIN_BYTES). That allocates a
   * frame's whole length once its header is in, so only for a peer that has authenticated (or that
   * we trust, like our own daemon); FrameDecoder.assembleLargeFrames switches it on later.
   */
  readonly assembleLargeFrames?: boolean;
}

/**
 * With assembleLargeFrames, an incomplete frame of at least this many bytes is assembled in a buffer
 * of its own as its bytes arrive (one copy each), rather than kept as the chunks it came in and
 * joined at the end (two, and with transient chunks three). Only frames within the decoder's limit
 * get one.
 */
const ASSEMBLE_MIN_BYTES = 64 * 1024;

/** What push returns when a chunk completes no frame. */
const NO_VALUES: readonly unknown[] = Object.freeze([]);

/** Frames up to this size are msgpack's own bytes; larger ones get a buffer of their own. */
const SHARED_FRAME_MAX_BYTES = 16 * 1024;

/** Encodes one value as a complete frame. EDVSMSGSIZE above maxFrameBytes. */
export function encodeFrame(value: unknown, opts: FramingOptions = {}): Buffer {
  // msgpack leaves room for the header in front of the body: the common frame is never copied.
  const framed = encodeValueAfter(value, FRAME_HEADER_BYTES);
  const bodyBytes = framed.byteLength - FRAME_HEADER_BYTES;
  if (opts.compressMinBytes !== undefined && bodyBytes >= opts.compressMinBytes) return frameFromBody(Buffer.from(framed.subarray(FRAME_HEADER_BYTES)), opts);
  checkBodySize(bodyBytes, opts);
  // A large frame must not keep msgpack's (larger) buffer alive while it waits to be written.
  const frame = framed.byteLength <= SHARED_FRAME_MAX_BYTES ? framed : Buffer.allocUnsafe(framed.byteLength);
  if (frame !== framed) framed.copy(frame, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES);
  writeFrameHeader(frame, bodyBytes, 0);
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
  private readonly transient: boolean;
  private pending: Buffer[] = [];
  /** Where the unread bytes of pending[0] begin. */
  private firstOffset = 0;
  private pendingBytes = 0;
  /** A large frame being assembled (see ASSEMBLE_MIN_BYTES), and how many of its bytes arrived. */
  private assembly: Buffer | undefined;
  private assembled = 0;
  private broken = false;
  /** See FramingOptions.assembleLargeFrames; switched on once the peer has authenticated. */
  assembleLargeFrames: boolean;

  constructor(opts: FramingOptions = {}) {
    this.max = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.transient = opts.transientChunks ?? false;
    this.assembleLargeFrames = opts.assembleLargeFrames ?? false;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.pendingBytes + this.assembled;
  }

  /** The values of the frames this chunk completes, in order (a shared empty list when none: do not modify it). */
  push(chunk: Buffer): readonly unknown[] {
    if (this.broken) throw new DvsError('EDVSBADREQUEST', 'stream already violated the protocol');
    // Made at the first value: most reads complete one frame or none.
    let out: unknown[] | undefined;
    try {
      const frame = this.assembly;
      if (frame !== undefined) {
        const used = this.assemble(chunk);
        if (this.assembly === undefined) out = [this.decodeFrame(frame, 0, frame.byteLength, false)];
        if (used === chunk.byteLength) return out ?? NO_VALUES;
        chunk = chunk.subarray(used);
      }
      this.pending.push(chunk);
      this.pendingBytes += chunk.byteLength;
      while (this.pendingBytes >= 4) {
        const first = this.pending[0]!;
        const at = this.firstOffset;
        const length = first.byteLength - at >= 4 ? first.readUInt32BE(at) : this.peek4();
        if (length < 2) throw new DvsError('EDVSBADREQUEST', `frame length ${length} below the header size`);
        // A compressed body may be larger than its bound only by LZ4's worst case; refuse early.
        if (length - 2 > this.max + (this.max >>> 6) + 64) throw new DvsError('EDVSPACKSIZE', `frame of ${length} bytes exceeds the limit of ${this.max}`);
        const total = 4 + length;
        if (this.pendingBytes < total) {
          if (total >= ASSEMBLE_MIN_BYTES && this.assembleLargeFrames) this.startAssembly(total);
          break;
        }
        if (first.byteLength - at >= total) {
          // The common case: the frame lies in one chunk and is decoded there, without a view of it.
          this.pendingBytes -= total;
          if (at + total === first.byteLength) {
            this.pending.shift();
            this.firstOffset = 0;
          } else {
            this.firstOffset = at + total;
          }
          out = collect(out, this.decodeFrame(first, at, at + total, this.transient && first === chunk));
        } else {
          const whole = Buffer.allocUnsafe(total);
          this.moveOut(whole, total);
          out = collect(out, this.decodeFrame(whole, 0, total, false));
        }
      }
      if (this.transient) this.keepRest(chunk);
    } catch (err) {
      this.broken = true;
      this.pending = [];
      this.pendingBytes = 0;
      this.firstOffset = 0;
      this.assembly = undefined;
      this.assembled = 0;
      throw err;
    }
    return out ?? NO_VALUES;
  }

  /** Moves the bytes received of a large incomplete frame into a buffer of its own. */
  private startAssembly(total: number): void {
    const frame = Buffer.allocUnsafe(total);
    this.assembled = this.pendingBytes;
    this.moveOut(frame, this.pendingBytes);
    this.assembly = frame;
  }

  /** Adds the start of `chunk` to the frame being assembled (done with it once complete); the bytes of chunk used. */
  private assemble(chunk: Buffer): number {
    const frame = this.assembly!;
    const used = chunk.copy(frame, this.assembled, 0, Math.min(chunk.byteLength, frame.byteLength - this.assembled));
    this.assembled += used;
    if (this.assembled === frame.byteLength) {
      this.assembly = undefined;
      this.assembled = 0;
    }
    return used;
  }

  /** Copies what is left unread of a transient chunk, the start of a frame still to come. */
  private keepRest(chunk: Buffer): void {
    const last = this.pending.length - 1;
    if (last < 0 || this.pending[last] !== chunk) return;
    const from = last === 0 ? this.firstOffset : 0;
    this.pending[last] = Buffer.from(chunk.subarray(from));
    if (last === 0) this.firstOffset = 0;
  }

  /**
   * The value of the frame in buf[start, end): header checked, body decompressed if flagged;
   * binary fields copied when `copyBinaries` (buf is about to be reused).
   */
  private decodeFrame(buf: Buffer, start: number, end: number, copyBinaries: boolean): unknown {
    const version = buf[start + 4]!;
    const flags = buf[start + 5]!;
    if (version !== WIRE_VERSION) throw new DvsError('EDVSBADREQUEST', `unsupported wire version ${version}`);
    if ((flags & ~KNOWN_FLAGS) !== 0) throw new DvsError('EDVSBADREQUEST', `unknown frame flags 0x${flags.toString(16)}`);
    const bodyStart = start + FRAME_HEADER_BYTES;
    if (flags & FLAG_LZ4) return decodeValue(decompress(buf.subarray(bodyStart, end), this.max));
    if (end - bodyStart > this.max) throw new DvsError('EDVSPACKSIZE', `frame body of ${end - bodyStart} bytes exceeds ${this.max}`);
    return decodeValueIn(buf, bodyStart, end, copyBinaries);
  }

  /** The length field of the next frame when it straddles chunks. */
  private peek4(): number {
    const head = Buffer.allocUnsafe(4);
    let at = 0;
    let off = this.firstOffset;
    for (let i = 0; at < 4; i++) {
      const c = this.pending[i]!;
      at += c.copy(head, at, off, Math.min(c.byteLength, off + 4 - at));
      off = 0;
    }
    return head.readUInt32BE(0);
  }

  /** Moves the next n pending bytes (spanning chunks) to the start of `out`. */
  private moveOut(out: Buffer, n: number): void {
    this.pendingBytes -= n;
    let at = 0;
    let used = 0;
    let off = this.firstOffset;
    while (at < n) {
      const c = this.pending[used]!;
      const k = Math.min(c.byteLength - off, n - at);
      c.copy(out, at, off, off + k);
      at += k;
      if (off + k === c.byteLength) {
        used++;
        off = 0;
      } else {
        off += k;
      }
    }
    this.pending.splice(0, used);
    this.firstOffset = off;
  }
}

/** Adds a value to push's result, making the list at the first one. */
function collect(out: unknown[] | undefined, value: unknown): unknown[] {
  if (out === undefined) return [value];
  out.push(value);
  return out;
}
