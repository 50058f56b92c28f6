/**
 * Writes frames to a stream socket, those of one callback of the event loop (its synchronous part
 * and the promise reactions it starts) together: one write for a lone frame, one write of their
 * concatenation for a few small ones, one writev (cork) otherwise. Saves a system call per frame
 * when a burst of frames leaves at once, and the writev machinery when one does.
 */
import type { Socket } from 'node:net';

/** Up to this many bytes in all, a burst is concatenated rather than written as a vector. */
const CONCAT_MAX_BYTES = 16 * 1024;

export class BatchWriter {
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private scheduled = false;

  constructor(private readonly socket: Socket) {}

  /** Bytes queued here and not yet handed to the socket. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  write(frame: Buffer): void {
    this.queued.push(frame);
    this.queuedBytes += frame.byteLength;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flush);
    }
  }

  /** Hands everything queued to the socket now. */
  readonly flush = (): void => {
    this.scheduled = false;
    const q = this.queued;
    if (q.length === 0) return;
    const bytes = this.queuedBytes;
    this.queued = [];
    this.queuedBytes = 0;
    const s = this.socket;
    if (s.destroyed) return;
    if (q.length === 1) s.write(q[0]!);
    else if (bytes <= CONCAT_MAX_BYTES) s.write(Buffer.concat(q, bytes));
    else {
      s.cork();
      for (const b of q) s.write(b);
      s.uncork();
    }
  };
}
