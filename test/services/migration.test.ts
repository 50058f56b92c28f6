/**
 * Transparent migration with real daemons as OS processes: a counter service hosted as a coroutine
 * by a daemon moves between nodes while client processes on every node keep many requests in
 * flight. No client sees an error; every reply is the next count of its sender (nothing lost,
 * doubled or reordered, the state moved along); at most one incarnation lives at any instant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { migrate, serveModule, type MigrationResult } from '../../src/client/services.js';
import { startCluster, type TestCluster } from '../node/helpers.js';
import { COUNTER, IncarnationWatch, startCallers, type CallerProcess } from './helpers.js';

const DC = 1;
let tc: TestCluster;
const clients: DvsClient[] = [];

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'mig', nodes: [0, 1, 2] });
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await tc?.stop();
}, 30_000);

async function daemon(node: number): Promise<DvsClient> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'test' });
  clients.push(c);
  return c;
}

describe('migration between real daemons', () => {
  it('the scenarios of D1 and a client on the target: clients on every node call throughout, no error, counts in order, one incarnation at a time', { timeout: 120_000 }, async () => {
    const n1 = await daemon(1);
    const svc = await serveModule(n1, DC, COUNTER, { slot: 10, name: 'counter' });
    const callers: CallerProcess[] = [0, 1, 2].map((n) => startCallers(tc.runtime(n), DC, svc.endpoint, 8));
    await Promise.all(callers.map((c) => c.ready));
    const watch = await IncarnationWatch.start([0, 1, 2].map((n) => tc.runtime(n)), DC, svc.endpoint);
    const reports: MigrationResult[] = [];
    // 1 → 0 (client on 0 and a client on the server's node), 0 → 2 (coordinated by a third node), 2 → 1.
    for (const [via, to] of [
      [1, 0],
      [1, 2],
      [0, 1],
    ] as const) {
      await new Promise((r) => setTimeout(r, 300));
      reports.push(await migrate(await daemon(via), DC, svc.endpoint, to));
    }
    await new Promise((r) => setTimeout(r, 300));
    const results = await Promise.all(callers.map((c) => c.finish()));
    await watch.stop();
    expect(reports.map((r) => [r.from, r.to, r.epoch])).toEqual([
      [1, 0, 1],
      [0, 2, 2],
      [2, 1, 3],
    ]);
    for (const r of reports) expect(r.stateBytes).toBeGreaterThan(0);
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.bad).toEqual([]);
      expect(r.calls).toBeGreaterThan(20);
    }
    expect(watch.samples).toBeGreaterThan(10);
    expect(watch.max).toBe(1);
  });
});
