/**
 * Sessions (docs/link-protocol.md §5), driven byte by byte from a hand-written peer: resume with
 * the documented acks and resend, reset when the other side changed its epoch, and suspect-then-up
 * without loss when a link is silent for less than deadMs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { KernelFrame } from '../../src/kernel/frames.js';
import { FAST, Harness, KEY, link, notify, wnotify, waitFor, waitUp } from './helpers.js';
import { RawPeer } from './raw-peer.js';

const h = new Harness();
afterEach(() => h.closeAll());

describe('link sessions', () => {
  it('resumes when both views match, resets (down, up) when the peer changed its epoch', async () => {
    const b = await h.node(5);
    // Node 1 is played by hand; its listed address answers, as a live daemon's would.
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: await h.liveListener() }]);
    const INC = 1000;

    // First contact: a reset, nothing to acknowledge.
    let raw = await RawPeer.connect(h, b.port);
    let r = await raw.dial({ from: 1, to: 5, inc: INC, key: KEY });
    expect(r.ready).toEqual({ t: 'ready', epoch: 0, view: null, ack: 0 });
    raw.send({ t: 'data', s: 1, a: 0, f: [wnotify(1)] });
    raw.send({ t: 'data', s: 2, a: 0, f: [wnotify(2)] });
    await waitFor(() => b.frames.length === 2, 'two frames');
    b.lm.send(1, notify(10));
    expect(await raw.nextData()).toMatchObject({ t: 'data', s: 1, f: [wnotify(10)] });
    await new Promise((res) => setImmediate(res));
    b.lm.send(1, notify(11));
    expect(await raw.nextData()).toMatchObject({ t: 'data', s: 2, f: [wnotify(11)] });
    raw.socket.destroy();
    await waitFor(() => b.lm.peerState(1)!.connected === false, 'connection gone');

    // Same tokens on both sides: resume. We saw b's frames up to 1 only: 2 is resent.
    raw = await RawPeer.connect(h, b.port);
    r = await raw.dial({ from: 1, to: 5, inc: INC, key: KEY, epoch: 0, view: { inc: b.incarnation, epoch: 0 }, ack: 1 });
    expect(r.ready).toEqual({ t: 'ready', epoch: 0, view: { inc: INC, epoch: 0 }, ack: 2 });
    expect(await raw.nextData()).toMatchObject({ t: 'data', s: 2, f: [wnotify(11)] });
    raw.send({ t: 'data', s: 2, a: 2, f: [wnotify(2)] }); // a duplicate: dropped
    raw.send({ t: 'data', s: 3, a: 2, f: [wnotify(3)] });
    await waitFor(() => b.frames.length === 3, 'third frame');
    expect(b.frames.map((f) => (f.frame as Extract<KernelFrame, { k: 'notify' }>).arg)).toEqual([1, 2, 3]);
    expect(b.lm.peerState(1)).toMatchObject({ duplicatesDropped: 1, resent: 1, reconnects: 1 });
    const states = (): (string | number | undefined)[][] => b.reports.filter((x) => x.state !== 'suspect').map((x) => [x.state, x.inc]);
    expect(states()).toEqual([['up', INC]]);
    raw.socket.destroy();
    await waitFor(() => b.lm.peerState(1)!.connected === false, 'connection gone');

    // The peer declared b down (its epoch is now 1): both reset; b reports down then up.
    b.lm.send(1, notify(12)); // queued in the old session: dropped by the reset
    raw = await RawPeer.connect(h, b.port);
    r = await raw.dial({ from: 1, to: 5, inc: INC, key: KEY, epoch: 1, view: { inc: b.incarnation, epoch: 0 }, ack: 3 });
    expect(r.ready).toEqual({ t: 'ready', epoch: 0, view: { inc: INC, epoch: 0 }, ack: 0 });
    expect(states()).toEqual([
      ['up', INC],
      ['down', INC],
      ['up', INC],
    ]);
    raw.send({ t: 'data', s: 1, a: 0, f: [wnotify(4)] });
    await waitFor(() => b.frames.length === 4, 'frame of the new session');
    expect(b.lm.peerState(1)).toMatchObject({ lastSeqSent: 0, lastSeqReceived: 1 });
    expect(b.lm.peerState(1)!.dropped).toBeGreaterThanOrEqual(1);
  });

  it('a resume acknowledging more than was sent is a protocol error', async () => {
    const b = await h.node(5);
    // Node 1 is played by hand; its listed address answers, as a live daemon's would.
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: await h.liveListener() }]);
    let raw = await RawPeer.connect(h, b.port);
    await raw.dial({ from: 1, to: 5, inc: 7, key: KEY });
    raw.socket.destroy();
    await waitFor(() => b.lm.peerState(1)!.connected === false, 'connection gone');
    raw = await RawPeer.connect(h, b.port);
    await raw.dial({ from: 1, to: 5, inc: 7, key: KEY, epoch: 0, view: { inc: b.incarnation, epoch: 0 }, ack: 50 });
    expect(await raw.waitClosed()).toBe(true);
    expect(b.lm.peerState(1)!.protocolErrors).toBe(1);
  });

  it('a link silent for less than deadMs goes suspect, then up again without losing a frame', async () => {
    const timing = { ...FAST, deadMs: 5000 };
    const a = await h.node(1, { timing });
    const b = await h.node(2, { timing });
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    proxy.blackhole = true;
    for (let i = 0; i < 100; i++) a.lm.send(2, notify(i));
    await waitFor(() => a.reports.some((r) => r.state === 'suspect'), 'suspect');
    for (let i = 100; i < 200; i++) a.lm.send(2, notify(i));
    proxy.blackhole = false;
    proxy.cut();
    await waitFor(() => b.frames.length === 200, 'all 200 frames');
    expect(b.frames.map((f) => (f.frame as Extract<KernelFrame, { k: 'notify' }>).arg)).toEqual([...Array(200).keys()]);
    await waitFor(() => a.reports[a.reports.length - 1]!.state === 'up', 'up again');
    expect(a.reports.map((r) => r.state)).toEqual(['up', 'suspect', 'up']);
    expect(a.lm.peerState(2)!.resent).toBeGreaterThanOrEqual(1);
  });
});
