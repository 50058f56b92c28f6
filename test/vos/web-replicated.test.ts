/**
 * The web VOS over a replicated RDISK (docs/replication.md): RDISK is a passive replica group on
 * nodes 1 and 2, each over its own image; FS (with a small cache, so reads reach the disk) and
 * NWEB run on node 0. Web clients fetch files, and a writer rewrites a file, while the RDISK
 * primary's daemon is SIGKILLed: no request fails. The killed node comes back and rejoins, and
 * once the VOS is stopped both images are identical (by hash) and pass fsck.minix -f.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { freePort } from '../../src/cli/demo-web.js';
import { fsFsck, fsMkfs } from '../../src/cli/fs-command.js';
import { replicas } from '../../src/cli/replicas-command.js';
import { vosDown, vosUp } from '../../src/cli/vos-command.js';
import { connect, Vos, type DvsClient } from '../../src/client/index.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';

const DC = 4;
const RDISK_SLOT = 3;
const W = 60_000;
let tc: TestCluster;
let port = 0;
const clients: DvsClient[] = [];
const opened: Vos[] = [];

const FILES = new Map<string, Buffer>(Array.from({ length: 6 }, (_, i) => [`/f${i}.bin`, randomBytes(700 * 1024 + i)] as const));

function imageOn(node: number): string {
  return path.join(tc.cluster.nodes.find((n) => n.nodeId === node)!.dataDir, 'replica.img');
}

const sha = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');

function settled(): Promise<{ primary: number; epoch: number }> {
  return eventually(async () => {
    const g = (await replicas(tc.dir, DC, { timeoutMs: 5000 })).find((x) => x.slot === RDISK_SLOT);
    return g !== undefined && g.synced.length === 2 && g.candidates.length === 2 && g.primary !== undefined && g.servedBy === g.primary ? { primary: g.primary, epoch: g.epoch } : undefined;
  }, W, 100);
}

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: DC, name: 'replicated-web', nodes: [0, 1, 2] });
  await fsMkfs(imageOn(1), 16);
  await copyFile(imageOn(1), imageOn(2));
  port = await freePort();
  const file = path.join(tc.dir, 'vos.json');
  const uni = (name: string, options?: object): object => ({ name, node: 0, shape: 'unikernel', host: 'web', ...(options === undefined ? {} : { options }) });
  await writeFile(
    file,
    JSON.stringify({
      dc: DC,
      servers: [uni('ds'), uni('fs', { cacheMB: 1 }), uni('nweb', { port }), { name: 'rdisk', node: 1, shape: 'unikernel', host: 'disk', options: { image: 'replica.img' }, replicas: { nodes: [1, 2], mode: 'passive', leaseMs: 1000 } }],
    }),
  );
  await vosUp(tc.dir, file, { timeoutMs: W });
}, 90_000);

afterAll(async () => {
  for (const v of opened) await v.close().catch(() => undefined);
  for (const c of clients) await c.close().catch(() => undefined);
  await tc?.stop();
}, 60_000);

describe('the web VOS over a replicated RDISK', () => {
  it('serves every request while the RDISK primary is killed; the images agree afterwards', { timeout: 180_000 }, async () => {
    const g = await settled();
    const r = tc.runtime(0);
    const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'replicated-web' });
    clients.push(c);
    const v = await Vos.open(c, { dcid: DC, name: 'replicated-web' });
    opened.push(v);
    for (const [p, data] of FILES) await v.fs.writeFile(p, data);
    const base = `http://127.0.0.1:${port}`;

    let running = true;
    let killedAt = 0;
    const failures: string[] = [];
    let okAfterKill = 0;
    let writes = 0;
    const readers = Array.from({ length: 3 }, async (_, i) => {
      for (let k = 0; running && k < 100_000; k++) {
        const name = `/f${(k + i) % FILES.size}.bin`;
        try {
          const res = await fetch(base + name);
          const body = Buffer.from(await res.arrayBuffer());
          if (res.status !== 200 || Buffer.compare(body, FILES.get(name)!) !== 0) failures.push(`${name}: ${res.status}, ${body.length} bytes`);
          else if (killedAt > 0) okAfterKill++;
        } catch (err) {
          failures.push(`${name}: ${(err as Error).message}`);
        }
      }
    });
    // A writer keeps FS writing back to the disk through the failover.
    const writer = (async () => {
      for (let k = 0; running && k < 100_000; k++) {
        try {
          await v.fs.writeFile('/log.txt', `line ${k}\n`);
          writes++;
        } catch (err) {
          failures.push(`write: ${(err as Error).message}`);
        }
      }
    })();
    await eventually(() => (okAfterKill === 0 && writes > 5 ? true : undefined), W, 20);
    killedAt = Date.now();
    process.kill(tc.runtime(g.primary).pid, 'SIGKILL');
    const taken = await eventually(async () => {
      const now = (await replicas(tc.dir, DC, { timeoutMs: 5000 })).find((x) => x.slot === RDISK_SLOT);
      return now?.primary !== undefined && now.primary !== g.primary && now.servedBy === now.primary ? now : undefined;
    }, W, 100);
    const wroteBefore = writes;
    await eventually(() => (okAfterKill >= 30 && writes > wroteBefore + 5 ? true : undefined), W, 50);
    running = false;
    await Promise.all([...readers, writer]);
    expect(failures).toEqual([]);
    expect(taken.epoch).toBeGreaterThan(g.epoch);

    // The killed node rejoins as a backup.
    const entry = tc.cluster.nodes.find((n) => n.nodeId === g.primary)!;
    await spawnNode(JSON.parse(await readFile(entry.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
    await settled();
    expect((await v.fs.readFile('/log.txt')).toString()).toMatch(/^line \d+\n$/);
    await v.close();
    opened.splice(opened.indexOf(v), 1);

    // Stopped, the members have written everything: the two images are one.
    await vosDown(tc.dir, DC, { timeoutMs: W });
    expect(await sha(imageOn(1))).toBe(await sha(imageOn(2)));
    for (const n of [1, 2]) expect((await fsFsck(imageOn(n))).clean).toBe(true);
  });
});
