/**
 * `dvs cluster down` then `dvs cluster up` in the same directory brings the same cluster back: the
 * key, the DCs (node 0's durable store) and the slot generations, with real daemon processes.
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createDc, listDcs } from '../../src/cli/admin.js';
import { clusterDown, clusterUp } from '../../src/cli/cluster.js';
import { isAlive, readRuntime, type ClusterFile } from '../../src/cli/cluster-files.js';
import { connect } from '../../src/client/index.js';

let dir: string | undefined;
let last: ClusterFile | undefined;

afterAll(async () => {
  if (dir === undefined) return;
  await clusterDown(dir).catch(() => undefined);
  for (const n of last?.nodes ?? []) if (isAlive(n.pid)) process.kill(n.pid, 'SIGKILL');
  await rm(dir, { recursive: true, force: true });
}, 30_000);

async function bindSlot(cluster: ClusterFile, node: number, slot: number): Promise<number> {
  const runtime = readRuntime(cluster.nodes.find((n) => n.nodeId === node)!.dataDir)!;
  const c = await connect({ socketPath: runtime.socket, tokenPath: runtime.token, name: 'restart-test' });
  try {
    // The DC reaches each daemon through the directory: retry while it has not yet.
    for (let attempt = 0; ; attempt++) {
      try {
        return (await c.bind(3, { slot })).endpoint;
      } catch (err) {
        if (attempt >= 100 || (err as { code?: string }).code !== 'EDVSBADDCID') throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    await c.close();
  }
}

describe('cluster down, then up in the same directory', () => {
  it('brings back the key, the DCs and the slot generations', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-cluster-restart-'));
    last = await clusterUp({ nodes: 2, dir, deadMs: 1500, logLevel: 'warn' });
    const key = await readFile(path.join(dir, 'cluster.key'), 'utf8');
    await createDc(dir, { dcid: 3, name: 'lasting', nodes: [0, 1] });
    const before = await bindSlot(last, 1, 7);
    expect(await clusterDown(dir)).toBe(2);

    last = await clusterUp({ nodes: 2, dir, deadMs: 1500, logLevel: 'warn' });
    expect(await readFile(path.join(dir, 'cluster.key'), 'utf8')).toBe(key);
    expect((await listDcs(dir)).find((d) => d.dcid === 3)).toMatchObject({ name: 'lasting', nodes: [0, 1] });
    const after = await bindSlot(last, 1, 7);
    expect(after).toBeGreaterThan(before);
    expect(await clusterDown(dir)).toBe(2);
  }, 60_000);
});
