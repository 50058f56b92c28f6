/**
 * Whether a peer is alive, as a peer link judges it: when it was last heard from (any frame on
 * the established connection, or a completed handshake) and when we last sent it something
 * (a ping goes out when idle). Silence for suspectMs makes it 'suspect', for deadMs 'down'.
 * See docs/link-protocol.md ("Heartbeats and failure states").
 */

export type SilenceVerdict = 'alive' | 'suspect' | 'dead';

export class Liveness {
  lastHeard: number;
  lastSent = 0;

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
}
