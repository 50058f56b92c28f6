/**
 * The outgoing side of a process connection: responses, grant requests and `bye`, encoded as frames
 * and batched per event-loop callback. A client that stops reading is dropped once too many bytes
 * wait for it.
 */
import type { Socket } from 'node:net';
import { DvsError } from '../ipc/errors.js';
import { BatchWriter } from '../transport/batch-writer.js';
import { encodeFrameSegments, type FramingOptions } from '../transport/framing.js';
import { asInt, toWireError, type Fields } from '../transport/proc-protocol.js';
import type { ConnContext } from './proc-context.js';

/** Which frames still leave: all, only those written on the way out (an error, a `bye`), none. */
type Gate = 'open' | 'closing' | 'closed';

export class ConnWriter {
  /** Set by the connection as it closes. */
  gate: Gate = 'open';
  /** How frames are encoded: the frame limit, and compression once hello asked for it. */
  private encoding: FramingOptions;
  private readonly out: BatchWriter;

  constructor(
    private readonly conn: number,
    private readonly socket: Socket,
    private readonly ctx: ConnContext,
    /** A grant request that cannot be encoded fails where it waits instead of leaving. */
    private readonly unsendable: (sid: number, err: DvsError) => void,
  ) {
    this.out = new BatchWriter(socket);
    this.encoding = { maxFrameBytes: ctx.maxFrameBytes };
  }

  /** The client announced LZ4 in hello: large frames toward it are compressed from now on. */
  compress(): void {
    this.encoding = { maxFrameBytes: this.ctx.maxFrameBytes, compressMinBytes: this.ctx.compressMinBytes };
  }

  ok(id: number, result: unknown): void {
    this.write({ id, ok: true, result: result === undefined ? null : result });
  }

  error(id: number, err: unknown, evenIfClosing = false): void {
    if (!(err instanceof DvsError)) this.ctx.logger.error({ conn: this.conn, err: err instanceof Error ? err.stack : String(err) }, 'unexpected error serving a request');
    this.ctx.stats.errorResponses++;
    this.write({ id, ok: false, error: toWireError(err) }, evenIfClosing);
  }

  write(frame: Fields, evenIfClosing = false): void {
    if (this.gate === 'closed' || (this.gate === 'closing' && !evenIfClosing) || this.socket.destroyed) return;
    let bytes: Buffer | Buffer[];
    try {
      // Bulk bytes (copy data, grant writes) go to the socket from where they lie, uncompressed.
      bytes = encodeFrameSegments(frame, this.encoding);
    } catch (err) {
      this.unencodable(frame, err);
      return;
    }
    if (Buffer.isBuffer(bytes)) this.ctx.stats.bytesOut += bytes.byteLength;
    else for (const b of bytes) this.ctx.stats.bytesOut += b.byteLength;
    // The frames of one callback of the event loop leave together.
    this.out.write(bytes);
    if (this.socket.writableLength + this.out.pendingBytes > this.ctx.maxWriteBufferBytes) {
      this.ctx.logger.warn({ conn: this.conn, buffered: this.socket.writableLength }, 'process client does not read its responses; dropping it');
      this.socket.destroy();
    }
  }

  /** Hands what is queued to the socket now (before ending it). */
  flush(): void {
    this.out.flush();
  }

  /** A frame too large or not encodable: its request fails instead. */
  private unencodable(frame: Fields, err: unknown): void {
    const id = asInt(frame.id);
    const sid = asInt(frame.sid);
    if (id !== undefined && frame.ok === true) this.error(id, err);
    else if (sid !== undefined) this.unsendable(sid, err instanceof DvsError ? err : new DvsError('EDVSBADVALUE'));
    else this.ctx.logger.error({ conn: this.conn, err: (err as Error).message }, 'cannot encode a response');
  }
}
