/**
 * One TCP or TLS connection of a node link: the socket, its frame decoder, byte counters and an
 * orderly end. In cluster-key mode (no TLS) every frame after the handshake is followed by its
 * tag (frame-mac.ts): the connection then splits what it reads into frames and tags itself,
 * verifies each tag before the frame's value is handed on, and seals every frame it writes. A
 * sealed frame that fails to decode is judged by its tag first: one that does not verify was
 * tampered with (EDVSACCES), one that does is the peer's protocol error.
 * Decoding errors, a tag that does not verify and handler errors close the connection; nothing
 * thrown here ever escapes into the event loop.
 */
import type { Socket } from 'node:net';
import { DvsError } from '../ipc/errors.js';
import { FRAME_TAG_BYTES, FrameOpener, FrameSealer, type FrameKeys } from './frame-mac.js';
import { FRAME_HEADER_BYTES, FrameDecoder } from './framing.js';
import { wireBytes, type Wire } from './link-wire.js';
import type { SocketReads } from './socket-reads.js';

/**
 * Why a connection ended: 'mac' is a frame whose tag did not verify, 'version' a peer speaking
 * another link or kernel protocol version, 'evicted' a connection before authentication that made
 * room for a newer one (preauth-pool.ts).
 */
export type ConnEnd = 'closed' | 'protocol' | 'auth' | 'mac' | 'version' | 'timeout' | 'refused' | 'evicted' | 'replaced' | 'shutdown' | 'suspect' | 'down';

export interface ByteCounters {
  bytesIn: number;
  bytesOut: number;
}

/** Where the reader of a sealed stream is: in a frame's 4-byte length, in the rest of the frame, or in its tag. */
const HEAD = 0;
const BODY = 1;
const TAG = 2;

let nextConnId = 1;

const NO_VALUES: readonly unknown[] = Object.freeze([]);

export class LinkConn {
  readonly id = nextConnId++;
  readonly socket: Socket;
  /** Why the connection ended, once it has. */
  ended: ConnEnd | undefined;
  /** Counters of the peer this connection was established for (handshake bytes are not counted). */
  counters: ByteCounters | undefined;
  /** Receives each decoded value; a thrown error closes the connection as a protocol violation. */
  onValue: (value: unknown) => void = () => {};
  /** Called once, when the connection has ended for whatever reason. */
  onEnd: (why: ConnEnd, err?: unknown) => void = () => {};
  private decoder: FrameDecoder;
  /** Largest value of a frame's length field the decoder could accept (see sealedLengthOk). */
  private maxLength: number;
  /** The socket reads into one reused buffer (a dialled plain TCP socket, see SocketReads). */
  private readonly transient: boolean;
  /** Values of the current chunk not yet handed to onValue (plain streams). */
  private remaining = 0;
  /** Sealed streams: frames read as frames and tags (see readSealed). */
  private readonly splits: boolean;
  /** Inbound frames still to come before every frame is sealed (the peer's handshake frames). */
  private plainLeft: number;
  private sealer: FrameSealer | undefined;
  private opener: FrameOpener | undefined;
  private phase = HEAD;
  /** Bytes of the current frame (BODY, its 4-byte length included) or tag (TAG) still to come. */
  private need = 0;
  /** Whether the current frame is followed by a tag. */
  private sealedFrame = false;
  /** The length field of a frame that straddles reads, and how much of it arrived. */
  private readonly head = Buffer.alloc(4);
  private headHave = 0;
  private readonly tag = Buffer.alloc(FRAME_TAG_BYTES);
  /** The value of a sealed frame, held until its tag verified. */
  private held: unknown;
  /** Why the current sealed frame did not decode, judged once its tag is in. */
  private decodeError: unknown;
  /** Bytes of the current read not yet consumed (sealed streams). */
  private chunkLeft = 0;

  /**
   * `plainFrames`: in cluster-key mode, how many inbound frames come before every frame is followed
   * by a tag (the peer's two handshake frames); undefined when frames carry no tag (TLS).
   */
  constructor(
    socket: Socket,
    maxFrameBytes: number,
    reads?: SocketReads,
    plainFrames?: number,
    /** The node's counters of every connection's bytes, handshakes included. */
    private readonly totals?: ByteCounters,
  ) {
    this.socket = socket;
    this.transient = reads !== undefined;
    this.decoder = new FrameDecoder({ maxFrameBytes, transientChunks: this.transient });
    this.maxLength = maxLengthField(maxFrameBytes);
    this.splits = plainFrames !== undefined;
    this.plainLeft = plainFrames ?? 0;
    socket.setNoDelay(true);
    if (reads === undefined) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    else reads.deliverTo((chunk) => this.onData(chunk));
    socket.on('error', (err) => this.end('closed', err));
    socket.on('close', () => this.end('closed'));
    socket.on('end', () => this.end('closed'));
  }

  get open(): boolean {
    return this.ended === undefined;
  }

  /**
   * Switches to a decoder with another frame limit. Refused (false) while bytes or values of the
   * current read are still pending: the peer sent something it had to wait with.
   */
  setMaxFrameBytes(maxFrameBytes: number): boolean {
    if (this.decoder.buffered > 0 || this.remaining > 0 || this.chunkLeft > 0 || this.headHave > 0) return false;
    this.decoder = new FrameDecoder({ maxFrameBytes, transientChunks: this.transient, assembleLargeFrames: this.decoder.assembleLargeFrames });
    this.maxLength = maxLengthField(maxFrameBytes);
    return true;
  }

  /** The peer authenticated: large frames may be assembled as they arrive (FramingOptions.assembleLargeFrames). */
  trust(): void {
    this.decoder.assembleLargeFrames = true;
  }

  /** From now on every frame written is sealed, and every frame read after the handshake's is verified, with these keys. */
  seal(keys: FrameKeys): void {
    this.sealer = new FrameSealer(keys.send);
    this.opener = new FrameOpener(keys.receive);
  }

  /**
   * Writes one frame; a segmented one goes out in one writev. On a sealed connection the frame must
   * end with FRAME_TAG_BYTES of room for its tag (the encoders leave it when asked to).
   */
  write(wire: Wire): void {
    if (this.ended !== undefined) return;
    this.sealer?.seal(wire);
    if (this.counters !== undefined || this.totals !== undefined) {
      const n = wireBytes(wire);
      if (this.counters !== undefined) this.counters.bytesOut += n;
      if (this.totals !== undefined) this.totals.bytesOut += n;
    }
    if (Buffer.isBuffer(wire)) {
      this.socket.write(wire);
      return;
    }
    this.socket.cork();
    for (const b of wire) this.socket.write(b);
    this.socket.uncork();
  }

  /** Ends the connection (idempotent); the first reason given wins. */
  end(why: ConnEnd, err?: unknown): void {
    if (this.ended !== undefined) return;
    this.ended = why;
    this.remaining = 0;
    this.chunkLeft = 0;
    this.held = undefined;
    this.socket.destroy();
    try {
      this.onEnd(why, err);
    } catch {
      // onEnd belongs to the link layer and must not throw; never let it escape into the socket.
    }
  }

  private onData(chunk: Buffer): void {
    if (this.ended !== undefined) return;
    if (this.counters !== undefined) this.counters.bytesIn += chunk.byteLength;
    if (this.totals !== undefined) this.totals.bytesIn += chunk.byteLength;
    if (this.splits) {
      this.readSealed(chunk);
      return;
    }
    let values: readonly unknown[];
    try {
      values = this.decoder.push(chunk);
    } catch (err) {
      this.end('protocol', err);
      return;
    }
    this.remaining = values.length;
    for (const v of values) {
      if (this.ended !== undefined) return;
      this.remaining--;
      if (!this.handle(v)) return;
    }
  }

  /**
   * Reads a stream of frames, each after the handshake's followed by its tag. A frame that lies
   * whole in the read goes to the decoder as one piece (decoded in place, as on a plain stream);
   * only a length field split across reads is gathered byte by byte.
   */
  private readSealed(chunk: Buffer): void {
    const n = chunk.byteLength;
    let at = 0;
    while (at < n && this.ended === undefined) {
      if (this.phase === TAG) {
        const k = Math.min(this.need, n - at);
        chunk.copy(this.tag, FRAME_TAG_BYTES - this.need, at, at + k);
        this.need -= k;
        at += k;
        if (this.need > 0) break;
        this.phase = HEAD;
        if (this.opener === undefined || !this.opener.verify(this.tag)) {
          this.end('mac', new DvsError('EDVSACCES', 'frame MAC does not verify'));
          return;
        }
        if (this.decodeError !== undefined) {
          this.end('protocol', this.decodeError);
          return;
        }
        const v = this.held;
        this.held = undefined;
        this.chunkLeft = n - at;
        if (!this.handle(v)) return;
        continue;
      }
      if (this.phase === HEAD) {
        if (this.headHave === 0 && !this.beginFrame()) return;
        if (this.headHave === 0 && n - at >= 4) {
          const length = chunk.readUInt32BE(at);
          if (!this.sealedLengthOk(length)) return;
          this.need = 4 + length;
          this.phase = BODY;
          continue;
        }
        // The length field straddles reads: its bytes go on one by one until it is whole.
        const k = Math.min(4 - this.headHave, n - at);
        chunk.copy(this.head, this.headHave, at, at + k);
        if (this.feed(chunk.subarray(at, at + k)) === undefined) return;
        this.headHave += k;
        at += k;
        if (this.headHave < 4) continue;
        this.headHave = 0;
        const length = this.head.readUInt32BE(0);
        if (!this.sealedLengthOk(length)) return;
        this.need = length;
        this.phase = BODY;
        continue;
      }
      const k = Math.min(this.need, n - at);
      const values = this.feed(at === 0 && k === n ? chunk : chunk.subarray(at, at + k));
      if (values === undefined) return;
      this.need -= k;
      at += k;
      if (this.need > 0) continue;
      if (values.length !== 1 && this.decodeError === undefined) {
        this.end('protocol', new DvsError('EDVSBADREQUEST', 'frame boundaries disagree with the decoder'));
        return;
      }
      if (this.sealedFrame) {
        this.held = values[0];
        this.phase = TAG;
        this.need = FRAME_TAG_BYTES;
        continue;
      }
      this.phase = HEAD;
      this.chunkLeft = n - at;
      if (!this.handle(values[0])) return;
    }
    this.chunkLeft = 0;
  }

  /** A frame begins: sealed once the handshake's frames are through. False when the connection ended. */
  private beginFrame(): boolean {
    if (this.plainLeft > 0) {
      this.plainLeft--;
      this.sealedFrame = false;
      return true;
    }
    if (this.opener === undefined) {
      this.end('protocol', new DvsError('EDVSBADREQUEST', 'a frame after the handshake frames before the link is established'));
      return false;
    }
    this.sealedFrame = true;
    this.opener.begin();
    return true;
  }

  /**
   * A sealed frame's length field that no honest peer could send ends the connection at once: its
   * end cannot be found to check its tag. False when it did.
   */
  private sealedLengthOk(length: number): boolean {
    if (!this.sealedFrame || (length >= 2 && length <= this.maxLength)) return true;
    this.end('mac', new DvsError('EDVSACCES', `sealed frame with an impossible length (${length})`));
    return false;
  }

  /**
   * Bytes of the current frame: to its MAC and to the decoder. Undefined when the connection ended
   * (a plain frame that does not decode); a sealed one's decoding error waits for its tag.
   */
  private feed(piece: Buffer): readonly unknown[] | undefined {
    if (this.sealedFrame) {
      this.opener?.update(piece);
      if (this.decodeError !== undefined) return NO_VALUES;
    }
    try {
      return this.decoder.push(piece);
    } catch (err) {
      if (!this.sealedFrame) {
        this.end('protocol', err);
        return undefined;
      }
      this.decodeError = err;
      return NO_VALUES;
    }
  }

  /** Hands a value on; false when that ended the connection. */
  private handle(v: unknown): boolean {
    try {
      this.onValue(v);
    } catch (err) {
      this.end(endOf(err), err);
      return false;
    }
    return this.ended === undefined;
  }
}

/** The largest frame length field a decoder of this limit accepts (framing.ts: LZ4's worst case above the body limit). */
function maxLengthField(maxFrameBytes: number): number {
  return maxFrameBytes + (maxFrameBytes >>> 6) + 64 + FRAME_HEADER_BYTES - 4;
}

/** How an error thrown by a value handler ends the connection. */
function endOf(err: unknown): ConnEnd {
  if (err instanceof DvsError) {
    if (err.code === 'EDVSACCES') return 'auth';
    if (err.code === 'EDVSCONNREFUSED') return 'refused';
    if (err.code === 'EDVSPROTONOSUPPORT') return 'version';
  }
  return 'protocol';
}
