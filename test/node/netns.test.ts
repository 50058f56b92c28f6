/**
 * Many hosts for real: each daemon in its own network namespace with its own address, linked over
 * veth and a bridge; nothing may assume one host. The store's host is node 0's address; clients
 * reach their daemon through its Unix socket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withDirectory } from '../../src/cli/admin.js';
import { startNetnsCluster, type NetnsCluster } from '../support/netns-cluster.js';
import { killActors, startActor } from './helpers.js';

let cluster: NetnsCluster;

beforeAll(async () => {
  cluster = await startNetnsCluster({ count: 3, tmpPrefix: 'dvs-netns-', dcid: 1 });
}, 60_000);

afterAll(async () => {
  killActors();
  await cluster?.stop();
}, 30_000);

describe('daemons on separate network hosts', () => {
  it('register their own addresses, link over the bridge and carry remote IPC', async () => {
    const { net, dir, runtimes } = cluster;
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
