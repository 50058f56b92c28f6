/**
 * A flood of silent connections on a real daemon's embedded store port: while it is held, the `dvs`
 * CLI (a real OS process) manages DCs and a node killed before the flood starts again and registers.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnNode } from '../../src/cli/cluster.js';
import { isAlive } from '../../src/cli/cluster-files.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';
import { runCli, SilentFlood } from './helpers.js';

let cluster: TestCluster | undefined;
let flood: SilentFlood | undefined;

afterEach(async () => {
  flood?.close();
  flood = undefined;
  await cluster?.stop();
  cluster = undefined;
});

describe('the embedded store under a flood of silent connections', () => {
  it('still serves the CLI and a restarting node', async () => {
    cluster = await startCluster(2);
    const { dir } = cluster;
    const store = cluster.cluster.store;
    if (store.backend !== 'embedded') throw new Error('expected the embedded store');
    const node1 = cluster.cluster.nodes.find((n) => n.nodeId === 1);
    if (node1 === undefined) throw new Error('no node 1');
    process.kill(node1.pid, 'SIGKILL');
    await eventually(() => (isAlive(node1.pid) ? undefined : true), 10_000);

    flood = await SilentFlood.open(store.port, 1100);
    const config = JSON.parse(readFileSync(node1.configFile, 'utf8')) as Record<string, unknown> & { nodeId: number; dataDir: string };
    const [created, restarted] = await Promise.all([runCli(['dc', 'create', '7', '--nodes', '0,1', '--name', 'flooded', '--dir', dir, '--json']), spawnNode(config)]);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ dcid: 7, name: 'flooded', nodes: [0, 1] });
    // The flood filled the pending pool: newcomers got in by evicting its oldest connections.
    expect(flood.closedWith('EDVSAGAIN')).toBeGreaterThanOrEqual(1100 - 128);

    const listed = await runCli(['dc', 'ls', '--dir', dir, '--json']);
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { dcid: number }[]).map((d) => d.dcid)).toEqual([7]);
    const status = await eventually(async () => {
      const r = await runCli(['status', '--dir', dir, '--json']);
      const s = JSON.parse(r.stdout) as { nodes: { nodeId: number; pid: number; alive: boolean; registered: boolean }[] };
      const n1 = s.nodes.find((n) => n.nodeId === 1);
      return n1?.registered === true && n1.pid === restarted.entry.pid ? s : undefined;
    }, 20_000);
    expect(status.nodes.map((n) => [n.nodeId, n.alive, n.registered])).toEqual([
      [0, true, true],
      [1, true, true],
    ]);
  }, 90_000);
});
