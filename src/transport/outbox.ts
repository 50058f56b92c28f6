/**
 * A peer link's outbox: the kernel frames queued and not yet sent, each encoded once, at send
 * time. Small frames are written back to back into a run buffer; successful send-acks that follow
 * each other travel as one element; bulk bytes stay where they are. The link's flush takes
 * batches from the front. See docs/link-protocol.md ("Sequence numbers, acknowledgements, batching").
 */
import { DvsError } from '../ipc/errors.js';
import type { KernelFrame } from '../kernel/frames.js';
import { encodeValueView } from './codec.js';
import { bulkOf, kernelFrameToWire, MAX_GROUPED_ACKS, sizeWireArray, writeWireArray } from './kernel-wire.js';
import { BULK_MIN_BYTES, DATA_FRAME_OVERHEAD, encodedBytes, encodeKernelFrame, encodeSendAcks, type EncodedFrame } from './link-wire.js';

/** Outbox lists longer than this are emptied for good once drained (see dropFirst). */
const KEEP_OUTBOX_ENTRIES = 1024;

/** What a removed outbox entry is overwritten with, so the list keeps no bytes alive. */
const SENT: EncodedFrame = Buffer.alloc(0);

/** Bytes of a run buffer (see Outbox.run). */
const RUN_BYTES = 64 * 1024;

export class Outbox {
  /**
   * The elements queued and not yet sent: entries [0, length) of three parallel lists kept
   * across flushes. Emptying a JS array (`length = 0`) frees its storage, and the next push would
   * allocate it again: three allocations per flush, a tenth of a daemon-hosted sendrec's bytes.
   */
  readonly entries: EncodedFrame[] = [];
  /** How many kernel frames each entry stands for (a send-acks element or a run, several). */
  private readonly entryFrames: number[] = [];
  /** How many elements of a data frame's `f` each entry holds (a run, several). */
  private readonly entryElements: number[] = [];
  length = 0;
  /** Encoded bytes of the entries. */
  bytes = 0;
  /** Kernel frames and `f` elements of the batch last measured (see measureBatch). */
  batchFrames = 0;
  batchElements = 0;
  batchBytes = 0;
  /** Successful send-acks queued since the last other frame, not yet encoded. */
  private ackGroup: { dc: number; ids: number[] } | undefined;
  /**
   * The run: consecutive small kernel frames encoded back to back into `run` from `runStart` to
   * `runAt`, queued as one entry when another kind of element comes or at flush. Its bytes are
   * copied into the data frame, so the buffer is reused once the outbox is empty.
   */
  private run: Buffer | undefined;
  private runStart = 0;
  private runAt = 0;
  private runFrames = 0;

  constructor(
    private readonly node: number,
    private readonly maxFrameBytes: number,
    private readonly batchMaxBytes: number,
  ) {}

  /** Elements queued, the open run and ack group included. */
  get queued(): number {
    return this.length + (this.ackGroup === undefined ? 0 : 1) + (this.runFrames === 0 ? 0 : 1);
  }

  /** Queues a kernel frame (EDVSMSGSIZE when it could never fit a data frame). */
  add(frame: KernelFrame): void {
    if (frame.k === 'send-ack' && frame.rc === 0 && frame.node === undefined) {
      // Successful send-acks that follow each other travel as one element (kernel-wire.ts).
      this.closeRun();
      const g = this.ackGroup;
      if (g !== undefined && g.dc === frame.dc && g.ids.length < MAX_GROUPED_ACKS) g.ids.push(frame.id);
      else {
        this.closeAckGroup();
        this.ackGroup = { dc: frame.dc, ids: [frame.id] };
      }
      return;
    }
    this.closeAckGroup();
    const bulk = bulkOf(frame);
    if (bulk !== undefined && bulk.byteLength >= BULK_MIN_BYTES) {
      this.closeRun();
      const buf = encodeKernelFrame(frame);
      this.checkSize(encodedBytes(buf));
      this.queue(buf, encodedBytes(buf), 1);
      return;
    }
    // Small frames are written straight into the open run: no buffer of their own. Nothing may
    // encode between sizeWireArray and writeWireArray (the measured payload lives in msgpackr's
    // scratch buffer), hence the ack group is closed above.
    const wire = kernelFrameToWire(frame);
    const size = sizeWireArray(wire, encodeValueView);
    this.checkSize(size);
    if (size > RUN_BYTES / 2) {
      this.closeRun();
      const buf = Buffer.allocUnsafe(size);
      writeWireArray(buf, 0, wire);
      this.queue(buf, size, 1);
      return;
    }
    if (this.runAt - this.runStart + size > this.batchMaxBytes) this.closeRun();
    let run = this.run;
    if (run === undefined || this.runAt + size > run.byteLength) {
      this.closeRun();
      // The old buffer may still back queued runs: start a new one rather than overwrite it.
      run = this.run = Buffer.allocUnsafe(RUN_BYTES);
      this.runStart = 0;
      this.runAt = 0;
    }
    this.runAt = writeWireArray(run, this.runAt, wire);
    this.runFrames++;
  }

  private checkSize(bytes: number): void {
    if (bytes + DATA_FRAME_OVERHEAD > this.maxFrameBytes) {
      throw new DvsError('EDVSMSGSIZE', `kernel frame of ${bytes} bytes exceeds the link frame limit`, { details: { node: this.node, limit: this.maxFrameBytes } });
    }
  }

  /** Queues the open ack group and run, so that every queued frame is an entry. */
  closeOpen(): void {
    this.closeAckGroup();
    this.closeRun();
  }

  /** Queues the open run of small frames, if any, in its place among the other frames. */
  private closeRun(): void {
    const run = this.run;
    if (this.runFrames === 0 || run === undefined) return;
    this.queue(run.subarray(this.runStart, this.runAt), this.runAt - this.runStart, this.runFrames);
    this.runStart = this.runAt;
    this.runFrames = 0;
  }

  /** Queues the open group of send-acks, if any, in its place among the other frames. */
  private closeAckGroup(): void {
    const g = this.ackGroup;
    if (g === undefined) return;
    this.ackGroup = undefined;
    const buf = g.ids.length === 1 ? encodeKernelFrame({ k: 'send-ack', dc: g.dc, id: g.ids[0]!, rc: 0 }) : encodeSendAcks(g.dc, g.ids);
    this.queue(buf, encodedBytes(buf), g.ids.length, 1);
  }

  /** Queues encoded bytes holding `elements` elements of a data frame's `f`, standing for `frames` kernel frames. */
  private queue(buf: EncodedFrame, bytes: number, frames: number, elements = frames): void {
    const n = this.length++;
    this.entries[n] = buf;
    this.entryFrames[n] = frames;
    this.entryElements[n] = elements;
    this.bytes += bytes;
  }

  /**
   * The batch that starts at entry `start`: as many entries as fit `maxBytes` (at least one).
   * Returns its end; batchFrames, batchElements and batchBytes describe it.
   */
  measureBatch(start: number, maxBytes: number): number {
    const n = this.length;
    let i = start;
    let bytes = 0;
    let frames = 0;
    let elements = 0;
    while (i < n) {
      const size = encodedBytes(this.entries[i]!);
      if (i > start && bytes + size > maxBytes) break;
      bytes += size;
      frames += this.entryFrames[i]!;
      elements += this.entryElements[i]!;
      i++;
    }
    this.batchFrames = frames;
    this.batchElements = elements;
    this.batchBytes = bytes;
    return i;
  }

  /** Removes the first `count` entries, sent in batches of `bytes` in all. */
  sent(count: number, bytes: number): void {
    this.bytes -= bytes;
    this.dropFirst(count);
    if (this.length === 0 && this.runFrames === 0) {
      // Every run's bytes were copied into data frames: the run buffer is free again.
      this.runStart = 0;
      this.runAt = 0;
    }
  }

  /** Drops everything queued (the session ended); returns how many kernel frames that was. */
  clear(): number {
    let frames = (this.ackGroup?.ids.length ?? 0) + this.runFrames;
    for (let k = 0; k < this.length; k++) frames += this.entryFrames[k]!;
    this.dropFirst(this.length);
    this.runStart = 0;
    this.runAt = 0;
    this.runFrames = 0;
    this.bytes = 0;
    this.ackGroup = undefined;
    return frames;
  }

  /** Removes the first `count` entries (sent, or dropped with the session), keeping the lists' storage and no reference to their bytes. */
  private dropFirst(count: number): void {
    const len = this.length;
    const out = this.entries;
    for (let k = count; k < len; k++) {
      out[k - count] = out[k]!;
      this.entryFrames[k - count] = this.entryFrames[k]!;
      this.entryElements[k - count] = this.entryElements[k]!;
    }
    for (let k = len - count; k < len; k++) out[k] = SENT;
    this.length = len - count;
    if (this.length === 0 && out.length > KEEP_OUTBOX_ENTRIES) {
      // After a burst (a peer that did not keep up): give the storage back.
      out.length = 0;
      this.entryFrames.length = 0;
      this.entryElements.length = 0;
    }
  }
}
