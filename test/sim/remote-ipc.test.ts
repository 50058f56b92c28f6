/**
 * M3-IPC across simulated nodes: every call whose two ends live on different kernels, carried by
 * the simulated network (latency, per-link FIFO, deep-copied frames, crashes).
 */
import { describe, it, expect } from 'vitest';
import { NOTIFY_MESSAGE, type Message } from '../../src/ipc/message.js';
import { ANY } from '../../src/ipc/endpoint.js';
import { Simulation } from '../../src/sim/index.js';
import { assertClean, outcome, type Outcome } from './helpers.js';

const FIXED = { min: 5, max: 5 };

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('remote send and receive', () => {
  it('send first: the sender stays blocked until the remote receiver takes the message', async () => {
    const sim = new Simulation({ seed: 11, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    let sent: Outcome<void> | undefined;
    let got: Message | undefined;
    let receivedAt = -1;
    sim.spawn('a', async () => {
      sent = await outcome(sim, a.send(b.endpoint, { type: 7, payload: { n: 1, s: 'hi' } }));
    });
    sim.spawn('b', async (ctx) => {
      await ctx.sleep(50);
      got = await b.receive(ANY);
      receivedAt = sim.now();
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(got).toEqual({ source: a.endpoint, type: 7, payload: { n: 1, s: 'hi' } });
    expect(receivedAt).toBe(50);
    expect(sent?.ok).toBe(true);
    // Rendezvous: the ack comes back only after the take, one latency later.
    expect(sent?.at).toBe(55);
  });

  it('receive first: the blocked receiver gets the message when it arrives', async () => {
    const sim = new Simulation({ seed: 12, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    let sent: Outcome<void> | undefined;
    let got: Outcome<Message> | undefined;
    sim.spawn('b', async () => {
      got = await outcome(sim, b.receive(a.endpoint));
    });
    sim.spawn('a', async (ctx) => {
      await ctx.sleep(20);
      sent = await outcome(sim, a.send(b.endpoint, { type: 8, payload: new Uint8Array([1, 2, 3]) }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(got?.ok).toBe(true);
    expect(got?.at).toBe(25);
    expect(got?.value?.source).toBe(a.endpoint);
    expect(got?.value?.payload).toEqual(new Uint8Array([1, 2, 3]));
    expect(sent).toMatchObject({ ok: true, at: 30 });
  });

  it('the receiver gets its own copy of the payload, as over a wire', async () => {
    const sim = new Simulation({ seed: 13, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    const payload = { list: [1, 2, 3], buf: new Uint8Array([9, 9]) };
    let got: Message | undefined;
    sim.spawn('a', async () => {
      const p = a.send(b.endpoint, { type: 1, payload });
      // Mutating after the call must not change what travels.
      payload.list.push(4);
      payload.buf[0] = 0;
      await p;
    });
    sim.spawn('b', async () => {
      got = await b.receive(ANY);
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(got?.payload).toEqual({ list: [1, 2, 3], buf: new Uint8Array([9, 9]) });
  });

  it('per-sender FIFO across the link: many pipelined sends arrive in order', async () => {
    const sim = new Simulation({ seed: 14, nodes: 2, latency: { min: 1, max: 30 } });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    const seen: number[] = [];
    sim.spawn('a', async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => a.send(b.endpoint, { type: 1, payload: i })));
    });
    sim.spawn('b', async (ctx) => {
      for (let i = 0; i < 20; i++) {
        await ctx.jitter();
        seen.push((await b.receive(ANY)).payload as number);
      }
    });
    assertClean(sim, await sim.run({ maxTime: 10_000 }));
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});

describe('remote sendrec, receiveRequest and reply', () => {
  it('a client on one node calls a server on another; the reply comes from the server', async () => {
    const sim = new Simulation({ seed: 21, nodes: 3 });
    const srv = sim.bind(2, { slot: 4, name: 'srv' });
    const clients = [sim.bind(0, { name: 'c0' }), sim.bind(1, { name: 'c1' })];
    const answers = new Map<number, Message>();
    sim.spawn(
      'srv',
      async () => {
        for (;;) {
          const m = await srv.receiveRequest();
          await srv.reply(m.source, { type: 100, payload: { echo: m.payload, to: m.source } });
        }
      },
      { daemon: true },
    );
    for (const c of clients) {
      sim.spawn(`c${c.endpoint}`, async () => {
        answers.set(c.endpoint, await c.sendrec(srv.endpoint, { type: 1, payload: `from ${c.endpoint}` }));
      });
    }
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    for (const c of clients) {
      expect(answers.get(c.endpoint)).toEqual({ source: srv.endpoint, type: 100, payload: { echo: `from ${c.endpoint}`, to: c.endpoint } });
    }
  });

  it('a server looping on replyAndReceive answers clients of every node, each its own reply', async () => {
    const sim = new Simulation({ seed: 23, nodes: 3 });
    const srv = sim.bind(1, { slot: 4, name: 'srv' });
    const clients = [sim.bind(0), sim.bind(0), sim.bind(1), sim.bind(2)];
    const answers = new Map<number, Message[]>();
    sim.spawn(
      'srv',
      async () => {
        let m = await srv.receiveRequest();
        for (;;) m = await srv.replyAndReceive(m.source, { type: 100, payload: { echo: m.payload } });
      },
      { daemon: true },
    );
    for (const c of clients) {
      sim.spawn(`c${c.endpoint}`, async () => {
        const got: Message[] = [];
        for (let i = 0; i < 3; i++) got.push(await c.sendrec(srv.endpoint, { type: 1, payload: `${c.endpoint}/${i}` }));
        answers.set(c.endpoint, got);
      });
    }
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    for (const c of clients) expect(answers.get(c.endpoint)?.map((m) => m.payload)).toEqual([0, 1, 2].map((i) => ({ echo: `${c.endpoint}/${i}` })));
  });

  it('a second reply, or a reply to a client that gave up, fails with EDVSPROCSTS', async () => {
    const sim = new Simulation({ seed: 22, nodes: 2, latency: FIXED });
    const srv = sim.bind(1, { slot: 4, name: 'srv' });
    const c = sim.bind(0, { name: 'c' });
    const replies: Outcome<void>[] = [];
    let call1: Outcome<Message> | undefined;
    let call2: Outcome<Message> | undefined;
    sim.spawn('srv', async (ctx) => {
      const m1 = await srv.receiveRequest();
      replies.push(await outcome(sim, srv.reply(m1.source, { type: 1 })));
      replies.push(await outcome(sim, srv.reply(m1.source, { type: 2 })));
      // The client's second call times out while the server sleeps; the reply comes too late.
      await srv.receiveRequest();
      await ctx.sleep(100);
      replies.push(await outcome(sim, srv.reply(c.endpoint, { type: 3 })));
    });
    sim.spawn('c', async () => {
      call1 = await outcome(sim, c.sendrec(srv.endpoint, { type: 10 }));
      call2 = await outcome(sim, c.sendrec(srv.endpoint, { type: 11 }, { timeoutMs: 30 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(call1?.ok).toBe(true);
    expect(call1?.value?.type).toBe(1);
    expect(replies.map((r) => r.code)).toEqual([undefined, 'EDVSPROCSTS', 'EDVSPROCSTS']);
    expect(call2?.code).toBe('EDVSTIMEDOUT');
  });

  /**
   * A client calls with `timeoutMs: 30` (or an abort at 30); the server takes the request at
   * `takeAt` and answers at `replyAt`, with `reply` or, MINIX style, a plain `send`.
   */
  async function lateAnswer(seed: number, takeAt: number, replyAt: number, how: { abort?: boolean; plainSend?: boolean } = {}): Promise<{ sim: Simulation; call?: Outcome<Message>; answer?: Outcome<void> }> {
    const sim = new Simulation({ seed, nodes: 2, latency: FIXED });
    const srv = sim.bind(1, { slot: 4, name: 'srv' });
    const c = sim.bind(0, { name: 'c' });
    const ac = new AbortController();
    const out: { sim: Simulation; call?: Outcome<Message>; answer?: Outcome<void> } = { sim };
    sim.spawn('srv', async (ctx) => {
      await ctx.sleep(takeAt);
      const m = await srv.receiveRequest();
      await ctx.sleep(replyAt - sim.now());
      const msg = { type: 7, payload: 'answer' };
      out.answer = await outcome(sim, how.plainSend === true ? srv.send(m.source, msg, { timeoutMs: 0 }) : srv.reply(m.source, msg));
    });
    sim.spawn('c', async () => {
      out.call = await outcome(sim, c.sendrec(srv.endpoint, { type: 1 }, how.abort === true ? { signal: ac.signal } : { timeoutMs: 30 }));
    });
    if (how.abort === true) sim.after(30, () => ac.abort(), 'abort');
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect((await sim.run({ until: 'idle', maxTime: 1000 })).reason).toBe('idle');
    return out;
  }

  it('delivery wins for replies: a reply already sent when the caller\'s timeout fires completes the call', async () => {
    // Taken at 5, replied at 28 (lands at 33); the timeout fires at 30 and its cancel reaches the server at 35.
    const { sim, call, answer } = await lateAnswer(81, 0, 28);
    expect(answer?.ok).toBe(true);
    expect(call).toMatchObject({ ok: true, at: 33, value: { type: 7, payload: 'answer' } });
    expect(sim.trace.some((l) => l.includes('n0>n1 cancel#'))).toBe(true);
    expect(sim.kernel(0).stats.repliesDropped).toBe(0);
  });

  it('a request taken but not answered when the cancel lands is withdrawn: the reply fails with EDVSPROCSTS', async () => {
    // The cancel lands at 35 and its ack is back at 40; the server replies at 36.
    const { sim, call, answer } = await lateAnswer(82, 0, 36);
    expect(answer?.code).toBe('EDVSPROCSTS');
    expect(call).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT', at: 40 });
    expect(sim.trace.some((l) => l.includes('n1>n0 cancel-ack#'))).toBe(true);
  });

  it('an aborted call is settled the same way with EDVSINTR, and a reply that raced the abort still wins', async () => {
    const lost = await lateAnswer(83, 0, 36, { abort: true });
    expect(lost.answer?.code).toBe('EDVSPROCSTS');
    expect(lost.call).toMatchObject({ ok: false, code: 'EDVSINTR', at: 40 });
    const won = await lateAnswer(84, 0, 29, { abort: true });
    expect(won.answer?.ok).toBe(true);
    expect(won.call).toMatchObject({ ok: true, at: 34 });
  });

  it('a request taken after the timeout fired: the reply wins if it left before the cancel landed', async () => {
    // Queued at 5, timeout at 30, taken at 33, the cancel lands at 35.
    const won = await lateAnswer(85, 33, 34);
    expect(won.answer?.ok).toBe(true);
    expect(won.call).toMatchObject({ ok: true, at: 39, value: { type: 7 } });
    const lost = await lateAnswer(86, 33, 36);
    expect(lost.answer?.code).toBe('EDVSPROCSTS');
    expect(lost.call).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT', at: 40 });
  });

  it('a plain send answering the sendrec (MINIX style) after the timeout fired still completes it', async () => {
    // The owner's send-ack for the request and the send itself land at 38, after the timeout (30):
    // the caller withdraws its reply wait with reply-cancel, but the send is already there.
    const { sim, call, answer } = await lateAnswer(88, 0, 33, { plainSend: true });
    expect(answer?.ok).toBe(true);
    expect(call).toMatchObject({ ok: true, at: 38, value: { type: 7, payload: 'answer' } });
    expect(sim.trace.some((l) => l.includes('n0>n1 reply-cancel#'))).toBe(true);
    expect(sim.trace.some((l) => l.includes('n1>n0 reply-cancel-ack#'))).toBe(true);
  });

  it('a caller waiting for the cancel to settle gets EDVSNOTCONN if the server\'s node dies, never hangs', async () => {
    const sim = new Simulation({ seed: 87, nodes: 2, latency: FIXED, detectionDelay: 80 });
    const srv = sim.bind(1, { slot: 4, name: 'srv' });
    const c = sim.bind(0, { name: 'c' });
    let call: Outcome<Message> | undefined;
    sim.spawn('srv', async () => {
      await srv.receiveRequest();
    });
    sim.spawn('c', async () => {
      call = await outcome(sim, c.sendrec(srv.endpoint, { type: 1 }, { timeoutMs: 30 }));
    });
    // Dies before the reply-cancel (sent at 30) lands: no ack will ever come.
    sim.after(32, () => sim.crash(1), 'crash');
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    expect(call).toMatchObject({ ok: false, code: 'EDVSNOTCONN', at: 112 });
  });
});

describe('remote notify', () => {
  it('reaches a remote system process blocked in receive at once', async () => {
    const sim = new Simulation({ seed: 31, nodes: 2, latency: FIXED });
    const n = sim.bind(0, { slot: 2, name: 'notifier' });
    const t = sim.bind(1, { slot: 5, name: 'target' });
    let got: Message | undefined;
    let outcomeOfNotify: string | undefined;
    sim.spawn('target', async () => {
      got = await t.receive(ANY);
    });
    sim.spawn('notifier', async (ctx) => {
      await ctx.sleep(10);
      outcomeOfNotify = await n.notify(t.endpoint, { arg: 4 });
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(outcomeOfNotify).toBe('sent');
    expect(got?.source).toBe(n.endpoint);
    expect(got?.type).toBe(NOTIFY_MESSAGE | sim.space.privId(2));
    expect(got?.payload).toEqual({ arg: 4, timestamp: 15 });
  });

  it('coalesces while the target is busy, and comes before queued messages, lowest source first', async () => {
    const sim = new Simulation({ seed: 32, nodes: 3 });
    const lo = sim.bind(0, { slot: 1, name: 'lo' });
    const hi = sim.bind(2, { slot: 6, name: 'hi' });
    const sender = sim.bind(0, { name: 'sender' });
    const t = sim.bind(1, { slot: 9, name: 'target' });
    const order: Message[] = [];
    sim.spawn('sender', async () => {
      await sender.send(t.endpoint, { type: 42, payload: 'msg' });
    });
    sim.spawn('notifiers', async (ctx) => {
      await ctx.sleep(5);
      await hi.notify(t.endpoint, { arg: 1 });
      await hi.notify(t.endpoint, { arg: 2 });
      await lo.notify(t.endpoint, { arg: 8 });
    });
    sim.spawn('target', async (ctx) => {
      await ctx.sleep(100);
      const row = sim.kernel(1).procs(sim.dcid).find((r) => r.endpoint === t.endpoint);
      expect(row?.pendingNotifies).toBe(2);
      expect(row?.queued).toBe(1);
      for (let i = 0; i < 3; i++) order.push(await t.receive(ANY));
      expect(await outcome(sim, t.receive(ANY, { timeoutMs: 0 }))).toMatchObject({ code: 'EDVSTIMEDOUT' });
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(order.map((m) => m.source)).toEqual([lo.endpoint, hi.endpoint, sender.endpoint]);
    expect(order[1]?.payload).toMatchObject({ arg: 3 });
    expect(order[2]).toEqual({ source: sender.endpoint, type: 42, payload: 'msg' });
  });
});

describe('remote grants', () => {
  const CHUNK = 16;
  const SIZE = 200;

  it('copyFrom and copyTo a client grant span many chunks and move every byte', async () => {
    const sim = new Simulation({ seed: 41, nodes: 2, kernel: { limits: { maxCopyChunk: CHUNK }, copyWindow: 3 } });
    const srv = sim.bind(1, { slot: 4, name: 'srv' });
    const c = sim.bind(0, { name: 'c' });
    const out = bytes(SIZE, 1);
    const inbox = new Uint8Array(SIZE + 10);
    const fromClient = new Uint8Array(SIZE);
    const written = bytes(SIZE, 2);
    sim.spawn('c', async () => {
      const gRead = c.grant(out, { grantee: srv.endpoint, access: 'read' });
      const gWrite = c.grant(inbox, { grantee: srv.endpoint, access: 'write', offset: 10 });
      const r = await c.sendrec(srv.endpoint, { type: 1, payload: { gRead, gWrite } });
      expect(r.payload).toEqual({ copied: SIZE * 2 });
    });
    sim.spawn('srv', async () => {
      const m = await srv.receiveRequest();
      const { gRead, gWrite } = m.payload as { gRead: number; gWrite: number };
      const n1 = await srv.copyFrom({ owner: m.source, grant: gRead }, fromClient);
      const n2 = await srv.copyTo({ owner: m.source, grant: gWrite }, written);
      await srv.reply(m.source, { type: 2, payload: { copied: n1 + n2 } });
    });
    assertClean(sim, await sim.run({ maxTime: 10_000 }));
    expect(fromClient).toEqual(out);
    expect(inbox.subarray(10)).toEqual(written);
    expect(inbox.subarray(0, 10)).toEqual(new Uint8Array(10));
    const chunks = Math.ceil(SIZE / CHUNK);
    expect(sim.trace.filter((l) => l.includes('copy-read#')).length).toBe(chunks);
    expect(sim.trace.filter((l) => l.includes('copy-write#')).length).toBe(chunks);
  });

  it('a third party copies between grants on two other nodes', async () => {
    const sim = new Simulation({ seed: 42, nodes: 3, kernel: { limits: { maxCopyChunk: CHUNK } } });
    const r = sim.bind(2, { slot: 4, name: 'copier' });
    const src = sim.bind(0, { name: 'src' });
    const dst = sim.bind(1, { name: 'dst' });
    const srcBuf = bytes(SIZE, 3);
    const dstBuf = new Uint8Array(SIZE);
    const LEN = 150;
    sim.spawn('src', async () => {
      const g = src.grant(srcBuf, { grantee: r.endpoint, access: 'read' });
      await src.sendrec(r.endpoint, { type: 1, payload: g });
    });
    sim.spawn('dst', async () => {
      const g = dst.grant(dstBuf, { grantee: r.endpoint, access: 'write' });
      await dst.sendrec(r.endpoint, { type: 2, payload: g });
    });
    sim.spawn('copier', async () => {
      const grants = new Map<number, number>();
      for (let i = 0; i < 2; i++) {
        const m = await r.receiveRequest();
        grants.set(m.type, m.payload as number);
      }
      const n = await r.copy({ owner: src.endpoint, grant: grants.get(1)!, offset: 7 }, { owner: dst.endpoint, grant: grants.get(2)!, offset: 3 }, LEN);
      expect(n).toBe(LEN);
      await r.reply(src.endpoint, { type: 0 });
      await r.reply(dst.endpoint, { type: 0 });
    });
    assertClean(sim, await sim.run({ maxTime: 10_000 }));
    expect(dstBuf.subarray(3, 3 + LEN)).toEqual(srcBuf.subarray(7, 7 + LEN));
    expect(dstBuf.subarray(0, 3)).toEqual(new Uint8Array(3));
    expect(dstBuf.subarray(3 + LEN)).toEqual(new Uint8Array(SIZE - 3 - LEN));
    // The bytes go from node 0 to node 1 directly: the copier's node (2) sends one copy-relay per
    // chunk and gets one copy-ack back, and no chunk of data ever reaches it.
    const chunks = Math.ceil(LEN / CHUNK);
    const count = (what: string): number => sim.trace.filter((l) => l.includes(what)).length;
    expect(count('n2>n0 copy-relay#')).toBe(chunks);
    expect(count('n0>n1 copy-write#')).toBe(chunks);
    expect(count('n0>n2 copy-ack#')).toBe(chunks);
    expect(count('copy-read#')).toBe(0);
    expect(count('copy-data#')).toBe(0);
    expect(count('>n2 copy-write#')).toBe(0);
  });

  it('a third party copies between two grants that share another node: the bytes stay on it', async () => {
    const sim = new Simulation({ seed: 45, nodes: 2, kernel: { limits: { maxCopyChunk: CHUNK } } });
    const r = sim.bind(1, { slot: 4, name: 'copier' });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(0, { name: 'b' });
    const aBuf = bytes(SIZE, 5);
    const bBuf = new Uint8Array(SIZE);
    const ga = a.grant(aBuf, { grantee: r.endpoint, access: 'read', whileWaiting: false });
    const gb = b.grant(bBuf, { grantee: r.endpoint, access: 'write', whileWaiting: false });
    let n: Outcome<number> | undefined;
    sim.spawn('copier', async () => {
      n = await outcome(sim, r.copy({ owner: a.endpoint, grant: ga }, { owner: b.endpoint, grant: gb }, SIZE));
    });
    assertClean(sim, await sim.run({ maxTime: 10_000 }));
    expect(n).toMatchObject({ ok: true, value: SIZE });
    expect(bBuf).toEqual(aBuf);
    expect(sim.trace.filter((l) => l.includes('n1>n0 copy-relay#')).length).toBe(Math.ceil(SIZE / CHUNK));
    expect(sim.trace.some((l) => l.includes('copy-write#') || l.includes('copy-data#'))).toBe(false);
  });

  it('a relayed copy fails with the destination\'s refusal, or with EDVSNOTCONN when its node dies, never hangs', async () => {
    // Refused: the destination grant is not for the copier.
    {
      const sim = new Simulation({ seed: 46, nodes: 3, kernel: { limits: { maxCopyChunk: CHUNK } } });
      const r = sim.bind(2, { slot: 4, name: 'copier' });
      const src = sim.bind(0, { name: 'src' });
      const dst = sim.bind(1, { name: 'dst' });
      const gs = src.grant(bytes(SIZE, 6), { grantee: r.endpoint, access: 'read', whileWaiting: false });
      const gd = dst.grant(new Uint8Array(SIZE), { grantee: src.endpoint, access: 'write', whileWaiting: false });
      let res: Outcome<number> | undefined;
      sim.spawn('copier', async () => {
        res = await outcome(sim, r.copy({ owner: src.endpoint, grant: gs }, { owner: dst.endpoint, grant: gd }, SIZE));
      });
      assertClean(sim, await sim.run({ maxTime: 10_000 }));
      expect(res?.code).toBe('EDVSACCES');
    }
    // The destination's node crashes in the middle of the copy.
    {
      const sim = new Simulation({ seed: 47, nodes: 3, detectionDelay: 60, kernel: { limits: { maxCopyChunk: CHUNK } } });
      const r = sim.bind(2, { slot: 4, name: 'copier' });
      const src = sim.bind(0, { name: 'src' });
      const dst = sim.bind(1, { name: 'dst' });
      const gs = src.grant(bytes(SIZE * 4, 7), { grantee: r.endpoint, access: 'read', whileWaiting: false });
      const gd = dst.grant(new Uint8Array(SIZE * 4), { grantee: r.endpoint, access: 'write', whileWaiting: false });
      let res: Outcome<number> | undefined;
      sim.spawn('copier', async () => {
        res = await outcome(sim, r.copy({ owner: src.endpoint, grant: gs }, { owner: dst.endpoint, grant: gd }, SIZE * 4));
      });
      sim.after(12, () => sim.crash(1), 'crash');
      assertClean(sim, await sim.run({ maxTime: 10_000 }));
      expect(res?.code).toBe('EDVSNOTCONN');
    }
  });

  it('a remote copy from an owner not blocked with the requester fails with EDVSPROCSTS', async () => {
    const sim = new Simulation({ seed: 43, nodes: 2, kernel: { limits: { maxCopyChunk: CHUNK } } });
    const srv = sim.bind(1, { slot: 4, name: 'srv' });
    const c = sim.bind(0, { name: 'c' });
    const g = c.grant(bytes(SIZE, 4), { grantee: srv.endpoint, access: 'read' });
    let res: Outcome<number> | undefined;
    sim.spawn('srv', async () => {
      res = await outcome(sim, srv.copyFrom({ owner: c.endpoint, grant: g }, new Uint8Array(SIZE)));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(res?.code).toBe('EDVSPROCSTS');
  });
});

describe('unbind on one node fails waiters on another', () => {
  it('a receive from the unbound endpoint gets EDVSSRCDIED', async () => {
    const sim = new Simulation({ seed: 51, nodes: 2 });
    const a = sim.bind(0, { slot: 2, name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    let res: Outcome<Message> | undefined;
    sim.spawn('a', async () => {
      res = await outcome(sim, a.receive(b.endpoint));
    });
    sim.spawn('b', async (ctx) => {
      await ctx.sleep(20);
      await b.unbind();
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(res?.code).toBe('EDVSSRCDIED');
    expect(res!.at).toBeGreaterThan(20);
  });

  it('a queued send gets EDVSDSTDIED, a queued sendrec and a taken sendrec get EDVSDEADSRCDST', async () => {
    const sim = new Simulation({ seed: 52, nodes: 3 });
    const b = sim.bind(2, { slot: 3, name: 'b' });
    const taken = sim.bind(0, { name: 'taken' });
    const sender = sim.bind(0, { name: 'sender' });
    const caller = sim.bind(1, { name: 'caller' });
    const res: Record<string, Outcome<unknown>> = {};
    sim.spawn('taken', async () => {
      res.taken = await outcome(sim, taken.sendrec(b.endpoint, { type: 1 }));
    });
    sim.spawn('b', async (ctx) => {
      const m = await b.receive(ANY);
      expect(m.source).toBe(taken.endpoint);
      await ctx.sleep(100);
      const row = sim.kernel(2).procs(sim.dcid).find((r) => r.endpoint === b.endpoint);
      expect(row?.queued).toBe(2);
      await b.unbind();
    });
    sim.spawn('others', async (ctx) => {
      await ctx.sleep(30);
      const p1 = outcome(sim, sender.send(b.endpoint, { type: 2 }));
      const p2 = outcome(sim, caller.sendrec(b.endpoint, { type: 3 }));
      res.send = await p1;
      res.sendrec = await p2;
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(res.taken?.code).toBe('EDVSDEADSRCDST');
    expect(res.send?.code).toBe('EDVSDSTDIED');
    expect(res.sendrec?.code).toBe('EDVSDEADSRCDST');
  });
});

describe('node crash', () => {
  it('callers waiting on a crashed node get EDVSNOTCONN after the detection delay', async () => {
    const sim = new Simulation({ seed: 61, nodes: 3, detectionDelay: 80 });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    const other = sim.bind(2, { slot: 4, name: 'other' });
    const caller = sim.bind(0, { name: 'caller' });
    const sender = sim.bind(0, { name: 'sender' });
    const rcv = sim.bind(0, { slot: 5, name: 'rcv' });
    const res: Record<string, Outcome<unknown>> = {};
    sim.spawn('b', async () => {
      await b.receiveRequest();
      // Never replies: the crash comes first.
    });
    sim.spawn('caller', async () => {
      res.sendrec = await outcome(sim, caller.sendrec(b.endpoint, { type: 1 }));
    });
    sim.spawn('sender', async (ctx) => {
      await ctx.sleep(30);
      res.send = await outcome(sim, sender.send(b.endpoint, { type: 2 }));
    });
    sim.spawn('rcv', async () => {
      res.receive = await outcome(sim, rcv.receive(b.endpoint));
    });
    sim.spawn('healthy', async (ctx) => {
      await ctx.sleep(200);
      // Unaffected nodes keep talking.
      res.healthy = await outcome(sim, caller.send(other.endpoint, { type: 3 }));
      res.after = await outcome(sim, caller.send(b.endpoint, { type: 4 }));
    });
    sim.spawn('other', async (ctx) => {
      await ctx.sleep(150);
      await other.receive(ANY);
    });
    sim.after(50, () => sim.crash(1), 'crash');
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    for (const k of ['sendrec', 'send', 'receive']) {
      expect(res[k]?.code, k).toBe('EDVSNOTCONN');
      expect(res[k]!.at, k).toBe(130);
    }
    expect(res.healthy?.ok).toBe(true);
    expect(res.after?.code).toBe('EDVSNOTCONN');
    expect(sim.kernel(0).info().downNodes).toEqual([1]);
  });

  it('a receive from an endpoint on a node already down fails at once with EDVSNOTCONN', async () => {
    const sim = new Simulation({ seed: 63, nodes: 2, detectionDelay: 40 });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    const a = sim.bind(0, { slot: 4, name: 'a' });
    let res: Outcome<Message> | undefined;
    sim.spawn('a', async (ctx) => {
      sim.crash(1);
      await ctx.sleep(100);
      res = await outcome(sim, a.receive(b.endpoint, { timeoutMs: 500 }));
    });
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    expect(res).toMatchObject({ code: 'EDVSNOTCONN', at: 100 });
  });

  describe('a server that leaves the directory while its send-ack travels', () => {
    /**
     * The client's sendrec is taken at 5 (ack lands at 10); the server then replies or not, and
     * unbinds at 8, and the directory rebinds its slot on the client's node at once, before the ack
     * arrives; optionally the server's node crashes at 11, losing what it sent after the ack.
     */
    async function scenario(opts: { reply: boolean; crash: boolean }): Promise<Outcome<Message>> {
      const sim = new Simulation({ seed: 64, nodes: 2, latency: FIXED, detectionDelay: 50 });
      const srv = sim.bind(0, { slot: 3, name: 'srv' });
      const c = sim.bind(1, { name: 'c' });
      let res: Outcome<Message> | undefined;
      sim.spawn('c', async () => {
        res = await outcome(sim, c.sendrec(srv.endpoint, { type: 1 }));
      });
      sim.spawn('srv', async (ctx) => {
        const m = await srv.receiveRequest();
        await ctx.sleep(3);
        if (opts.reply) await srv.reply(m.source, { type: 2 });
        await srv.unbind();
        sim.bind(1, { slot: 3, name: 'srv' });
      });
      if (opts.crash) sim.after(11, () => sim.crash(0), 'crash');
      assertClean(sim, await sim.run({ maxTime: 5000 }));
      return res!;
    }

    it('a reply already sent still arrives', async () => {
      expect(await scenario({ reply: true, crash: false })).toMatchObject({ ok: true, at: 13, value: { type: 2 } });
    });

    it('without a reply, the late "unbound" gives EDVSDEADSRCDST', async () => {
      expect(await scenario({ reply: false, crash: false })).toMatchObject({ code: 'EDVSDEADSRCDST', at: 13 });
    });

    it('if the server\'s node crashes before its frames land, the caller gets EDVSNOTCONN instead of hanging', async () => {
      expect(await scenario({ reply: true, crash: true })).toMatchObject({ code: 'EDVSNOTCONN', at: 61 });
      expect(await scenario({ reply: false, crash: true })).toMatchObject({ code: 'EDVSNOTCONN', at: 61 });
    });
  });

  it('after restore the node is reachable again', async () => {
    const sim = new Simulation({ seed: 62, nodes: 2, detectionDelay: 40 });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    const a = sim.bind(0, { name: 'a' });
    const res: Outcome<unknown>[] = [];
    sim.spawn('b', async (ctx) => {
      await ctx.sleep(200);
      await b.receive(ANY);
    });
    sim.spawn('a', async (ctx) => {
      sim.crash(1);
      res.push(await outcome(sim, a.send(b.endpoint, { type: 1 })));
      sim.restore(1);
      await ctx.sleep(10);
      res.push(await outcome(sim, a.send(b.endpoint, { type: 2 })));
    });
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    expect(res.map((r) => r.code)).toEqual(['EDVSNOTCONN', undefined]);
    expect(res[0]!.at).toBe(40);
  });
});

describe('timeouts and aborts of remote sends', () => {
  it('a send still queued at the owner times out with EDVSTIMEDOUT and is never received', async () => {
    const sim = new Simulation({ seed: 71, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    let sent: Outcome<void> | undefined;
    let late: Outcome<Message> | undefined;
    let queuedBefore = -1;
    sim.spawn('a', async () => {
      sent = await outcome(sim, a.send(b.endpoint, { type: 1 }, { timeoutMs: 30 }));
    });
    sim.spawn('b', async (ctx) => {
      await ctx.sleep(20);
      queuedBefore = sim.kernel(1).procs(sim.dcid).find((r) => r.endpoint === b.endpoint)!.queued;
      await ctx.sleep(80);
      late = await outcome(sim, b.receive(ANY, { timeoutMs: 50 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(queuedBefore).toBe(1);
    // The timeout fires at 30; the cancel and its ack take a latency each way.
    expect(sent).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT', at: 40 });
    expect(late?.code).toBe('EDVSTIMEDOUT');
    expect(sim.kernel(1).procs(sim.dcid).find((r) => r.endpoint === b.endpoint)?.queued).toBe(0);
  });

  it('an aborted remote send is withdrawn with EDVSINTR', async () => {
    const sim = new Simulation({ seed: 72, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    const ac = new AbortController();
    let sent: Outcome<void> | undefined;
    let late: Outcome<Message> | undefined;
    sim.spawn('a', async () => {
      sent = await outcome(sim, a.send(b.endpoint, { type: 1 }, { signal: ac.signal }));
    });
    sim.after(12, () => ac.abort(), 'abort');
    sim.spawn('b', async (ctx) => {
      await ctx.sleep(100);
      late = await outcome(sim, b.receive(ANY, { timeoutMs: 10 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(sent).toMatchObject({ code: 'EDVSINTR', at: 22 });
    expect(late?.code).toBe('EDVSTIMEDOUT');
  });

  it('delivery wins: a timeout racing the send-ack reports success', async () => {
    const sim = new Simulation({ seed: 73, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const b = sim.bind(1, { slot: 3, name: 'b' });
    let sent: Outcome<void> | undefined;
    let got: Outcome<Message> | undefined;
    sim.spawn('a', async () => {
      sent = await outcome(sim, a.send(b.endpoint, { type: 1 }, { timeoutMs: 30 }));
    });
    sim.spawn('b', async (ctx) => {
      // Takes it at 28; the ack lands at 33, after the timeout fired at 30 and the cancel left.
      await ctx.sleep(28);
      got = await outcome(sim, b.receive(ANY));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(got?.ok).toBe(true);
    expect(sent).toMatchObject({ ok: true, at: 33 });
    // Let the late cancel land: the owner has nothing left to withdraw, so no cancel-ack.
    expect((await sim.run({ until: 'idle', maxTime: 1000 })).reason).toBe('idle');
    expect(sim.trace.some((l) => l.includes('n0>n1 cancel#'))).toBe(true);
    expect(sim.trace.some((l) => l.includes('cancel-ack#'))).toBe(false);
  });
});

describe('stale endpoints and redirects', () => {
  it('a send to an old generation fails with EDVSENDPOINT, checked locally or by the owner', async () => {
    const sim = new Simulation({ seed: 81, nodes: 2, latency: FIXED });
    const a = sim.bind(0, { name: 'a' });
    const old = sim.bind(1, { slot: 3, name: 'b' });
    const res: Record<string, Outcome<unknown>> = {};
    let b1: ReturnType<Simulation['bind']> | undefined;
    let leaked: Outcome<Message> | undefined;
    sim.spawn('a', async (ctx) => {
      // In flight while the owner rebinds the slot: the owner answers.
      const inFlight = outcome(sim, a.send(old.endpoint, { type: 1 }));
      await old.unbind();
      b1 = sim.bind(1, { slot: 3, name: 'b' });
      res.remote = await inFlight;
      await ctx.sleep(10);
      // Node 0 now knows generation 1: refused before anything travels.
      res.local = await outcome(sim, a.send(old.endpoint, { type: 2 }));
    });
    sim.spawn('b1', async (ctx) => {
      await ctx.sleep(1);
      leaked = await outcome(sim, b1!.receive(ANY, { timeoutMs: 100 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(sim.space.generationOf(b1!.endpoint)).toBe(1);
    expect(sim.space.slotOf(b1!.endpoint)).toBe(3);
    expect(res.remote?.code).toBe('EDVSENDPOINT');
    expect(res.remote?.at).toBe(10);
    expect(res.local).toMatchObject({ code: 'EDVSENDPOINT', at: 20 });
    expect(leaked?.code).toBe('EDVSTIMEDOUT');
  });

  it('a message from a sender incarnation the owner knows to be dead is refused, not delivered', async () => {
    const sim = new Simulation({ seed: 84, nodes: 2, latency: FIXED });
    const srv = sim.bind(1, { slot: 3, name: 'srv' });
    const old = sim.bind(0, { name: 'c' });
    let sent: Outcome<void> | undefined;
    let got: Outcome<Message> | undefined;
    sim.spawn('c', async () => {
      const p = outcome(sim, old.send(srv.endpoint, { type: 1 }));
      // The sender exits with its message on the wire; the directory hands its slot to a successor.
      await old.unbind();
      const next = sim.bind(0, { slot: sim.space.slotOf(old.endpoint), name: 'c' });
      expect(sim.space.generationOf(next.endpoint)).toBe(1);
      sent = await p;
    });
    sim.spawn('srv', async () => {
      got = await outcome(sim, srv.receive(ANY, { timeoutMs: 50 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(sent?.code).toBe('EDVSSHUTDOWN');
    expect(got?.code).toBe('EDVSTIMEDOUT');
    expect(sim.trace.some((l) => l.includes('n1>n0 send-ack#1 rc=-306'))).toBe(true);
  });

  it('a descriptor pointing at the wrong node is answered "moved" and the send still arrives', async () => {
    const sim = new Simulation({ seed: 82, nodes: 3, latency: FIXED });
    const b = sim.bind(2, { slot: 3, name: 'b' });
    const a = sim.bind(0, { name: 'a' });
    // Node 0's directory cache is stale: it believes b lives on node 1.
    sim.kernel(0).bindRemote(sim.dcid, b.endpoint, 1);
    let sent: Outcome<void> | undefined;
    let got: Message | undefined;
    sim.spawn('b', async () => {
      got = await b.receive(ANY);
    });
    sim.spawn('a', async () => {
      sent = await outcome(sim, a.send(b.endpoint, { type: 5, payload: 'redirected' }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(got).toEqual({ source: a.endpoint, type: 5, payload: 'redirected' });
    // 0 -> 1 (5 ms), moved answer back (10), 0 -> 2 (15), ack (20).
    expect(sent).toMatchObject({ ok: true, at: 20 });
    expect(sim.trace.some((l) => l.includes('n1>n0 send-ack') && l.includes('rc=-316 node=2'))).toBe(true);
    expect(sim.kernel(0).procs(sim.dcid).find((r) => r.endpoint === b.endpoint)?.node).toBe(2);
  });

  it('a send that times out before the "moved" answer reports EDVSTIMEDOUT and is not resent', async () => {
    const sim = new Simulation({ seed: 83, nodes: 3, latency: FIXED });
    const b = sim.bind(2, { slot: 3, name: 'b' });
    const a = sim.bind(0, { name: 'a' });
    sim.kernel(0).bindRemote(sim.dcid, b.endpoint, 1);
    let sent: Outcome<void> | undefined;
    let late: Outcome<Message> | undefined;
    sim.spawn('a', async () => {
      sent = await outcome(sim, a.send(b.endpoint, { type: 5 }, { timeoutMs: 3 }));
    });
    sim.spawn('b', async () => {
      late = await outcome(sim, b.receive(ANY, { timeoutMs: 100 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(sent).toMatchObject({ code: 'EDVSTIMEDOUT', at: 10 });
    expect(late?.code).toBe('EDVSTIMEDOUT');
  });
});
