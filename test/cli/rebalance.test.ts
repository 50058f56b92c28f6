/**
 * `dvs rebalance` with real daemons: four movable services all on node 1, each called in a loop
 * from node 0. Rounds of the rebalancer move them off the hot node until no move narrows a gap,
 * without moving any back and without a failed call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { listServices } from '../../src/cli/migrate-command.js';
import type { RebalanceRound } from '../../src/cli/rebalance-command.js';
import { startCluster, type TestCluster } from '../node/helpers.js';
import { COUNTER, startCallers, type CallerProcess } from '../services/helpers.js';
import { runCli } from './helpers.js';

const DC = 1;
let tc: TestCluster;
const callers: CallerProcess[] = [];

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'rebalance', nodes: [0, 1, 2] });
}, 60_000);

afterAll(async () => {
  for (const c of callers) c.child.kill('SIGKILL');
  await tc?.stop();
}, 30_000);

describe('dvs rebalance', () => {
  it('brings a skewed DC into balance in a few rounds, moving nothing back and failing no call', { timeout: 120_000 }, async () => {
    const eps: number[] = [];
    for (const slot of [10, 11, 12, 13]) {
      const r = await runCli(['service', 'start', '--dc', String(DC), '--node', '1', '--module', COUNTER, '--slot', String(slot), '--json', '--dir', tc.dir]);
      expect(r.code, r.stderr).toBe(EXIT.ok);
      eps.push((JSON.parse(r.stdout) as { endpoint: number }).endpoint);
    }
    for (const ep of eps) callers.push(startCallers(tc.runtime(0), DC, ep, 1));
    await Promise.all(callers.map((c) => c.ready));

    // Bad thresholds are refused before anything moves.
    const bad = await runCli(['rebalance', '--dc', String(DC), '--high', '0.5', '--low', '0.9', '--dir', tc.dir]);
    expect(bad.code).toBe(EXIT.error);
    expect(bad.stderr).toMatch(/--high \(0\.5\) must be above --low \(0\.9\)/);

    const r = await runCli(['rebalance', '--dc', String(DC), '--high', '1.05', '--low', '0.95', '--rounds', '4', '--interval', '1500', '--json', '--dir', tc.dir]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const rounds = JSON.parse(r.stdout) as RebalanceRound[];
    const moves = rounds.flatMap((x) => x.moves);
    expect(moves.every((m) => m.error === undefined), JSON.stringify(rounds)).toBe(true);
    // Two moves from the hot node to the cold one, one per round, then balance: no more moves.
    expect(moves.map((m) => [m.from, m.to]), JSON.stringify(rounds)).toEqual([
      [1, 2],
      [1, 2],
    ]);
    expect(new Set(moves.map((m) => m.endpoint)).size).toBe(2);
    expect(rounds.slice(2).every((x) => x.moves.length === 0)).toBe(true);
    const placed = (await listServices(tc.dir)).filter((s) => s.dcid === DC);
    expect(placed.filter((s) => s.node === 1)).toHaveLength(2);
    expect(placed.filter((s) => s.node === 2)).toHaveLength(2);

    for (const c of callers.splice(0)) {
      const res = await c.finish();
      expect(res.errors).toEqual([]);
      expect(res.bad).toEqual([]);
      expect(res.calls).toBeGreaterThan(100);
    }
  });
});
