/**
 * `dvs service start`, `dvs migrate`, `dvs node drain` and MIGRATING in `dvs ps`, the CLI as an OS
 * process against three real daemons: a move reports blackout, total time and bytes; a drain moves
 * every service off a node under load and says why a client endpoint stayed; bad requests get a
 * typed error, exit code 1, and change nothing.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import type { DrainOutcome } from '../../src/cli/migrate-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import type { MigrationResult } from '../../src/client/services.js';
import { startCluster, type TestCluster } from '../node/helpers.js';
import { startCallers } from '../services/helpers.js';
import { runCli } from './helpers.js';

const COUNTER = fileURLToPath(new URL('../services/fixtures/counter-service.mjs', import.meta.url));
const DC = 1;
let tc: TestCluster;
let client: DvsClient;

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'cli-mig', nodes: [0, 1, 2] });
  await createDc(tc.dir, { dcid: 2, name: 'pair', nodes: [0, 1] });
  const r = tc.runtime(2);
  client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'cli-mig-test' });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await tc?.stop();
}, 30_000);

async function startService(node: number, slot: number, args?: object, dcid = DC): Promise<number> {
  const r = await runCli(['service', 'start', '--dc', String(dcid), '--node', String(node), '--module', COUNTER, '--slot', String(slot), ...(args === undefined ? [] : ['--args', JSON.stringify(args)]), '--json', '--dir', tc.dir]);
  expect(r.code, r.stderr).toBe(EXIT.ok);
  return (JSON.parse(r.stdout) as { endpoint: number }).endpoint;
}

describe('dvs migrate and dvs node drain', () => {
  it('migrate reports the move; ps shows MIGRATING while a slow move is under way; bad requests change nothing', { timeout: 120_000 }, async () => {
    const ep = await startService(0, 10);
    const r = await runCli(['migrate', '--dc', String(DC), '--ep', String(ep), '--to', '1', '--dir', tc.dir]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/moving endpoint 10 of DC 1 from node 0 to node 1\.\.\./);
    expect(r.stdout).toMatch(/moved from node 0 to node 1 \(epoch 1\): blackout [\d.]+ ms, total [\d.]+ ms, \d+ bytes moved/);

    // A slow move (its restore takes 4 s): ps shows it MIGRATING, a second move is refused.
    const slow = await startService(0, 11, { restoreDelayMs: 4000 });
    const moving = runCli(['migrate', '--dc', String(DC), '--ep', String(slow), '--to', '2', '--json', '--dir', tc.dir]);
    let seen = false;
    for (let i = 0; i < 200 && !seen; i++) {
      const ps = await runCli(['ps', '--dir', tc.dir]);
      seen = ps.stdout.split('\n').some((l) => l.includes('MIGRATING'));
    }
    expect(seen).toBe(true);
    const busy = await runCli(['migrate', '--dc', String(DC), '--ep', String(slow), '--to', '1', '--dir', tc.dir]);
    expect(busy.code).toBe(EXIT.error);
    expect(busy.stderr).toMatch(/EDVSBUSY/);
    const done = await moving;
    expect(done.code, done.stderr).toBe(EXIT.ok);
    expect(JSON.parse(done.stdout) as MigrationResult).toMatchObject({ from: 0, to: 2, epoch: 1 });

    // Bad requests: each a typed error, exit code 1.
    const pairEp = await startService(0, 12, undefined, 2);
    for (const [args, code] of [
      [['--dc', String(DC), '--ep', '27', '--to', '1'], 'EDVSENDPOINT'],
      [['--dc', '2', '--ep', String(pairEp), '--to', '2'], 'EDVSNODCNODE'],
      [['--dc', String(DC), '--ep', String(ep), '--to', '1'], 'EDVSINVAL'],
      [['--dc', String(DC), '--ep', '-3', '--to', '1'], 'EDVSBADPROC'],
    ] as const) {
      const bad = await runCli(['migrate', ...args, '--dir', tc.dir]);
      expect(bad.code, `${args.join(' ')}: ${bad.stderr}`).toBe(EXIT.error);
      expect(bad.stderr).toMatch(new RegExp(code));
    }
    // Nothing changed: the pair DC's service still answers on node 0, unfrozen.
    const rows = await client.procs(2).catch(() => []);
    expect(rows.length === 0 || rows.every((p) => !p.frozen)).toBe(true);
  });

  it('node drain moves every service off a node under load and says why a client endpoint stayed', { timeout: 120_000 }, async () => {
    const eps = [await startService(1, 20), await startService(1, 21), await startService(1, 22)];
    // A client endpoint bound on node 1 by a process the daemon did not start: not movable.
    const stay = await connect({ socketPath: tc.runtime(1).socket, tokenPath: tc.runtime(1).token, name: 'stays' });
    const stays = await stay.bind(DC, { name: 'stays' });
    const callers = eps.map((ep) => startCallers(tc.runtime(2), DC, ep, 3));
    await Promise.all(callers.map((c) => c.ready));
    const r = await runCli(['node', 'drain', '1', '--json', '--dir', tc.dir], 120_000);
    expect(r.code).toBe(EXIT.error);
    const outcomes = JSON.parse(r.stdout) as DrainOutcome[];
    for (const ep of eps) expect(outcomes.find((o) => o.endpoint === ep)).toMatchObject({ moved: true });
    expect(outcomes.find((o) => o.endpoint === stays.endpoint)).toMatchObject({ moved: false, error: { code: 'EDVSMIGRATE' } });
    for (const o of outcomes.filter((x) => x.moved)) expect(o.to).not.toBe(1);
    const results = await Promise.all(callers.map((c) => c.finish()));
    for (const x of results) {
      expect(x.errors).toEqual([]);
      expect(x.bad).toEqual([]);
    }
    await stay.close();
  });
});
