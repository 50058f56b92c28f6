/**
 * Properties of whole simulated clusters (kernels, store, directories, reconciliation) under
 * random schedules drawn by fast-check: binds, unbinds, node crashes, store outages and link
 * partitions reach every node; moves of a server (freeze, drain, absorb, thaw: the skeleton of
 * migration) while clients call lose and duplicate nothing, and no node's route ever goes back to
 * an older epoch.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Directory, type EndpointRecord } from '../../src/cluster/directory.js';
import { isDvsError } from '../../src/ipc/errors.js';
import type { Message } from '../../src/ipc/message.js';
import type { Handover } from '../../src/kernel/kernel.js';
import type { Process } from '../../src/kernel/process.js';
import { SimCluster } from '../../src/sim/index.js';

const DC = 1;
const TTL = 600;

type Op =
  | { readonly k: 'bind'; readonly node: number; readonly slot: number | undefined }
  | { readonly k: 'unbind'; readonly pick: number }
  | { readonly k: 'crash'; readonly node: number; readonly ms: number }
  | { readonly k: 'store'; readonly node: number; readonly ms: number }
  | { readonly k: 'partition'; readonly a: number; readonly b: number; readonly ms: number }
  | { readonly k: 'wait'; readonly ms: number };

const NODES = 3;
const node = fc.integer({ min: 0, max: NODES - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('bind' as const), node, slot: fc.option(fc.integer({ min: 5, max: 9 }), { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('unbind' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('crash' as const), node, ms: fc.integer({ min: 50, max: 3 * TTL }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('store' as const), node, ms: fc.integer({ min: 50, max: 3 * TTL }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('partition' as const), a: node, b: node, ms: fc.integer({ min: 50, max: 2 * TTL }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 300 }) }) },
);

/** What the store holds, read through a directory of its own (no node's cache). */
async function truth(c: SimCluster): Promise<EndpointRecord[]> {
  let eps: EndpointRecord[] = [];
  c.spawn('truth', async () => {
    const d = new Directory(c.store, { clock: c.clock });
    await d.start();
    eps = d.endpoints(DC);
    await d.close({ revoke: false });
  });
  await c.run({ maxTime: c.now() + 1000 });
  return eps;
}

/** Every node's routes of DC 1 against the store: remote ones at the owner and epoch it gives, locals published as its own. */
function divergence(c: SimCluster, eps: readonly EndpointRecord[]): string[] {
  const out: string[] = [];
  const bySlot = new Map(eps.map((e) => [e.slot, e]));
  for (const n of c.nodes) {
    const rows = c.kernel(n).procs(DC);
    for (const r of rows) {
      const rec = bySlot.get(r.slot);
      if (rec === undefined || rec.endpoint !== r.endpoint) out.push(`n${n}: slot ${r.slot} ${r.kind} ${r.endpoint} not in the store (${rec?.endpoint ?? 'none'})`);
      else if (r.kind === 'local' && rec.node !== n) out.push(`n${n}: ${r.endpoint} local here, the store says n${rec.node}`);
      else if (r.kind === 'remote' && (rec.node !== r.node || rec.epoch !== r.epoch)) out.push(`n${n}: ${r.endpoint} routed to n${r.node}@${r.epoch}, the store says n${rec.node}@${rec.epoch}`);
      if (r.frozen) out.push(`n${n}: ${r.endpoint} still frozen`);
    }
    for (const rec of eps) if (!rows.some((r) => r.endpoint === rec.endpoint)) out.push(`n${n}: no route to ${rec.endpoint} (n${rec.node})`);
  }
  return out;
}

describe('simulated clusters under random schedules', () => {
  it('binds, unbinds, crashes, store outages and partitions: every node ends with the store\'s routes, every live process published', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 0x7fffffff }), fc.array(op, { minLength: 5, maxLength: 25 }), async (seed, ops) => {
        const c = new SimCluster({ seed, nodes: NODES, latency: { min: 1, max: 8 }, detectionDelay: 200, leaseTtlMs: TTL });
        await c.start();
        await c.createDc({ dcid: DC, nodes: [0, 1, 2] });
        const procs: { proc: Process; node: number }[] = [];
        c.spawn('driver', async (ctx) => {
          for (const o of ops) {
            switch (o.k) {
              case 'bind':
                try {
                  procs.push({ proc: await c.bind(o.node, DC, o.slot === undefined ? { timeoutMs: 2000 } : { slot: o.slot, timeoutMs: 2000 }), node: o.node });
                } catch (err) {
                  // A slot in use, a node cut off from the store: a typed refusal, never a hang.
                  if (!isDvsError(err)) throw err;
                }
                break;
              case 'unbind': {
                const live = procs.filter((p) => p.proc.bound);
                if (live.length > 0) await live[o.pick % live.length]!.proc.unbind();
                break;
              }
              case 'crash':
                c.crash(o.node);
                c.after(o.ms, () => c.restore(o.node));
                break;
              case 'store':
                c.storeReachable(o.node, false);
                c.after(o.ms, () => c.storeReachable(o.node, true));
                break;
              case 'partition':
                if (o.a !== o.b) {
                  c.partition(o.a, o.b);
                  c.after(o.ms, () => c.heal(o.a, o.b));
                }
                break;
              case 'wait':
                await ctx.sleep(o.ms);
                break;
            }
          }
          // Everything heals; the cluster has time to settle (leases, re-registration at most 5 s apart, resyncs).
          await ctx.sleep(3 * TTL + 7000);
        });
        const r = await c.run({ maxTime: c.now() + 60_000 });
        expect(r.errors, c.formatTrace(40)).toEqual([]);
        expect(r.reason).toBe('done');
        for (const n of c.nodes) expect(c.node(n).reconciler.status().registration.state, `n${n}`).toBe('registered');
        const eps = await truth(c);
        expect(divergence(c, eps), c.formatTrace(60)).toEqual([]);
        // Every process still bound is published as its node's.
        for (const p of procs) {
          if (!p.proc.bound) continue;
          expect(eps.find((e) => e.endpoint === p.proc.endpoint)?.node, `endpoint ${p.proc.endpoint}`).toBe(p.node);
        }
        await c.stop();
      }),
      { numRuns: Number(process.env.DVS_PROPERTY_RUNS ?? 25) },
    );
  }, 120_000);

  it('a server moved between nodes while clients call: nothing lost, nothing served twice, no route back to an older epoch', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 0x7fffffff }),
        fc.array(fc.record({ to: node, after: fc.integer({ min: 0, max: 60 }) }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 5, max: 25 }),
        async (seed, moves, calls) => {
          const c = new SimCluster({ seed, nodes: NODES, latency: { min: 1, max: 8 } });
          await c.start();
          await c.createDc({ dcid: DC, nodes: [0, 1, 2] });
          let server: Process | undefined;
          const clients: Process[] = [];
          c.spawn('bind', async () => {
            server = await c.bind(0, DC, { slot: 5, name: 'srv' });
            for (const n of c.nodes) clients.push(await c.bind(n, DC, { name: `c${n}` }));
          });
          await c.run({ maxTime: c.now() + 2000 });
          if (server === undefined) throw new Error('server not bound');
          const ep = server.endpoint;
          let handle: Process = server;
          let owner = 0;
          let moved: (() => void) | undefined;
          let done = false;
          const served = new Map<string, number>();
          const answers: string[] = [];
          const regressions: string[] = [];
          let epochsMoved = 0;

          c.spawn(
            'server',
            async () => {
              while (!done) {
                let m: Message;
                try {
                  m = await handle.receiveRequest();
                } catch (err) {
                  if (!isDvsError(err, 'EDVSSHUTDOWN')) throw err;
                  // Moved: serve from the new incarnation once it is absorbed.
                  if (!handle.bound) await new Promise<void>((resolve) => (moved = resolve));
                  continue;
                }
                const key = String(m.payload);
                served.set(key, (served.get(key) ?? 0) + 1);
                await handle.reply(m.source, { type: 0, payload: key });
              }
            },
            { daemon: true },
          );
          for (const [i, cl] of clients.entries()) {
            c.spawn(`client ${i}`, async (ctx) => {
              for (let k = 0; k < calls; k++) {
                const key = `${i}:${k}`;
                const r = await cl.sendrec(ep, { type: 1, payload: key });
                if (r.payload !== key || r.source !== ep) throw new Error(`call ${key} answered ${String(r.payload)} from ${r.source}`);
                answers.push(key);
                await ctx.jitter();
              }
            });
          }
          const epochSeen = new Map<number, number>();
          c.spawn(
            'monitor',
            async (ctx) => {
              while (!done) {
                for (const n of c.nodes) {
                  const row = c.kernel(n).procs(DC).find((p) => p.endpoint === ep);
                  if (row === undefined) continue;
                  const last = epochSeen.get(n) ?? -1;
                  if (row.epoch < last) regressions.push(`n${n} went from epoch ${last} to ${row.epoch}`);
                  epochSeen.set(n, Math.max(last, row.epoch));
                }
                await ctx.sleep(1);
              }
            },
            { daemon: true },
          );
          c.spawn('coordinator', async (ctx) => {
            for (const mv of moves) {
              await ctx.sleep(mv.after);
              if (mv.to === owner) continue;
              const from = owner;
              const d = c.node(from).directory;
              const rec = d.lookup(DC, ep);
              if (rec === undefined) throw new Error('server not in the directory');
              await d.freezeEndpoint(DC, ep, rec.epoch, 5000);
              // Every node parks new callers once the freeze reached it.
              for (let i = 0; i < 1000 && !c.nodes.every((n) => c.kernel(n).route(DC, ep).kind === 'frozen'); i++) await ctx.sleep(1);
              let h: Handover | undefined;
              for (let i = 0; i < 1000 && h === undefined; i++) {
                try {
                  h = c.kernel(from).drain(DC, ep, mv.to);
                } catch (err) {
                  if (!isDvsError(err, 'EDVSBUSY')) throw err;
                  await ctx.sleep(1);
                }
              }
              if (h === undefined) throw new Error('the server never became quiescent');
              handle = c.kernel(mv.to).absorb(JSON.parse(JSON.stringify(h)) as Handover, { name: 'srv' });
              owner = mv.to;
              epochsMoved++;
              moved?.();
              await d.thawEndpoint(DC, ep, rec.epoch, { toNode: mv.to });
            }
          });
          const r = await c.run({ until: 'done', maxTime: c.now() + 60_000 });
          done = true;
          expect(r.errors.map((e) => `${e.name}: ${String(e.error)}`), c.formatTrace(60)).toEqual([]);
          expect(r.reason, c.formatTrace(60)).toBe('done');
          expect(answers.length).toBe(clients.length * calls);
          for (const [key, count] of served) expect(count, `request ${key} served`).toBe(1);
          expect(served.size).toBe(clients.length * calls);
          expect(regressions).toEqual([]);
          // Settle, then every node routes the server where the store says, at the epoch of its last move.
          c.spawn('settle', (ctx) => ctx.sleep(500));
          await c.run({ maxTime: c.now() + 1000 });
          const eps = await truth(c);
          expect(eps.find((e) => e.endpoint === ep)).toMatchObject({ node: owner, epoch: epochsMoved, frozen: false });
          expect(divergence(c, eps), c.formatTrace(60)).toEqual([]);
          await c.stop();
        },
      ),
      { numRuns: Number(process.env.DVS_PROPERTY_RUNS ?? 25) },
    );
  }, 120_000);
});
