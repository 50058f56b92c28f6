/**
 * A5 (reference §4, §2.2 sendrec/rcvrqst/reply): sendrec is an atomic request/reply; reply only
 * reaches a peer blocked in sendrec with the caller whose request was taken (else EDVSPROCSTS, even
 * while the request is still queued); a second receive-side call on one endpoint is EDVSBUSY.
 */
import { describe, expect, it } from 'vitest';
import { ANY, SELF } from '../../src/ipc/endpoint.js';
import { Kernel, MISC, RTS, type Clock, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { ManualClock, isPending, track } from './helpers.js';

const T = { timeoutMs: 1000 };

function setup(clock: Clock = systemClock): { k: Kernel; server: Process; client: Process } {
  const k = new Kernel({ nodeId: 0, clock });
  k.createDc({ dcid: 0 });
  return { k, server: k.bind(0, { slot: 1, name: 'server' }), client: k.bind(0, { name: 'client' }) };
}

describe('A5: sendrec with receiveRequest/reply', { timeout: 2000 }, () => {
  it('server first: request delivered, reply returned to the client', async () => {
    const { server, client } = setup();
    const req = track(server.receiveRequest(T));
    const sr = track(client.sendrec(server.endpoint, { type: 10, payload: { op: 'get', key: 'a' } }, T));
    const m = await req;
    expect(m).toEqual({ source: client.endpoint, type: 10, payload: { op: 'get', key: 'a' } });
    expect(await isPending(sr)).toBe(true);
    await expect(server.reply(m.source, { type: 0, payload: { value: 42 } })).resolves.toBeUndefined();
    await expect(sr).resolves.toEqual({ source: server.endpoint, type: 0, payload: { value: 42 } });
  });

  it('client first: the request queues, then the server takes it and replies', async () => {
    const { k, server, client } = setup();
    const sr = track(client.sendrec(server.endpoint, { type: 11 }, T));
    const row = k.procs(0).find((r) => r.endpoint === client.endpoint)!;
    expect(row.rtsFlags & RTS.SENDING).toBe(RTS.SENDING);
    expect(row.miscFlags & MISC.ATOMIC).toBe(MISC.ATOMIC);
    expect(row.sendto).toBe(server.endpoint);
    const m = await server.receiveRequest(T);
    expect(m).toMatchObject({ source: client.endpoint, type: 11 });
    const row2 = k.procs(0).find((r) => r.endpoint === client.endpoint)!;
    expect(row2.rtsFlags).toBe(RTS.RECEIVING);
    expect(row2.getfrom).toBe(server.endpoint);
    await server.reply(client.endpoint, { type: 1 });
    await expect(sr).resolves.toMatchObject({ source: server.endpoint, type: 1 });
    expect(k.procs(0).every((r) => r.rtsFlags === 0 && r.miscFlags === 0)).toBe(true);
  });

  it('serves several clients in arrival order, each reply reaching its own client', async () => {
    const { k, server } = setup();
    const clients = [k.bind(0), k.bind(0), k.bind(0)];
    const calls = clients.map((c, i) => track(c.sendrec(server.endpoint, { type: 20 + i, payload: i }, T)));
    for (let i = 0; i < clients.length; i++) {
      const m = await server.receiveRequest(T);
      expect(m.source).toBe(clients[i]!.endpoint);
      await server.reply(m.source, { type: 0, payload: (m.payload as number) * 10 });
    }
    const replies = await Promise.all(calls);
    expect(replies.map((r) => r.payload)).toEqual([0, 10, 20]);
  });

  it('receive(ANY) also takes a sendrec request, and a plain send from the server completes it', async () => {
    const { server, client } = setup();
    const sr = track(client.sendrec(server.endpoint, { type: 5 }, T));
    await expect(server.receive(ANY, T)).resolves.toMatchObject({ source: client.endpoint, type: 5 });
    await server.send(client.endpoint, { type: 6 }, T);
    await expect(sr).resolves.toMatchObject({ source: server.endpoint, type: 6 });
  });

  it('while awaiting its reply the client accepts nothing from anyone else', async () => {
    const { k, server, client } = setup();
    const other = k.bind(0);
    const sr = track(client.sendrec(server.endpoint, { type: 5 }, T));
    await server.receiveRequest(T);
    const intruder = track(other.send(client.endpoint, { type: 99 }, T));
    expect(await isPending(intruder)).toBe(true);
    await server.reply(client.endpoint, { type: 1 });
    await expect(sr).resolves.toMatchObject({ type: 1 });
    // The intruder's message waits for a real receive.
    await expect(client.receive(ANY, T)).resolves.toMatchObject({ source: other.endpoint, type: 99 });
    await intruder;
  });

  it('a sendrec that times out while queued is withdrawn; the server never sees it', async () => {
    const clock = new ManualClock();
    const { server, client } = setup(clock);
    const sr = track(client.sendrec(server.endpoint, { type: 5 }, { timeoutMs: 20 }));
    clock.advance(20);
    await expect(sr).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(server.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    // The client is free again.
    const req = track(server.receiveRequest(T));
    const sr2 = track(client.sendrec(server.endpoint, { type: 6 }, T));
    await expect(req).resolves.toMatchObject({ type: 6 });
    await server.reply(client.endpoint, { type: 0 });
    await expect(sr2).resolves.toMatchObject({ type: 0 });
  });

  it('a sendrec that times out awaiting the reply makes the late reply fail with EDVSPROCSTS', async () => {
    const clock = new ManualClock();
    const { server, client } = setup(clock);
    const sr = track(client.sendrec(server.endpoint, { type: 5 }, { timeoutMs: 20 }));
    await server.receiveRequest({ timeoutMs: 0 });
    clock.advance(20);
    await expect(sr).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(server.reply(client.endpoint, { type: 0 })).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
  });

  it('an aborted sendrec fails with EDVSINTR', async () => {
    const { server, client } = setup();
    const ac = new AbortController();
    const sr = track(client.sendrec(server.endpoint, { type: 5 }, { signal: ac.signal }));
    await server.receiveRequest(T);
    ac.abort();
    await expect(sr).rejects.toMatchObject({ code: 'EDVSINTR' });
    await expect(server.reply(client.endpoint, { type: 0 })).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
  });
});

describe('A5: reply to a process that is not waiting', { timeout: 2000 }, () => {
  it('gives EDVSPROCSTS to a process not in IPC at all, and never blocks or queues', async () => {
    const { server, client } = setup();
    await expect(server.reply(client.endpoint, { type: 1 })).rejects.toMatchObject({ code: 'EDVSPROCSTS', errno: -324 });
    // Nothing was queued for the client.
    await expect(client.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('gives EDVSPROCSTS to a client whose sendrec request is still queued', async () => {
    const { server, client } = setup();
    const sr = track(client.sendrec(server.endpoint, { type: 1 }, T));
    await expect(server.reply(client.endpoint, { type: 2 })).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
    expect(await isPending(sr)).toBe(true);
    await server.receiveRequest(T);
    await server.reply(client.endpoint, { type: 3 });
    await expect(sr).resolves.toMatchObject({ type: 3 });
  });

  it('gives EDVSPROCSTS to a process in a plain receive, even from the replier', async () => {
    const { server, client } = setup();
    const rv = track(client.receive(server.endpoint, T));
    await expect(server.reply(client.endpoint, { type: 1 })).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
    await server.send(client.endpoint, { type: 2 }, T);
    await expect(rv).resolves.toMatchObject({ type: 2 });
  });

  it('gives EDVSPROCSTS to a client in sendrec with another server', async () => {
    const { k, server, client } = setup();
    const other = k.bind(0, { slot: 2 });
    const sr = track(client.sendrec(other.endpoint, { type: 1 }, T));
    await other.receiveRequest(T);
    await expect(server.reply(client.endpoint, { type: 9 })).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
    await other.reply(client.endpoint, { type: 0 });
    await expect(sr).resolves.toMatchObject({ source: other.endpoint, type: 0 });
  });

  it('gives EDVSPROCSTS to a second reply', async () => {
    const { server, client } = setup();
    const sr = track(client.sendrec(server.endpoint, { type: 1 }, T));
    await server.receiveRequest(T);
    await server.reply(client.endpoint, { type: 0 });
    await expect(server.reply(client.endpoint, { type: 0 })).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
    await expect(sr).resolves.toMatchObject({ type: 0 });
  });

  it('refuses a reply to oneself, to SELF and to a dead client', async () => {
    const { server, client } = setup();
    await expect(server.reply(server.endpoint, { type: 0 })).rejects.toMatchObject({ code: 'EDVSBADDEST' });
    await expect(server.reply(SELF, { type: 0 })).rejects.toMatchObject({ code: 'EDVSBADDEST' });
    await client.unbind();
    await expect(server.reply(client.endpoint, { type: 0 })).rejects.toMatchObject({ code: 'EDVSDSTDIED' });
  });
});

describe('A5: replyAndReceive, a server loop step in one call', { timeout: 2000 }, () => {
  it('replies to the client, then takes the next request', async () => {
    const { k, server } = setup();
    const [a, b] = [k.bind(0), k.bind(0)];
    const ra = track(a.sendrec(server.endpoint, { type: 1, payload: 'a' }, T));
    const m1 = await server.receiveRequest(T);
    const next = track(server.replyAndReceive(m1.source, { type: 101, payload: 'A' }, T));
    await expect(ra).resolves.toEqual({ source: server.endpoint, type: 101, payload: 'A' });
    expect(await isPending(next)).toBe(true);
    const rb = track(b.sendrec(server.endpoint, { type: 2, payload: 'b' }, T));
    await expect(next).resolves.toEqual({ source: b.endpoint, type: 2, payload: 'b' });
    await server.reply(b.endpoint, { type: 102 });
    await expect(rb).resolves.toMatchObject({ type: 102 });
  });

  it('a request already queued is taken at once', async () => {
    const { k, server } = setup();
    const [a, b] = [k.bind(0), k.bind(0)];
    const ra = track(a.sendrec(server.endpoint, { type: 1 }, T));
    const rb = track(b.sendrec(server.endpoint, { type: 2 }, T));
    const m1 = await server.receiveRequest(T);
    await expect(server.replyAndReceive(m1.source, { type: 0 }, T)).resolves.toMatchObject({ source: b.endpoint, type: 2 });
    await expect(ra).resolves.toMatchObject({ type: 0 });
    expect(await isPending(rb)).toBe(true);
  });

  it('a failed reply fails the call before it receives; a receive that cannot start fails it before the reply', async () => {
    const { k, server, client } = setup();
    // Nobody waits for this reply: EDVSPROCSTS, and no receive was left behind.
    await expect(server.replyAndReceive(client.endpoint, { type: 0 }, T)).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
    expect(k.procs(0).find((r) => r.endpoint === server.endpoint)!.rtsFlags).toBe(0);
    // A receive already in progress: EDVSBUSY, and the client still waits for its reply.
    const sr = track(client.sendrec(server.endpoint, { type: 1 }, T));
    const m = await server.receiveRequest(T);
    const pending = track(server.receiveRequest(T));
    await expect(server.replyAndReceive(m.source, { type: 9 }, T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    expect(await isPending(sr)).toBe(true);
    // A timeout of 0 with nothing queued: the reply went out, then the receive gave up at once.
    const other = setup();
    const sr2 = track(other.client.sendrec(other.server.endpoint, { type: 1 }, T));
    const m2 = await other.server.receiveRequest(T);
    await expect(other.server.replyAndReceive(m2.source, { type: 5 }, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(sr2).resolves.toMatchObject({ type: 5 });
    // A user process may not call it (it includes receiveRequest).
    await expect(client.replyAndReceive(server.endpoint, { type: 0 }, T)).rejects.toMatchObject({ code: 'EDVSTRAPDENIED' });
    void pending.catch(() => undefined);
  });
});

describe('A5: one receive-side call at a time', { timeout: 2000 }, () => {
  it('a client in sendrec gets EDVSBUSY for receive, receiveRequest or another sendrec', async () => {
    const { k, server } = setup();
    const client = k.bind(0, { slot: 2 }); // a system slot, so receiveRequest is allowed
    const other = k.bind(0, { slot: 3 });
    const sr = track(client.sendrec(server.endpoint, { type: 1 }, T));
    await expect(client.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSBUSY', errno: -16 });
    await expect(client.receiveRequest(T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    await expect(client.sendrec(other.endpoint, { type: 2 }, T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    await expect(client.sendrec(server.endpoint, { type: 2 }, T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    // The refused calls did not disturb the first one, and queued nothing.
    await expect(server.receiveRequest(T)).resolves.toMatchObject({ type: 1 });
    await expect(server.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(other.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await server.reply(client.endpoint, { type: 0 });
    await expect(sr).resolves.toMatchObject({ type: 0 });
  });

  it('a server blocked in receiveRequest gets EDVSBUSY for a second one or a sendrec', async () => {
    const { k, server, client } = setup();
    const other = k.bind(0, { slot: 2 });
    const req = track(server.receiveRequest(T));
    await expect(server.receiveRequest(T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    await expect(server.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    await expect(server.sendrec(other.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSBUSY' });
    const sr = track(client.sendrec(server.endpoint, { type: 4 }, T));
    await expect(req).resolves.toMatchObject({ type: 4 });
    await server.reply(client.endpoint, { type: 0 });
    await sr;
  });
});
