/**
 * When a peer link acknowledges what it received. An ack rides on the next data frame when there
 * is one; a standalone ack goes out once the oldest unacknowledged batch has waited ACK_DELAY_MS
 * (a request is usually answered within that time: one write per message instead of two), or at
 * once after ACK_EVERY_BATCHES batches (one-way load; well inside the sender's window).
 * See docs/link-protocol.md ("Sequence numbers, acknowledgements, batching").
 */
import type { Clock, TimerHandle } from '../kernel/clock.js';

/** How long a standalone ack waits for outgoing data to carry it instead. */
export const ACK_DELAY_MS = 5;
/** Received batches after which an ack goes out at once. */
export const ACK_EVERY_BATCHES = 32;

export class DelayedAck {
  /** Batches were accepted since the last ack went out. */
  private dirty = false;
  /** When the oldest of them arrived (meaningful while dirty). */
  private dirtySince = 0;
  /** How many. */
  private received = 0;
  /** The wait is over: the next flush sends the ack even without data. */
  private due = false;
  /** Bounds how long a standalone ack waits (see received()). */
  private timer: TimerHandle | undefined;

  /** `onDue` runs when a standalone ack has waited long enough: it should flush. */
  constructor(
    private readonly clock: Clock,
    private readonly onDue: () => void,
  ) {}

  /**
   * A data batch was accepted at `now`. True when the ack should go out at once (flush now).
   * The timer is left running when an ack rides on data (arming and clearing one per message
   * costs more than an idle expiry every few milliseconds); when it fires on a batch younger than
   * the delay it waits out the rest rather than ack at once, which under request/response traffic
   * would add a write (and a wake-up of the peer) every few milliseconds.
   */
  batchReceived(now: number): boolean {
    if (!this.dirty) this.dirtySince = now;
    this.dirty = true;
    if (++this.received >= ACK_EVERY_BATCHES) return true;
    if (this.timer === undefined) this.arm(ACK_DELAY_MS);
    return false;
  }

  /** A flush should send a standalone ack. */
  get wanted(): boolean {
    return this.dirty && (this.due || this.received >= ACK_EVERY_BATCHES);
  }

  /** An ack went out (standalone or on a data frame), or the session was reset. */
  sent(): void {
    this.dirty = false;
    this.due = false;
    this.received = 0;
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    this.timer = this.clock.setTimer(ms, this.onTimer);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (!this.dirty) return;
    const wait = this.dirtySince + ACK_DELAY_MS - this.clock.now();
    if (wait > 0) {
      this.arm(wait);
      return;
    }
    this.due = true;
    this.onDue();
  };
}
