/**
 * A peer link's resend queue: the data frames sent and not yet acknowledged, in sequence order,
 * kept for a resend after reconnect and released (their bytes, copy chunks included) as the
 * cumulative acknowledgements arrive. See docs/link-protocol.md ("Sessions").
 */
import type { Wire } from './link-wire.js';

interface Unacked {
  readonly seq: number;
  /** The frame's bytes; dropped (null) once acknowledged, so acked bulk data is not kept alive. */
  wire: Wire | null;
  readonly bytes: number;
}

/** Acknowledged slots at the front beyond which the list is compacted (when they are most of it). */
const COMPACT_AFTER = 1024;

export class ResendQueue {
  private readonly entries: Unacked[] = [];
  /** Entries before this one are acknowledged. */
  private head = 0;
  /** Wire bytes of the unacknowledged frames. */
  inFlightBytes = 0;
  /** Highest sequence the peer acknowledged. */
  acked = 0;

  /** Data frames sent and not yet acknowledged. */
  get count(): number {
    return this.entries.length - this.head;
  }

  push(seq: number, wire: Wire, bytes: number): void {
    this.entries.push({ seq, wire, bytes });
    this.inFlightBytes += bytes;
  }

  /** The k-th unacknowledged frame (0 = the oldest), k < count. */
  wireAt(k: number): Wire {
    // Entries from head on are unacknowledged: their bytes are kept.
    return this.entries[this.head + k]!.wire!;
  }

  /** Releases every frame up to sequence `ack`; false when the ack is not news. */
  ackUpTo(ack: number): boolean {
    if (ack <= this.acked) return false;
    this.acked = ack;
    const entries = this.entries;
    while (this.head < entries.length && entries[this.head]!.seq <= ack) {
      const u = entries[this.head]!;
      this.inFlightBytes -= u.bytes;
      // The slot itself goes only when the queue is compacted below; its bytes (up to a copy chunk
      // each) must not wait for that.
      u.wire = null;
      this.head++;
    }
    if (this.head > COMPACT_AFTER && this.head * 2 > entries.length) {
      entries.splice(0, this.head);
      this.head = 0;
    }
    return true;
  }

  /** Forgets everything (the session ended); returns how many frames were unacknowledged. */
  clear(): number {
    const dropped = this.count;
    this.entries.length = 0;
    this.head = 0;
    this.inFlightBytes = 0;
    this.acked = 0;
    return dropped;
  }
}
