/**
 * OS programs move too: a program the daemon runs (`run`), in TypeScript through the client
 * library and in Python through the documented protocol, gives its state at a receive, is started
 * again on the target with DVS_SLOT and gets the state back as `restored`; the old one is told it
 * moved and retired. Clients on every node call throughout without an error and every count
 * continues where it was.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DvsClient } from '../../src/client/index.js';
import { migrate } from '../../src/client/services.js';
import { eventually } from '../node/helpers.js';
import { IncarnationWatch, sharedCluster, startCallers } from './helpers.js';

const DC = 1;
const PROGRAM = fileURLToPath(new URL('./fixtures/counter-program.mjs', import.meta.url));
const PYTHON_SERVER = fileURLToPath(new URL('../../examples/python/counter_server.py', import.meta.url));
const shared = sharedCluster(DC, 'programs');
const { daemon } = shared;

/** The endpoint a slot holds once something bound it, as node `via` sees it. */
function boundAt(c: DvsClient, slot: number): Promise<number> {
  return eventually(async () => (await c.procs(DC)).find((p) => p.slot === slot && p.kind === 'local')?.endpoint);
}

describe('programs under the supervisor move with their state', () => {
  it('a TypeScript program moves 1 → 2 → 0 under callers on every node', { timeout: 120_000 }, async () => {
    const n1 = await daemon(1);
    const run = await n1.run({ dcid: DC, program: process.execPath, args: [PROGRAM], slot: 12 });
    const ep = await boundAt(n1, 12);
    const callers = [0, 1, 2].map((n) => startCallers(shared.tc.runtime(n), DC, ep, 4));
    await Promise.all(callers.map((c) => c.ready));
    const watch = await IncarnationWatch.start([0, 1, 2].map((n) => shared.tc.runtime(n)), DC, ep);
    await new Promise((r) => setTimeout(r, 200));
    const first = await migrate(n1, DC, ep, 2);
    await new Promise((r) => setTimeout(r, 200));
    const second = await migrate(await daemon(0), DC, ep, 0);
    await new Promise((r) => setTimeout(r, 200));
    const results = await Promise.all(callers.map((c) => c.finish()));
    await watch.stop();
    expect([first.to, second.to, second.epoch]).toEqual([2, 0, 2]);
    expect(first.stateBytes).toBeGreaterThan(2);
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.bad).toEqual([]);
      expect(r.calls).toBeGreaterThan(10);
    }
    expect(watch.max).toBe(1);
    // The old programs were retired, the one on node 0 runs.
    await eventually(async () => ((await n1.runs()).find((r) => r.run === run.run)?.state === 'retired' ? true : undefined));
    const n2 = await daemon(2);
    await eventually(async () => ((await n2.runs()).some((r) => r.state === 'retired' && r.slot === 12) ? true : undefined));
    const n0 = await daemon(0);
    expect((await n0.runs()).filter((r) => r.slot === 12 && r.state === 'running')).toHaveLength(1);
  });

  it('a Python server moves 0 → 1 keeping its count', { timeout: 120_000 }, async () => {
    const n0 = await daemon(0);
    await n0.run({ dcid: DC, program: 'python3', args: [PYTHON_SERVER], slot: 13 });
    const ep = await boundAt(n0, 13);
    const n2 = await daemon(2);
    const caller = await n2.bind(DC, { name: 'py-caller' });
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) counts.push((await caller.sendrec(ep, { type: 1, payload: { op: 'inc', key: `k${i}` } })).payload as number);
    const moving = migrate(n0, DC, ep, 1);
    // Calls during the move park and are answered from the new node.
    const others = await Promise.all([0, 1, 2, 3, 4].map((i) => n2.bind(DC, { name: `py-during${i}` })));
    const during = Promise.all(others.map(async (o) => (await o.sendrec(ep, { type: 1, payload: { op: 'inc', key: 'd' } })).payload as number));
    const report = await moving;
    expect(report).toMatchObject({ from: 0, to: 1, epoch: 1 });
    expect(report.stateBytes).toBeGreaterThan(10);
    // Answered in some order among themselves: together the next five counts.
    counts.push(...(await during).sort((a, b) => a - b));
    for (let i = 0; i < 10; i++) counts.push((await caller.sendrec(ep, { type: 1, payload: { op: 'inc', key: `a${i}` } })).payload as number);
    expect(counts).toEqual(counts.map((_, i) => i + 1));
    const n1 = await daemon(1);
    expect((await n1.procs(DC)).find((p) => p.endpoint === ep)?.kind).toBe('local');
  });
});
