/**
 * Endpoints that move, on simulated nodes: routes with epochs (an older location never wins),
 * frozen routes that park callers until set again or until their deadline, and a mailbox handed
 * over from one node to another, after which every sender is answered from the new owner.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { NOTIFY_MESSAGE, type Message } from '../../src/ipc/message.js';
import type { Process } from '../../src/kernel/process.js';
import { Simulation } from '../../src/sim/index.js';
import { assertClean, outcome, type Outcome } from './helpers.js';

const FIXED = { min: 5, max: 5 };

/** Freezes `ep` at `epoch` on every node, as a coordinator would through the directory. */
function freezeEverywhere(sim: Simulation, ep: number, epoch: number, deadlineMs = 10_000): void {
  for (const n of sim.nodes) expect(sim.kernel(n).freeze(sim.dcid, ep, epoch, deadlineMs)).toBe(true);
}

describe('routes and epochs', () => {
  it('a directory location older than the route known is ignored; a newer one replaces it', async () => {
    const sim = new Simulation({ seed: 1, nodes: 3, latency: FIXED });
    const s = sim.bind(2, { slot: 3, name: 's' });
    const k1 = sim.kernel(1);
    expect(k1.bindRemote(sim.dcid, s.endpoint, 2, undefined, 3)).toBe(true);
    expect(k1.bindRemote(sim.dcid, s.endpoint, 0, undefined, 1)).toBe(false);
    expect(k1.route(sim.dcid, s.endpoint)).toEqual({ kind: 'remote', endpoint: s.endpoint, node: 2, epoch: 3 });
    expect(k1.bindRemote(sim.dcid, s.endpoint, 0, undefined, 4)).toBe(true);
    expect(k1.route(sim.dcid, s.endpoint)).toMatchObject({ node: 0, epoch: 4 });
    assertClean(sim, await sim.run({ maxTime: 10 }));
  });

  it('a "moved" answer with an older epoch does not override the route (the call asks again, for a bounded time); one with a newer epoch is followed', async () => {
    const sim = new Simulation({ seed: 2, nodes: 3, latency: FIXED });
    const s = sim.bind(2, { slot: 3, name: 's' });
    const c = sim.bind(0, { name: 'c' });
    // Node 0 believes s is on node 1 at epoch 2; node 1 says "on node 2" but only at epoch 1: the
    // endpoint may be on its way to node 1, so node 0 asks node 1 again with a backoff, then gives up.
    sim.kernel(0).bindRemote(sim.dcid, s.endpoint, 1, undefined, 2);
    sim.kernel(1).bindRemote(sim.dcid, s.endpoint, 2, undefined, 1);
    let first: Outcome<Message> | undefined;
    let failedAt = 0;
    const startedAt = sim.now();
    sim.spawn('client', async () => {
      first = await outcome(sim, c.sendrec(s.endpoint, { type: 1, payload: 1 }));
      failedAt = sim.now();
    });
    assertClean(sim, await sim.run({ maxTime: sim.now() + 20_000 }));
    expect(first).toMatchObject({ ok: false, code: 'EDVSNONODE' });
    expect(failedAt - startedAt).toBeGreaterThan(3000);
    expect(failedAt - startedAt).toBeLessThan(10_000);
    expect(sim.kernel(0).route(sim.dcid, s.endpoint)).toMatchObject({ node: 1, epoch: 2 });

    // Now node 1 knows a newer location: node 0 follows it and the call succeeds.
    sim.kernel(1).bindRemote(sim.dcid, s.endpoint, 2, undefined, 3);
    let second: Outcome<Message> | undefined;
    sim.spawn('server', async () => {
      const m = await s.receiveRequest();
      await s.reply(m.source, { type: 2, payload: 'ok' });
    });
    sim.spawn('client2', async () => {
      second = await outcome(sim, c.sendrec(s.endpoint, { type: 1, payload: 2 }));
    });
    assertClean(sim, await sim.run({ maxTime: sim.now() + 2000 }));
    expect(second?.ok).toBe(true);
    expect(second?.value?.payload).toBe('ok');
    expect(sim.kernel(0).route(sim.dcid, s.endpoint)).toMatchObject({ node: 2, epoch: 3 });
  });

  it('refuses a message whose source lives on another node than the one that sent it, and counts it', async () => {
    const sim = new Simulation({ seed: 3, nodes: 3, latency: FIXED });
    const victim = sim.bind(2, { slot: 4, name: 'victim' });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const k1 = sim.kernel(1);
    const before = k1.stats.sourcesRefused;
    // Node 0 (holding the cluster key) stamps node 2's endpoint as the source of its frame.
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 77, src: victim.endpoint, dst: s.endpoint, type: 1, payload: 'forged', rec: false });
    k1.receiveFrame(0, { k: 'notify', dc: sim.dcid, src: victim.endpoint, dst: s.endpoint, arg: 1 });
    expect(k1.stats.sourcesRefused).toBe(before + 2);
    let got: Outcome<Message> | undefined;
    sim.spawn('s', async () => {
      got = await outcome(sim, s.receive(ANY, { timeoutMs: 100 }));
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
    expect(got).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT' });
    // The same frame from the node that owns the source goes through.
    k1.receiveFrame(2, { k: 'send', dc: sim.dcid, id: 78, src: victim.endpoint, dst: s.endpoint, type: 1, payload: 'real', rec: false });
    let real: Message | undefined;
    sim.spawn('s2', async () => {
      real = await s.receive(ANY, { timeoutMs: 100 });
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
    expect(real?.payload).toBe('real');
  });
});

describe('frozen routes', () => {
  it('park local and remote callers until the route is set again, then release them there', async () => {
    const sim = new Simulation({ seed: 4, nodes: 3, latency: FIXED });
    const s = sim.bind(0, { slot: 3, name: 's' });
    const c1 = sim.bind(1, { name: 'c1' });
    const c0 = sim.bind(0, { name: 'c0' });
    freezeEverywhere(sim, s.endpoint, 0);
    const got: number[] = [];
    const answers: Outcome<Message>[] = [];
    sim.spawn('server', async () => {
      for (let i = 0; i < 2; i++) {
        const m = await s.receiveRequest();
        got.push(m.payload as number);
        await s.reply(m.source, { type: 0, payload: (m.payload as number) * 10 });
      }
    });
    sim.spawn('c1', async () => answers.push(await outcome(sim, c1.sendrec(s.endpoint, { type: 1, payload: 1 }))));
    sim.spawn('c0', async () => answers.push(await outcome(sim, c0.sendrec(s.endpoint, { type: 1, payload: 2 }))));
    sim.after(200, () => {
      expect(sim.kernel(1).route(sim.dcid, s.endpoint)).toMatchObject({ kind: 'frozen', parked: 1 });
      expect(got).toEqual([]);
      for (const n of sim.nodes) expect(sim.kernel(n).thaw(sim.dcid, s.endpoint, 0)).toBe(true);
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
    expect(got.sort()).toEqual([1, 2]);
    expect(answers.every((a) => a.ok && a.at >= 200)).toBe(true);
    expect(answers.map((a) => a.value?.payload).sort()).toEqual([10, 20]);
  });

  it('a freeze whose coordinator vanished expires: the previous route comes back and parked calls go there', async () => {
    const sim = new Simulation({ seed: 5, nodes: 2, latency: FIXED });
    const s = sim.bind(0, { slot: 3, name: 's' });
    const c = sim.bind(1, { name: 'c' });
    sim.kernel(1).freeze(sim.dcid, s.endpoint, 0, 300);
    let answer: Outcome<Message> | undefined;
    sim.spawn('server', async () => {
      const m = await s.receiveRequest();
      await s.reply(m.source, { type: 0, payload: 'late' });
    });
    sim.spawn('c', async () => {
      answer = await outcome(sim, c.sendrec(s.endpoint, { type: 1, payload: 0 }));
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
    expect(answer?.ok).toBe(true);
    expect(answer?.value?.payload).toBe('late');
    // Parked until the deadline at 300, then one round trip.
    expect(answer?.at).toBeGreaterThanOrEqual(300);
    expect(sim.kernel(1).route(sim.dcid, s.endpoint)).toMatchObject({ kind: 'remote', node: 0 });
  });

  it('a parked call that times out is withdrawn and never delivered', async () => {
    const sim = new Simulation({ seed: 6, nodes: 2, latency: FIXED });
    const s = sim.bind(0, { slot: 3, name: 's' });
    const c = sim.bind(1, { name: 'c' });
    sim.kernel(1).freeze(sim.dcid, s.endpoint, 0, 500);
    let sent: Outcome<void> | undefined;
    let received: Outcome<Message> | undefined;
    sim.spawn('c', async () => {
      sent = await outcome(sim, c.send(s.endpoint, { type: 1, payload: 'x' }, { timeoutMs: 100 }));
    });
    sim.spawn('server', async () => {
      received = await outcome(sim, s.receive(ANY, { timeoutMs: 1000 }));
    });
    assertClean(sim, await sim.run({ maxTime: 3000 }));
    expect(sent).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT', at: 100 });
    expect(received).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT' });
  });
});

describe('mailbox handover', () => {
  it('after drain on one node and absorb on another, every queued sender, notification and owed reply is answered from there', async () => {
    const sim = new Simulation({ seed: 7, nodes: 3, latency: FIXED });
    const s = sim.bind(0, { slot: 3, name: 's' });
    const notifier = sim.bind(1, { slot: 4, name: 'n' });
    const taken0 = sim.bind(0, { name: 'taken0' });
    const taken1 = sim.bind(1, { name: 'taken1' });
    // On the node the server moves to: its sendrec, taken, is still in its send phase there (a taken sendrec has no send-ack).
    const taken2 = sim.bind(2, { name: 'taken2' });
    const q0 = sim.bind(0, { name: 'q0' });
    const q1 = sim.bind(1, { name: 'q1' });
    const q2 = sim.bind(2, { name: 'q2' });
    const late = sim.bind(1, { name: 'late' });
    const idle = sim.bind(2, { name: 'idle' });
    const results = new Map<string, Outcome<unknown>>();
    const call = (name: string, p: Promise<unknown>): void => {
      sim.spawn(name, async () => results.set(name, await outcome(sim, p)));
    };
    // Three requests taken by the server before it moves: it owes them replies.
    call('taken0', taken0.sendrec(s.endpoint, { type: 1, payload: 'taken0' }));
    call('taken1', taken1.sendrec(s.endpoint, { type: 1, payload: 'taken1' }));
    call('taken2', taken2.sendrec(s.endpoint, { type: 1, payload: 'taken2' }));
    const owed: Message[] = [];
    let retired: Outcome<Message> | undefined;
    sim.spawn('old server', async () => {
      owed.push(await s.receiveRequest(), await s.receiveRequest(), await s.receiveRequest());
      // Quiescent: blocked in a receive that nothing answers, until the move ends it.
      retired = await outcome(sim, s.receive(idle.endpoint));
    });
    // Then queued senders from every node (sendrecs and a plain send) and a notification.
    sim.after(50, () => {
      call('q0', q0.sendrec(s.endpoint, { type: 1, payload: 'q0' }));
      call('q1', q1.sendrec(s.endpoint, { type: 1, payload: 'q1' }));
      call('q2', q2.send(s.endpoint, { type: 1, payload: 'q2' }));
      call('notify', notifier.notify(s.endpoint, { arg: 5 }));
    });
    let moved: Process | undefined;
    sim.after(100, () => {
      expect(owed.map((m) => m.payload).sort()).toEqual(['taken0', 'taken1', 'taken2']);
      freezeEverywhere(sim, s.endpoint, 0);
      // A caller while frozen parks on its own node.
      call('late', late.sendrec(s.endpoint, { type: 1, payload: 'late' }));
    });
    sim.after(150, () => {
      const h = sim.kernel(0).drain(sim.dcid, s.endpoint, 2);
      expect(h.epoch).toBe(1);
      expect(h.queued.map((q) => q.payload)).toEqual(['q0', 'q1', 'q2']);
      expect(h.notifies).toHaveLength(1);
      expect(h.owed).toHaveLength(3);
      // Plain data: it survives a trip through JSON (and so msgpack) unchanged.
      const wire = JSON.parse(JSON.stringify(h)) as typeof h;
      moved = sim.kernel(2).absorb(wire, { name: 's' });
      expect(s.bound).toBe(false);
      // The directory's flip reaches node 1.
      sim.kernel(1).bindRemote(sim.dcid, s.endpoint, 2, 's', 1);
      sim.spawn('new server', async () => {
        const server = moved!;
        for (const m of owed) await server.reply(m.source, { type: 0, payload: `re:${String(m.payload)}` });
        const note = await server.receive(ANY);
        results.set('note', { ok: note.type === (NOTIFY_MESSAGE | sim.space.privId(sim.space.slotOf(notifier.endpoint))), value: (note.payload as { arg: number }).arg, code: undefined, at: sim.now() });
        for (let i = 0; i < 4; i++) {
          const m = await server.receive(ANY);
          if (m.payload !== 'q2') await server.reply(m.source, { type: 0, payload: `re:${String(m.payload)}` });
        }
      });
    });
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    for (const name of ['taken0', 'taken1', 'taken2', 'q0', 'q1', 'late']) {
      const r = results.get(name);
      expect(r?.ok, name).toBe(true);
      expect((r?.value as Message).payload, name).toBe(`re:${name}`);
      expect((r?.value as Message).source, name).toBe(s.endpoint);
    }
    expect(results.get('q2')?.ok).toBe(true);
    expect(results.get('note')).toMatchObject({ ok: true, value: 5 });
    expect(retired).toMatchObject({ ok: false, code: 'EDVSSHUTDOWN', at: 150 });
    for (const n of [0, 1]) expect(sim.kernel(n).route(sim.dcid, s.endpoint)).toMatchObject({ kind: 'remote', node: 2, epoch: 1 });
    expect(sim.kernel(2).route(sim.dcid, s.endpoint)).toEqual({ kind: 'local', endpoint: s.endpoint, epoch: 1 });
  });

  it('a caller whose cancel reaches the old owner after the handover is withdrawn at the new one: it times out, and its request is never served', async () => {
    const sim = new Simulation({ seed: 8, nodes: 3, latency: FIXED });
    const s = sim.bind(0, { slot: 3, name: 's' });
    const c = sim.bind(1, { name: 'c' });
    const idle = sim.bind(2, { name: 'idle' });
    let answer: Outcome<Message> | undefined;
    sim.spawn('c', async () => {
      answer = await outcome(sim, c.sendrec(s.endpoint, { type: 1, payload: 'x' }, { timeoutMs: 101 }));
    });
    sim.spawn('old server', async () => {
      await outcome(sim, s.receive(idle.endpoint));
    });
    let moved: Process | undefined;
    let served: Outcome<Message> | undefined;
    sim.after(100, () => {
      freezeEverywhere(sim, s.endpoint, 0);
      moved = sim.kernel(2).absorb(sim.kernel(0).drain(sim.dcid, s.endpoint, 2));
      sim.spawn('new server', async (ctx) => {
        // It starts receiving only after the caller's cancel has had time to go round.
        await ctx.sleep(200);
        served = await outcome(sim, moved!.receive(ANY, { timeoutMs: 500 }));
      });
    });
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    expect(answer).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT' });
    expect(served).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT' });
  });

  it('drain refuses an endpoint that is not frozen here or not quiescent (blocked in a receive)', async () => {
    const sim = new Simulation({ seed: 9, nodes: 2, latency: FIXED });
    const s = sim.bind(0, { slot: 3, name: 's' });
    const other = sim.bind(1, { slot: 4, name: 'o' });
    expect(() => sim.kernel(0).drain(sim.dcid, s.endpoint, 1)).toThrow(expect.objectContaining({ code: 'EDVSPROCSTS' }));
    sim.spawn('s', async () => {
      await outcome(sim, s.send(other.endpoint, { type: 1, payload: 0 }, { timeoutMs: 200 }));
    });
    sim.after(10, () => {
      sim.kernel(0).freeze(sim.dcid, s.endpoint, 0, 1000);
      expect(() => sim.kernel(0).drain(sim.dcid, s.endpoint, 1)).toThrow(expect.objectContaining({ code: 'EDVSBUSY' }));
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
  });
});
