/**
 * `dvs demo`: a small DC on two nodes inside one process. A data-store server on node 1, a client on
 * node 0 storing and fetching values through sendrec (large ones through a grant and a bulk copy),
 * a clock task notifying the server, and the process tables of both nodes at the end.
 */
import { performance } from 'node:perf_hooks';
import { ANY, EndpointSpace, isDvsError, isNotification, type Message } from '../ipc/index.js';
import { formatProcTable, Kernel, type Process } from '../kernel/index.js';
import { LoopbackNetwork } from '../runtime/loopback.js';
import { systemClock } from '../runtime/system-clock.js';

const DC = 0;
const DS = 7; // the data store's well-known slot, as in MoL's com.h
const PUT = 1;
const GET = 2;
const PUT_BULK = 3;
const OK = 0;

interface DemoOptions {
  readonly requests: number;
  readonly bulkBytes: number;
  readonly log: (line: string) => void;
}

/** The data store: a map from keys to bytes or values, served with receiveRequest/reply. */
async function dataStore(ds: Process, log: (line: string) => void): Promise<void> {
  const store = new Map<string, unknown>();
  let ticks = 0;
  for (;;) {
    let m: Message;
    try {
      m = await ds.receive(ANY);
    } catch (err) {
      if (isDvsError(err, 'EDVSSHUTDOWN')) return;
      throw err;
    }
    if (isNotification(m)) {
      ticks++;
      log(`  ds: notification from clock task (endpoint ${m.source}), tick ${ticks}`);
      continue;
    }
    const req = m.payload as { key: string; value?: unknown; grant?: number; length?: number };
    switch (m.type) {
      case PUT:
        store.set(req.key, req.value);
        await ds.reply(m.source, { type: OK });
        break;
      case GET:
        await ds.reply(m.source, { type: OK, payload: { value: (store.get(req.key) ?? null) as never } });
        break;
      case PUT_BULK: {
        const bytes = new Uint8Array(req.length ?? 0);
        await ds.copyFrom({ owner: m.source, grant: req.grant ?? -1 }, bytes);
        store.set(req.key, bytes);
        await ds.reply(m.source, { type: OK, payload: { stored: bytes.byteLength } });
        break;
      }
      default:
        await ds.reply(m.source, { type: -22 });
    }
  }
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const { log } = opts;
  const net = new LoopbackNetwork();
  const kernels = [0, 1].map((nodeId) => new Kernel({ nodeId, clock: systemClock, transport: net.transportFor(nodeId) }));
  for (const k of kernels) {
    net.attach(k);
    k.createDc({ dcid: DC, name: 'demo', nodes: [0, 1] });
  }
  const [k0, k1] = kernels as [Kernel, Kernel];
  log(`DVS demo: DC ${DC} spans nodes 0 and 1 (two kernels in this process, linked in memory)`);

  const ds = k1.bind(DC, { slot: DS, name: 'ds' });
  k0.bindRemote(DC, ds.endpoint, 1, 'ds');
  const space = new EndpointSpace(k1.dcInfo(DC).limits);
  const clock = k1.bind(DC, { slot: space.CLOCK, name: 'clock' });
  const client = k0.bind(DC, { name: 'client' });
  log(`bound: ds=${ds.endpoint} on node 1, clock task=${clock.endpoint} on node 1, client=${client.endpoint} on node 0`);
  const server = dataStore(ds, log);

  await clock.notify(ds.endpoint);

  const t0 = performance.now();
  for (let i = 0; i < opts.requests; i++) {
    await client.sendrec(ds.endpoint, { type: PUT, payload: { key: `k${i}`, value: i * i } });
  }
  const putMs = performance.now() - t0;
  const got = await client.sendrec(ds.endpoint, { type: GET, payload: { key: `k${opts.requests - 1}` } });
  log(`client: ${opts.requests} PUT sendrecs across nodes in ${putMs.toFixed(1)} ms (${((opts.requests / putMs) * 1000).toFixed(0)}/s); GET k${opts.requests - 1} = ${JSON.stringify((got.payload as { value: unknown }).value)}`);

  const bulk = new Uint8Array(opts.bulkBytes);
  for (let i = 0; i < bulk.length; i++) bulk[i] = (i * 31) & 0xff;
  const grant = client.grant(bulk, { grantee: ds.endpoint, access: 'read' });
  const t1 = performance.now();
  const stored = await client.sendrec(ds.endpoint, { type: PUT_BULK, payload: { key: 'blob', grant, length: bulk.length } });
  const bulkMs = performance.now() - t1;
  log(`client: granted ${bulk.length} bytes; ds copied ${(stored.payload as { stored: number }).stored} bytes in chunks in ${bulkMs.toFixed(1)} ms`);

  await clock.notify(ds.endpoint);
  await new Promise((r) => setTimeout(r, 10));

  log('\nnode 0 process table (DC 0):');
  log(formatProcTable(k0.procs(DC)));
  log('node 1 process table (DC 0):');
  log(formatProcTable(k1.procs(DC)));

  for (const k of kernels) k.shutdown();
  await server;
  log('demo finished: kernels shut down cleanly');
}
