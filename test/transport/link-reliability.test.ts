/**
 * Reliability of node links: order, no loss, no duplicate across reconnects of the same
 * incarnation; a restarted peer (new incarnation) is reported down then up; silence leads to
 * suspect then down; batching; frames to down or unknown peers are dropped and counted.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import type { KernelFrame } from '../../src/kernel/frames.js';
import { FAST, Harness, link, notify, waitFor, waitUp, type TestNode } from './helpers.js';

const h = new Harness();
afterEach(() => h.closeAll());

function args(n: TestNode, from: number): number[] {
  return n.frames.filter((f) => f.from === from && f.frame.k === 'notify').map((f) => (f.frame as Extract<KernelFrame, { k: 'notify' }>).arg);
}

function expectExactlyInOrder(got: number[], count: number): void {
  expect(got.length).toBe(count);
  for (let i = 0; i < count; i++) if (got[i] !== i) throw new Error(`frame ${i} is ${got[i]}`);
}

describe('node link reliability', () => {
  it('delivers a mix of kinds in order: runs of small frames, grouped send-acks, bulk bytes, across batches', async () => {
    const [a, b] = await h.pair(1, 2, { batchMaxBytes: 4096 });
    const bulk = new Uint8Array(40_000).map((_, i) => i & 0xff);
    const sent: KernelFrame[] = [];
    for (let i = 0; i < 3000; i++) {
      const r = i % 7;
      const f: KernelFrame =
        r < 3
          ? { k: 'send-ack', dc: i % 14 < 7 ? 1 : 2, id: i, rc: 0 }
          : r === 3
            ? { k: 'send-ack', dc: 1, id: i, rc: -5, node: 3 }
            : r === 4 && i % 100 === 4
              ? { k: 'copy-data', dc: 1, id: i, rc: 0, data: bulk }
              : r === 5
                ? { k: 'send', dc: 1, id: i, src: -3, dst: 40, type: 9, payload: { n: i, s: 'x'.repeat(i % 50) }, rec: i % 2 === 0 }
                : notify(i);
      sent.push(f);
      a.lm.send(2, f);
      if (i % 450 === 0) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => b.frames.length >= sent.length, 'every frame', 15_000);
    // Everything a sent is acknowledged: b has delivered all it will ever deliver of it.
    await waitFor(() => a.lm.peerState(2)!.unacked === 0 && a.lm.peerState(2)!.queued === 0, 'everything acknowledged');
    expect(b.frames.length).toBe(sent.length);
    expect(b.frames.map((f) => f.frame)).toEqual(sent);
    expect(a.lm.peerState(2)!.framesOut).toBe(sent.length);
    expect(b.lm.peerState(1)!.framesIn).toBe(sent.length);
  });

  it('lets go of the bytes of bulk frames once the peer acknowledged them', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const a = await h.node(1, { timing: FAST });
    const b = await h.node(2, { timing: FAST });
    link(a, b);
    await waitUp(a, b);
    // Weak references to the memory itself: the link may hold other views of it.
    const sent: WeakRef<ArrayBufferLike>[] = [];
    // 40 copy chunks of 256 KiB: what a bulk copy leaves in the resend queue, all acknowledged.
    // (A helper, so that no variable of this async function keeps a chunk alive across its awaits.)
    const sendChunk = (i: number): void => {
      const data = new Uint8Array(256 * 1024).fill(i);
      sent.push(new WeakRef(data.buffer));
      a.lm.send(2, { k: 'copy-data', dc: 1, id: i + 1, rc: 0, data });
    };
    for (let i = 0; i < 40; i++) {
      sendChunk(i);
      if (i % 8 === 7) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => b.frames.length === 40 && a.lm.peerState(2)!.unacked === 0, 'every chunk delivered and acknowledged');
    expect((b.frames[39]!.frame as Extract<KernelFrame, { k: 'copy-data' }>).data![0]).toBe(39);
    b.frames.length = 0;
    // A weak reference clears at a collection after the turn that last used its target: collect on
    // each poll, a bounded number of times (waitFor polls every few ms).
    let rounds = 0;
    await waitFor(() => {
      gc();
      return ++rounds >= 5 || sent.every((r) => r.deref() === undefined);
    }, 'five collections, or every chunk collected');
    expect(sent.map((r, i) => (r.deref() === undefined ? -1 : i)).filter((i) => i >= 0)).toEqual([]);
  });

  it('carries 50k frames in order, without loss or duplicate, both ways', async () => {
    const [a, b] = await h.pair(1, 2);
    const N = 50_000;
    // Send in slices across event-loop turns, like a busy kernel would.
    for (let i = 0; i < N; i += 1000) {
      for (let j = i; j < i + 1000; j++) {
        a.lm.send(2, notify(j));
        b.lm.send(1, notify(j));
      }
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => b.frames.length >= N && a.frames.length >= N, '50k frames each way', 30_000);
    expectExactlyInOrder(args(b, 1), N);
    expectExactlyInOrder(args(a, 2), N);
    const sa = a.lm.peerState(2)!;
    expect(sa.framesOut).toBe(N);
    expect(sa.framesIn).toBe(N);
    expect(sa.duplicatesDropped).toBe(0);
    // Batching: far fewer data frames than kernel frames.
    expect(sa.batchesOut).toBeLessThan(N / 10);
    await waitFor(() => a.lm.peerState(2)!.unacked === 0 && b.lm.peerState(1)!.unacked === 0, 'everything acknowledged');
    expect(a.reports.filter((r) => r.state !== 'up')).toEqual([]);
  });

  it('frames sent in one event-loop turn go out as one data frame', async () => {
    const [a, b] = await h.pair(1, 2);
    for (let i = 0; i < 100; i++) a.lm.send(2, notify(i));
    await waitFor(() => b.frames.length === 100, '100 frames');
    expect(a.lm.peerState(2)!.batchesOut).toBe(1);
    expectExactlyInOrder(args(b, 1), 100);
  });

  it('request/response traffic carries its acks on the data: no standalone ack until the traffic stops', async () => {
    // b answers each request at once; a sends the next request 1 ms after each answer, so a's ack
    // of every answer waits about 1 ms, well inside the 5 ms delay, however often the timer fires.
    const exchanges = 60;
    let answered!: () => void;
    const done = new Promise<void>((resolve) => (answered = resolve));
    let answers = 0;
    // A loaded machine may stretch a's 1 ms pause to 3 ms or more, which with the rest of the round
    // trip can pass the 5 ms delay: such a wait may earn its ack.
    let longWaits = 0;
    const a = await h.node(1, {
      onFrame: () => {
        if (++answers === exchanges) {
          answered();
          return;
        }
        const at = performance.now();
        setTimeout(() => {
          if (performance.now() - at >= 3) longWaits++;
          a.lm.send(2, notify(answers));
        }, 1);
      },
    });
    const b = await h.node(2, { onFrame: (from, frame) => b.lm.send(from, frame) });
    link(a, b);
    await waitUp(a, b);
    a.lm.send(2, notify(0));
    await done;
    const acksDuring = a.lm.peerState(2)!.acksOut;
    expect(acksDuring).toBeLessThanOrEqual(longWaits);
    expect(b.lm.peerState(1)!.acksOut).toBe(0);
    // Once nothing more is sent, the last answer still gets its ack, alone.
    await waitFor(() => b.lm.peerState(1)!.unacked === 0, 'the last answer acknowledged', 5000);
    expect(a.lm.peerState(2)!.acksOut).toBe(acksDuring + 1);
    expect(b.lm.peerState(1)!.batchesOut).toBe(exchanges);
  });

  it.each([40, 1500])('with its window full, queues turn after turn (%i turns) and sends them in order, a window at a time, once acks return', async (turns) => {
    // Batches of one turn each (5 notifies fill 100 bytes): a flush sends part of the outbox.
    const a = await h.node(1, { windowFrames: 3, batchMaxBytes: 100 });
    const b = await h.node(2);
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    proxy.pause();
    // Turns of 5 frames: 3 data frames go out, the other turns wait in the outbox (1500 of them
    // make it give its storage back once drained).
    for (let t = 0; t < turns; t++) {
      for (let k = 0; k < 5; k++) a.lm.send(2, notify(t * 5 + k));
      await new Promise((r) => setImmediate(r));
    }
    const stalled = a.lm.peerState(2)!;
    expect(stalled.unacked).toBe(3);
    expect(stalled.queued).toBeGreaterThan(turns - 10);
    proxy.resume();
    await waitFor(() => b.frames.length === turns * 5, `${turns * 5} frames`);
    expectExactlyInOrder(args(b, 1), turns * 5);
    await waitFor(() => a.lm.peerState(2)!.unacked === 0, 'everything acknowledged');
    expect(a.lm.peerState(2)!.queued).toBe(0);
    // And it goes on working after the drain.
    for (let k = 0; k < 5; k++) a.lm.send(2, notify(turns * 5 + k));
    await waitFor(() => b.frames.length === turns * 5 + 5, 'frames after the drain');
    expectExactlyInOrder(args(b, 1), turns * 5 + 5);
  });

  it('splits a turn into data frames of at most batchMaxBytes', async () => {
    const [a, b] = await h.pair(1, 2, { batchMaxBytes: 1024 });
    const payload = new Uint8Array(300);
    for (let i = 0; i < 40; i++) a.lm.send(2, { k: 'send', dc: 1, id: i, src: 5, dst: 6, type: 1, payload, rec: false });
    await waitFor(() => b.frames.length === 40, '40 frames');
    const batches = a.lm.peerState(2)!.batchesOut;
    expect(batches).toBeGreaterThanOrEqual(10);
    expect(batches).toBeLessThanOrEqual(20);
    expect(b.frames.map((f) => (f.frame as { id: number }).id)).toEqual([...Array(40).keys()]);
  });

  it('survives its TCP connection being destroyed mid-stream, again and again', async () => {
    const a = await h.node(1);
    const b = await h.node(2);
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    // The next 6 connections die after relaying 50 kB, in the middle of a chunk.
    proxy.cutAfterBytes = 50_000;
    proxy.cutsLeft = 6;
    proxy.cut();
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      a.lm.send(2, notify(i));
      b.lm.send(1, notify(i));
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => b.frames.length >= N && a.frames.length >= N, 'all frames after cuts', 30_000);
    // Both sides' frames all acknowledged: nothing more (no duplicate) can still be delivered.
    await waitFor(() => a.lm.peerState(2)!.unacked === 0 && b.lm.peerState(1)!.unacked === 0, 'everything acknowledged');
    expectExactlyInOrder(args(b, 1), N);
    expectExactlyInOrder(args(a, 2), N);
    const sa = a.lm.peerState(2)!;
    const sb = b.lm.peerState(1)!;
    expect(proxy.cuts).toBeGreaterThanOrEqual(3);
    expect(sa.reconnects).toBeGreaterThanOrEqual(proxy.cuts);
    expect(sa.resent + sb.resent).toBeGreaterThan(0);
    expect(sa.duplicatesDropped + sb.duplicatesDropped).toBe(0);
    // Same incarnations: never reported down.
    expect(a.reports.some((r) => r.state === 'down')).toBe(false);
    expect(b.reports.some((r) => r.state === 'down')).toBe(false);
  });

  it('reports a restarted peer (new incarnation) down, then up with the new incarnation', async () => {
    const [a, b] = await h.pair(1, 2);
    a.lm.send(2, notify(0));
    await waitFor(() => b.frames.length === 1, 'first frame');
    await h.closeNode(b);
    const b2 = await h.node(2);
    expect(b2.incarnation).not.toBe(b.incarnation);
    link(a, b2);
    // (a's state alone is no sign: it was 'up' in the old session.)
    await waitFor(() => a.reports.some((r) => r.state === 'up' && r.inc === b2.incarnation), 'up with the new incarnation');
    const mine = a.reports.filter((r) => r.node === 2).map((r) => [r.state, r.inc]);
    // Possibly 'suspect' in between if the restart took a while.
    const downAt = mine.findIndex(([s]) => s === 'down');
    expect(downAt).toBeGreaterThan(0);
    expect(mine[0]).toEqual(['up', b.incarnation]);
    expect(mine[downAt]).toEqual(['down', b.incarnation]);
    expect(mine[mine.length - 1]).toEqual(['up', b2.incarnation]);
    // The new session starts afresh.
    a.lm.send(2, notify(1));
    await waitFor(() => b2.frames.length === 1, 'frame to the new incarnation');
    expect(a.lm.peerState(2)!.incarnation).toBe(b2.incarnation);
  });

  it('the accepting side sees a restarted dialer down, then up', async () => {
    const [a, b] = await h.pair(1, 2);
    await h.closeNode(a);
    const a2 = await h.node(1);
    link(a2, b);
    await waitUp(a2, b);
    const mine = b.reports.filter((r) => r.node === 1).map((r) => [r.state, r.inc]);
    expect(mine[0]).toEqual(['up', a.incarnation]);
    expect(mine).toContainEqual(['down', a.incarnation]);
    expect(mine[mine.length - 1]).toEqual(['up', a2.incarnation]);
    b.lm.send(1, notify(7));
    await waitFor(() => a2.frames.length === 1, 'frame to the new dialer');
  });

  it('detects a peer that stops answering: suspect, then down within deadMs; then up again', async () => {
    const a = await h.node(1);
    const b = await h.node(2);
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    proxy.blackhole = true;
    const t0 = Date.now();
    a.lm.send(2, notify(1)); // in flight when the peer goes silent: dropped at down
    await waitFor(() => a.reports.some((r) => r.state === 'down'), 'down', 10_000);
    const suspectAt = a.reports.find((r) => r.state === 'suspect')!.at - t0;
    const downAt = a.reports.find((r) => r.state === 'down')!.at - t0;
    expect(suspectAt).toBeLessThan(downAt);
    // A silent peer refuses nothing: down at deadMs of silence, which began with the last heartbeat
    // heard, up to heartbeatMs before the blackhole (and no later than 2 s past it on a loaded machine).
    expect(downAt).toBeGreaterThanOrEqual(FAST.deadMs! - FAST.heartbeatMs! - 10);
    expect(downAt).toBeLessThan(FAST.deadMs! + 2000);
    await waitFor(() => b.reports.some((r) => r.state === 'down'), 'down on the other side', 10_000);
    // Frames sent to a down peer are dropped and counted.
    const dropped = a.lm.peerState(2)!.dropped;
    expect(dropped).toBeGreaterThanOrEqual(1);
    a.lm.send(2, notify(2));
    expect(a.lm.peerState(2)!.dropped).toBe(dropped + 1);
    // The peer answers again: same incarnations, new session, reported up.
    proxy.blackhole = false;
    proxy.cut();
    await waitUp(a, b);
    expect(a.reports[a.reports.length - 1]).toMatchObject({ state: 'up', inc: b.incarnation });
    a.lm.send(2, notify(3));
    await waitFor(() => b.frames.length === 1, 'frame after recovery');
    expect(args(b, 1)).toEqual([3]);
  });

  it('a stall of our own event loop longer than deadMs does not take peers down', async () => {
    const [a, b] = await h.pair(1, 2);
    const until = Date.now() + FAST.deadMs! + 400;
    while (Date.now() < until) {
      // Busy: no timer, no I/O.
    }
    a.lm.send(2, notify(1));
    await waitFor(() => b.frames.length === 1, 'frame after the stall');
    // Heartbeats sent after that frame (at least heartbeatMs later, so the links were checked on
    // several ticks since the stall), by both sides.
    const outA = a.lm.peerState(2)!.bytesOut;
    const outB = b.lm.peerState(1)!.bytesOut;
    await waitFor(() => a.lm.peerState(2)!.bytesOut > outA && b.lm.peerState(1)!.bytesOut > outB, 'heartbeats after the stall');
    expect(a.reports.filter((r) => r.state === 'down')).toEqual([]);
    expect(b.reports.filter((r) => r.state === 'down')).toEqual([]);
  });

  it('queues frames sent before the first connection and delivers them', async () => {
    const a = await h.node(1);
    const b = await h.node(2);
    a.lm.setPeers([{ nodeId: 2, host: '127.0.0.1', port: b.port }]);
    for (let i = 0; i < 10; i++) a.lm.send(2, notify(i));
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: a.port }]);
    await waitFor(() => b.frames.length === 10, 'queued frames');
    expectExactlyInOrder(args(b, 1), 10);
  });

  it('reports a never-reachable peer down after deadMs and drops its frames', async () => {
    const a = await h.node(1);
    const t0 = Date.now();
    a.lm.setPeers([{ nodeId: 2, host: '127.0.0.1', port: 1 }]);
    a.lm.send(2, notify(0));
    await waitFor(() => a.reports.some((r) => r.node === 2 && r.state === 'down'), 'down', 10_000);
    expect(a.lm.peerState(2)).toMatchObject({ state: 'down', dropped: 1 });
    // Refused again and again, but it never had a link to lose: the full deadMs (a few ms of timer slack).
    expect(a.lm.peerState(2)!.connectsRefused).toBeGreaterThanOrEqual(3);
    expect(a.reports.find((r) => r.state === 'down')!.at - t0).toBeGreaterThanOrEqual(FAST.deadMs! - 5);
  });

  it('reports a send to a node that is not a peer as down, and counts it', async () => {
    const a = await h.node(1);
    a.lm.send(9, notify(0));
    await waitFor(() => a.reports.length === 1, 'report');
    expect(a.reports[0]).toMatchObject({ node: 9, state: 'down' });
    expect(a.lm.stats().unknownPeerDrops).toBe(1);
  });

  it('reports a peer removed from the list as down', async () => {
    const [a] = await h.pair(1, 2);
    a.lm.setPeers([]);
    expect(a.reports.filter((r) => r.node === 2).map((r) => r.state)).toEqual(['up', 'down']);
    expect(a.lm.peerState(2)).toBeUndefined();
  });

  it('compresses large batches with LZ4 when configured', async () => {
    const [a, b] = await h.pair(1, 2, { compressMinBytes: 256 });
    const payload = 'x'.repeat(10_000);
    for (let i = 0; i < 20; i++) a.lm.send(2, { k: 'reply', id: 1, dc: 1, src: 5, dst: 6, type: i, payload });
    await waitFor(() => b.frames.length === 20, '20 frames');
    expect(b.frames.every((f) => f.frame.k === 'reply' && f.frame.payload === payload)).toBe(true);
    expect(a.lm.peerState(2)!.bytesOut).toBeLessThan(20 * 10_000 / 4);
  });

  it('a throwing onFrame does not break the link', async () => {
    let n = 0;
    const [a, b] = await h.pair(1, 2, {
      onFrame: () => {
        n++;
        throw new Error('kernel bug');
      },
    });
    for (let i = 0; i < 5; i++) a.lm.send(2, notify(i));
    await waitFor(() => n === 5, 'five deliveries');
    expect(b.lm.stats().callbackErrors).toBe(5);
    expect(b.lm.peerState(1)!.state).toBe('up');
  });
});

describe('flow control for one-way senders (KernelTransport.backpressure)', () => {
  const SLOW = { ...FAST, suspectMs: 5000, deadMs: 10_000 };
  const N = 3000;

  /** Sends N notify frames from a to b, 50 per event-loop turn; the first backpressure promise seen. */
  async function flood(a: TestNode): Promise<{ room: Promise<void> | undefined }> {
    let room: Promise<void> | undefined;
    for (let i = 0; i < N; i++) {
      a.lm.send(2, notify(i));
      if (i % 50 === 49) {
        await new Promise((r) => setImmediate(r));
        room ??= a.lm.backpressure(2);
      }
    }
    // Wrapped: an async function returning a promise would wait for it.
    return { room };
  }

  it('makes notifiers wait while the peer does not keep up, and lets them go once it does, losing nothing', async () => {
    const a = await h.node(1, { timing: SLOW, windowFrames: 4, batchMaxBytes: 256, maxQueuedBytes: 4096 });
    const b = await h.node(2, { timing: SLOW });
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    expect(a.lm.backpressure(2)).toBeUndefined();
    proxy.pause();
    const { room } = await flood(a);
    expect(room).toBeInstanceOf(Promise);
    let released = false;
    void room!.then(() => (released = true));
    // Heartbeats go out (into the paused proxy; 32 bytes each with its tag) meanwhile: turn after turn, nothing releases the waiter.
    const out = a.lm.peerState(2)!.bytesOut;
    await waitFor(() => a.lm.peerState(2)!.bytesOut >= out + 3 * 32, 'three heartbeats while paused');
    expect(released).toBe(false);
    expect(a.lm.peerState(2)!.queuedBytes).toBeGreaterThan(4096);
    proxy.resume();
    await waitFor(() => released, 'room again');
    await waitFor(() => b.frames.length >= N, 'every frame');
    expectExactlyInOrder(args(b, 1), N);
    expect(a.lm.backpressure(2)).toBeUndefined();
  });

  it('never leaves a notifier waiting on a peer declared down', async () => {
    const a = await h.node(1, { windowFrames: 4, batchMaxBytes: 256, maxQueuedBytes: 4096 });
    const b = await h.node(2);
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    // Nothing gets through any more, on this connection or the next ones.
    proxy.blackhole = true;
    const { room } = await flood(a);
    expect(room).toBeInstanceOf(Promise);
    // FAST timing: down after 800 ms of silence; the waiter is released with the dropped queue.
    await room;
    expect(a.lm.peerState(2)!.state).toBe('down');
    expect(a.lm.backpressure(2)).toBeUndefined();
  });
});
