/**
 * Migration in the deterministic simulator: every node's agent and coroutine host over its kernel
 * and directory, as a daemon wires them. A counter service moves between nodes while clients on
 * every node keep calling: no client sees an error, every answer is the service's next count (its
 * state moved with it), and no request is served twice or lost.
 */
import { describe, expect, it } from 'vitest';
import type { M3Ipc } from '../../src/ipc/calls.js';
import type { Process } from '../../src/kernel/process.js';
import type { MigrationReport } from '../../src/services/migration-agent.js';
import type { Service } from '../../src/services/service.js';
import { SimCluster } from '../../src/sim/index.js';
import { wireMigration } from './sim-wiring.js';

const DC = 1;

/** Answers each request with the next count; its state is the count. */
function counter(): Service {
  let count = 0;
  let busy = false;
  return {
    async run(ipc: M3Ipc) {
      for (;;) {
        const m = await ipc.receiveRequest();
        if (m.payload === 'busy') busy = !busy;
        count++;
        await ipc.reply(m.source, { type: 0, payload: count });
      }
    },
    snapshot: () => Buffer.from(String(count)),
    restore: (s) => {
      count = Number(Buffer.from(s).toString());
    },
    movable: () => (busy ? 'in a transaction' : true),
  };
}


describe('migration in the simulator', () => {
  it('a counter service moves 0 → 1 → 2 → 0 while clients on every node call: no error, counts in order', async () => {
    const c = new SimCluster({ seed: 7, nodes: 3, latency: { min: 1, max: 4 } });
    await c.start();
    await c.createDc({ dcid: DC, nodes: [0, 1, 2] });
    const { agents, hosts } = wireMigration(c, counter);
    let ep = 0;
    const clients: Process[] = [];
    c.spawn('setup', async () => {
      ep = (await hosts[0]!.start(DC, { factory: 'counter', slot: 5, name: 'counter' })).endpoint;
      for (const n of c.nodes) clients.push(await c.bind(n, DC, { name: `c${n}` }));
    });
    await c.run({ maxTime: c.now() + 2000 });
    expect(ep).toBeGreaterThan(0);
    const seen: number[] = [];
    const errors: string[] = [];
    let stop = false;
    for (const [i, cl] of clients.entries()) {
      c.spawn(`client ${i}`, async (ctx) => {
        while (!stop) {
          try {
            const r = await cl.sendrec(ep, { type: 1, payload: i });
            seen.push(r.payload as number);
          } catch (err) {
            errors.push(String(err));
          }
          await ctx.jitter();
        }
      });
    }
    const reports: MigrationReport[] = [];
    c.spawn('coordinator', async (ctx) => {
      for (const [via, to] of [
        [2, 1],
        [1, 2],
        [0, 0],
      ] as const) {
        await ctx.sleep(50);
        reports.push(await agents[via]!.migrate(DC, ep, to));
      }
      await ctx.sleep(50);
      stop = true;
    });
    const r = await c.run({ until: 'done', maxTime: c.now() + 60_000 });
    expect(r.errors.map((e) => `${e.name}: ${String(e.error)}`), c.formatTrace(40)).toEqual([]);
    expect(errors).toEqual([]);
    expect(reports.map((x) => [x.from, x.to, x.epoch])).toEqual([
      [0, 1, 1],
      [1, 2, 2],
      [2, 0, 3],
    ]);
    expect(seen.length).toBeGreaterThan(30);
    // One count per request, in order: nothing served twice, nothing lost, the state moved along.
    expect([...seen].sort((a, b) => a - b)).toEqual(seen.map((_, i) => i + 1));
    expect(hosts.map((h) => h.list().length)).toEqual([1, 0, 0]);
    await c.stop();
  }, 60_000);
});
