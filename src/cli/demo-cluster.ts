/**
 * `dvs demo`: boots a real local cluster (three dvsd processes), creates a DC across them, runs a
 * data-store server bound on node 1 and clients on nodes 0 and 2 through the process socket, moves
 * a file's bytes through a grant, prints the cluster's process table, and shuts everything down.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, type DvsClient, type RemoteProcess } from '../client/index.js';
import { DvsError } from '../ipc/errors.js';
import type { Message, OutgoingMessage } from '../ipc/message.js';
import { formatProcTable } from '../kernel/index.js';
import { clusterPs, clusterStatus, createDc } from './admin.js';
import { clusterDown, clusterUp } from './cluster.js';
import { readRuntime } from './cluster-files.js';

const DC = 1;
const DS = 7;
const PUT = 1;
const GET = 2;
const PUT_BULK = 3;

/** The answer of the data store to one request. */
async function answer(ds: RemoteProcess, store: Map<string, unknown>, m: Message): Promise<OutgoingMessage> {
  const req = m.payload as { key: string; value?: unknown; grant?: number; length?: number };
  if (m.type === PUT) {
    store.set(req.key, req.value);
    return { type: 0 };
  }
  if (m.type === GET) return { type: 0, payload: { value: (store.get(req.key) ?? null) as never } };
  if (m.type === PUT_BULK) {
    const bytes = new Uint8Array(req.length ?? 0);
    await ds.copyFrom({ owner: m.source, grant: req.grant ?? -1 }, bytes);
    store.set(req.key, bytes);
    return { type: 0, payload: { sha256: createHash('sha256').update(bytes).digest('hex') } };
  }
  return { type: -22 };
}

/** A server loop: each step replies and takes the next request in one call (replyAndReceive). */
async function serveDataStore(ds: RemoteProcess): Promise<void> {
  const store = new Map<string, unknown>();
  let m: Message;
  try {
    m = await ds.receiveRequest();
  } catch {
    return; // unbound at shutdown
  }
  for (;;) {
    const out = await answer(ds, store, m).catch((): OutgoingMessage => ({ type: -5 }));
    try {
      m = await ds.replyAndReceive(m.source, out);
    } catch (err) {
      // A client that gave up is skipped; anything else means the endpoint is gone.
      if (!(err instanceof DvsError) || err.code !== 'EDVSPROCSTS') return;
      try {
        m = await ds.receiveRequest();
      } catch {
        return;
      }
    }
  }
}

export async function runClusterDemo(opts: { requests: number; bulkBytes: number; log: (line: string) => void }): Promise<void> {
  const { log } = opts;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-demo-'));
  const clients: DvsClient[] = [];
  try {
    log('booting three dvsd processes on loopback...');
    const cluster = await clusterUp({ nodes: 3, dir, logLevel: 'warn', log: (l) => log(`  ${l}`) });
    await createDc(dir, { dcid: DC, name: 'demo', nodes: [0, 1, 2] });
    log(`DC ${DC} created on nodes 0,1,2`);
    const socketOf = (node: number): { socketPath: string; tokenPath: string } => {
      const r = readRuntime(cluster.nodes[node]!.dataDir)!;
      return { socketPath: r.socket, tokenPath: r.token };
    };
    const join = async (node: number, name: string): Promise<DvsClient> => {
      const c = await connect({ ...socketOf(node), name });
      clients.push(c);
      return c;
    };
    // The DC reaches each daemon through the directory; wait until every node runs it.
    for (const n of [0, 1, 2]) {
      const c = await join(n, 'probe');
      for (let i = 0; i < 200 && !(await c.procs(DC).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 25));
    }
    const ds = await (await join(1, 'ds')).bind(DC, { slot: DS, name: 'ds' });
    const server = serveDataStore(ds);
    log(`data store bound at endpoint ${ds.endpoint} on node 1`);
    const a = await (await join(0, 'client-a')).bind(DC, { name: 'client-a' });
    const b = await (await join(2, 'client-b')).bind(DC, { name: 'client-b' });
    const t0 = performance.now();
    await Promise.all(
      [a, b].map(async (c, k) => {
        for (let i = 0; i < opts.requests; i++) await c.sendrec(ds.endpoint, { type: PUT, payload: { key: `${k}:${i}`, value: i } }, { timeoutMs: 5000 });
      }),
    );
    const ms = performance.now() - t0;
    const got = await b.sendrec(ds.endpoint, { type: GET, payload: { key: `0:${opts.requests - 1}` } }, { timeoutMs: 5000 });
    log(`clients on nodes 0 and 2: ${2 * opts.requests} sendrecs to node 1 in ${ms.toFixed(0)} ms (${((2 * opts.requests) / (ms / 1000)).toFixed(0)}/s); client-b reads client-a's last key: ${JSON.stringify((got.payload as { value: unknown }).value)}`);
    const blob = randomBytes(opts.bulkBytes);
    const grant = a.grant(blob, { grantee: ds.endpoint, access: 'read' });
    const t1 = performance.now();
    const stored = await a.sendrec(ds.endpoint, { type: PUT_BULK, payload: { key: 'blob', grant, length: blob.length } }, { timeoutMs: 30_000 });
    const same = (stored.payload as { sha256: string }).sha256 === createHash('sha256').update(blob).digest('hex');
    log(`client-a granted ${blob.length} bytes; the data store on node 1 copied them in ${(performance.now() - t1).toFixed(0)} ms; SHA-256 ${same ? 'matches' : 'DIFFERS'}`);
    log('\ndvs status:');
    const s = await clusterStatus(dir);
    for (const n of s.nodes) log(`  node ${n.nodeId}: pid ${n.pid}, ${n.alive ? 'alive' : 'dead'}, link ${n.link ?? '-'}, DCs ${n.dcs.join(',')}`);
    log('\ndvs ps (DC 1, every node):');
    log(formatProcTable(await clusterPs(dir, DC)));
    await ds.unbind();
    await server;
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    const stopped = await clusterDown(dir).catch(() => 0);
    log(`cluster down (${stopped} daemons stopped)`);
    await rm(dir, { recursive: true, force: true });
  }
}
