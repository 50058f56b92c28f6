/**
 * Properties of M3-IPC over random seeds and random workloads on simulated clusters. Each run is
 * bounded in virtual time and steps; a failure reports the seed and parameters, which replay it.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ANY, type Endpoint } from '../../src/ipc/endpoint.js';
import { isNotification, NOTIFY_MESSAGE, type Message } from '../../src/ipc/message.js';
import { Simulation } from '../../src/sim/index.js';
import { outcome } from './helpers.js';
import { report, runChaos, type ChaosParams, type ChaosRun, type Receipt } from './workload.js';

/** Runs per property; raise it (e.g. DVS_SIM_RUNS=2000) for a soak. */
const NUM_RUNS = Number(process.env.DVS_SIM_RUNS ?? 60);
const TIMEOUT = Math.max(30_000, NUM_RUNS * 250);

const chaosParams: fc.Arbitrary<ChaosParams> = fc.record({
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
  nodes: fc.integer({ min: 2, max: 4 }),
  servers: fc.integer({ min: 1, max: 3 }),
  clients: fc.integer({ min: 2, max: 5 }),
  ops: fc.integer({ min: 2, max: 10 }),
  notifiers: fc.integer({ min: 0, max: 2 }),
  timeouts: fc.boolean(),
  aborts: fc.boolean(),
  rebinds: fc.boolean(),
  pipelining: fc.boolean(),
  crashes: fc.boolean(),
  copies: fc.boolean(),
});

/** The run ended because every client finished; nothing failed in an unexpected way. */
function liveness(run: ChaosRun): string[] {
  const v: string[] = [];
  if (run.result.reason !== 'done') v.push(`run stopped by ${run.result.reason} with [${run.result.unfinished.join(', ')}] unfinished`);
  for (const e of [...run.result.errors, ...run.grace.errors]) v.push(`process ${e.name} failed: ${String(e.error)}`);
  v.push(...run.unexpected);
  for (const s of run.sends) if (s.ok === undefined) v.push(`${s.id} never settled`);
  return v;
}

function receiptsById(run: ChaosRun): Map<string, Receipt[]> {
  const m = new Map<string, Receipt[]>();
  for (const r of run.receipts) {
    const list = m.get(r.id);
    if (list === undefined) m.set(r.id, [r]);
    else list.push(r);
  }
  return m;
}

async function checkChaos(params: ChaosParams, check: (run: ChaosRun) => string[]): Promise<void> {
  const run = await runChaos(params);
  report(run, [...liveness(run), ...check(run)]);
}

describe('properties over random workloads', () => {
  it('(1) rendezvous: a send that resolved was received exactly once, no later than it resolved', { timeout: TIMEOUT }, async () => {
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(chaosParams, (params) =>
        checkChaos(params, (run) => {
          const v: string[] = [];
          const byId = receiptsById(run);
          for (const s of run.sends) {
            if (s.ok !== true) continue;
            checked++;
            const rs = byId.get(s.id) ?? [];
            if (rs.length !== 1) v.push(`${s.kind} ${s.id} resolved at ${s.end} but was received ${rs.length} times`);
            else if (rs[0]!.at > s.end) v.push(`${s.kind} ${s.id} resolved at ${s.end} before its receive at ${rs[0]!.at}`);
            else if (rs[0]!.receiver !== s.dst) v.push(`${s.id} for ${s.dst} was received by ${rs[0]!.receiver}`);
          }
          return v;
        }),
      ),
      { numRuns: NUM_RUNS },
    );
    expect(checked).toBeGreaterThan(NUM_RUNS);
  });

  it('(2) per-sender FIFO: every receiver sees each sender\'s sequence numbers increase', { timeout: TIMEOUT }, async () => {
    let pairs = 0;
    await fc.assert(
      fc.asyncProperty(chaosParams, (params) =>
        checkChaos(params, (run) => {
          const v: string[] = [];
          const last = new Map<string, number>();
          for (const r of run.receipts) {
            const key = `${r.receiver}<-${r.source}`;
            const prev = last.get(key);
            if (prev !== undefined) {
              pairs++;
              if (r.seq <= prev) v.push(`${key}: seq ${r.seq} (${r.id}) after ${prev}`);
            }
            last.set(key, r.seq);
          }
          return v;
        }),
      ),
      { numRuns: NUM_RUNS },
    );
    expect(pairs).toBeGreaterThan(0);
  });

  it('(3a) notifications before messages: receive(ANY) with a notification pending never returns a message', { timeout: TIMEOUT }, async () => {
    let withPending = 0;
    await fc.assert(
      fc.asyncProperty(chaosParams, (params) =>
        checkChaos({ ...params, notifiers: Math.max(1, params.notifiers) }, (run) => {
          const v: string[] = [];
          for (const c of run.receiveAny) {
            if (c.pendingBefore < 0) v.push(`receiver ${c.receiver} missing from its node's process table`);
            if (c.pendingBefore > 0) {
              withPending++;
              if (!c.notification) v.push(`receive(ANY) by ${c.receiver} at ${c.at} returned a message with ${c.pendingBefore} notification(s) pending`);
            }
          }
          // Every notification received was sent to that very incarnation, and carries only bits sent to it.
          for (const n of run.notes) {
            const sent = run.notifies.filter((x) => x.ok && x.notifier === n.source && x.dst === n.receiver && x.at <= n.at);
            const bits = sent.reduce((acc, x) => acc | x.arg, 0);
            if (sent.length === 0) v.push(`notification from ${n.source} reached ${n.receiver} which it never notified`);
            else if ((n.arg & ~bits) !== 0) v.push(`notification arg ${n.arg} from ${n.source} has bits never sent (${bits})`);
          }
          return v;
        }),
      ),
      { numRuns: NUM_RUNS },
    );
    expect(withPending).toBeGreaterThan(0);
  });

  it('(4) reply only to a waiting sendrec: each reply reaches its caller once; others get EDVSPROCSTS', { timeout: TIMEOUT }, async () => {
    let bogus = 0;
    await fc.assert(
      fc.asyncProperty(chaosParams, (params) =>
        checkChaos(params, (run) => {
          const v: string[] = [];
          const sendById = new Map(run.sends.map((s) => [s.id, s]));
          const delivered = new Set<number>();
          let ok = 0;
          for (const s of run.sends) {
            if (s.kind !== 'sendrec' || s.ok !== true) continue;
            ok++;
            const r = s.reply;
            const p = r?.payload as { inReplyTo?: string; replyId?: number } | undefined;
            if (r === undefined || p?.replyId === undefined) v.push(`sendrec ${s.id} succeeded without a reply`);
            else if (r.source !== s.dst || p.inReplyTo !== s.id) v.push(`sendrec ${s.id} to ${s.dst} got the reply to ${String(p.inReplyTo)} from ${r.source}`);
            else if (delivered.has(p.replyId)) v.push(`reply ${p.replyId} delivered twice`);
            else delivered.add(p.replyId);
          }
          let successful = 0;
          for (const a of run.replies) {
            if (!a.outstanding) {
              bogus++;
              if (a.ok || a.code !== 'EDVSPROCSTS') v.push(`reply ${a.replyId} from ${a.server} to ${a.client}, which waits for no reply from it, gave ${a.ok ? 'success' : a.code}`);
              continue;
            }
            const s = sendById.get(a.id!);
            if (a.ok) {
              successful++;
              const got = (s?.reply?.payload as { replyId?: number } | undefined)?.replyId === a.replyId;
              // A successful reply reaches its caller: a caller whose timeout or abort raced it waits
              // until the server's node settled the race, and then gets it (delivery wins). It is lost
              // only if the server's incarnation was replaced in the directory (EDVSDEADSRCDST) while
              // the reply was on the wire, or a crash ate it (EDVSNOTCONN). Local replies cannot be lost.
              const gaveUp = s?.ok === false && ['EDVSDEADSRCDST', 'EDVSNOTCONN'].includes(s.code!);
              if (!got && (a.local || !gaveUp)) v.push(`reply ${a.replyId} to ${a.id} succeeded but the caller ended ${s?.ok === true ? 'with another reply' : s?.code}`);
            } else if (a.code !== 'EDVSPROCSTS') {
              v.push(`reply to ${a.id} failed with ${a.code}`);
            } else if (s?.ok === true) {
              v.push(`reply to ${a.id} failed with EDVSPROCSTS yet the sendrec succeeded`);
            }
          }
          if (successful - ok !== run.repliesDropped) v.push(`${successful} replies sent, ${ok} delivered, but kernels dropped ${run.repliesDropped}`);
          return v;
        }),
      ),
      { numRuns: NUM_RUNS },
    );
    expect(bogus).toBeGreaterThan(0);
  });

  it('(5) nothing lost, duplicated or delivered to the wrong generation', { timeout: TIMEOUT }, async () => {
    let stale = 0;
    let copiedBytes = 0;
    await fc.assert(
      fc.asyncProperty(chaosParams, (params) =>
        checkChaos(params, (run) => {
          const v: string[] = [];
          const p = run.params;
          const byId = receiptsById(run);
          const ids = new Set<string>();
          for (const s of run.sends) {
            if (ids.has(s.id)) v.push(`id ${s.id} used twice`);
            ids.add(s.id);
          }
          for (const r of run.receipts) {
            const s = run.sends.find((x) => x.id === r.id);
            if (s === undefined) v.push(`received unknown message ${r.id}`);
            else if (r.receiver !== s.dst || r.source !== s.client) v.push(`${r.id} from ${s.client} to ${s.dst} was received by ${r.receiver} from ${r.source}`);
          }
          const allowed = new Set<string>();
          if (p.timeouts) allowed.add('EDVSTIMEDOUT');
          if (p.aborts) allowed.add('EDVSINTR');
          if (p.rebinds) for (const c of ['EDVSENDPOINT', 'EDVSDSTDIED', 'EDVSDEADSRCDST']) allowed.add(c);
          if (p.crashes) allowed.add('EDVSNOTCONN');
          for (const s of run.sends) {
            const n = byId.get(s.id)?.length ?? 0;
            if (n > 1) v.push(`${s.id} received ${n} times`);
            if (s.ok === false && !allowed.has(s.code!)) v.push(`${s.kind} ${s.id} failed with unexpected ${s.code}`);
            if (s.kind === 'send') {
              if (s.ok === true && n !== 1) v.push(`send ${s.id} succeeded but was received ${n} times`);
              // A crash may eat the ack of a delivered send: then, and only then, the caller cannot know.
              if (s.ok === false && n !== 0 && s.code !== 'EDVSNOTCONN') v.push(`send ${s.id} failed with ${s.code} but was received`);
            } else if (s.ok === false && (s.code === 'EDVSENDPOINT' || s.code === 'EDVSDSTDIED') && n !== 0) {
              v.push(`sendrec ${s.id} failed with ${s.code} but its request was received`);
            }
            if (s.ok === false && (s.code === 'EDVSENDPOINT' || s.code === 'EDVSDSTDIED' || s.code === 'EDVSDEADSRCDST')) stale++;
          }
          // Bulk data: the bytes are checked during the run; a copy fails only for a caller that gave up.
          for (const c of run.copies) {
            const s = run.sends.find((x) => x.id === c.id);
            if (c.ok) copiedBytes += c.bytes;
            else if (s?.ok !== false) v.push(`copy for ${c.id} failed with ${c.code} but the caller's sendrec ended ${s?.ok === true ? 'well' : 'never'}`);
          }
          return v;
        }),
      ),
      { numRuns: NUM_RUNS },
    );
    expect(stale).toBeGreaterThan(0);
    expect(copiedBytes).toBeGreaterThan(0);
  });
});

interface DrainParams {
  readonly seed: number;
  readonly nodes: number;
  readonly notifiers: number;
  readonly senders: number;
  readonly perSender: number;
}

const drainParams: fc.Arbitrary<DrainParams> = fc.record({
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
  nodes: fc.integer({ min: 1, max: 4 }),
  notifiers: fc.integer({ min: 1, max: 5 }),
  senders: fc.integer({ min: 1, max: 4 }),
  perSender: fc.integer({ min: 1, max: 4 }),
});

const T0 = 200;

/**
 * Notifications and messages pile up while the server is busy, then it drains with receive(ANY):
 * first every notifier once (coalesced, args OR-ed), lowest source first, then every message,
 * each sender's in order.
 */
async function drainRun(p: DrainParams): Promise<string[]> {
  const sim = new Simulation({ seed: p.seed, nodes: p.nodes, latency: { min: 1, max: 10 } });
  const rnd = sim.random;
  const v: string[] = [];
  const server = sim.bind(rnd.int(0, p.nodes - 1), { slot: 24, name: 'server' });
  const serverNode = sim.whereIs(server.endpoint)!;
  const argsBy = new Map<Endpoint, number>();
  const slots = rnd.shuffle(Array.from({ length: 20 }, (_, i) => i + 1)).slice(0, p.notifiers);
  for (const slot of slots) {
    const n = sim.bind(rnd.int(0, p.nodes - 1), { slot, name: `ntf${slot}` });
    const times = rnd.int(1, 3);
    sim.spawn(`ntf${slot}`, async (ctx) => {
      for (let i = 0; i < times; i++) {
        await ctx.sleep(rnd.int(0, Math.floor((T0 - 40) / 3)));
        const arg = 1 << rnd.int(0, 15);
        argsBy.set(n.endpoint, (argsBy.get(n.endpoint) ?? 0) | arg);
        const r = await n.notify(server.endpoint, { arg });
        const expected = sim.whereIs(n.endpoint) === serverNode ? (i === 0 ? 'pending' : 'overrun') : 'sent';
        if (r !== expected) v.push(`notify #${i} from ${n.endpoint} gave ${r}, expected ${expected}`);
      }
    });
  }
  const senders: Endpoint[] = [];
  for (let s = 0; s < p.senders; s++) {
    const c = sim.bind(rnd.int(0, p.nodes - 1), { name: `snd${s}` });
    senders.push(c.endpoint);
    const pipelined = rnd.chance(0.5);
    sim.spawn(`snd${s}`, async (ctx) => {
      await ctx.sleep(rnd.int(0, T0 / 2));
      const sends = Array.from({ length: p.perSender }, (_, i) => () => c.send(server.endpoint, { type: 7, payload: i }));
      if (pipelined) await Promise.all(sends.map((f) => f()));
      else for (const f of sends) await f();
    });
  }
  const got: Message[] = [];
  sim.spawn('server', async (ctx) => {
    await ctx.sleep(T0);
    const row = sim.kernel(serverNode).procs(sim.dcid).find((r) => r.endpoint === server.endpoint)!;
    if (row.pendingNotifies !== p.notifiers) v.push(`${row.pendingNotifies} notifications pending at T0, expected ${p.notifiers}`);
    // Pipelined senders have every message queued; sequential ones only their first.
    if (row.queued < p.senders) v.push(`${row.queued} messages queued at T0, expected at least ${p.senders}`);
    for (let i = 0; i < p.notifiers + p.senders * p.perSender; i++) got.push(await server.receive(ANY, { timeoutMs: 100 }));
    const extra = await outcome(sim, server.receive(ANY, { timeoutMs: 50 }));
    if (extra.ok) v.push(`an extra message after the drain: ${JSON.stringify(extra.value)}`);
  });
  const r = await sim.run({ maxTime: 5_000, maxSteps: 20_000 });
  if (r.reason !== 'done') v.push(`run ended by ${r.reason}, unfinished ${r.unfinished.join(',')}`);
  for (const e of r.errors) v.push(`${e.name} failed: ${String(e.error)}`);
  const notes = got.slice(0, p.notifiers);
  const msgs = got.slice(p.notifiers);
  if (!notes.every(isNotification)) v.push(`the first ${p.notifiers} receives were not all notifications: ${got.map((m) => m.source).join(',')}`);
  const privIds = notes.map((m) => m.type & ~NOTIFY_MESSAGE);
  for (let i = 1; i < privIds.length; i++) if (privIds[i]! <= privIds[i - 1]!) v.push(`notifications out of order: privIds ${privIds.join(',')}`);
  for (const m of notes) {
    if (m.type !== (NOTIFY_MESSAGE | sim.space.privId(sim.space.slotOf(m.source)))) v.push(`notification type ${m.type} does not match source ${m.source}`);
    const arg = (m.payload as { arg: number }).arg;
    if (arg !== argsBy.get(m.source)) v.push(`notification from ${m.source} has arg ${arg}, expected OR ${argsBy.get(m.source)}`);
  }
  if (msgs.some(isNotification)) v.push('a notification came after a message');
  for (const s of senders) {
    const seqs = msgs.filter((m) => m.source === s).map((m) => m.payload as number);
    if (seqs.join(',') !== Array.from({ length: p.perSender }, (_, i) => i).join(',')) v.push(`sender ${s} delivered ${seqs.join(',')}`);
  }
  if (v.length > 0) v.push(`seed=${p.seed} params=${JSON.stringify(p)}\n${sim.formatTrace(40)}`);
  return v;
}

describe('property: notifications drain first', () => {
  it('(3b) pending notifications come first, lowest source first, coalesced; then messages in FIFO order', { timeout: TIMEOUT }, async () => {
    await fc.assert(
      fc.asyncProperty(drainParams, async (p) => {
        const v = await drainRun(p);
        if (v.length > 0) throw new Error(`drain property violated with seed=${p.seed}:\n  ${v.join('\n  ')}`);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
