/**
 * The accepting side's way to tell a crashed peer from a silent one: it never dials, so after the
 * peer closed the link it probes the peer's listener with bare TCP connects (closed at once, no
 * byte sent; the peer's acceptor counts them as probes, see link-listener.ts). A refusal
 * (ECONNREFUSED: nothing listens) counts toward the crash verdict; a connect that succeeds resets
 * it and probing goes on, until the peer dials back (the link manager stops the probe) or is down:
 * a process that is exiting may still accept on its listener an instant after its connections
 * closed, so one answer proves nothing for good. See docs/link-protocol.md ("Crash detection").
 */
import net from 'node:net';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { reconnectDelayMs, type LinkTiming } from './link-options.js';

export type ProbeOutcome = 'refused' | 'answered' | 'unknown';

export class LivenessProbe {
  private timer: TimerHandle | undefined;
  private socket: net.Socket | undefined;
  private attempts = 0;
  private running = false;

  /** `outcome` hears each attempt's result. */
  constructor(
    private readonly clock: Clock,
    private readonly timing: LinkTiming,
    private readonly outcome: (o: ProbeOutcome) => void,
  ) {}

  /** Probes host:port until stopped. */
  start(host: string, port: number): void {
    if (this.running) return;
    this.running = true;
    this.attempts = 0;
    this.schedule(host, port);
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
  }

  private schedule(host: string, port: number): void {
    const delay = reconnectDelayMs(this.timing, this.attempts++, true);
    this.timer = this.clock.setTimer(delay, () => {
      this.timer = undefined;
      if (this.running) this.attempt(host, port);
    });
  }

  private attempt(host: string, port: number): void {
    const socket = net.connect({ host, port });
    this.socket = socket;
    let settled = false;
    // No answer at all (a partition, a lost SYN): nothing learnt; try again.
    const deadline = this.clock.setTimer(this.timing.handshakeMs, () => done('unknown'));
    const done = (o: ProbeOutcome): void => {
      if (settled) return;
      settled = true;
      this.clock.clearTimer(deadline);
      socket.destroy();
      if (this.socket === socket) this.socket = undefined;
      if (!this.running) return;
      this.schedule(host, port);
      this.outcome(o);
    };
    socket.once('connect', () => done('answered'));
    socket.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
    socket.once('close', () => done('unknown'));
  }
}
