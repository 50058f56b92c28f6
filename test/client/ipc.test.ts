/** M3-IPC over the process socket: the same semantics and errors as the in-process Process. */
import { afterEach, describe, expect, it } from 'vitest';
import { ANY, DvsError, ERRNO, NOTIFY_MESSAGE, SELF, type DvsClient, type RemoteProcess } from '../../src/client/index.js';
import type { Process } from '../../src/kernel/process.js';
import { performance } from 'node:perf_hooks';
import { DC, SERVER_SLOT, isReceiving, queuedOn, socketOf, startHarness, track, until, watchSettled, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function two(): Promise<{ h: Harness; c: DvsClient; a: RemoteProcess; b: RemoteProcess; local: Process }> {
  h = await startHarness();
  const c = await h.connect();
  const a = await c.bind(DC, { name: 'a' });
  const b = await c.bind(DC, { name: 'b' });
  const local = h.kernel.bind(DC, { name: 'local' });
  return { h, c, a, b, local };
}

async function expectCode(p: Promise<unknown>, code: keyof typeof ERRNO): Promise<DvsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DvsError);
  expect((err as DvsError).code).toBe(code);
  expect((err as DvsError).errno).toBe(ERRNO[code]);
  return err as DvsError;
}

describe('process protocol: M3-IPC calls', { timeout: 10_000 }, () => {
  it('bind gives distinct endpoints, several per connection, listed in the process table', async () => {
    const { c, a, b } = await two();
    expect(a.endpoint).not.toBe(b.endpoint);
    expect(a.system).toBe(false);
    const rows = await c.procs(DC);
    expect(rows.map((r) => r.name).sort()).toEqual(['a', 'b', 'local']);
    const s = await c.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
    expect(s.slot).toBe(SERVER_SLOT);
    expect(s.system).toBe(true);
    await expectCode(c.bind(DC, { slot: SERVER_SLOT }), 'EDVSSLOTUSED');
    await expectCode(c.bind(77), 'EDVSBADDCID');
  });

  it('send then receive, and receive then send, between clients and with an in-process process', async () => {
    const { h, c, a, b, local } = await two();
    // send first: it blocks until taken.
    const sent = a.send(b.endpoint, { type: 1, payload: { n: 1, s: 'x', bytes: new Uint8Array([1, 2, 3]) } });
    const sentState = watchSettled(sent);
    await until(() => queuedOn(h.kernel, b.endpoint) === 1, 5000, 'the send queued');
    // A round trip on the same connection: had the send completed, its answer would have come first.
    await c.ping();
    expect(sentState.settled).toBe(false);
    const m1 = await b.receive(ANY);
    await sent;
    expect(m1.source).toBe(a.endpoint);
    expect(m1.type).toBe(1);
    expect(m1.payload).toMatchObject({ n: 1, s: 'x' });
    expect(Array.from((m1.payload as { bytes: Uint8Array }).bytes)).toEqual([1, 2, 3]);
    // receive first.
    const r = b.receive(a.endpoint);
    await until(() => isReceiving(h.kernel, b.endpoint), 5000, 'b receiving');
    await a.send(b.endpoint, { type: 2 });
    const m2 = await r;
    expect(m2).toEqual({ source: a.endpoint, type: 2, payload: undefined });
    // Client -> in-process and back.
    const lr = local.receive(ANY);
    await a.send(local.endpoint, { type: 3, payload: [1, null, true] });
    expect(await lr).toEqual({ source: a.endpoint, type: 3, payload: [1, null, true] });
    const cr = a.receive(local.endpoint);
    await local.send(a.endpoint, { type: 4, payload: 'hi' });
    expect(await cr).toEqual({ source: local.endpoint, type: 4, payload: 'hi' });
  });

  it('pipelined sends from one endpoint are delivered in call order', async () => {
    const { a, local } = await two();
    const sends = Array.from({ length: 20 }, (_, i) => a.send(local.endpoint, { type: i }));
    for (let i = 0; i < 20; i++) expect((await local.receive(a.endpoint)).type).toBe(i);
    await Promise.all(sends);
  });

  it('sendrec / receiveRequest / reply with a client server and an in-process server', async () => {
    h = await startHarness();
    const c = await h.connect();
    const srv = await c.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
    const cli = await c.bind(DC);
    const local = h.kernel.bind(DC);
    const serve = (async () => {
      for (let i = 0; i < 2; i++) {
        const req = await srv.receiveRequest();
        await srv.reply(req.source, { type: req.type + 100, payload: { echo: req.payload } });
      }
    })();
    expect(await cli.sendrec(srv.endpoint, { type: 1, payload: 'a' })).toEqual({ source: srv.endpoint, type: 101, payload: { echo: 'a' } });
    expect(await local.sendrec(srv.endpoint, { type: 2, payload: 'b' })).toEqual({ source: srv.endpoint, type: 102, payload: { echo: 'b' } });
    await serve;
    // In-process server, client caller.
    const lsrv = h.kernel.bind(DC, { slot: SERVER_SLOT + 1 });
    const lserve = (async () => {
      const req = await lsrv.receiveRequest();
      await lsrv.reply(req.source, { type: 7, payload: req.payload });
    })();
    expect(await cli.sendrec(lsrv.endpoint, { type: 1, payload: 42 })).toEqual({ source: lsrv.endpoint, type: 7, payload: 42 });
    await lserve;
    // replyAndReceive: the reply, then the next request, in one request on the socket.
    const looping = (async () => {
      let req = await srv.receiveRequest();
      req = await srv.replyAndReceive(req.source, { type: 201, payload: req.payload });
      await srv.reply(req.source, { type: 202, payload: req.payload });
    })();
    expect(await cli.sendrec(srv.endpoint, { type: 1, payload: 'x' })).toEqual({ source: srv.endpoint, type: 201, payload: 'x' });
    expect(await local.sendrec(srv.endpoint, { type: 1, payload: 'y' })).toEqual({ source: srv.endpoint, type: 202, payload: 'y' });
    await looping;
    await expectCode(srv.replyAndReceive(cli.endpoint, { type: 1 }, { timeoutMs: 100 }), 'EDVSPROCSTS');
    // reply to someone not waiting: EDVSPROCSTS; receiveRequest by a user process: EDVSTRAPDENIED.
    await expectCode(srv.reply(cli.endpoint, { type: 1 }), 'EDVSPROCSTS');
    await expectCode(cli.receiveRequest({ timeoutMs: 0 }), 'EDVSTRAPDENIED');
  });

  it('notify: pending, overrun, delivered, and the notification message', async () => {
    h = await startHarness();
    const c = await h.connect();
    const s1 = await c.bind(DC, { slot: 2 });
    const s2 = await c.bind(DC, { slot: 3 });
    const user = await c.bind(DC);
    expect(await s1.notify(s2.endpoint, { arg: 1 })).toBe('pending');
    expect(await s1.notify(s2.endpoint, { arg: 4 })).toBe('overrun');
    // The timestamp is the daemon's performance.now() (the same clock here) when the notification
    // is handed to the receiver, not when it was sent.
    const beforeReceive = performance.now();
    const m = await s2.receive(ANY);
    const afterReceive = performance.now();
    expect(m.source).toBe(s1.endpoint);
    expect(m.type & ~0xfff).toBe(NOTIFY_MESSAGE);
    expect((m.payload as { arg: number }).arg).toBe(5);
    const ts = (m.payload as { timestamp: number }).timestamp;
    expect(ts).toBeGreaterThanOrEqual(beforeReceive);
    expect(ts).toBeLessThanOrEqual(afterReceive);
    const r = s2.receive(ANY);
    await until(() => isReceiving(h!.kernel, s2.endpoint), 5000, 's2 receiving');
    expect(await s1.notify(s2.endpoint)).toBe('delivered');
    expect((await r).source).toBe(s1.endpoint);
    await expectCode(s1.notify(user.endpoint), 'EDVSPRIVILEGES');
    await expectCode(user.notify(s1.endpoint), 'EDVSTRAPDENIED');
    await expectCode(s1.notify(s2.endpoint, { arg: -1 }), 'EDVSBADVALUE');
  });

  it('wakeup interrupts a blocked receive, or flags the next receive(ANY)', async () => {
    const { h, c, a, b } = await two();
    const r = track(a.receive(ANY));
    await until(() => isReceiving(h.kernel, a.endpoint), 5000, 'a receiving');
    await c.wakeup(DC, a.endpoint);
    await expectCode(r, 'EDVSWOKENUP');
    await c.wakeup(DC, b.endpoint);
    await expectCode(b.receive(ANY), 'EDVSWOKENUP');
    await expectCode(c.wakeup(DC, 150), 'EDVSNOTBIND');
  });

  it('timeouts: 0 fails at once when the call would block, a positive one bounds the wait, and a timed-out send is withdrawn', async () => {
    const { a, b } = await two();
    await expectCode(a.receive(ANY, { timeoutMs: 0 }), 'EDVSTIMEDOUT');
    await expectCode(a.send(b.endpoint, { type: 1 }, { timeoutMs: 0 }), 'EDVSTIMEDOUT');
    // A 60 ms timeout does not fire before 60 ms (a few ms allowed for the clocks' granularity).
    const t0 = Date.now();
    await expectCode(a.receive(b.endpoint, { timeoutMs: 60 }), 'EDVSTIMEDOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
    await expectCode(a.send(b.endpoint, { type: 9 }, { timeoutMs: 30 }), 'EDVSTIMEDOUT');
    await expectCode(b.receive(ANY, { timeoutMs: 0 }), 'EDVSTIMEDOUT');
    await expectCode(a.sendrec(b.endpoint, { type: 1 }, { timeoutMs: 30 }), 'EDVSTIMEDOUT');
    await expectCode(a.receive(ANY, { timeoutMs: -5 }), 'EDVSBADVALUE');
    // After the timeouts the endpoints work normally.
    const r = b.receive(a.endpoint, { timeoutMs: 1000 });
    await a.send(b.endpoint, { type: 5 }, { timeoutMs: 1000 });
    expect((await r).type).toBe(5);
  });

  it('abort: an AbortSignal cancels the call in the daemon with EDVSINTR and withdraws a send', async () => {
    const { h, a, b } = await two();
    const ac = new AbortController();
    const r = track(a.receive(ANY, { signal: ac.signal }));
    await until(() => isReceiving(h.kernel, a.endpoint), 5000, 'a receiving');
    ac.abort();
    await expectCode(r, 'EDVSINTR');
    const ac2 = new AbortController();
    const s = track(a.send(b.endpoint, { type: 3 }, { signal: ac2.signal }));
    await until(() => queuedOn(h.kernel, b.endpoint) === 1, 5000, 'the send queued');
    ac2.abort();
    await expectCode(s, 'EDVSINTR');
    expect(queuedOn(h.kernel, b.endpoint)).toBe(0);
    await expectCode(b.receive(ANY, { timeoutMs: 0 }), 'EDVSTIMEDOUT');
    const ac3 = new AbortController();
    ac3.abort();
    await expectCode(a.receive(ANY, { signal: ac3.signal }), 'EDVSINTR');
    const ac4 = new AbortController();
    const w = track(a.sendrec(b.endpoint, { type: 1 }, { signal: ac4.signal }));
    const req = await b.receive(ANY);
    expect(req.source).toBe(a.endpoint);
    ac4.abort();
    await expectCode(w, 'EDVSINTR');
    // The endpoint's receive side is free again.
    await expectCode(a.receive(ANY, { timeoutMs: 0 }), 'EDVSTIMEDOUT');
  });

  it('errors cross the socket with their code and errno', async () => {
    const { c, a, b } = await two();
    const e1 = await expectCode(a.send(150, { type: 1 }), 'EDVSNOTBIND');
    expect(e1.message).toMatch(/not bound/);
    expect(e1.details).toMatchObject({ endpoint: 150 });
    await expectCode(a.send(a.endpoint, { type: 1 }), 'EDVSBADDEST');
    await expectCode(a.send(SELF, { type: 1 }), 'EDVSBADDEST');
    await expectCode(a.send(ANY, { type: 1 }), 'EDVSENDPOINT');
    await expectCode(a.send(100_000, { type: 1 }), 'EDVSRANGE');
    await expectCode(a.send(b.endpoint, { type: 2 ** 40 }), 'EDVSBADVALUE');
    await expectCode(a.send(b.endpoint, { type: 1, payload: { f: () => 1 } as never }), 'EDVSBADVALUE');
    const r = track(a.receive(ANY));
    await expectCode(a.receive(ANY), 'EDVSBUSY');
    await c.wakeup(DC, a.endpoint);
    await expectCode(r, 'EDVSWOKENUP');
    // A stale generation after rebinding a slot.
    const slot = b.slot;
    const old = b.endpoint;
    await b.unbind();
    await expectCode(a.send(old, { type: 1 }), 'EDVSDSTDIED');
    const b2 = await c.bind(DC, { slot });
    expect(b2.generation).toBe(1);
    await expectCode(a.send(old, { type: 1 }), 'EDVSENDPOINT');
    await expectCode(b.send(a.endpoint, { type: 1 }), 'EDVSNOTBIND');
  });

  it('oversized payloads fail with EDVSMSGSIZE, whether the kernel or the frame limit catches them', async () => {
    h = await startHarness({ limits: { maxPayloadBytes: 1024, maxCopyChunk: 1000 }, server: { maxFrameBytes: 8192 } });
    const c = await h.connect();
    const a = await c.bind(DC);
    const b = await c.bind(DC);
    await expectCode(a.send(b.endpoint, { type: 1, payload: new Uint8Array(2000) }), 'EDVSMSGSIZE');
    await expectCode(a.send(b.endpoint, { type: 1, payload: new Uint8Array(100_000) }), 'EDVSMSGSIZE');
    // A raw client that skips the local check: the kernel refuses it, the connection survives.
    const raw = await h.rawHello();
    raw.send({ id: 1, op: 'bind', dcid: DC });
    const bound = await raw.next();
    const ep = (bound.result as { endpoint: number }).endpoint;
    raw.send({ id: 2, op: 'send', dcid: DC, endpoint: ep, dst: b.endpoint, type: 1, payload: 'x'.repeat(3000), timeoutMs: 0 });
    expect(await raw.next()).toMatchObject({ id: 2, ok: false, error: { code: 'EDVSMSGSIZE', errno: -73 } });
    raw.send({ id: 3, op: 'ping' });
    expect(await raw.next()).toMatchObject({ id: 3, ok: true });
    // A payload within the limit passes.
    const r = b.receive(a.endpoint);
    await a.send(b.endpoint, { type: 1, payload: new Uint8Array(1000) });
    expect(((await r).payload as Uint8Array).byteLength).toBe(1000);
  });

  it('the source of a message is stamped by the kernel, never taken from the request', async () => {
    const { h, a, local } = await two();
    const raw = await h.rawHello();
    raw.send({ id: 1, op: 'bind', dcid: DC });
    const ep = ((await raw.next()).result as { endpoint: number }).endpoint;
    const r = local.receive(ANY);
    raw.send({ id: 2, op: 'send', dcid: DC, endpoint: ep, dst: local.endpoint, type: 1, source: a.endpoint, src: a.endpoint, payload: 1 });
    expect((await r).source).toBe(ep);
    expect(await raw.next()).toMatchObject({ id: 2, ok: true });
    // And a connection cannot act for an endpoint it did not bind.
    raw.send({ id: 3, op: 'send', dcid: DC, endpoint: a.endpoint, dst: local.endpoint, type: 1, timeoutMs: 0 });
    expect(await raw.next()).toMatchObject({ id: 3, ok: false, error: { code: 'EDVSNOTBIND' } });
  });

  it('calls complete out of order on one connection', async () => {
    const { c, a, b } = await two();
    const slow = a.receive(b.endpoint);
    const slowState = watchSettled(slow);
    // The ping, written after the receive, is answered while the receive still waits.
    await c.ping();
    expect(slowState.settled).toBe(false);
    await b.send(a.endpoint, { type: 1 });
    expect((await slow).type).toBe(1);
  });

  it('waitForBind and waitForUnbind', async () => {
    h = await startHarness();
    const c = await h.connect();
    const w = c.waitForBind(DC, 50, { timeoutMs: 5000 });
    // Requests of a connection are handled in order: once the ping is answered, the wait is registered.
    await c.ping();
    const p = await c.bind(DC, { slot: 50 });
    expect(await w).toBe(p.endpoint);
    await expectCode(c.waitForBind(DC, 51, { timeoutMs: 30 }), 'EDVSTIMEDOUT');
    const u = c.waitForUnbind(DC, p.endpoint);
    await c.ping();
    await p.unbind();
    expect(await u).toBe(p.endpoint);
    const ac = new AbortController();
    const w2 = track(c.waitForBind(DC, 52, { signal: ac.signal }));
    ac.abort();
    await expectCode(w2, 'EDVSINTR');
  });

  it('the local guard fails a call whose daemon never answers', async () => {
    h = await startHarness();
    const c = await h.connect({ localGraceMs: 50 });
    const a = await c.bind(DC);
    // The client stops reading its socket: the daemon's answer at the call's timeout is never read,
    // so the client's own guard fails the call, 20 ms (timeoutMs) + 0 (settleMs) + 50 ms
    // (localGraceMs) after it started; well within a second.
    const socket = socketOf(c);
    socket.pause();
    const p = track(a.receive(ANY, { timeoutMs: 20 }));
    const t0 = Date.now();
    await expectCode(p, 'EDVSTIMEDOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(65);
    expect(Date.now() - t0).toBeLessThan(1000);
    socket.resume();
  });
});
