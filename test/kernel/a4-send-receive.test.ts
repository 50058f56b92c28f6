/**
 * A4 (reference §4, §2.2 send/receive): rendezvous with either side first; receive(ANY) vs a specific
 * source; FIFO per sender; a timed-out or aborted send is withdrawn (the receiver never sees it);
 * timeoutMs 0 fails at once when the call would block; delivery wins over a late timeout.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import type { Message } from '../../src/ipc/message.js';
import { Kernel, type Clock } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { ManualClock, isPending, track } from './helpers.js';

const T = { timeoutMs: 1000 };

function setup(clock: Clock = systemClock): Kernel {
  const k = new Kernel({ nodeId: 0, clock });
  k.createDc({ dcid: 0 });
  return k;
}

function queuedOn(k: Kernel, ep: number): number | undefined {
  return k.procs(0).find((r) => r.endpoint === ep)?.queued;
}

describe('A4: rendezvous', { timeout: 2000 }, () => {
  it('receiver first: the send completes at once and the message arrives stamped with the source', async () => {
    const k = setup();
    const a = k.bind(0);
    const b = k.bind(0);
    const r = track(b.receive(ANY, T));
    expect(await isPending(r)).toBe(true);
    await a.send(b.endpoint, { type: 42, payload: { n: 1, s: 'x', bytes: new Uint8Array([1, 2]) } }, T);
    const m = await r;
    expect(m).toEqual({ source: a.endpoint, type: 42, payload: { n: 1, s: 'x', bytes: new Uint8Array([1, 2]) } });
  });

  it('sender first: the send blocks until the receiver takes the message', async () => {
    const k = setup();
    const a = k.bind(0);
    const b = k.bind(0);
    const s = track(a.send(b.endpoint, { type: 7, payload: [1, 2, 3] }, T));
    expect(await isPending(s)).toBe(true);
    expect(queuedOn(k, b.endpoint)).toBe(1);
    const m = await b.receive(ANY, T);
    expect(m).toEqual({ source: a.endpoint, type: 7, payload: [1, 2, 3] });
    await expect(s).resolves.toBeUndefined();
    expect(queuedOn(k, b.endpoint)).toBe(0);
  });

  it('never trusts a source the sender wrote into the message', async () => {
    const k = setup();
    const a = k.bind(0);
    const b = k.bind(0);
    const forged = { source: 0, type: 1 } as unknown as { type: number };
    const r = track(b.receive(ANY, T));
    await a.send(b.endpoint, forged, T);
    await expect(r).resolves.toMatchObject({ source: a.endpoint });
  });

  it('counts sent and received messages in procs', async () => {
    const k = setup();
    const a = k.bind(0);
    const b = k.bind(0);
    const s = track(a.send(b.endpoint, { type: 1 }, T));
    await b.receive(ANY, T);
    await s;
    const r = track(b.receive(a.endpoint, T));
    await a.send(b.endpoint, { type: 2 }, T);
    await r;
    expect(k.procs(0).find((x) => x.endpoint === a.endpoint)?.counters.lclSent).toBe(2);
    expect(k.procs(0).find((x) => x.endpoint === b.endpoint)?.counters.received).toBe(2);
  });
});

describe('A4: receive(ANY) vs a specific source', { timeout: 2000 }, () => {
  it('a specific receive skips earlier senders; ANY takes the oldest', async () => {
    const k = setup();
    const r = k.bind(0);
    const a = k.bind(0);
    const b = k.bind(0);
    const c = k.bind(0);
    const sa = track(a.send(r.endpoint, { type: 1 }, T));
    const sb = track(b.send(r.endpoint, { type: 2 }, T));
    const sc = track(c.send(r.endpoint, { type: 3 }, T));
    await expect(r.receive(b.endpoint, T)).resolves.toMatchObject({ source: b.endpoint, type: 2 });
    await expect(sb).resolves.toBeUndefined();
    expect(await isPending(sa)).toBe(true);
    expect(await isPending(sc)).toBe(true);
    await expect(r.receive(ANY, T)).resolves.toMatchObject({ source: a.endpoint, type: 1 });
    await expect(r.receive(ANY, T)).resolves.toMatchObject({ source: c.endpoint, type: 3 });
    await Promise.all([sa, sc]);
  });

  it('a receiver blocked on one source is not woken by another; that sender queues', async () => {
    const k = setup();
    const r = k.bind(0);
    const a = k.bind(0);
    const b = k.bind(0);
    const fromA = track(r.receive(a.endpoint, T));
    const sb = track(b.send(r.endpoint, { type: 2 }, T));
    expect(await isPending(fromA)).toBe(true);
    expect(await isPending(sb)).toBe(true);
    expect(queuedOn(k, r.endpoint)).toBe(1);
    await a.send(r.endpoint, { type: 1 }, T);
    await expect(fromA).resolves.toMatchObject({ source: a.endpoint, type: 1 });
    await expect(r.receive(ANY, T)).resolves.toMatchObject({ source: b.endpoint, type: 2 });
    await sb;
  });

  it('receiving from oneself is refused with EDVSBADSRCDST', async () => {
    const k = setup();
    const r = k.bind(0);
    await expect(r.receive(r.endpoint, T)).rejects.toMatchObject({ code: 'EDVSBADSRCDST', errno: -103 });
  });
});

describe('A4: FIFO per sender', { timeout: 2000 }, () => {
  it('delivers one sender’s messages in the order it sent them', async () => {
    const k = setup();
    const a = k.bind(0);
    const r = k.bind(0);
    const sends = [0, 1, 2, 3, 4].map((i) => track(a.send(r.endpoint, { type: 100 + i, payload: i }, T)));
    const got: Message[] = [];
    for (let i = 0; i < 5; i++) got.push(await r.receive(a.endpoint, T));
    expect(got.map((m) => m.type)).toEqual([100, 101, 102, 103, 104]);
    await Promise.all(sends);
  });

  it('keeps each sender in order when senders interleave', async () => {
    const k = setup();
    const r = k.bind(0);
    const a = k.bind(0);
    const b = k.bind(0);
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 4; i++) {
      sends.push(track(a.send(r.endpoint, { type: i, payload: 'a' }, T)));
      sends.push(track(b.send(r.endpoint, { type: i, payload: 'b' }, T)));
    }
    const got: Message[] = [];
    for (let i = 0; i < 8; i++) got.push(await r.receive(ANY, T));
    expect(got.filter((m) => m.source === a.endpoint).map((m) => m.type)).toEqual([0, 1, 2, 3]);
    expect(got.filter((m) => m.source === b.endpoint).map((m) => m.type)).toEqual([0, 1, 2, 3]);
    // Across senders the queue is FIFO too: arrival order.
    expect(got.map((m) => m.payload)).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
    await Promise.all(sends);
  });
});

describe('A4: timeouts and aborts', { timeout: 2000 }, () => {
  it('a timed-out send is withdrawn: EDVSTIMEDOUT, and the receiver never sees it', async () => {
    const clock = new ManualClock();
    const k = setup(clock);
    const a = k.bind(0);
    const b = k.bind(0);
    const r = k.bind(0);
    const sa = track(a.send(r.endpoint, { type: 1 }, { timeoutMs: 30 }));
    const sb = track(b.send(r.endpoint, { type: 2 }, { timeoutMs: 60 }));
    clock.advance(29);
    expect(await isPending(sa)).toBe(true);
    clock.advance(1);
    await expect(sa).rejects.toMatchObject({ code: 'EDVSTIMEDOUT', errno: -61 });
    expect(queuedOn(k, r.endpoint)).toBe(1);
    expect(k.procs(0).find((x) => x.endpoint === a.endpoint)?.rtsFlags).toBe(0);
    // The receiver gets b's message, not a's.
    await expect(r.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ source: b.endpoint, type: 2 });
    await expect(sb).resolves.toBeUndefined();
    await expect(r.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(clock.pending).toBe(0);
  });

  it('delivery wins: a send taken before its timeout fires reports success', async () => {
    const clock = new ManualClock();
    const k = setup(clock);
    const a = k.bind(0);
    const r = k.bind(0);
    const s = track(a.send(r.endpoint, { type: 1 }, { timeoutMs: 10 }));
    await expect(r.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ type: 1 });
    clock.advance(100);
    await expect(s).resolves.toBeUndefined();
  });

  it('a timed-out receive stops waiting: a later sender queues instead of delivering to it', async () => {
    const clock = new ManualClock();
    const k = setup(clock);
    const a = k.bind(0);
    const r = k.bind(0);
    const rv = track(r.receive(ANY, { timeoutMs: 5 }));
    clock.advance(5);
    await expect(rv).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    const s = track(a.send(r.endpoint, { type: 3 }, { timeoutMs: 0 }));
    await expect(s).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    const s2 = track(a.send(r.endpoint, { type: 4 }, T));
    await expect(r.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ type: 4 });
    await s2;
  });

  it('timeoutMs 0 fails at once when the call would block, and succeeds when it would not', async () => {
    const k = setup();
    const a = k.bind(0);
    const r = k.bind(0);
    await expect(a.send(r.endpoint, { type: 1 }, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(r.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(queuedOn(k, r.endpoint)).toBe(0);
    // Receiver waiting: a non-blocking send goes through.
    const rv = track(r.receive(ANY, T));
    await expect(a.send(r.endpoint, { type: 2 }, { timeoutMs: 0 })).resolves.toBeUndefined();
    await expect(rv).resolves.toMatchObject({ type: 2 });
    // Sender queued: a non-blocking receive takes it.
    const s = track(a.send(r.endpoint, { type: 3 }, T));
    await expect(r.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ type: 3 });
    await s;
  });

  it('an aborted send fails with EDVSINTR and is withdrawn', async () => {
    const k = setup();
    const a = k.bind(0);
    const r = k.bind(0);
    const ac = new AbortController();
    const s = track(a.send(r.endpoint, { type: 1 }, { signal: ac.signal }));
    expect(await isPending(s)).toBe(true);
    ac.abort();
    await expect(s).rejects.toMatchObject({ code: 'EDVSINTR', errno: -4 });
    await expect(r.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('an aborted receive fails with EDVSINTR and frees the receive side', async () => {
    const k = setup();
    const a = k.bind(0);
    const r = k.bind(0);
    const ac = new AbortController();
    const rv = track(r.receive(ANY, { signal: ac.signal, timeoutMs: 1000 }));
    ac.abort();
    await expect(rv).rejects.toMatchObject({ code: 'EDVSINTR' });
    const rv2 = track(r.receive(ANY, T));
    await a.send(r.endpoint, { type: 5 }, T);
    await expect(rv2).resolves.toMatchObject({ type: 5 });
  });

  it('an already-aborted signal fails at once with EDVSINTR, before anything is queued', async () => {
    const k = setup();
    const a = k.bind(0);
    const r = k.bind(0);
    const signal = AbortSignal.abort();
    await expect(a.send(r.endpoint, { type: 1 }, { signal })).rejects.toMatchObject({ code: 'EDVSINTR' });
    await expect(r.receive(ANY, { signal })).rejects.toMatchObject({ code: 'EDVSINTR' });
    await expect(a.sendrec(r.endpoint, { type: 1 }, { signal })).rejects.toMatchObject({ code: 'EDVSINTR' });
    expect(queuedOn(k, r.endpoint)).toBe(0);
  });

  it('a second receive while one is blocked gets EDVSBUSY', async () => {
    const k = setup();
    const a = k.bind(0);
    const r = k.bind(0);
    const first = track(r.receive(ANY, T));
    await expect(r.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSBUSY', errno: -16 });
    await expect(r.receive(a.endpoint, T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    await a.send(r.endpoint, { type: 1 }, T);
    await expect(first).resolves.toMatchObject({ source: a.endpoint });
  });
});
