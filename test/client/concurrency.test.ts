/** Many clients at once against one server, through one daemon. */
import { afterEach, describe, expect, it } from 'vitest';
import { DvsError, type RemoteProcess } from '../../src/client/index.js';
import { DC, SERVER_SLOT, startHarness, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

const CLIENTS = 20;
const CALLS = 50;

/** A server loop: answers each request with its payload + 1 until woken up. */
async function serve(srv: { receiveRequest(): Promise<{ source: number; type: number; payload: unknown }>; reply(dst: number, m: { type: number; payload?: number }): Promise<void> }): Promise<number> {
  let served = 0;
  for (;;) {
    let req;
    try {
      req = await srv.receiveRequest();
    } catch (err) {
      if (err instanceof DvsError && err.code === 'EDVSWOKENUP') return served;
      throw err;
    }
    await srv.reply(req.source, { type: req.type, payload: (req.payload as number) + 1 });
    served++;
  }
}

describe('process protocol: concurrency', { timeout: 30_000 }, () => {
  it(`${CLIENTS} clients x ${CALLS} sendrecs against a server that is itself a client`, async () => {
    h = await startHarness();
    const sc = await h.connect({ name: 'server' });
    const srv = await sc.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
    const loop = serve(srv);
    const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => h!.connect({ name: `c${i}` })));
    const procs: RemoteProcess[] = await Promise.all(clients.map((c) => c.bind(DC)));
    const t0 = Date.now();
    await Promise.all(
      procs.map(async (p, i) => {
        for (let n = 0; n < CALLS; n++) {
          const rep = await p.sendrec(srv.endpoint, { type: i, payload: i * 1000 + n }, { timeoutMs: 10_000 });
          expect(rep.source).toBe(srv.endpoint);
          expect(rep.type).toBe(i);
          expect(rep.payload).toBe(i * 1000 + n + 1);
        }
      }),
    );
    const elapsed = Date.now() - t0;
    await sc.wakeup(DC, srv.endpoint);
    expect(await loop).toBe(CLIENTS * CALLS);
    expect(elapsed).toBeLessThan(20_000);
    expect(h.server.connectionCount).toBe(CLIENTS + 1);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('many calls in flight on one connection, several endpoints, completing out of order', async () => {
    h = await startHarness();
    const c = await h.connect();
    const local = h.kernel.bind(DC, { slot: SERVER_SLOT });
    const loop = serve(local);
    const procs = await Promise.all(Array.from({ length: 30 }, () => c.bind(DC)));
    const results = await Promise.all(procs.map((p, i) => p.sendrec(local.endpoint, { type: 1, payload: i })));
    expect(results.map((r) => r.payload)).toEqual(procs.map((_, i) => i + 1));
    h.kernel.wakeup(DC, local.endpoint);
    expect(await loop).toBe(30);
  });
});
