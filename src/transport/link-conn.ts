/**
 * One TCP or TLS connection of a node link: the socket, its frame decoder, byte counters and an
 * orderly end. Decoding errors and handler errors close the connection; nothing thrown here ever
 * escapes into the event loop.
 */
import type { Socket } from 'node:net';
import { DvsError } from '../ipc/errors.js';
import { FrameDecoder } from './framing.js';
import { wireBytes, type Wire } from './link-wire.js';
import type { SocketReads } from './socket-reads.js';

export type ConnEnd = 'closed' | 'protocol' | 'auth' | 'timeout' | 'refused' | 'replaced' | 'shutdown' | 'suspect' | 'down';

export interface ByteCounters {
  bytesIn: number;
  bytesOut: number;
}

let nextConnId = 1;

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
  /** The socket reads into one reused buffer (a dialled plain TCP socket, see SocketReads). */
  private readonly transient: boolean;
  /** Values of the current chunk not yet handed to onValue. */
  private remaining = 0;

  constructor(socket: Socket, maxFrameBytes: number, reads?: SocketReads) {
    this.socket = socket;
    this.transient = reads !== undefined;
    this.decoder = new FrameDecoder({ maxFrameBytes, transientChunks: this.transient });
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
   * current chunk are still pending: the peer sent something it had to wait with.
   */
  setMaxFrameBytes(maxFrameBytes: number): boolean {
    if (this.decoder.buffered > 0 || this.remaining > 0) return false;
    this.decoder = new FrameDecoder({ maxFrameBytes, transientChunks: this.transient, assembleLargeFrames: this.decoder.assembleLargeFrames });
    return true;
  }

  /** The peer authenticated: large frames may be assembled as they arrive (FramingOptions.assembleLargeFrames). */
  trust(): void {
    this.decoder.assembleLargeFrames = true;
  }

  /** Writes one frame; a segmented one goes out in one writev. */
  write(wire: Wire): void {
    if (this.ended !== undefined) return;
    if (this.counters !== undefined) this.counters.bytesOut += wireBytes(wire);
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
      try {
        this.onValue(v);
      } catch (err) {
        this.end(endOf(err), err);
        return;
      }
    }
  }
}

/** How an error thrown by a value handler ends the connection. */
function endOf(err: unknown): ConnEnd {
  if (err instanceof DvsError) {
    if (err.code === 'EDVSACCES') return 'auth';
    if (err.code === 'EDVSCONNREFUSED') return 'refused';
  }
  return 'protocol';
}
