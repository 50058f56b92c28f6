/**
 * Whole clusters on virtual time: kernels, one in-memory store, a directory and the reconciler per
 * node, as daemons wire them, with crashes, partitions and store outages.
 */
import { describe, expect, it } from 'vitest';
import type { Message } from '../../src/ipc/message.js';
import type { Process } from '../../src/kernel/process.js';
import { SimCluster } from '../../src/sim/index.js';
import { assertClean, outcome, type Outcome } from './helpers.js';

const FIXED = { min: 5, max: 5 };

describe('a simulated cluster', () => {
  it('registers its nodes, runs a DC on its members and routes a bind on one node from every other', async () => {
    const c = new SimCluster({ seed: 1, nodes: 3, latency: FIXED });
    await c.start();
    for (const n of c.nodes) expect(c.node(n).reconciler.status().registration.state).toBe('registered');
    await c.createDc({ dcid: 1, nodes: [0, 1, 2] });
    let server: Process | undefined;
    let client: Process | undefined;
    c.spawn('bind', async () => {
      server = await c.bind(1, 1, { slot: 5, name: 'srv' });
      client = await c.bind(2, 1, { name: 'cli' });
    });
    assertClean(c, await c.run({ maxTime: c.now() + 1000 }));
    const srv = server!;
    const cli = client!;
    let answer: Outcome<Message> | undefined;
    c.spawn('server', async () => {
      const m = await srv.receiveRequest();
      await srv.reply(m.source, { type: 0, payload: 'pong' });
    });
    c.spawn('client', async () => {
      answer = await outcome(c, cli.sendrec(srv.endpoint, { type: 1, payload: 'ping' }, { timeoutMs: 1000 }));
    });
    assertClean(c, await c.run({ maxTime: c.now() + 2000 }));
    expect(answer?.value?.payload).toBe('pong');
    for (const n of [0, 2]) expect(c.kernel(n).route(1, srv.endpoint)).toEqual({ kind: 'remote', endpoint: srv.endpoint, node: 1, epoch: 0 });
    await c.stop();
  });
});
