/**
 * Socket reads through `onread`, for the client sockets of the process protocol and of node links.
 * Whoever consumes them must treat each chunk as transient (FramingOptions.transientChunks).
 */

/** Bytes of one socket read land here; a read never exceeds it. */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * The reads of a socket created with `onread`: Node reads into one buffer, reused for every read,
 * and calls back without the stream machinery (no Buffer, 'data' event and next-tick pass per
 * read, a share of a raw round trip worth saving). What arrives before a
 * consumer is attached is kept as copies. Only sockets we connect can have it: Node 20's servers
 * give the sockets they accept no `onread`.
 */
export class SocketReads {
  private consumer: ((chunk: Buffer) => void) | undefined;
  private early: Buffer[] = [];
  readonly onread = {
    buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
    callback: (bytes: number, buf: Uint8Array): boolean => {
      const chunk = Buffer.from(buf.buffer, buf.byteOffset, bytes);
      if (this.consumer !== undefined) this.consumer(chunk);
      else this.early.push(Buffer.from(chunk));
      return true;
    },
  };

  /** From now on, reads go to `consumer` (which must not keep the chunk), those so far first. */
  deliverTo(consumer: (chunk: Buffer) => void): void {
    this.consumer = consumer;
    const early = this.early;
    this.early = [];
    for (const c of early) consumer(c);
  }
}
