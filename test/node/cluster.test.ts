/**
 * Three real daemon processes on loopback, clients as separate OS processes: scenarios A10–A13 and
 * B3 of reference §4, a SIGKILLed daemon, and DC isolation.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode, clusterPs, clusterStatus, createDc, listDcs, removeDc, removeNode, withDirectory } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { isAlive } from '../../src/cli/cluster-files.js';
import { DAEMON_MALLOC_ENV } from '../../src/cli/daemon-env.js';
import { connect } from '../../src/client/index.js';
import { eventually, killActors, startActor, startCluster, type TestCluster } from './helpers.js';

let tc: TestCluster;

beforeAll(async () => {
  tc = await startCluster(3);
  await createDc(tc.dir, { dcid: 1, name: 'main', nodes: [0, 1, 2] });
}, 60_000);

afterAll(async () => {
  await tc?.stop();
}, 30_000);

async function withClient<T>(node: number, fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'test' });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** Waits until every node's kernel runs `dcid` (the directory change reached them). */
async function dcEverywhere(dcid: number, nodes: number[]): Promise<void> {
  for (const n of nodes) {
    await eventually(() => withClient(n, async (c) => ((await c.procs(dcid).then(() => true, () => false)) ? true : undefined)));
  }
}

/** Runs 20-call loop clients on `node` against `dst` in `dcid` until one gets every answer (the cluster settles after a restart). */
function answersEventually(node: number, dst: number, dcid: number): Promise<Record<string, unknown>> {
  return eventually(async () => {
    const r = await startActor(tc.runtime(node), 'loop-client', { dcid, dst, loops: 20 }).result;
    return r.ok === 20 ? r : undefined;
  }, 15_000, 200);
}

describe('A10: node and DC administration', () => {
  it('reports every node registered and alive', async () => {
    const s = await clusterStatus(tc.dir);
    expect(s.nodes.map((n) => [n.nodeId, n.alive, n.registered])).toEqual([
      [0, true, true],
      [1, true, true],
      [2, true, true],
    ]);
    expect(s.dcs.map((d) => d.dcid)).toContain(1);
    // cluster up starts daemons with the malloc settings of src/cli/daemon-env.ts.
    for (const n of tc.cluster.nodes) {
      const env = (await readFile(`/proc/${n.pid}/environ`, 'utf8')).split('\0');
      for (const [k, v] of Object.entries(DAEMON_MALLOC_ENV)) expect(env).toContain(`${k}=${v}`);
    }
  });

  it('creates, grows, shrinks and removes a DC, and every daemon follows', async () => {
    await createDc(tc.dir, { dcid: 2, nodes: [0, 1] });
    await expect(createDc(tc.dir, { dcid: 2, nodes: [0] })).rejects.toMatchObject({ code: 'EDVSDCRUN' });
    await dcEverywhere(2, [0, 1]);
    // Node 2 is not a member: it refuses binds in DC 2.
    await withClient(2, async (c) => {
      await expect(c.bind(2, { name: 'intruder' })).rejects.toMatchObject({ code: 'EDVSBADDCID' });
    });
    await addNode(tc.dir, 2, 2);
    await expect(addNode(tc.dir, 2, 2)).rejects.toMatchObject({ code: 'EDVSDCNODE' });
    await dcEverywhere(2, [2]);
    await withClient(2, async (c) => {
      const p = await c.bind(2, { name: 'member' });
      expect(p.endpoint).toBeGreaterThanOrEqual(0);
    });
    await removeNode(tc.dir, 2, 1);
    await expect(removeNode(tc.dir, 2, 1)).rejects.toMatchObject({ code: 'EDVSNODCNODE' });
    await eventually(() => withClient(1, async (c) => ((await c.procs(2).then(() => false, () => true)) ? true : undefined)));
    expect((await listDcs(tc.dir)).find((d) => d.dcid === 2)?.nodes).toEqual([0, 2]);
    await removeDc(tc.dir, 2);
    expect((await listDcs(tc.dir)).some((d) => d.dcid === 2)).toBe(false);
  });
});

describe('a server that restarts at once', () => {
  it('gets its fixed slot again, a newer generation each time, never EDVSSLOTUSED', async () => {
    const r = tc.runtime(1);
    let last = -1;
    for (let i = 0; i < 15; i++) {
      const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'restarting' });
      try {
        const p = await c.bind(1, { slot: 14, name: 'restarting' });
        expect(p.endpoint).toBeGreaterThan(last);
        last = p.endpoint;
      } finally {
        // Closing unbinds; the daemon releases the slot in the store without waiting.
        await c.close();
      }
    }
  }, 30_000);
});

describe('A11 + B3: remote request/reply with many concurrent client processes', () => {
  it('serves 12 client processes on two other nodes, every reply correct', async () => {
    const server = startActor(tc.runtime(1), 'echo-server', { dcid: 1, slot: 5 });
    const { endpoint } = await server.ready;
    expect(endpoint).toBe(5);
    const clients = Array.from({ length: 12 }, (_, i) => startActor(tc.runtime(i % 2 === 0 ? 0 : 2), 'loop-client', { dcid: 1, dst: endpoint, loops: 200 }));
    const results = await Promise.all(clients.map((c) => c.result));
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(200);
    }
    // The process table across the cluster shows the server and its traffic.
    const rows = await clusterPs(tc.dir, 1);
    const srv = rows.find((r) => r.endpoint === endpoint);
    expect(srv?.node).toBe(1);
    expect(srv?.counters.rmtSent).toBeGreaterThanOrEqual(12 * 200);
    const stop = startActor(tc.runtime(0), 'stop', { dcid: 1, dst: endpoint });
    expect((await stop.result).r).toMatchObject({ type: 0 });
    await server.result;
  }, 120_000);
});

describe('remote sendrec timeouts racing the reply', () => {
  it('the caller gets the reply exactly when the server was told its reply succeeded', async () => {
    const server = startActor(tc.runtime(1), 'late-echo-server', { dcid: 1, slot: 15 });
    const { endpoint } = await server.ready;
    // Delays spread around the timeout: some replies come in time, some too late, some cross the expiry.
    const client = startActor(tc.runtime(0), 'racing-client', { dcid: 1, dst: endpoint, loops: 60, timeoutMs: 25, spreadMs: 6 });
    const { calls } = (await client.result) as { calls: { i: number; ok: boolean; code?: string }[] };
    const stop = startActor(tc.runtime(2), 'stop', { dcid: 1, dst: endpoint });
    expect((await stop.result).r).toMatchObject({ type: 0 });
    const { replies } = (await server.result) as { replies: { i: number; ok: boolean; code?: string }[] };
    expect(calls).toHaveLength(60);
    // Requests reach the server in call order; one withdrawn before the server took it (a slow
    // machine) never reaches it, and its call fails with its timeout.
    expect(replies.map((r) => r.i)).toEqual(calls.filter((c) => replies.some((r) => r.i === c.i)).map((c) => c.i));
    expect(replies.length).toBeGreaterThanOrEqual(10);
    for (const c of calls) {
      const r = replies.find((x) => x.i === c.i);
      if (r === undefined) {
        expect({ i: c.i, ok: c.ok, code: c.code }).toEqual({ i: c.i, ok: false, code: 'EDVSTIMEDOUT' });
        continue;
      }
      expect({ i: c.i, callOk: c.ok, replyOk: r.ok }).toEqual({ i: c.i, callOk: r.ok, replyOk: r.ok });
      if (!c.ok) expect([c.code, r.code]).toEqual(['EDVSTIMEDOUT', 'EDVSPROCSTS']);
    }
  }, 60_000);
});

describe('A12: remote bulk copy across chunk boundaries', () => {
  it('pulls from and pushes into a client grant on another node byte-exact', async () => {
    const server = startActor(tc.runtime(2), 'copy-server', { dcid: 1, slot: 6 });
    const { endpoint } = await server.ready;
    // One copy of a request's size, one above 1 MiB (the client library streams it through a grant).
    for (const length of [3 * 64 * 1024 + 4321, 3 * 1024 * 1024 + 4321]) {
      const r = await startActor(tc.runtime(0), 'copy-client', { dcid: 1, dst: endpoint, length }).result;
      expect(r.pullMatches).toBe(true);
      expect(r.pushMatches).toBe(true);
    }
    server.kill();
  }, 60_000);
});

describe('third-party copy between client grants on two other nodes', () => {
  it('is byte-exact (the source node relays each chunk to the destination node)', async () => {
    const [c0, c1, c2] = await Promise.all([0, 1, 2].map((n) => connect({ socketPath: tc.runtime(n).socket, tokenPath: tc.runtime(n).token, name: `third-party-${n}` })));
    try {
      const copier = await c0!.bind(1, { name: 'copier' });
      const src = await c1!.bind(1, { name: 'src' });
      const dst = await c2!.bind(1, { name: 'dst' });
      const data = randomBytes(3 * 1024 * 1024 + 5);
      const into = new Uint8Array(data.length + 10);
      const gs = src.grant(data, { grantee: copier.endpoint, access: 'read', whileWaiting: false });
      const gd = dst.grant(into, { grantee: copier.endpoint, access: 'write', whileWaiting: false });
      // Node 0 learns both endpoints through the directory.
      await c0!.waitForBind(1, src.endpoint, { timeoutMs: 10_000 });
      await c0!.waitForBind(1, dst.endpoint, { timeoutMs: 10_000 });
      const n = await copier.copy({ owner: src.endpoint, grant: gs, offset: 5 }, { owner: dst.endpoint, grant: gd, offset: 10 }, data.length - 5, { timeoutMs: 30_000 });
      expect(n).toBe(data.length - 5);
      expect(Buffer.from(into.subarray(10, 10 + n)).equals(data.subarray(5))).toBe(true);
      expect(Buffer.from(into.subarray(0, 10)).equals(Buffer.alloc(10))).toBe(true);
    } finally {
      await Promise.all([c0, c1, c2].map((c) => c?.close()));
    }
  }, 60_000);
});

describe('A13: an M3FTP-like transfer over grants', () => {
  it('GETs and PUTs a file whose SHA-256 equals the original', async () => {
    const root = path.join(tc.dir, 'ftp-root');
    await mkdir(root, { recursive: true });
    const original = randomBytes(2 * 1024 * 1024 + 777);
    await writeFile(path.join(root, 'data.bin'), original);
    const server = startActor(tc.runtime(1), 'ftp-server', { dcid: 1, slot: 7, root });
    const { endpoint } = await server.ready;
    const local = path.join(tc.dir, 'got.bin');
    const get = await startActor(tc.runtime(2), 'ftp-client', { dcid: 1, dst: endpoint, op: 'get', remote: 'data.bin', local }).result;
    const digest = createHash('sha256').update(original).digest('hex');
    expect(get.bytes).toBe(original.length);
    expect(get.sha).toBe(digest);
    const put = await startActor(tc.runtime(0), 'ftp-client', { dcid: 1, dst: endpoint, op: 'put', local, remote: 'copy.bin' }).result;
    expect(put.bytes).toBe(original.length);
    expect(createHash('sha256').update(await readFile(path.join(root, 'copy.bin'))).digest('hex')).toBe(digest);
    server.kill();
  }, 60_000);
});

describe('DC isolation', () => {
  it('never lets a message cross DCs that share nodes', async () => {
    await createDc(tc.dir, { dcid: 3, nodes: [0, 1] });
    await dcEverywhere(3, [0, 1]);
    const server = startActor(tc.runtime(1), 'echo-server', { dcid: 1, slot: 8 });
    const { endpoint } = await server.ready;
    await withClient(0, async (c) => {
      const other = await c.bind(3, { name: 'other-dc' });
      // Slot 8 of DC 3 is not bound anywhere: the DC-1 server is invisible from DC 3.
      await expect(other.sendrec(endpoint, { type: 1 }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    });
    server.kill();
    await removeDc(tc.dir, 3);
  }, 30_000);
});

describe('a daemon killed with SIGKILL', () => {
  it('fails callers waiting on it, keeps other traffic going, and serves again once restarted', async () => {
    const victim = tc.cluster.nodes.find((n) => n.nodeId === 2)!;
    // A server on node 2 that never answers: its client is blocked in sendrec when node 2 dies.
    const server = startActor(tc.runtime(2), 'echo-server', { dcid: 1, slot: 9 });
    await server.ready;
    const survivor = startActor(tc.runtime(1), 'echo-server', { dcid: 1, slot: 10 });
    await survivor.ready;
    const stuck = startActor(tc.runtime(0), 'loop-client', { dcid: 1, dst: 9, loops: 100_000, pauseMs: 5, stopOnError: true, timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    server.kill();
    const r = await stuck.result;
    const errors = r.errors as { code: string }[];
    expect(errors.length).toBe(1);
    expect(['EDVSNOTCONN', 'EDVSDSTDIED', 'EDVSDEADSRCDST']).toContain(errors[0]!.code);
    // Detected within the configured grace (1.5 s) plus scheduling slack, not the call's 20 s timeout.
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    // Other traffic continues.
    const other = await startActor(tc.runtime(0), 'loop-client', { dcid: 1, dst: 10, loops: 50 }).result;
    expect(other.ok).toBe(50);
    // Restart node 2 with the same configuration: it rejoins and serves again.
    await spawnNode(JSON.parse(await readFile(victim.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
    await dcEverywhere(1, [2]);
    const reborn = startActor(tc.runtime(2), 'echo-server', { dcid: 1, slot: 9 });
    const { endpoint } = await reborn.ready;
    expect(endpoint).not.toBe(9); // a new generation of slot 9
    const again = await answersEventually(0, endpoint, 1);
    expect(again.ok).toBe(20);
    reborn.kill();
    survivor.kill();
    killActors();
  }, 90_000);
});

describe('the daemon serving the embedded store, killed with SIGKILL and restarted', () => {
  it('comes back with every DC and every slot generation, and the cluster carries on', async () => {
    await createDc(tc.dir, { dcid: 5, name: 'kept', nodes: [1, 2] });
    await dcEverywhere(5, [1, 2]);
    const first = startActor(tc.runtime(1), 'echo-server', { dcid: 5, slot: 12 });
    const { endpoint: firstEndpoint } = await first.ready;
    first.kill();
    // Its daemon unpublishes the endpoint before the store goes down (a release still in flight at the
    // kill lands only once node 1's store client is back, which is another test's business).
    await eventually(() => withDirectory(tc.dir, (d) => Promise.resolve(d.endpointAt(5, 12) === undefined ? true : undefined)));
    const storeNode = tc.cluster.nodes.find((n) => n.nodeId === 0)!;
    const pid = tc.runtime(0).pid;
    process.kill(pid, 'SIGKILL');
    await eventually(() => (isAlive(pid) ? undefined : true));
    await spawnNode(JSON.parse(await readFile(storeNode.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
    // What the store held before the kill is there: both DCs, with their names and members.
    const dcs = await listDcs(tc.dir);
    expect(dcs.find((d) => d.dcid === 5)).toMatchObject({ name: 'kept', nodes: [1, 2] });
    expect(dcs.find((d) => d.dcid === 1)).toMatchObject({ name: 'main', nodes: [0, 1, 2] });
    const status = await eventually(async () => {
      const st = await clusterStatus(tc.dir);
      return st.nodes.every((n) => n.alive && n.registered) ? st : undefined;
    }, 20_000, 200);
    expect(status.nodes.map((n) => n.nodeId)).toEqual([0, 1, 2]);
    // Slot 12 gets a newer generation than the one used before the restart, never the same endpoint.
    const second = startActor(tc.runtime(1), 'echo-server', { dcid: 5, slot: 12 });
    const { endpoint: secondEndpoint } = await second.ready;
    expect(secondEndpoint).toBeGreaterThan(firstEndpoint);
    // Nodes 1 and 2 still reach each other in DC 5, and node 0 serves DC 1 again.
    const across = await answersEventually(2, secondEndpoint, 5);
    expect(across.ok).toBe(20);
    await dcEverywhere(1, [0]);
    const onZero = startActor(tc.runtime(0), 'echo-server', { dcid: 1, slot: 13 });
    const { endpoint: zeroEndpoint } = await onZero.ready;
    const toZero = await answersEventually(1, zeroEndpoint, 1);
    expect(toZero.ok).toBe(20);
    second.kill();
    onZero.kill();
    killActors();
  }, 90_000);
});
