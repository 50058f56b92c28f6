/**
 * Random workloads for the simulator: servers, clients and notifiers on random nodes, every choice
 * drawn from the simulation's seeded PRNG, every call recorded so properties can be checked after
 * the run. The same parameters (seed included) replay the same run.
 */
import { ANY, type Endpoint } from '../../src/ipc/endpoint.js';
import { isNotification, type Message } from '../../src/ipc/message.js';
import type { Process } from '../../src/kernel/index.js';
import { Simulation, type SimResult } from '../../src/sim/index.js';
import { outcome } from './helpers.js';

export interface ChaosParams {
  readonly seed: number;
  readonly nodes: number;
  readonly servers: number;
  readonly clients: number;
  /** Operations per client. */
  readonly ops: number;
  readonly notifiers: number;
  readonly timeouts: boolean;
  readonly aborts: boolean;
  readonly rebinds: boolean;
  readonly pipelining: boolean;
  /** One random node crashes mid-run (and may come back). */
  readonly crashes: boolean;
  /** Some sendrecs carry grants the server copies from and to, in several chunks. */
  readonly copies: boolean;
}

export interface SendRecord {
  readonly id: string;
  readonly client: Endpoint;
  readonly seq: number;
  readonly dst: Endpoint;
  readonly kind: 'send' | 'sendrec';
  readonly start: number;
  end: number;
  ok: boolean | undefined;
  code: string | undefined;
  reply: Message | undefined;
}

export interface Receipt {
  readonly id: string;
  /** The incarnation that received it. */
  readonly receiver: Endpoint;
  readonly source: Endpoint;
  readonly seq: number;
  readonly rec: boolean;
  readonly at: number;
}

export interface NoteReceipt {
  readonly receiver: Endpoint;
  readonly source: Endpoint;
  readonly arg: number;
  readonly at: number;
}

export interface ReceiveAnyCall {
  readonly receiver: Endpoint;
  readonly pendingBefore: number;
  readonly notification: boolean;
  readonly at: number;
}

export interface ReplyAttempt {
  readonly server: Endpoint;
  readonly client: Endpoint;
  /** The request answered; undefined for a reply the server knows nobody waits for. */
  readonly id: string | undefined;
  readonly replyId: number;
  /** Whether the server had a taken, unanswered sendrec from `client` (else EDVSPROCSTS is due). */
  readonly outstanding: boolean;
  /** Client on the server's node: a successful reply cannot be lost on the way. */
  readonly local: boolean;
  readonly ok: boolean;
  readonly code: string | undefined;
  readonly at: number;
}

export interface NotifyRecord {
  readonly notifier: Endpoint;
  readonly dst: Endpoint;
  readonly arg: number;
  /** The NotifyOutcome, or the error code. */
  readonly result: string;
  readonly ok: boolean;
  readonly at: number;
}

export interface CopyRecord {
  readonly id: string;
  readonly ok: boolean;
  readonly code: string | undefined;
  readonly bytes: number;
}

export interface ChaosRun {
  readonly params: ChaosParams;
  readonly sim: Simulation;
  readonly result: SimResult;
  /** Result of the grace period after the clients finished. */
  readonly grace: SimResult;
  readonly sends: SendRecord[];
  readonly receipts: Receipt[];
  readonly notes: NoteReceipt[];
  readonly receiveAny: ReceiveAnyCall[];
  readonly replies: ReplyAttempt[];
  readonly notifies: NotifyRecord[];
  /** Server-side copies for sendrecs that carried grants. */
  readonly copies: CopyRecord[];
  /** Calls that failed in a way the workload never expects. */
  readonly unexpected: string[];
  /** Replies that found nobody waiting (kernel count) or were lost with a crashed link (network count). */
  readonly repliesDropped: number;
  /** Node crashed by the workload, if any. */
  readonly crashed: number | undefined;
}

interface RequestPayload {
  readonly id: string;
  readonly seq: number;
  readonly rec: boolean;
  /** Grants of the caller: one to read `len` bytes from, one to write `len` bytes into. */
  readonly grants?: { readonly read: number; readonly write: number; readonly len: number };
}

interface ReplyPayload {
  readonly inReplyTo: string;
  readonly replyId: number;
  readonly copied?: boolean;
}

/** Bytes a copy must move for request `id`: derived from it, so both ends know them. */
export function pattern(id: string, len: number, salt: number): Uint8Array {
  let x = salt * 0x9e3779b1;
  for (let i = 0; i < id.length; i++) x = Math.imul(x ^ id.charCodeAt(i), 0x01000193);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

/** Why a server-side copy may fail: the caller stopped waiting (and revoked its grants), or a crash. */
const COPY_FAILURES = new Set(['EDVSPROCSTS', 'EDVSBADVALUE', 'EDVSNOTCONN']);

export const MAX_TIME = 20_000;
export const MAX_STEPS = 60_000;
const NOTIFIER_SLOT = 20;

function pendingNotifies(sim: Simulation, node: number, ep: Endpoint): number {
  return sim.kernel(node).procs(sim.dcid).find((r) => r.endpoint === ep)?.pendingNotifies ?? -1;
}

/** Builds, runs and records one random workload. */
export async function runChaos(params: ChaosParams): Promise<ChaosRun> {
  const sim = new Simulation({
    seed: params.seed,
    nodes: params.nodes,
    latency: { min: 1, max: 8 },
    jitter: { min: 0, max: 4 },
    kernel: { limits: { maxCopyChunk: 8 }, copyWindow: 2 },
  });
  const rnd = sim.random;
  const sends: SendRecord[] = [];
  const receipts: Receipt[] = [];
  const notes: NoteReceipt[] = [];
  const receiveAny: ReceiveAnyCall[] = [];
  const replies: ReplyAttempt[] = [];
  const notifies: NotifyRecord[] = [];
  const copies: CopyRecord[] = [];
  const unexpected: string[] = [];
  /** Current endpoint of each server, as a directory would publish it. */
  const registry: Endpoint[] = [];
  let clientsLeft = params.clients;
  let nextReplyId = 1;
  let crashed: number | undefined;

  if (params.crashes) {
    const victim = rnd.int(0, params.nodes - 1);
    sim.after(rnd.int(10, 150), () => {
      crashed = victim;
      sim.crash(victim);
      if (rnd.chance(0.6)) sim.after(rnd.int(10, 250), () => sim.restore(victim), `restore n${victim}`);
    }, `crash n${victim}`);
  }

  // Servers: system slots 1..S on random nodes; they loop until every client is done.
  for (let s = 0; s < params.servers; s++) {
    const slot = s + 1;
    let node = rnd.int(0, params.nodes - 1);
    let proc: Process = sim.bind(node, { slot, name: `srv${s}` });
    registry[s] = proc.endpoint;
    let rebound = false;
    sim.spawn(
      `srv${s}`,
      async (ctx) => {
        /** Latest taken, unanswered sendrec per client. */
        let outstanding = new Map<Endpoint, string>();
        for (let iter = 0; iter < 2_000 && clientsLeft > 0; iter++) {
          if (params.rebinds && !rebound && rnd.chance(0.04)) {
            rebound = true;
            await proc.unbind();
            ctx.log(`unbound ${proc.endpoint}`);
            await ctx.sleep(rnd.int(0, 15));
            node = rnd.int(0, params.nodes - 1);
            proc = sim.bind(node, { slot, name: `srv${s}` });
            registry[s] = proc.endpoint;
            outstanding = new Map();
            continue;
          }
          const me = proc;
          const useAny = rnd.chance(0.5);
          const opts = rnd.chance(0.3) ? { timeoutMs: rnd.int(1, 40) } : undefined;
          const pendingBefore = pendingNotifies(sim, node, me.endpoint);
          const r = await outcome(sim, useAny ? me.receive(ANY, opts) : me.receiveRequest(opts));
          if (!r.ok) {
            if (r.code !== 'EDVSTIMEDOUT' || opts === undefined) unexpected.push(`srv${s} receive: ${r.code}`);
            continue;
          }
          const m = r.value!;
          const note = isNotification(m);
          if (useAny) receiveAny.push({ receiver: me.endpoint, pendingBefore, notification: note, at: sim.now() });
          else if (note) unexpected.push(`srv${s} receiveRequest returned a notification`);
          if (note) {
            notes.push({ receiver: me.endpoint, source: m.source, arg: (m.payload as { arg: number }).arg, at: sim.now() });
            continue;
          }
          const p = m.payload as unknown as RequestPayload;
          receipts.push({ id: p.id, receiver: me.endpoint, source: m.source, seq: p.seq, rec: p.rec, at: sim.now() });
          const local = sim.whereIs(m.source) === node;
          if (p.rec) {
            outstanding.set(m.source, p.id);
            await ctx.jitter();
            let copied: boolean | undefined;
            if (p.grants !== undefined) {
              const { read, write, len } = p.grants;
              const buf = new Uint8Array(len);
              let r = await outcome(sim, me.copyFrom({ owner: m.source, grant: read }, buf));
              if (r.ok && !sameBytes(buf, pattern(p.id, len, 1))) unexpected.push(`copyFrom for ${p.id} moved the wrong bytes`);
              if (r.ok) r = await outcome(sim, me.copyTo({ owner: m.source, grant: write }, pattern(p.id, len, 2)));
              if (!r.ok && !COPY_FAILURES.has(r.code!)) unexpected.push(`copy for ${p.id} failed with ${r.code}`);
              copied = r.ok;
              copies.push({ id: p.id, ok: r.ok, code: r.code, bytes: len });
            }
            const replyId = nextReplyId++;
            const rr = await outcome(sim, me.reply(m.source, { type: 2, payload: { inReplyTo: p.id, replyId, copied } satisfies ReplyPayload }));
            outstanding.delete(m.source);
            replies.push({ server: me.endpoint, client: m.source, id: p.id, replyId, outstanding: true, local, ok: rr.ok, code: rr.code, at: sim.now() });
            if (rnd.chance(0.3)) {
              // A second reply to the same call: nobody waits for it any more.
              const again = nextReplyId++;
              const r2 = await outcome(sim, me.reply(m.source, { type: 2, payload: { inReplyTo: p.id, replyId: again } satisfies ReplyPayload }));
              replies.push({ server: me.endpoint, client: m.source, id: undefined, replyId: again, outstanding: false, local, ok: r2.ok, code: r2.code, at: sim.now() });
            }
          } else if (rnd.chance(0.3) && !outstanding.has(m.source)) {
            // A reply to a plain send: the sender is not in a sendrec taken by this server.
            const replyId = nextReplyId++;
            const r2 = await outcome(sim, me.reply(m.source, { type: 2, payload: { inReplyTo: p.id, replyId } satisfies ReplyPayload }));
            replies.push({ server: me.endpoint, client: m.source, id: undefined, replyId, outstanding: false, local, ok: r2.ok, code: r2.code, at: sim.now() });
          }
        }
      },
      { daemon: true },
    );
  }

  // Notifiers: system processes poking random servers.
  for (let n = 0; n < params.notifiers; n++) {
    const proc = sim.bind(rnd.int(0, params.nodes - 1), { slot: NOTIFIER_SLOT + n, name: `ntf${n}` });
    const count = rnd.int(1, 8);
    sim.spawn(`ntf${n}`, async (ctx) => {
      for (let i = 0; i < count; i++) {
        await ctx.sleep(rnd.int(0, 30));
        const dst = rnd.pick(registry);
        const arg = 1 << rnd.int(0, 7);
        const r = await outcome(sim, proc.notify(dst, { arg }));
        notifies.push({ notifier: proc.endpoint, dst, arg, result: r.ok ? r.value! : r.code!, ok: r.ok, at: sim.now() });
      }
    });
  }

  // Clients: users sending and calling random servers, with timeouts, aborts and pipelined bursts.
  for (let c = 0; c < params.clients; c++) {
    const proc = sim.bind(rnd.int(0, params.nodes - 1), { name: `cli${c}` });
    let seq = 0;
    sim.spawn(`cli${c}`, async (ctx) => {
      try {
        for (let op = 0; op < params.ops; op++) {
          await ctx.jitter();
          const dst = registry[rnd.int(0, params.servers - 1)]!;
          const timeoutMs = params.timeouts && rnd.chance(0.35) ? rnd.int(0, 40) : undefined;
          let signal: AbortSignal | undefined;
          if (params.aborts && rnd.chance(0.2)) {
            const ac = new AbortController();
            signal = ac.signal;
            sim.after(rnd.int(0, 40), () => ac.abort(), `cli${c} abort`);
          }
          const opts = timeoutMs === undefined && signal === undefined ? undefined : { timeoutMs, signal };
          const kind = rnd.chance(0.5) ? 'sendrec' : 'send';
          const burst = kind === 'send' && params.pipelining && rnd.chance(0.3) ? rnd.int(2, 4) : 1;
          const calls: Promise<void>[] = [];
          for (let b = 0; b < burst; b++) {
            const rec: SendRecord = { id: `c${c}.${seq}`, client: proc.endpoint, seq, dst, kind, start: sim.now(), end: -1, ok: undefined, code: undefined, reply: undefined };
            seq++;
            sends.push(rec);
            let grants: RequestPayload['grants'];
            let inbox: Uint8Array | undefined;
            if (kind === 'sendrec' && params.copies && rnd.chance(0.5)) {
              const len = rnd.int(1, 40);
              inbox = new Uint8Array(len);
              grants = {
                read: proc.grant(pattern(rec.id, len, 1), { grantee: dst, access: 'read' }),
                write: proc.grant(inbox, { grantee: dst, access: 'write' }),
                len,
              };
            }
            const payload: RequestPayload = { id: rec.id, seq: rec.seq, rec: kind === 'sendrec', grants };
            const msg = { type: 1, payload: payload as unknown as Message['payload'] };
            const call = kind === 'sendrec' ? proc.sendrec(dst, msg, opts) : proc.send(dst, msg, opts);
            calls.push(
              outcome(sim, call as Promise<Message | void>).then((r) => {
                rec.end = r.at;
                rec.ok = r.ok;
                rec.code = r.code;
                if (r.ok && kind === 'sendrec') rec.reply = r.value as Message;
                if (grants !== undefined) {
                  const copied = (rec.reply?.payload as ReplyPayload | undefined)?.copied;
                  if (r.ok && copied !== true) unexpected.push(`sendrec ${rec.id} succeeded but its server could not copy`);
                  if (r.ok && !sameBytes(inbox!, pattern(rec.id, grants.len, 2))) unexpected.push(`copyTo for ${rec.id} left the wrong bytes`);
                  proc.revoke(grants.read);
                  proc.revoke(grants.write);
                }
              }),
            );
          }
          await Promise.all(calls);
        }
      } finally {
        clientsLeft--;
      }
    });
  }

  const result = await sim.run({ maxTime: MAX_TIME, maxSteps: MAX_STEPS });
  // Grace period: whatever is still in flight lands (a withdrawn send must never show up late).
  const grace = await sim.run({ until: 'idle', maxTime: sim.now() + 500, maxSteps: MAX_STEPS });
  let repliesDropped = sim.network.stats.droppedByKind.reply ?? 0;
  for (const n of sim.nodes) repliesDropped += sim.kernel(n).stats.repliesDropped;
  return { params, sim, result, grace, sends, receipts, notes, receiveAny, replies, notifies, copies, unexpected, repliesDropped, crashed };
}

/** Throws a replayable report when `violations` is not empty. */
export function report(run: ChaosRun, violations: string[]): void {
  if (violations.length === 0) return;
  const shown = violations.slice(0, 10).join('\n  ');
  throw new Error(
    `property violated with seed=${run.params.seed} params=${JSON.stringify(run.params)}\n  ${shown}${violations.length > 10 ? `\n  ... ${violations.length - 10} more` : ''}\n` +
      `replay: runChaos(${JSON.stringify(run.params)})\n${run.sim.formatTrace(60)}`,
  );
}
