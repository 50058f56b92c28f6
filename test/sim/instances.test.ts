/**
 * Instance groups (docs/instances.md) in the simulator: one endpoint bound by a stateless instance
 * on several nodes; calls spread by power of two choices, and a member that dies, leaves or joins
 * while clients call costs no failed call.
 */
import { describe, it, expect } from 'vitest';
import type { InstanceGroupRecord } from '../../src/cluster/directory.js';
import type { Endpoint } from '../../src/ipc/endpoint.js';
import type { Process } from '../../src/kernel/process.js';
import { SimCluster, Simulation } from '../../src/sim/index.js';
import { assertClean, outcome } from './helpers.js';

const SLOT = 20; // a system slot (notify-able), as a VOS server's would be

interface Group {
  readonly ep: Endpoint;
  readonly instances: Map<number, Process>;
  /** Requests each node's instance served. */
  readonly served: Map<number, number>;
}

/** Binds an instance of the group's endpoint on `node`: it answers each request with its node id after `workMs`. */
function startInstance(sim: Simulation, g: Group, node: number, workMs: () => number): Process {
  const p = sim.kernel(node).bind(sim.dcid, { endpoint: g.ep, name: 'echo' });
  g.instances.set(node, p);
  sim.spawn(
    `echo@n${node}`,
    async (ctx) => {
      for (;;) {
        let m;
        try {
          m = await p.receiveRequest();
        } catch {
          return;
        }
        await ctx.sleep(workMs());
        g.served.set(node, (g.served.get(node) ?? 0) + 1);
        await p.reply(m.source, { type: 1, payload: { node, echo: m.payload } }).catch(() => undefined);
      }
    },
    { daemon: true },
  );
  return p;
}

function setMembers(sim: Simulation, g: Group, members: number[]): void {
  for (const n of sim.nodes) sim.kernel(n).setInstances(sim.dcid, g.ep, { members, name: 'echo' });
}

function group(sim: Simulation): Group {
  return { ep: sim.space.make(0, SLOT), instances: new Map(), served: new Map() };
}

interface Load {
  readonly ok: number[];
  readonly failed: string[];
  /** Answers per answering node, in order of the calls' ends: [time, node]. */
  readonly answers: [number, number][];
}

/** `n` clients on `node`, each calling the group `calls` times (with a small think time). */
function clients(sim: Simulation, g: Group, node: number, n: number, calls: number, load: Load): void {
  for (let c = 0; c < n; c++) {
    const p = sim.bind(node, { name: `c${node}.${c}` });
    sim.spawn(`client${node}.${c}`, async (ctx) => {
      for (let i = 0; i < calls; i++) {
        const r = await outcome(sim, p.sendrec(g.ep, { type: 2, payload: { c, i } }, { timeoutMs: 10_000 }));
        if (r.ok && r.value !== undefined) {
          const ans = r.value.payload as { node: number; echo: { c: number; i: number } };
          expect(ans.echo).toEqual({ c, i });
          load.ok.push(ans.node);
          load.answers.push([sim.now(), ans.node]);
        } else load.failed.push(`${c}/${i}: ${r.code ?? '?'}`);
        await ctx.jitter();
      }
    });
  }
}

function share(list: number[], node: number): number {
  return list.filter((n) => n === node).length / list.length;
}

describe('instance groups', () => {
  it('calls spread evenly over the members (a local instance is one of them)', async () => {
    const sim = new Simulation({ seed: 41, nodes: 4, latency: { min: 1, max: 4 } });
    const g = group(sim);
    for (const n of [1, 2, 3]) startInstance(sim, g, n, () => sim.random.int(2, 6));
    setMembers(sim, g, [1, 2, 3]);
    const load: Load = { ok: [], failed: [], answers: [] };
    clients(sim, g, 0, 8, 60, load);
    clients(sim, g, 1, 2, 60, load);
    assertClean(sim, await sim.run({ maxTime: 60_000 }));
    expect(load.failed).toEqual([]);
    expect(load.ok.length).toBe(600);
    for (const n of [1, 2, 3]) {
      // An even share is 1/3: power of two choices keeps each member close to it.
      expect(share(load.ok, n)).toBeGreaterThan(0.22);
      expect(share(load.ok, n)).toBeLessThan(0.45);
    }
    // Each kernel's count of calls in flight is back to zero.
    for (const n of sim.nodes) expect(sim.kernel(n).instanceInfo(sim.dcid, g.ep)?.load).toEqual({});
    const info = sim.kernel(0).instanceInfo(sim.dcid, g.ep);
    expect(info?.live).toEqual([1, 2, 3]);
    expect(Object.values(info?.sent ?? {}).reduce((a, b) => a + b, 0)).toBe(480);
  });

  it('a slow member gets fewer calls: the choice follows outstanding requests', async () => {
    const sim = new Simulation({ seed: 42, nodes: 4, latency: { min: 1, max: 2 } });
    const g = group(sim);
    startInstance(sim, g, 1, () => 2);
    startInstance(sim, g, 2, () => 2);
    startInstance(sim, g, 3, () => 30);
    setMembers(sim, g, [1, 2, 3]);
    const load: Load = { ok: [], failed: [], answers: [] };
    clients(sim, g, 0, 6, 50, load);
    assertClean(sim, await sim.run({ maxTime: 60_000 }));
    expect(load.failed).toEqual([]);
    expect(share(load.ok, 3)).toBeLessThan(0.2);
  });

  it('a member killed under load costs no failed call', async () => {
    const sim = new Simulation({ seed: 43, nodes: 4, latency: { min: 1, max: 4 }, detectionDelay: 100 });
    const g = group(sim);
    for (const n of [1, 2, 3]) startInstance(sim, g, n, () => sim.random.int(2, 6));
    setMembers(sim, g, [1, 2, 3]);
    const load: Load = { ok: [], failed: [], answers: [] };
    clients(sim, g, 0, 8, 80, load);
    let killedAt = -1;
    sim.after(150, () => {
      killedAt = sim.now();
      sim.crash(2);
    });
    assertClean(sim, await sim.run({ maxTime: 60_000 }));
    expect(killedAt).toBe(150);
    expect(load.failed).toEqual([]);
    expect(load.ok.length).toBe(640);
    // Node 2 served calls before it died and none once it was known down.
    expect(load.answers.filter(([t, n]) => n === 2 && t < killedAt).length).toBeGreaterThan(10);
    expect(load.answers.filter(([t, n]) => n === 2 && t > killedAt + 100).length).toBe(0);
    expect(sim.kernel(0).instanceInfo(sim.dcid, g.ep)?.live).toEqual([1, 3]);
    expect(sim.kernel(0).instanceInfo(sim.dcid, g.ep)?.resent).toBeGreaterThan(0);
  });

  it('an instance stopped under load costs no failed call: its queued and taken calls go to another member', async () => {
    const sim = new Simulation({ seed: 44, nodes: 4, latency: { min: 1, max: 4 } });
    const g = group(sim);
    for (const n of [1, 2, 3]) startInstance(sim, g, n, () => sim.random.int(2, 6));
    setMembers(sim, g, [1, 2, 3]);
    const load: Load = { ok: [], failed: [], answers: [] };
    clients(sim, g, 0, 6, 80, load);
    // Clients on node 2 itself: its local instance goes too.
    clients(sim, g, 2, 2, 80, load);
    let stoppedAt = -1;
    sim.after(150, () => {
      stoppedAt = sim.now();
      void g.instances.get(2)?.unbind();
      // The directory drops it a little later.
      sim.after(30, () => setMembers(sim, g, [1, 3]));
    });
    assertClean(sim, await sim.run({ maxTime: 60_000 }));
    expect(load.failed).toEqual([]);
    expect(load.ok.length).toBe(640);
    expect(load.answers.filter(([t, n]) => n === 2 && t > stoppedAt + 20).length).toBe(0);
    expect(sim.kernel(2).instanceInfo(sim.dcid, g.ep)?.live).toEqual([1, 3]);
  });

  it('a member added while clients call starts receiving calls', async () => {
    const sim = new Simulation({ seed: 45, nodes: 4, latency: { min: 1, max: 4 } });
    const g = group(sim);
    for (const n of [1, 2]) startInstance(sim, g, n, () => sim.random.int(2, 6));
    setMembers(sim, g, [1, 2]);
    const load: Load = { ok: [], failed: [], answers: [] };
    clients(sim, g, 0, 6, 80, load);
    let addedAt = -1;
    sim.after(150, () => {
      addedAt = sim.now();
      startInstance(sim, g, 3, () => sim.random.int(2, 6));
      setMembers(sim, g, [1, 2, 3]);
    });
    assertClean(sim, await sim.run({ maxTime: 60_000 }));
    expect(load.failed).toEqual([]);
    expect(load.answers.filter(([t, n]) => n === 3 && t < addedAt).length).toBe(0);
    const after = load.answers.filter(([t]) => t > addedAt).map(([, n]) => n);
    expect(after.length).toBeGreaterThan(100);
    expect(share(after, 3)).toBeGreaterThan(0.2);
  });

  it('a frame whose source is the group endpoint is accepted from any member, refused from another node', async () => {
    const sim = new Simulation({ seed: 46, nodes: 4, latency: { min: 1, max: 2 } });
    const g = group(sim);
    startInstance(sim, g, 1, () => 1);
    const i2 = sim.kernel(2).bind(sim.dcid, { endpoint: g.ep, name: 'echo' });
    setMembers(sim, g, [1, 2]);
    const target = sim.bind(0, { slot: 30, name: 'target' });
    const got: number[] = [];
    sim.spawn('target', async () => {
      for (let i = 0; i < 1; i++) {
        const m = await target.receive(g.ep as number);
        got.push((m.payload as { n: number }).n);
      }
    });
    sim.spawn('i2', async () => {
      await i2.send(target.endpoint, { type: 3, payload: { n: 2 } });
    });
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    expect(got).toEqual([2]);
    expect(sim.kernel(0).stats.sourcesRefused).toBe(0);
    // From a node that is not a member, the same source is a forgery: refused.
    sim.kernel(0).receiveFrame(3, { k: 'send', dc: sim.dcid, id: 1, src: g.ep, dst: target.endpoint, type: 3, payload: { n: 3 }, rec: false });
    expect(sim.kernel(0).stats.sourcesRefused).toBe(1);
  });
  it('a member node taken out of the DC leaves the group; calls go on to the others', async () => {
    const sim = new Simulation({ seed: 50, nodes: 4, latency: { min: 1, max: 4 } });
    const g = group(sim);
    for (const n of [1, 2, 3]) startInstance(sim, g, n, () => sim.random.int(2, 6));
    setMembers(sim, g, [1, 2, 3]);
    const load: Load = { ok: [], failed: [], answers: [] };
    clients(sim, g, 0, 4, 60, load);
    let at = -1;
    sim.after(100, () => {
      at = sim.now();
      sim.kernel(0).removeNode(sim.dcid, 2);
    });
    assertClean(sim, await sim.run({ maxTime: 60_000 }));
    expect(load.failed).toEqual([]);
    expect(load.answers.filter(([t, n]) => n === 2 && t > at + 20).length).toBe(0);
    expect(sim.kernel(0).instanceInfo(sim.dcid, g.ep)?.live).toEqual([1, 3]);
    expect(sim.kernel(0).route(sim.dcid, g.ep)).toMatchObject({ kind: 'group', members: [1, 3] });
  });
});

describe('instance groups: notify, timeouts', () => {
  it('a notify reaches one live member', async () => {
    const sim = new Simulation({ seed: 48, nodes: 4, latency: { min: 1, max: 2 } });
    const g = group(sim);
    const got: number[] = [];
    for (const n of [1, 2]) {
      const p = sim.kernel(n).bind(sim.dcid, { endpoint: g.ep, name: 'echo' });
      sim.spawn(`rx@n${n}`, async () => {
        for (;;) {
          const m = await p.receive(sim.space.make(0, SLOT + 1)).catch(() => undefined);
          if (m === undefined) return;
          got.push(n);
        }
      }, { daemon: true });
    }
    setMembers(sim, g, [1, 2]);
    const src = sim.bind(0, { slot: SLOT + 1, name: 'src' });
    sim.spawn('notifier', async (ctx) => {
      for (let i = 0; i < 20; i++) {
        await src.notify(g.ep, { arg: i });
        await ctx.sleep(10);
      }
    });
    assertClean(sim, await sim.run({ maxTime: 5000 }));
    expect(got.length).toBe(20);
    expect(new Set(got)).toEqual(new Set([1, 2]));
  });

  it("with no live member the call waits for one within its timeout, then fails with the caller's timeout", async () => {
    const sim = new Simulation({ seed: 49, nodes: 3, latency: { min: 1, max: 2 } });
    const g = group(sim);
    setMembers(sim, g, [1, 2]); // listed, but no instance started yet
    const c = sim.bind(0, { name: 'c' });
    let late: Awaited<ReturnType<typeof outcome>> | undefined;
    let early: Awaited<ReturnType<typeof outcome>> | undefined;
    sim.spawn('early', async () => {
      early = await outcome(sim, c.sendrec(g.ep, { type: 1, payload: 0 }, { timeoutMs: 300 }));
    });
    sim.after(400, () => startInstance(sim, g, 2, () => 1));
    const c2 = sim.bind(0, { name: 'c2' });
    sim.spawn('late', async (ctx) => {
      await ctx.sleep(350);
      late = await outcome(sim, c2.sendrec(g.ep, { type: 1, payload: 1 }, { timeoutMs: 3000 }));
    });
    assertClean(sim, await sim.run({ maxTime: 10_000 }));
    expect(early).toMatchObject({ ok: false, code: 'EDVSTIMEDOUT', at: 300 });
    expect(late?.ok).toBe(true);
    expect((late?.value as { payload: { node: number } } | undefined)?.payload.node).toBe(2);
  });
});

describe('instance groups through the directory (SimCluster: store, directories, reconcilers)', () => {
  it('the record makes the group on every node; a member whose node dies leaves it; calls never fail', async () => {
    const c = new SimCluster({ seed: 47, nodes: 4, latency: { min: 1, max: 4 }, leaseTtlMs: 500 });
    await c.start();
    await c.createDc({ dcid: 1, nodes: [0, 1, 2, 3] });
    const served = new Map<number, number>();
    const load: Load = { ok: [], failed: [], answers: [] };
    let client: Process | undefined;
    let group: InstanceGroupRecord | undefined;
    c.spawn('setup', async () => {
      group = await c.node(0).directory.putInstanceGroup(1, SLOT, { nodes: [1, 2, 3], name: 'echo' });
      client = await c.bind(0, 1, { name: 'cli' });
    });
    assertClean(c, await c.run({ maxTime: c.now() + 500 }));
    const rec = group!;
    for (const n of [1, 2, 3]) {
      expect(c.kernel(n).instanceInfo(1, rec.endpoint)?.members).toEqual([1, 2, 3]);
      const p = c.node(n).reconciler.bindInstance(1, SLOT);
      expect(p.endpoint).toBe(rec.endpoint);
      c.spawn(
        `echo@n${n}`,
        async (ctx) => {
          for (;;) {
            const m = await p.receiveRequest().catch(() => undefined);
            if (m === undefined) return;
            await ctx.sleep(3);
            served.set(n, (served.get(n) ?? 0) + 1);
            await p.reply(m.source, { type: 1, payload: { node: n, echo: m.payload } }).catch(() => undefined);
          }
        },
        { daemon: true },
      );
    }
    // The instances are not published as endpoints: the record is their claim.
    expect(c.node(0).directory.endpointAt(1, SLOT)).toBeUndefined();
    const cli = client!;
    c.spawn('client', async (ctx) => {
      for (let i = 0; i < 300; i++) {
        const r = await outcome(c, cli.sendrec(rec.endpoint, { type: 2, payload: i }, { timeoutMs: 10_000 }));
        if (r.ok) load.ok.push((r.value?.payload as { node: number }).node);
        else load.failed.push(`${i}: ${r.code ?? '?'}`);
        await ctx.jitter();
      }
    });
    c.after(300, () => c.crash(3));
    assertClean(c, await c.run({ maxTime: c.now() + 30_000 }));
    expect(load.failed).toEqual([]);
    expect(load.ok.length).toBe(300);
    // Node 3 served until it crashed (at about a tenth of the run), then nodes 1 and 2 took over.
    expect(share(load.ok, 3)).toBeGreaterThan(0);
    for (const n of [1, 2]) expect(share(load.ok, n)).toBeGreaterThan(0.3);
    // Node 3's registration went with its lease: the reconcilers dropped it from the group.
    expect(c.kernel(0).instanceInfo(1, rec.endpoint)?.members).toEqual([1, 2]);
  });
});
