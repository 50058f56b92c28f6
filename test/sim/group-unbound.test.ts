/**
 * A group's endpoint keeps its value from one primary to the next (docs/replication.md, RADAR):
 * the 'unbound' a deposed primary's node broadcasts when it lets the endpoint go may arrive after
 * the route moved to its successor. It must end only the calls that node had taken, never the
 * route to the successor.
 */
import { describe, expect, it } from 'vitest';
import type { Message } from '../../src/ipc/message.js';
import type { Process } from '../../src/kernel/process.js';
import { Simulation } from '../../src/sim/index.js';
import { assertClean, outcome, type Outcome } from './helpers.js';

describe("a late 'unbound' from a deposed primary's node", () => {
  it('leaves the route to the successor and its calls alone', async () => {
    const sim = new Simulation({ seed: 31, nodes: 3, latency: { min: 5, max: 5 } });
    const group = sim.bind(1, { slot: 4, name: 'group' });
    const client = sim.bind(0, { name: 'client' });
    const k0 = sim.kernel(0);
    let call: Outcome<Message> | undefined;
    let retired: Outcome<Message> | undefined;
    sim.spawn('old primary', async () => {
      retired = await outcome(sim, group.receiveRequest());
    });
    sim.spawn('test', async (ctx) => {
      await ctx.sleep(10);
      // The primary's role passes to node 2, at the next epoch; node 0's directory learns it.
      for (const n of sim.nodes) expect(sim.kernel(n).freeze(sim.dcid, group.endpoint, 0, 10_000)).toBe(true);
      const successor: Process = sim.kernel(2).absorb(sim.kernel(1).drain(sim.dcid, group.endpoint, 0), { name: 'group' });
      expect(k0.bindRemote(sim.dcid, group.endpoint, 2, 'group', 1)).toBe(true);
      sim.spawn('successor', async () => {
        const m = await successor.receiveRequest();
        await successor.reply(m.source, { type: 0, payload: 'from node 2' });
      });
      await ctx.sleep(40);
      // Node 1's kernel announces the endpoint gone there, late.
      k0.receiveFrame(1, { k: 'unbound', dc: sim.dcid, ep: group.endpoint });
      expect(k0.route(sim.dcid, group.endpoint)).toMatchObject({ kind: 'remote', node: 2, epoch: 1 });
      call = await outcome(sim, client.sendrec(group.endpoint, { type: 1, payload: 'q' }, { timeoutMs: 1000 }));
    });
    assertClean(sim, await sim.run({ maxTime: 3000 }));
    expect(retired).toMatchObject({ ok: false, code: 'EDVSSHUTDOWN' });
    expect(call).toMatchObject({ ok: true, value: { payload: 'from node 2' } });
  });

  it('from the node the route names, still ends the route (the endpoint died there)', async () => {
    const sim = new Simulation({ seed: 32, nodes: 3, latency: { min: 5, max: 5 } });
    const server = sim.bind(1, { slot: 4, name: 'server' });
    const k0 = sim.kernel(0);
    sim.spawn('test', async (ctx) => {
      await ctx.sleep(10);
      k0.receiveFrame(1, { k: 'unbound', dc: sim.dcid, ep: server.endpoint });
      expect(() => k0.route(sim.dcid, server.endpoint)).toThrow(/EDVSDSTDIED/);
    });
    assertClean(sim, await sim.run({ maxTime: 1000 }));
  });
});
