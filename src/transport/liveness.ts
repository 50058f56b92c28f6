/**
 * Whether a peer is alive, as a peer link judges it: when it was last heard from (any frame on
 * the established connection, or a completed handshake) and when we last sent it something
 * (a ping goes out when idle). Silence for suspectMs makes it 'suspect', for deadMs 'down'.
 * A crashed peer is recognised sooner: its connection was closed or reset from its side, and then
 * its listener refuses connections (nothing listens: the process is gone) REFUSALS_FOR_CRASH times
 * in a row. A frozen or partitioned peer refuses nothing (the kernel still accepts for a stopped
 * process; a partition answers nothing at all), so it gets the full deadMs.
 * See docs/link-protocol.md ("Heartbeats and failure states", "Crash detection").
 */

export type SilenceVerdict = 'alive' | 'suspect' | 'dead';

/** Refused connection attempts in a row, after the peer closed the link, that mean it crashed. */
export const REFUSALS_FOR_CRASH = 3;

export class Liveness {
  lastHeard: number;
  lastSent = 0;
  /** The established connection was closed or reset by the peer's side, and no link since. */
  private closedByPeer = false;
  /** Connection attempts (dials or probes) refused in a row since. */
  private refusals = 0;

  constructor(now: number) {
    this.lastHeard = now;
  }

  heard(now: number): void {
    this.lastHeard = now;
  }

  /** What silence since lastHeard means at `now`. */
  judge(now: number, suspectMs: number, deadMs: number): SilenceVerdict {
    const silent = now - this.lastHeard;
    if (silent >= deadMs) return 'dead';
    return silent >= suspectMs ? 'suspect' : 'alive';
  }

  /** Whether a heartbeat is due at `now`. */
  idle(now: number, heartbeatMs: number): boolean {
    return now - this.lastSent >= heartbeatMs;
  }

  /** The established connection was closed or reset from the peer's side. */
  lostByPeer(): void {
    this.closedByPeer = true;
    this.refusals = 0;
  }

  /** A link is established again: refusals mean nothing any more. */
  linked(): void {
    this.closedByPeer = false;
    this.refusals = 0;
  }

  /** Whether refusals are being watched (the peer closed the link, none since). */
  get watchingRefusals(): boolean {
    return this.closedByPeer;
  }

  /** Something accepted a TCP connection at the peer's address: a process listens there. */
  answered(): void {
    this.refusals = 0;
  }

  /** A connection attempt to the peer's listener was refused. True when that means the peer crashed. */
  refused(): boolean {
    if (!this.closedByPeer) return false;
    return ++this.refusals >= REFUSALS_FOR_CRASH;
  }
}
