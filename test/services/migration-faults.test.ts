/**
 * Migrations that meet a failure, with real daemons: the target killed in the middle (the move
 * rolls back, clients go on with the old incarnation), the coordinator killed in the middle (the
 * same, by the source's own rollback), the old node killed after the flip (clients go on with the
 * new one). Client processes call throughout; those on surviving nodes see no error and every count
 * in order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { connect, isDvsError, type DvsClient } from '../../src/client/index.js';
import { migrate, serveModule } from '../../src/client/services.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';
import { COUNTER, startCallers, type CallerProcess } from './helpers.js';

const DC = 1;
let tc: TestCluster | undefined;
const clients: DvsClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  await tc?.stop();
  tc = undefined;
}, 30_000);

async function cluster(): Promise<TestCluster> {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'faults', nodes: [0, 1, 2] });
  return tc;
}

async function daemon(c: TestCluster, node: number): Promise<DvsClient> {
  const r = c.runtime(node);
  const client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'test' });
  clients.push(client);
  return client;
}

/** Resolves once `node`'s kernel has the endpoint's route frozen (the move is under way there). */
function frozenAt(client: DvsClient, endpoint: number): Promise<true> {
  return eventually(async () => ((await client.procs(DC)).some((p) => p.endpoint === endpoint && p.frozen) ? true : undefined), 20_000, 5);
}

function kill(c: TestCluster, node: number): void {
  process.kill(c.runtime(node).pid, 'SIGKILL');
}

async function expectClean(callers: CallerProcess[]): Promise<void> {
  const results = await Promise.all(callers.map((c) => c.finish()));
  for (const r of results) {
    expect(r.errors).toEqual([]);
    expect(r.bad).toEqual([]);
    expect(r.calls).toBeGreaterThan(10);
  }
}

describe('migration faults', () => {
  it('the target killed mid-migration: the move fails, the service serves on at the source, unfrozen', { timeout: 90_000 }, async () => {
    const c = await cluster();
    const n1 = await daemon(c, 1);
    // Its restore takes 20 s: the target is still preparing when it dies.
    const svc = await serveModule(n1, DC, COUNTER, { slot: 10, args: { restoreDelayMs: 20_000 } });
    const callers = [0, 1].map((n) => startCallers(c.runtime(n), DC, svc.endpoint, 4));
    await Promise.all(callers.map((x) => x.ready));
    const moving = migrate(n1, DC, svc.endpoint, 2).then(
      () => undefined,
      (err: unknown) => err,
    );
    await frozenAt(n1, svc.endpoint);
    kill(c, 2);
    const err = await moving;
    expect(isDvsError(err, 'EDVSNONODE')).toBe(true);
    // Unfrozen, still on node 1, at its epoch; the clients go on there.
    await eventually(async () => ((await n1.procs(DC)).some((p) => p.endpoint === svc.endpoint && p.kind === 'local' && !p.frozen && p.epoch === 0) ? true : undefined));
    const n0 = await daemon(c, 0);
    await eventually(async () => ((await n0.procs(DC)).some((p) => p.endpoint === svc.endpoint && p.node === 1 && !p.frozen) ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    await expectClean(callers);
  });

  it('the coordinator killed mid-migration: the source rolls back, nothing stays frozen', { timeout: 90_000 }, async () => {
    const c = await cluster();
    const n1 = await daemon(c, 1);
    const n2 = await daemon(c, 2);
    const svc = await serveModule(n1, DC, COUNTER, { slot: 10, args: { restoreDelayMs: 20_000 } });
    const callers = [0, 1].map((n) => startCallers(c.runtime(n), DC, svc.endpoint, 4));
    await Promise.all(callers.map((x) => x.ready));
    // A short freeze: if the coordinator dies before its start reached the source, the freeze's
    // deadline is what rolls the move back.
    void migrate(n2, DC, svc.endpoint, 0, { freezeMs: 5000, quiesceMs: 2000 }).catch(() => undefined);
    await frozenAt(n1, svc.endpoint);
    kill(c, 2);
    const n0 = await daemon(c, 0);
    for (const d of [n0, n1]) {
      await eventually(async () => ((await d.procs(DC)).some((p) => p.endpoint === svc.endpoint && !p.frozen && (p.kind === 'local' ? d === n1 : p.node === 1)) ? true : undefined), 20_000);
    }
    await new Promise((r) => setTimeout(r, 300));
    await expectClean(callers);
  });

  it('the old node killed after the flip: clients go on with the new incarnation', { timeout: 90_000 }, async () => {
    const c = await cluster();
    const n1 = await daemon(c, 1);
    const svc = await serveModule(n1, DC, COUNTER, { slot: 10 });
    const callers = [0, 2].map((n) => startCallers(c.runtime(n), DC, svc.endpoint, 4));
    await Promise.all(callers.map((x) => x.ready));
    await new Promise((r) => setTimeout(r, 200));
    const report = await migrate(n1, DC, svc.endpoint, 0);
    expect(report).toMatchObject({ from: 1, to: 0, epoch: 1 });
    kill(c, 1);
    const n0 = await daemon(c, 0);
    // Node 1 declared down on node 0; the service still answers there.
    await eventually(async () => ((await n0.nodeInfo()).downNodes.includes(1) ? true : undefined), 20_000);
    await new Promise((r) => setTimeout(r, 300));
    await expectClean(callers);
  });
});
