/**
 * The message path never touches the coordination store: two daemons (real links over TCP, the
 * embedded store over TCP for the second), a burst of cross-node traffic between endpoints hosted
 * in them, and the store's call counters before and after.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreOp } from '../../src/cluster/index.js';
import { ANY } from '../../src/ipc/index.js';
import { parseNodeConfig } from '../../src/node/config.js';
import { Daemon } from '../../src/node/daemon.js';
import { pino } from 'pino';

let dir: string;
const daemons: Daemon[] = [];

async function startDaemon(nodeId: number, store: string, serve: boolean): Promise<Daemon> {
  const config = parseNodeConfig({
    nodeId,
    dataDir: path.join(dir, `node-${nodeId}`),
    clusterKeyFile: path.join(dir, 'cluster.key'),
    store: { backend: 'embedded', serve, address: store },
    timing: { heartbeatMs: 200, suspectMs: 600, deadMs: 1500 },
  });
  const d = await Daemon.start(config, { logger: pino({ level: 'silent' }) });
  daemons.push(d);
  return d;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-store-calls-'));
  await writeFile(path.join(dir, 'cluster.key'), randomBytes(32).toString('hex'), { mode: 0o600 });
  const a = await startDaemon(0, '127.0.0.1:0', true);
  const served = a.info.store;
  if (served.backend !== 'embedded') throw new Error('expected the embedded store');
  await startDaemon(1, `127.0.0.1:${served.port}`, false);
}, 30_000);

afterAll(async () => {
  for (const d of daemons.reverse()) await d.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a node whose lease is lost', () => {
  it('registers again, restores its endpoints, and peers keep talking to them meanwhile', async () => {
    const [a, b] = daemons as [Daemon, Daemon];
    await a.clusterDirectory.createDc({ dcid: 2, nodes: [0, 1] });
    await a.waitForDc(2);
    await b.waitForDc(2);
    const server = await b.bind(2, { slot: 3, name: 'survivor' });
    const client = await a.bind(2, { name: 'client' });
    const loop = (async () => {
      for (;;) {
        const m = await server.receiveRequest().catch(() => undefined);
        if (m === undefined) return;
        await server.reply(m.source, { type: 0, payload: m.payload });
      }
    })();
    await a.kernel.waitForBind(2, server.endpoint, { timeoutMs: 5000 });
    const before = a.clusterDirectory.node(1)!;
    // The store drops node 1's lease, as after a missed keep-alive.
    await a.coordinationStore.revokeLease(before.lease);
    let served = 0;
    const deadline = Date.now() + 10_000;
    let restored = false;
    while (Date.now() < deadline && !restored) {
      const r = await client.sendrec(server.endpoint, { type: 1, payload: served }, { timeoutMs: 2000 });
      expect(r.payload).toBe(served);
      served++;
      const now = a.clusterDirectory.node(1);
      restored = now !== undefined && now.incarnation > before.incarnation && a.clusterDirectory.lookup(2, server.endpoint)?.node === 1;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(restored).toBe(true);
    expect(served).toBeGreaterThan(0);
    await server.unbind();
    await loop;
  }, 30_000);
});

describe('the message path and the coordination store', () => {
  it('makes no store read or write during a burst of cross-node messages', async () => {
    const [a, b] = daemons as [Daemon, Daemon];
    await a.clusterDirectory.createDc({ dcid: 1, nodes: [0, 1] });
    await a.waitForDc(1);
    await b.waitForDc(1);
    const server = await b.bind(1, { slot: 3, name: 'echo' });
    const client = await a.bind(1, { name: 'client' });
    const notifier = await a.bind(1, { slot: 4, name: 'notifier' });
    let served = 0;
    const loop = (async () => {
      for (;;) {
        const m = await server.receive(ANY).catch(() => undefined);
        if (m === undefined) return;
        served++;
        if (m.type === 1) await server.reply(m.source, { type: 0, payload: m.payload });
      }
    })();
    // Warm up until the client's endpoint is known everywhere.
    await a.kernel.waitForBind(1, server.endpoint, { timeoutMs: 5000 });
    await client.sendrec(server.endpoint, { type: 1, payload: -1 }, { timeoutMs: 5000 });

    const seen: StoreOp[] = [];
    const counters = [a.coordinationStore.calls, b.coordinationStore.calls];
    for (const c of counters) c.onCall = (op) => seen.push(op);
    const burst = 3000;
    for (let i = 0; i < burst; i++) {
      const r = await client.sendrec(server.endpoint, { type: 1, payload: i }, { timeoutMs: 5000 });
      expect(r.payload).toBe(i);
      if (i % 100 === 0) await notifier.notify(server.endpoint);
    }
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.send(server.endpoint, { type: 2, payload: i }, { timeoutMs: 5000 })));
    for (const c of counters) c.onCall = undefined;

    expect(served).toBeGreaterThanOrEqual(burst + 200);
    // Only lease keep-alives (timer-driven, not per message) may appear; no read, write or txn.
    expect(seen.filter((op) => op !== 'keepAlive')).toEqual([]);
    await server.unbind();
    await loop;
  }, 60_000);
});
