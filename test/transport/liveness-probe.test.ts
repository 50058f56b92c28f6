/**
 * The accepting side's liveness probe against a real listener on loopback. A process that is
 * exiting may still accept an instant after its link connection closed: one answer must not end
 * the probing, or a crash would wait for the whole deadMs.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/runtime/system-clock.js';
import { LivenessProbe, type ProbeOutcome } from '../../src/transport/liveness-probe.js';
import { waitFor } from './helpers.js';

const TIMING = { heartbeatMs: 20, suspectMs: 100, deadMs: 300, reconnectMs: 5, handshakeMs: 1000, helloMs: 500 };

let probe: LivenessProbe | undefined;
afterEach(() => probe?.stop());

describe('LivenessProbe', () => {
  it('goes on probing after an answer, and sees the listener that closed since refuse', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const outcomes: ProbeOutcome[] = [];
    probe = new LivenessProbe(systemClock, TIMING, (o) => outcomes.push(o));
    probe.start('127.0.0.1', port);
    await waitFor(() => outcomes.includes('answered'), 'first answer', 5000);
    await new Promise<void>((r) => server.close(() => r()));
    await waitFor(() => outcomes.filter((o) => o === 'refused').length >= 3, 'refusals after the listener closed', 5000);
    expect(outcomes[0]).toBe('answered');
  });

  it('stops probing when stopped', async () => {
    const outcomes: ProbeOutcome[] = [];
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    probe = new LivenessProbe(systemClock, TIMING, (o) => {
      outcomes.push(o);
      if (outcomes.length === 2) probe!.stop();
    });
    probe.start('127.0.0.1', port);
    await waitFor(() => outcomes.length >= 2, 'two outcomes', 5000);
    const seen = outcomes.length;
    // Longer than several probe spacings: nothing more arrives once stopped.
    await new Promise((r) => setTimeout(r, 20 * TIMING.reconnectMs));
    expect(outcomes.length).toBe(seen);
  });
});
