/**
 * The simulator is deterministic: a seed fixes the PRNG, the latencies, the order of same-time
 * events and so the whole interleaving; different seeds explore different interleavings.
 */
import { describe, it, expect } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import type { KernelFrame } from '../../src/kernel/index.js';
import { Prng, SimClock, SimNetwork, Simulation } from '../../src/sim/index.js';
import { runChaos, type ChaosParams } from './workload.js';

const BASE: ChaosParams = { seed: 1, nodes: 3, servers: 2, clients: 4, ops: 6, notifiers: 2, timeouts: true, aborts: true, rebinds: true, pipelining: true, crashes: true, copies: true };

function outcomes(run: Awaited<ReturnType<typeof runChaos>>): string {
  return JSON.stringify({ sends: run.sends, receipts: run.receipts, notes: run.notes, replies: run.replies, notifies: run.notifies, copies: run.copies });
}

describe('Prng', () => {
  it('repeats its sequence for a seed and differs across seeds', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const c = new Prng(43);
    const sa = Array.from({ length: 100 }, () => a.nextU32());
    const sb = Array.from({ length: 100 }, () => b.nextU32());
    const sc = Array.from({ length: 100 }, () => c.nextU32());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
    expect(new Set(sa).size).toBeGreaterThan(95);
  });

  it('int stays within its inclusive bounds and reaches both; next is in [0, 1)', () => {
    const r = new Prng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = r.int(-3, 3);
      expect(Number.isInteger(v) && v >= -3 && v <= 3).toBe(true);
      seen.add(v);
      const f = r.next();
      expect(f >= 0 && f < 1).toBe(true);
    }
    expect([...seen].sort((x, y) => x - y)).toEqual([-3, -2, -1, 0, 1, 2, 3]);
    expect(() => r.int(2, 1)).toThrow(RangeError);
    expect(() => r.pick([])).toThrow(RangeError);
  });

  it('pick, chance, shuffle and fork are seed-determined', () => {
    const draw = (seed: number): unknown[] => {
      const r = new Prng(seed);
      const f = r.fork();
      return [r.pick(['a', 'b', 'c', 'd']), r.chance(0.5), r.shuffle([1, 2, 3, 4, 5, 6]), f.nextU32()];
    };
    expect(draw(9)).toEqual(draw(9));
    const r = new Prng(9);
    let hits = 0;
    for (let i = 0; i < 1000; i++) if (r.chance(0.25)) hits++;
    expect(hits).toBeGreaterThan(180);
    expect(hits).toBeLessThan(320);
    expect(r.chance(0)).toBe(false);
    expect(r.shuffle([3, 1, 2]).sort()).toEqual([1, 2, 3]);
  });
});

describe('SimClock', () => {
  it('fires timers by time, then by creation order without a tie-breaker; clearTimer cancels', () => {
    const clock = new SimClock();
    const fired: string[] = [];
    clock.setTimer(10, () => fired.push('b'));
    clock.setTimer(5, () => fired.push('a'));
    clock.setTimer(10, () => fired.push('c'));
    const h = clock.setTimer(7, () => fired.push('cancelled'));
    clock.setTimer(-4, () => fired.push('now'));
    clock.clearTimer(h);
    expect(clock.pending()).toBe(4);
    expect(clock.runUntil(9)).toBe(2);
    expect(clock.now()).toBe(9);
    expect(clock.step()).toEqual({ time: 10, label: undefined });
    expect(clock.step()?.time).toBe(10);
    expect(clock.step()).toBeUndefined();
    expect(fired).toEqual(['now', 'a', 'b', 'c']);
    expect(clock.pending()).toBe(0);
  });

  it('orders same-time timers by the tie-breaker, reproducibly for a seed', () => {
    const order = (seed: number): number[] => {
      const r = new Prng(seed);
      const clock = new SimClock({ tieBreak: () => r.nextU32() });
      const fired: number[] = [];
      for (let i = 0; i < 12; i++) clock.setTimer(3, () => fired.push(i));
      clock.setTimer(1, () => fired.push(-1));
      clock.runUntil(100);
      return fired;
    };
    expect(order(5)).toEqual(order(5));
    expect(order(5)[0]).toBe(-1);
    expect(order(5)).not.toEqual(order(6));
    expect([...order(5)].sort((x, y) => x - y)).toEqual([-1, ...Array.from({ length: 12 }, (_, i) => i)]);
  });

  it('a timer set while running fires in the same pass when due', () => {
    const clock = new SimClock();
    const fired: number[] = [];
    clock.setTimer(1, () => {
      fired.push(clock.now());
      clock.setTimer(0, () => fired.push(clock.now() + 0.5));
    });
    clock.runUntil(1);
    expect(fired).toEqual([1, 1.5]);
  });
});

describe('SimNetwork', () => {
  function net(seed: number, latency = { min: 0, max: 20 }) {
    const r = new Prng(seed);
    const clock = new SimClock({ tieBreak: () => r.nextU32() });
    const network = new SimNetwork(clock, new Prng(seed + 1), { latency, detectionDelay: 50 });
    const got: { at: number; to: number; from: number; frame: KernelFrame }[] = [];
    const events: string[] = [];
    const peer = (n: number) => ({
      receiveFrame: (from: number, frame: KernelFrame) => got.push({ at: clock.now(), to: n, from, frame }),
      nodeDown: (node: number) => events.push(`${n} down ${node}`),
      nodeUp: (node: number) => events.push(`${n} up ${node}`),
    });
    const t = [0, 1, 2].map((n) => network.attach(n, peer(n)));
    return { clock, network, got, events, t };
  }

  it('keeps each link FIFO whatever the latencies and ties, and deep-copies frames', () => {
    const { clock, got, t } = net(3, { min: 0, max: 3 });
    const sent: KernelFrame[] = [];
    for (let i = 0; i < 60; i++) {
      const from = i % 3;
      const to = (from + 1 + (i % 2)) % 3;
      const frame: KernelFrame = { k: 'notify', dc: 0, src: from, dst: to, arg: i };
      sent.push(frame);
      t[from]!.send(to, frame);
      if (i % 7 === 0) clock.runUntil(clock.now() + 1);
    }
    clock.runUntil(1000);
    expect(got).toHaveLength(60);
    for (const a of [0, 1, 2]) {
      for (const b of [0, 1, 2]) {
        const args = got.filter((g) => g.from === a && g.to === b).map((g) => (g.frame as { arg: number }).arg);
        expect(args).toEqual([...args].sort((x, y) => x - y));
      }
    }
    for (const g of got) {
      const original = sent[(g.frame as { arg: number }).arg]!;
      expect(g.frame).toEqual(original);
      expect(g.frame).not.toBe(original);
    }
    // Delivery times never go backwards on a link.
    const times = got.filter((g) => g.from === 0 && g.to === 1).map((g) => g.at);
    expect(times).toEqual([...times].sort((x, y) => x - y));
  });

  it('a crash loses frames both ways and declares the break after the detection delay; restore heals it', () => {
    const { clock, network, got, events, t } = net(4, { min: 5, max: 5 });
    t[0]!.send(1, { k: 'unbound', dc: 0, ep: 1 });
    t[1]!.send(2, { k: 'unbound', dc: 0, ep: 2 });
    t[2]!.send(0, { k: 'unbound', dc: 0, ep: 3 });
    clock.runUntil(2);
    network.crash(1);
    t[1]!.send(0, { k: 'unbound', dc: 0, ep: 4 });
    clock.runUntil(51);
    expect(got.map((g) => (g.frame as { ep: number }).ep)).toEqual([3]);
    expect(network.stats).toMatchObject({ sent: 4, delivered: 1, dropped: 3, droppedByKind: { unbound: 3 } });
    expect(events).toEqual([]);
    clock.runUntil(52);
    expect(events.sort()).toEqual(['0 down 1', '1 down 0', '1 down 2', '2 down 1']);
    network.restore(1);
    expect(events.slice(4).sort()).toEqual(['0 up 1', '1 up 0', '1 up 2', '2 up 1']);
    t[1]!.send(0, { k: 'unbound', dc: 0, ep: 5 });
    clock.runUntil(100);
    expect(got.map((g) => (g.frame as { ep: number }).ep)).toEqual([3, 5]);
  });

  it('a restore before detection still declares the break first', () => {
    const { clock, network, events } = net(5);
    network.crash(2);
    clock.runUntil(10);
    network.restore(2);
    expect(events).toEqual(['0 down 2', '2 down 0', '1 down 2', '2 down 1', '0 up 2', '2 up 0', '1 up 2', '2 up 1']);
    expect(clock.pending()).toBe(0);
  });
});

describe('Simulation determinism', () => {
  it('the same seed gives the identical trace and outcomes twice', async () => {
    const a = await runChaos(BASE);
    const b = await runChaos(BASE);
    expect(a.sim.trace.length).toBeGreaterThan(100);
    expect(b.sim.trace).toEqual(a.sim.trace);
    expect(outcomes(b)).toBe(outcomes(a));
    expect(b.result).toEqual(a.result);
  });

  it('a replay is unaffected by other runs in between', async () => {
    const first = await runChaos({ ...BASE, seed: 77 });
    await runChaos({ ...BASE, seed: 78 });
    const again = await runChaos({ ...BASE, seed: 77 });
    expect(again.sim.trace).toEqual(first.sim.trace);
  });

  it('different seeds give different interleavings', async () => {
    const traces: string[] = [];
    for (const seed of [101, 102, 103, 104, 105]) traces.push((await runChaos({ ...BASE, seed })).sim.trace.join('\n'));
    expect(new Set(traces).size).toBe(traces.length);
  });

  it('with equal latencies, only the seed orders same-time deliveries', async () => {
    const order = async (seed: number): Promise<number[]> => {
      const sim = new Simulation({ seed, nodes: 4, latency: { min: 3, max: 3 } });
      const srv = sim.bind(0, { slot: 1, name: 'srv' });
      const seen: number[] = [];
      const senders = [1, 2, 3, 1, 2, 3].map((n, i) => sim.bind(n, { name: `s${i}` }));
      for (const s of senders) sim.spawn(`s${s.endpoint}`, () => s.send(srv.endpoint, { type: 1 }));
      sim.spawn('srv', async () => {
        for (let i = 0; i < senders.length; i++) seen.push((await srv.receive(ANY)).source);
      });
      const r = await sim.run({ maxTime: 1000 });
      expect(r.reason).toBe('done');
      return seen;
    };
    const runs: number[][] = [];
    for (const seed of [1, 2, 3, 4, 5, 6]) runs.push(await order(seed));
    for (const r of runs) expect(r).toHaveLength(6);
    expect(await order(1)).toEqual(runs[0]);
    expect(new Set(runs.map((r) => r.join())).size).toBeGreaterThan(1);
  });
});

describe('Simulation scheduler', () => {
  it('stops on maxSteps and maxTime, and resumes where it stopped', async () => {
    const sim = new Simulation({ seed: 1, nodes: 1 });
    let ticks = 0;
    sim.spawn('ticker', async (ctx) => {
      for (let i = 0; i < 100; i++) {
        await ctx.sleep(10);
        ticks++;
      }
    });
    const r1 = await sim.run({ maxSteps: 5 });
    expect(r1).toMatchObject({ reason: 'maxSteps', steps: 5, time: 50, unfinished: ['ticker'] });
    const r2 = await sim.run({ maxTime: 205 });
    expect(r2).toMatchObject({ reason: 'maxTime', time: 205 });
    expect(ticks).toBe(20);
    const r3 = await sim.run();
    expect(r3).toMatchObject({ reason: 'done', time: 1000, unfinished: [] });
    expect(ticks).toBe(100);
    expect(sim.steps).toBe(100);
  });

  it('reports a deadlock as idle with the blocked processes, and collects failures', async () => {
    const sim = new Simulation({ seed: 2, nodes: 2 });
    const a = sim.bind(0, { slot: 1, name: 'a' });
    const b = sim.bind(1, { slot: 2, name: 'b' });
    sim.spawn('a', () => a.receive(b.endpoint));
    sim.spawn('b', () => b.receive(a.endpoint));
    sim.spawn('boom', async (ctx) => {
      await ctx.sleep(3);
      throw new Error('boom');
    });
    const c = sim.bind(0, { slot: 3, name: 'c' });
    sim.spawn('daemon', () => c.receive(ANY), { daemon: true });
    const r = await sim.run({ maxTime: 1000 });
    expect(r.reason).toBe('idle');
    expect(r.unfinished).toEqual(['a', 'b']);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.name).toBe('boom');
    expect(String(r.errors[0]!.error)).toContain('boom');
    expect(sim.formatTrace(5)).toMatch(/^simulation seed=2 \(\d+ earlier lines not shown\)\n/);
  });

  it('binds like a directory: descriptors everywhere, new generations on rebind, no double binding', async () => {
    const sim = new Simulation({ seed: 3, nodes: 3 });
    const s = sim.bind(1, { slot: 5, name: 'srv' });
    for (const n of [0, 2]) expect(sim.kernel(n).procs(sim.dcid).find((r) => r.slot === 5)).toMatchObject({ kind: 'remote', node: 1, endpoint: s.endpoint });
    expect(() => sim.bind(2, { slot: 5 })).toThrow(/EDVSSLOTUSED/);
    await s.unbind();
    const s2 = sim.bind(2, { slot: 5, name: 'srv' });
    expect(sim.space.generationOf(s2.endpoint)).toBe(1);
    expect(sim.whereIs(s2.endpoint)).toBe(2);
    for (const n of [0, 1]) expect(sim.kernel(n).procs(sim.dcid).find((r) => r.slot === 5)).toMatchObject({ kind: 'remote', node: 2, endpoint: s2.endpoint });
    const u1 = sim.bind(0);
    const u2 = sim.bind(1);
    expect(u1.endpoint).not.toBe(u2.endpoint);
    expect((await sim.run({ until: 'idle' })).reason).toBe('idle');
    // The late "unbound" of the first incarnation does not disturb the second.
    for (const n of [0, 1]) expect(sim.kernel(n).procs(sim.dcid).find((r) => r.slot === 5)?.endpoint).toBe(s2.endpoint);
  });
});
