/**
 * Every link timer runs on the injected clock (LinkManagerOptions.clock): with virtual time that
 * moves only when the test says so, heartbeats, suspicion, death and the redials follow it, over
 * real TCP, however little real time passes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimClock } from '../../src/sim/sim-clock.js';
import { Harness, link, waitFor, waitUp } from './helpers.js';

const h = new Harness();
afterEach(() => h.closeAll());

/** Virtual timers far beyond anything real time could reach during the test. */
const TIMING = { heartbeatMs: 1000, suspectMs: 3000, deadMs: 6000, reconnectMs: 100, handshakeMs: 600_000 };

describe('link timers on an injected clock', () => {
  it('heartbeats, suspect, down and redials follow virtual time, not real time', async () => {
    const clock = new SimClock({ start: 1_000_000 });
    const a = await h.node(1, { clock, timing: TIMING });
    const b = await h.node(2, { clock, timing: TIMING });
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    const t0 = clock.now();

    // One heartbeat period of virtual idleness: each side pings (written at once, counted as bytes).
    const out = a.lm.peerState(2)!.bytesOut;
    clock.runUntil(t0 + TIMING.heartbeatMs + 300);
    expect(a.lm.peerState(2)!.bytesOut).toBeGreaterThan(out);
    await waitFor(() => b.lm.peerState(1)!.bytesIn > 0, 'the ping arrives');
    expect(a.reports.map((r) => r.state)).toEqual(['up']);

    // The peer goes silent: suspect once suspectMs of virtual time passed, down at deadMs.
    proxy.blackhole = true;
    const connections = proxy.connections;
    const t1 = clock.now();
    clock.runUntil(t1 + TIMING.suspectMs + 300);
    expect(a.reports.map((r) => r.state)).toEqual(['up', 'suspect']);
    // The suspect connection was dropped and a redial started (through the clock's timer).
    await waitFor(() => proxy.connections > connections, 'a redial');
    clock.runUntil(t1 + TIMING.deadMs + 300);
    expect(a.reports.map((r) => r.state)).toEqual(['up', 'suspect', 'down']);
    expect(b.reports.map((r) => r.state)).toEqual(['up', 'suspect', 'down']);

    // Back again: the dialer's backoff timers are virtual too; advancing the clock brings it up.
    proxy.blackhole = false;
    proxy.cut();
    for (let i = 0; i < 200 && a.lm.peerState(2)!.state !== 'up'; i++) {
      clock.runUntil(clock.now() + TIMING.reconnectMs * 4);
      await new Promise((r) => setTimeout(r, 5));
    }
    await waitUp(a, b);
    expect(a.reports.map((r) => r.state)).toEqual(['up', 'suspect', 'down', 'up']);
  });
});
