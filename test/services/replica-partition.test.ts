/**
 * A replicated RDISK through a real network partition (docs/replication.md, "Partitions"): three
 * daemons in network namespaces, the store on node 0, RDISK's group on nodes 1 and 2. The
 * primary's host is cut off the network: the minority side answers no write from then on, the
 * majority elects the backup and goes on writing; healed, the old primary rejoins as a backup,
 * and once the VOS is stopped both images are identical (by hash) and hold every acknowledged write.
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsMkfs } from '../../src/cli/fs-command.js';
import { replicas } from '../../src/cli/replicas-command.js';
import { vosDown, vosUp } from '../../src/cli/vos-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { DvsError } from '../../src/ipc/errors.js';
import { RdiskClient } from '../../src/vos/rdisk/rdisk-client.js';
import { fixedPeer } from '../../src/vos/slot-peer.js';
import { eventually } from '../node/helpers.js';
import { startNetnsCluster, type NetnsCluster } from '../support/netns-cluster.js';

const DC = 1;
const SLOT = 3;
const BLOCK = 4096;
const W = 60_000;
let cluster: NetnsCluster;
const clients: DvsClient[] = [];

const imageOn = (node: number): string => path.join(cluster.dir, `node-${node}`, 'disk.img');
const sha = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');
const blockOf = (writer: number, k: number): string => createHash('sha256').update(`${writer}:${k}`).digest('hex').repeat(BLOCK / 64);

async function group(): Promise<{ primary: number | undefined; servedBy: number | undefined; synced: readonly number[]; candidates: readonly number[]; epoch: number; endpoint: number } | undefined> {
  return (await replicas(cluster.dir, DC, { timeoutMs: 5000 })).find((g) => g.slot === SLOT);
}

beforeAll(async () => {
  cluster = await startNetnsCluster({ count: 3, tmpPrefix: 'dvs-partition-', dcid: DC });
  await fsMkfs(imageOn(1), 4);
  await copyFile(imageOn(1), imageOn(2));
  const spec = path.join(cluster.dir, 'vos.json');
  await writeFile(spec, JSON.stringify({ dc: DC, servers: [{ name: 'rdisk', node: 1, shape: 'unikernel', options: { image: 'disk.img' }, replicas: { nodes: [1, 2], mode: 'passive', leaseMs: 1000 } }] }));
  await vosUp(cluster.dir, spec, { timeoutMs: W });
}, 90_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const h of cluster?.net.hosts ?? []) {
    try {
      h.heal();
    } catch {
      // already gone
    }
  }
  await cluster?.stop();
}, 30_000);

/** A writer on `node`: block after block of its own range, each write retried until acknowledged or `stop`. */
function writer(node: number, rd: RdiskClient, first: number): { acked: Map<number, number>; afterCut: number[]; stop: () => Promise<void>; cutAt: { t: number; healed: number } } {
  const acked = new Map<number, number>();
  const afterCut: number[] = [];
  const cutAt = { t: 0, healed: 0 };
  let running = true;
  const loop = (async () => {
    for (let k = 0; running && k < 400; k++) {
      const invoked = Date.now();
      for (let attempt = 0; running && attempt < 1000; attempt++) {
        try {
          await rd.write((first + k) * BLOCK, Buffer.from(blockOf(node, k)));
          acked.set(first + k, k);
          // Acknowledged while cut off, for a write invoked after the cut: the minority answered a write.
          if (cutAt.t > 0 && invoked > cutAt.t + 200 && cutAt.healed === 0) afterCut.push(k);
          break;
        } catch (err) {
          if (!(err instanceof DvsError)) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  })();
  return {
    acked,
    afterCut,
    cutAt,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

describe('a replicated RDISK through a network partition', () => {
  it('the minority answers no write, the majority goes on, and healed the old primary rejoins with an identical image', { timeout: 180_000 }, async () => {
    const { net, dir, runtimes } = cluster;
    const g = await eventually(async () => {
      const now = await group();
      return now?.primary !== undefined && now.synced.length === 2 && now.servedBy === now.primary ? now : undefined;
    }, W, 100);
    const primary = g.primary!;
    const backup = primary === 1 ? 2 : 1;
    const on = async (node: number): Promise<RdiskClient> => {
      const r = runtimes[node]!;
      const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'partition-test' });
      clients.push(c);
      return new RdiskClient(await c.bind(DC), fixedPeer(g.endpoint), 3000);
    };
    const majority = writer(0, await on(0), 0);
    const minority = writer(primary, await on(primary), 500);
    await eventually(() => (majority.acked.size > 20 && minority.acked.size > 20 ? true : undefined), W, 20);

    net.hosts[primary]!.cut();
    majority.cutAt.t = minority.cutAt.t = Date.now();
    const ackedAtCut = majority.acked.size;
    try {
      await eventually(async () => {
        const now = await group();
        return now?.primary === backup && now.servedBy === backup && now.epoch > g.epoch ? now : undefined;
      }, W, 200);
      // The majority writes on through its new primary; the cut-off side acknowledges nothing.
      await eventually(() => (majority.acked.size > ackedAtCut + 30 ? true : undefined), W, 50);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      majority.cutAt.healed = minority.cutAt.healed = Date.now();
      net.hosts[primary]!.heal();
    }
    expect(minority.afterCut).toEqual([]);
    expect(majority.afterCut.length).toBeGreaterThan(0);

    // Healed: the old primary rejoins as a backup.
    const back = await eventually(async () => {
      const now = await group();
      return now?.primary === backup && now.synced.length === 2 && now.candidates.length === 2 ? now : undefined;
    }, W, 200);
    expect(back.synced).toContain(primary);
    await majority.stop();
    await minority.stop();

    await vosDown(dir, DC, { timeoutMs: W });
    expect(await sha(imageOn(1))).toBe(await sha(imageOn(2)));
    const image = await readFile(imageOn(backup));
    for (const [w, wr] of [
      [0, majority],
      [primary, minority],
    ] as const) {
      for (const [block, k] of wr.acked) expect(image.subarray(block * BLOCK, (block + 1) * BLOCK).toString()).toBe(blockOf(w, k));
    }
  });
});
