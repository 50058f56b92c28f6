/**
 * The source of a frame from another node must be that node's by the receiving kernel's routes
 * (docs/kernel-protocol.md, "Rules the receiving kernel enforces"): a node holding the cluster key
 * cannot speak for an endpoint of another node, at any generation, nor take over a slot the
 * directory gave another node; a moving endpoint speaks from the node it was on, or waits; and a
 * node whose endpoint the others do not know yet (a slot claimed just now) is refused, then asks again.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import type { Message } from '../../src/ipc/message.js';
import type { KernelFrame, SendAckFrame } from '../../src/kernel/frames.js';
import type { Process } from '../../src/kernel/process.js';
import { SimCluster, Simulation } from '../../src/sim/index.js';
import { assertClean, outcome, type Outcome } from './helpers.js';

const FIXED = { min: 5, max: 5 };
const BADSRCDST = new DvsError('EDVSBADSRCDST').errno;

/** The send-acks node `node`'s kernel receives from now on, by frame id. */
function sendAcksTo(sim: Simulation, node: number): Map<number, SendAckFrame> {
  const k = sim.kernel(node);
  const acks = new Map<number, SendAckFrame>();
  const receive = k.receiveFrame.bind(k);
  k.receiveFrame = (from: number, frame: KernelFrame): void => {
    if (frame.k === 'send-ack') acks.set(frame.id, frame);
    receive(from, frame);
  };
  return acks;
}

describe('the source of a frame', () => {
  it("refuses a newer generation of another node's endpoint as a source, counts it, and keeps routing to the real endpoint", async () => {
    const sim = new Simulation({ seed: 21, nodes: 3, latency: FIXED });
    const victim = sim.bind(2, { slot: 4, name: 'victim' });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const c = sim.bind(1, { name: 'c' });
    const k1 = sim.kernel(1);
    const acks = sendAcksTo(sim, 0);
    const before = { ...k1.stats };
    // Node 0 (holding the cluster key) stamps the next generation of node 2's endpoint as its source.
    const forged = sim.space.make(sim.space.generationOf(victim.endpoint) + 1, sim.space.slotOf(victim.endpoint));
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 91, src: forged, dst: s.endpoint, type: 1, payload: 'forged', rec: false });
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 92, src: forged, dst: s.endpoint, type: 1, payload: 'forged', rec: true });
    k1.receiveFrame(0, { k: 'notify', dc: sim.dcid, src: forged, dst: s.endpoint, arg: 1 });
    // And an older one, and one of a slot bound here.
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 93, src: sim.space.make(0, 9), dst: s.endpoint, type: 1, payload: 'ok', rec: false });
    expect(k1.stats.sourcesRefused).toBe(before.sourcesRefused + 3);
    expect(k1.stats.framesRefused).toBe(before.framesRefused + 3);
    expect(k1.route(sim.dcid, victim.endpoint)).toEqual({ kind: 'remote', endpoint: victim.endpoint, node: 2, epoch: 0 });
    let got: Message | undefined;
    let nothingElse: Outcome<Message> | undefined;
    let call: Outcome<Message> | undefined;
    sim.spawn('s', async () => {
      got = await s.receive(sim.space.make(0, 9), { timeoutMs: 100 });
      nothingElse = await outcome(sim, s.receive(ANY, { timeoutMs: 100 }));
    });
    sim.spawn('victim', async () => {
      const m = await victim.receiveRequest();
      await victim.reply(m.source, { type: 0, payload: 'real' });
    });
    sim.spawn('c', async () => {
      call = await outcome(sim, c.sendrec(victim.endpoint, { type: 1, payload: 'hi' }, { timeoutMs: 1000 }));
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
    // A source in a slot nobody holds is learnt (autobind): here, slot 9.
    expect(got?.payload).toBe('ok');
    expect(nothingElse).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT' });
    expect(acks.get(91)?.rc).toBe(BADSRCDST);
    expect(acks.get(92)?.rc).toBe(BADSRCDST);
    expect(call).toMatchObject({ ok: true, value: { source: victim.endpoint, payload: 'real' } });
    expect(k1.route(sim.dcid, victim.endpoint)).toEqual({ kind: 'remote', endpoint: victim.endpoint, node: 2, epoch: 0 });
  });

  it('a source learnt from traffic never replaces a route of the directory; the directory replaces it, and a local bind claims its slot', async () => {
    const sim = new Simulation({ seed: 22, nodes: 3, latency: FIXED });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const c = sim.bind(1, { name: 'c' });
    const k1 = sim.kernel(1);
    // Node 0 claims two empty slots by traffic, at high generations.
    const squat = sim.space.make(5, 6);
    const squat2 = sim.space.make(5, 7);
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 1, src: squat, dst: s.endpoint, type: 1, payload: 'a', rec: false });
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 2, src: squat2, dst: s.endpoint, type: 1, payload: 'b', rec: false });
    expect(k1.route(sim.dcid, squat)).toEqual({ kind: 'remote', endpoint: squat, node: 0, epoch: -1 });
    // The directory then gives slot 6 to node 2 at a lower generation: its word wins.
    const real = sim.bind(2, { endpoint: sim.space.make(1, 6), name: 'real' });
    expect(k1.route(sim.dcid, real.endpoint)).toEqual({ kind: 'remote', endpoint: real.endpoint, node: 2, epoch: 0 });
    // Slot 7 is claimed on node 1 itself (the directory's claim): the route learnt from traffic gives way.
    const mine = k1.bind(sim.dcid, { endpoint: sim.space.make(1, 7), name: 'mine' });
    expect(k1.route(sim.dcid, mine.endpoint)).toMatchObject({ kind: 'local' });
    const before = k1.stats.sourcesRefused;
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 3, src: squat, dst: s.endpoint, type: 1, payload: 'c', rec: false });
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 4, src: sim.space.make(9, 6), dst: s.endpoint, type: 1, payload: 'd', rec: false });
    expect(k1.stats.sourcesRefused).toBe(before + 2);
    let call: Outcome<Message> | undefined;
    // Nothing reaches s: the squatters' queued sends went with their routes, the later ones were refused.
    const got: unknown[] = [];
    sim.spawn('s', async () => {
      for (;;) {
        const r = await outcome(sim, s.receive(ANY, { timeoutMs: 100 }));
        if (!r.ok) break;
        got.push(r.value?.payload);
      }
    });
    sim.spawn('real', async () => {
      const m = await real.receiveRequest();
      await real.reply(m.source, { type: 0, payload: 'real' });
    });
    sim.spawn('c', async () => {
      call = await outcome(sim, c.sendrec(real.endpoint, { type: 1, payload: 'hi' }, { timeoutMs: 1000 }));
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
    expect(got).toEqual([]);
    expect(call).toMatchObject({ ok: true, value: { payload: 'real' } });
  });

  it('a slot claimed on another node while these routes still place it on the old one: refused, asked again, delivered once the directory tells', async () => {
    const sim = new Simulation({ seed: 23, nodes: 3, latency: FIXED });
    const old = sim.bind(2, { slot: 5, name: 'old' });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const k0 = sim.kernel(0);
    const k1 = sim.kernel(1);
    // The slot was released on node 2 and claimed on node 0; node 1's directory has not caught up.
    k0.unbind(sim.dcid, old.endpoint);
    const fresh = k0.bind(sim.dcid, { endpoint: sim.space.make(sim.space.generationOf(old.endpoint) + 1, 5), name: 'fresh' });
    let call: Outcome<Message> | undefined;
    let served: Message | undefined;
    sim.spawn('s', async () => {
      served = await s.receiveRequest();
      await s.reply(served.source, { type: 0, payload: 'answer' });
    });
    sim.spawn('fresh', async () => {
      call = await outcome(sim, fresh.sendrec(s.endpoint, { type: 1, payload: 'q' }, { timeoutMs: 2000 }));
    });
    sim.after(100, () => {
      expect(k1.stats.sourcesRefused).toBeGreaterThan(0);
      expect(served).toBeUndefined();
      // The directory's news reaches node 1.
      expect(k1.bindRemote(sim.dcid, fresh.endpoint, 0, 'fresh', 0)).toBe(true);
    });
    assertClean(sim, await sim.run({ maxTime: 3000 }));
    expect(served?.source).toBe(fresh.endpoint);
    expect(call).toMatchObject({ ok: true, value: { payload: 'answer' } });
    expect(call!.at).toBeGreaterThanOrEqual(100);
    expect(call!.at).toBeLessThan(400);
  });

  it('a caller refused that way fails with its own timeout or abort while it waits to ask again, and with EDVSBADSRCDST once it gave up asking', async () => {
    const sim = new Simulation({ seed: 24, nodes: 3, latency: FIXED });
    const old = sim.bind(2, { slot: 5, name: 'old' });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const k0 = sim.kernel(0);
    k0.unbind(sim.dcid, old.endpoint);
    const fresh = k0.bind(sim.dcid, { endpoint: sim.space.make(sim.space.generationOf(old.endpoint) + 1, 5), name: 'fresh' });
    const other = k0.bind(sim.dcid, { name: 'other' });
    let sent: Outcome<void> | undefined;
    let asked: Outcome<Message> | undefined;
    let aborted: Outcome<Message> | undefined;
    let untimed: Outcome<void> | undefined;
    let received: Outcome<Message> | undefined;
    sim.spawn('s', async () => {
      received = await outcome(sim, s.receive(ANY, { timeoutMs: 8000 }));
    });
    sim.spawn('send', async () => {
      sent = await outcome(sim, fresh.send(s.endpoint, { type: 1, payload: 'x' }, { timeoutMs: 50 }));
      const ac = new AbortController();
      sim.after(40, () => ac.abort());
      aborted = await outcome(sim, fresh.sendrec(s.endpoint, { type: 1, payload: 'z' }, { signal: ac.signal }));
      untimed = await outcome(sim, fresh.send(s.endpoint, { type: 1, payload: 'w' }));
    });
    sim.spawn('sendrec', async () => {
      asked = await outcome(sim, other.sendrec(s.endpoint, { type: 1, payload: 'y' }, { timeoutMs: 50 }));
    });
    assertClean(sim, await sim.run({ maxTime: 20_000 }));
    // 'other' was bound on node 0 without node 1 hearing of it either: in a free slot, it is learnt.
    expect(asked).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT' });
    expect(received).toMatchObject({ ok: true, value: { source: other.endpoint, payload: 'y' } });
    expect(sent).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT', at: 50 });
    expect(aborted).toMatchObject({ ok: false, code: 'EDVSINTR' });
    expect(untimed).toMatchObject({ ok: false, code: 'EDVSBADSRCDST' });
    expect(untimed!.at - aborted!.at).toBeGreaterThan(3000);
    expect(untimed!.at - aborted!.at).toBeLessThan(10_000);
  });
});

describe('the source of a frame, while it moves', () => {
  it('a frozen source speaks from the node it was on; from another node its frames wait, and are refused if it stays', async () => {
    const sim = new Simulation({ seed: 25, nodes: 3, latency: FIXED });
    const victim = sim.bind(2, { slot: 4, name: 'victim' });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const k1 = sim.kernel(1);
    const acks = sendAcksTo(sim, 0);
    expect(k1.freeze(sim.dcid, victim.endpoint, 0, 10_000)).toBe(true);
    const before = k1.stats.sourcesRefused;
    const newer = sim.space.make(sim.space.generationOf(victim.endpoint) + 1, 4);
    // From node 0: this very endpoint waits (it may be moving there); a newer generation is refused.
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 61, src: victim.endpoint, dst: s.endpoint, type: 1, payload: 'from 0', rec: false });
    k1.receiveFrame(0, { k: 'notify', dc: sim.dcid, src: victim.endpoint, dst: s.endpoint, arg: 1 });
    k1.receiveFrame(0, { k: 'send', dc: sim.dcid, id: 62, src: newer, dst: s.endpoint, type: 1, payload: 'newer', rec: false });
    expect(k1.stats.sourcesRefused).toBe(before + 1);
    expect(k1.route(sim.dcid, victim.endpoint)).toMatchObject({ kind: 'frozen', parked: 2 });
    const got: Outcome<Message>[] = [];
    sim.spawn('s', async () => {
      for (let i = 0; i < 2; i++) got.push(await outcome(sim, s.receive(ANY, { timeoutMs: 200 })));
    });
    // From node 2, where it was: delivered while frozen.
    sim.spawn('victim', async () => {
      await victim.send(s.endpoint, { type: 1, payload: 'from 2' });
    });
    sim.after(100, () => {
      // The move did not happen: node 0's frames are refused now, and counted.
      expect(k1.thaw(sim.dcid, victim.endpoint, 0)).toBe(true);
      expect(k1.stats.sourcesRefused).toBe(before + 3);
    });
    assertClean(sim, await sim.run({ maxTime: 2000 }));
    expect(got.map((g) => g.value?.payload ?? g.code)).toEqual(['from 2', 'EDVSTIMEDOUT']);
    expect(acks.get(61)?.rc).toBe(BADSRCDST);
    expect(acks.get(62)?.rc).toBe(BADSRCDST);
  });

  it('an endpoint that moved speaks from its new node at once: its frames wait where the route is still frozen, until the directory moves it', async () => {
    const sim = new Simulation({ seed: 26, nodes: 3, latency: FIXED });
    const victim = sim.bind(2, { slot: 4, name: 'victim' });
    const s = sim.bind(1, { slot: 3, name: 's' });
    const idle = sim.bind(0, { name: 'idle' });
    const k1 = sim.kernel(1);
    for (const n of sim.nodes) expect(sim.kernel(n).freeze(sim.dcid, victim.endpoint, 0, 10_000)).toBe(true);
    let moved: Process | undefined;
    let retired: Outcome<Message> | undefined;
    sim.spawn('old', async () => {
      retired = await outcome(sim, victim.receive(idle.endpoint));
    });
    let call: Outcome<Message> | undefined;
    let note: Message | undefined;
    let request: Message | undefined;
    sim.after(10, () => {
      moved = sim.kernel(0).absorb(sim.kernel(2).drain(sim.dcid, victim.endpoint, 0), { name: 'victim' });
      sim.spawn('moved', async () => {
        await moved!.notify(s.endpoint, { arg: 7 });
        call = await outcome(sim, moved!.sendrec(s.endpoint, { type: 1, payload: 'q' }, { timeoutMs: 1000 }));
      });
    });
    sim.spawn('s', async () => {
      note = await s.receive(ANY);
      request = await s.receiveRequest();
      await s.reply(request.source, { type: 0, payload: 'a' });
    });
    sim.after(100, () => {
      expect(note).toBeUndefined();
      expect(k1.route(sim.dcid, victim.endpoint)).toMatchObject({ kind: 'frozen', parked: 2 });
      // The directory's flip reaches node 1.
      expect(k1.bindRemote(sim.dcid, victim.endpoint, 0, 'victim', 1)).toBe(true);
    });
    assertClean(sim, await sim.run({ maxTime: 3000 }));
    expect(retired).toMatchObject({ ok: false, code: 'EDVSSHUTDOWN' });
    expect(note?.source).toBe(victim.endpoint);
    expect((note?.payload as { arg: number } | undefined)?.arg).toBe(7);
    expect(request).toMatchObject({ source: victim.endpoint, payload: 'q' });
    expect(call).toMatchObject({ ok: true, value: { payload: 'a' } });
    expect(call!.at).toBeGreaterThanOrEqual(100);
    expect(k1.stats.sourcesRefused).toBe(0);
  });
});

describe('the source of a frame, in a whole cluster', () => {
  it('a client unbound on one node whose slot is claimed again on another calls a third node at once', async () => {
    let raced = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const c = new SimCluster({ seed, nodes: 3, latency: { min: 1, max: 40 }, storeLatency: 1 });
      await c.start();
      await c.createDc({ dcid: 1, nodes: [0, 1, 2] });
      let server: Process | undefined;
      let client: Process | undefined;
      c.spawn('bind', async () => {
        server = await c.bind(1, 1, { slot: 5, name: 'srv' });
        client = await c.bind(2, 1, { slot: 9, name: 'cli' });
      });
      assertClean(c, await c.run({ maxTime: c.now() + 1000 }));
      const srv = server!;
      const answers: Outcome<Message>[] = [];
      c.spawn('server', async () => {
        for (;;) {
          const m = await srv.receiveRequest();
          await srv.reply(m.source, { type: 0, payload: m.payload });
        }
      }, { daemon: true });
      c.spawn('clients', async (ctx) => {
        const first = client!;
        answers.push(await outcome(c, first.sendrec(srv.endpoint, { type: 1, payload: 'first' }, { timeoutMs: 2000 })));
        // Node 1's directory lags (its store is out of reach for a moment): only traffic tells it anything.
        c.storeReachable(1, false);
        c.after(300, () => c.storeReachable(1, true));
        await first.unbind();
        // Claimed again on node 0 as soon as node 0 lets go of its route to the old one.
        let again: Process | undefined;
        for (let i = 0; again === undefined && i < 100; i++) {
          const r = await outcome(c, c.bind(0, 1, { slot: 9, name: 'cli2' }));
          if (r.ok) again = r.value;
          else await ctx.sleep(1);
        }
        expect(again).toBeDefined();
        answers.push(await outcome(c, again!.sendrec(srv.endpoint, { type: 1, payload: 'second' }, { timeoutMs: 2000 })));
      });
      assertClean(c, await c.run({ maxTime: c.now() + 5000 }));
      expect(answers.map((a) => a.value?.payload ?? a.code), `seed ${seed}`).toEqual(['first', 'second']);
      raced += c.kernel(1).stats.sourcesRefused;
      await c.stop();
    }
    // At least one seed sent before node 1 knew of the new claim.
    expect(raced).toBeGreaterThan(0);
  });
});
