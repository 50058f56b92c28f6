/**
 * Many hosts for real: each daemon in its own network namespace with its own address, linked over
 * veth and a bridge; nothing may assume one host. The store's host is node 0's address; clients
 * reach their daemon through its Unix socket.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc, withDirectory } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { isAlive, writeClusterFile, type ClusterNodeEntry } from '../../src/cli/cluster-files.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';
import { createTestNetwork, type TestNetwork } from '../support/netns.js';
import { killActors, startActor } from './helpers.js';

let net: TestNetwork;
let dir: string;
const nodes: ClusterNodeEntry[] = [];
const runtimes: NodeRuntimeInfo[] = [];

beforeAll(async () => {
  net = createTestNetwork(3);
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-netns-'));
  const keyFile = path.join(dir, 'cluster.key');
  await writeFile(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const config = (i: number, store: Record<string, unknown>): Record<string, unknown> & { nodeId: number; dataDir: string } => ({
    nodeId: i,
    listen: `${net.hosts[i]!.address}:0`,
    dataDir: path.join(dir, `node-${i}`),
    clusterKeyFile: keyFile,
    store,
    timing: { heartbeatMs: 250, suspectMs: 750, deadMs: 1500 },
    logLevel: 'warn',
  });
  const first = await spawnNode(config(0, { backend: 'embedded', serve: true, address: `${net.hosts[0]!.address}:0` }), net.hosts[0]!.prefix);
  nodes.push(first.entry);
  runtimes.push(first.runtime);
  const s = first.runtime.store;
  if (s.backend !== 'embedded') throw new Error('expected the embedded store');
  for (let i = 1; i < 3; i++) {
    const n = await spawnNode(config(i, { backend: 'embedded', serve: false, address: `${s.host}:${s.port}` }), net.hosts[i]!.prefix);
    nodes.push(n.entry);
    runtimes.push(n.runtime);
  }
  await writeClusterFile({ dir, keyFile, store: { backend: 'embedded', host: s.host, port: s.port }, nodes });
  await createDc(dir, { dcid: 1, nodes: [0, 1, 2] });
}, 60_000);

afterAll(async () => {
  killActors();
  for (const n of nodes) if (isAlive(n.pid)) process.kill(n.pid, 'SIGKILL');
  net?.remove();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('daemons on separate network hosts', () => {
  it('register their own addresses, link over the bridge and carry remote IPC', async () => {
    for (let i = 0; i < 3; i++) expect(runtimes[i]!.link.host).toBe(net.hosts[i]!.address);
    const registered = await withDirectory(dir, (d) => Promise.resolve(d.nodes().map((n) => [n.nodeId, n.host])));
    expect(registered.sort()).toEqual([
      [0, net.hosts[0]!.address],
      [1, net.hosts[1]!.address],
      [2, net.hosts[2]!.address],
    ]);
    const server = startActor(runtimes[2]!, 'echo-server', { dcid: 1, slot: 5 });
    const { endpoint } = await server.ready;
    const clients = [startActor(runtimes[0]!, 'loop-client', { dcid: 1, dst: endpoint, loops: 100 }), startActor(runtimes[1]!, 'loop-client', { dcid: 1, dst: endpoint, loops: 100 })];
    for (const c of clients) {
      const r = await c.result;
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(100);
    }
    const copyServer = startActor(runtimes[1]!, 'copy-server', { dcid: 1, slot: 6 });
    const cs = await copyServer.ready;
    const copy = await startActor(runtimes[0]!, 'copy-client', { dcid: 1, dst: cs.endpoint, length: 300_000 }).result;
    expect(copy).toMatchObject({ pullMatches: true, pushMatches: true });
    server.kill();
    copyServer.kill();
  }, 60_000);
});
