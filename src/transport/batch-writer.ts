/**
 * Writes frames to a stream socket, those of one callback of the event loop (its synchronous part
 * and the promise reactions it starts) together: one write for a lone frame, one write of their
 * concatenation for a few small ones, one writev (cork) otherwise. Saves a system call per frame
 * when a burst of frames leaves at once, and the writev machinery when one does.
 */
import type { Socket } from 'node:net';

/** Schedules flushes as promise reactions: Node's queueMicrotask costs twice as much (an AsyncResource each). */
const RESOLVED = Promise.resolve();

/** Queue lists longer than this are emptied for good after a flush. */
const KEEP_QUEUE_ENTRIES = 256;

/** What a written entry of the queue is overwritten with. */
const WRITTEN: Buffer = Buffer.alloc(0);

/** Up to this many bytes in all, a burst is concatenated rather than written as a vector. */
const CONCAT_MAX_BYTES = 16 * 1024;

export class BatchWriter {
  /**
   * Frames [0, count) wait. Two lists take turns and are kept across flushes (emptying a list
   * would free its storage): a frame written while a flush runs goes to the other one.
   */
  private queued: (Buffer | readonly Buffer[])[] = [];
  private spare: (Buffer | readonly Buffer[])[] = [];
  private count = 0;
  private queuedBytes = 0;
  private scheduled = false;

  constructor(private readonly socket: Socket) {}

  /** Bytes queued here and not yet handed to the socket. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Queues a frame: one buffer, or segments that are written in order with nothing between them. */
  write(frame: Buffer | readonly Buffer[]): void {
    this.queued[this.count++] = frame;
    if (Buffer.isBuffer(frame)) this.queuedBytes += frame.byteLength;
    else for (const b of frame) this.queuedBytes += b.byteLength;
    if (!this.scheduled) {
      this.scheduled = true;
      void RESOLVED.then(this.flush);
    }
  }

  /** Hands everything queued to the socket now. Never throws (it runs as a promise reaction). */
  readonly flush = (): void => {
    try {
      this.flushQueued();
    } catch (err) {
      this.socket.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  };

  private flushQueued(): void {
    this.scheduled = false;
    const n = this.count;
    if (n === 0) return;
    const q = this.queued;
    const bytes = this.queuedBytes;
    this.queued = this.spare;
    this.spare = q;
    this.count = 0;
    this.queuedBytes = 0;
    try {
      const s = this.socket;
      if (s.destroyed) return;
      const lone = n === 1 ? q[0]! : undefined;
      if (lone !== undefined && Buffer.isBuffer(lone)) s.write(lone);
      else if (bytes <= CONCAT_MAX_BYTES) s.write(Buffer.concat(q.slice(0, n).flat(), bytes));
      else {
        s.cork();
        for (let i = 0; i < n; i++) {
          const f = q[i]!;
          if (Buffer.isBuffer(f)) s.write(f);
          else for (const b of f) s.write(b);
        }
        s.uncork();
      }
    } finally {
      // The socket holds what it still needs; the list keeps no frame alive, and no storage a
      // burst grew it to.
      if (q.length > KEEP_QUEUE_ENTRIES) q.length = 0;
      else for (let i = 0; i < n; i++) q[i] = WRITTEN;
    }
  }
}
