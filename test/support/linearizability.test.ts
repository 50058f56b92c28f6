/**
 * The register linearizability checker: hand-written histories with known verdicts, random
 * histories against a brute-force reference (every order of every subset of unknown-outcome ops),
 * simulated executions (always linearizable), and a 2 000-op history for speed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Prng } from '../../src/sim/prng.js';
import { checkRegisterHistory, type CheckResult, type HistoryEntry, type RegisterOp } from './linearizability.js';

const write = (value: number): RegisterOp => ({ kind: 'write', value });
const read: RegisterOp = { kind: 'read' };
const cas = (expect: number | null, value: number): RegisterOp => ({ kind: 'cas', expect, value });

/** A completed op: [invokedAt, completedAt] and its answer (a write's is ignored). */
function done(client: number, op: RegisterOp, invokedAt: number, completedAt: number, ...answer: [(number | null | boolean)?]): HistoryEntry {
  return answer.length === 0 ? { client, op, invokedAt, completedAt } : { client, op, invokedAt, completedAt, result: answer[0] };
}
/** An op whose answer never came. */
const lost = (client: number, op: RegisterOp, invokedAt: number): HistoryEntry => ({ client, op, invokedAt });

const check = (h: readonly HistoryEntry[], initial?: number | null): CheckResult => checkRegisterHistory(h, { initial });

// ---------------------------------------------------------------------------------------------
// Brute-force reference: tries every order of the completed ops and every subset (in every
// position) of the unknown-outcome ones. Exponential; only for histories of a few ops.

function bruteForce(history: readonly HistoryEntry[], initials: readonly (number | null)[] = [null]): boolean {
  const ops = history.filter((e) => !(e.completedAt === undefined && e.op.kind === 'read'));
  const placed = ops.map(() => false);
  const answered = ops.filter((e) => e.completedAt !== undefined).length;
  const go = (state: number | null, answeredPlaced: number): boolean => {
    if (answeredPlaced === answered) return true;
    for (let x = 0; x < ops.length; x++) {
      if (placed[x]) continue;
      const e = ops[x]!;
      // e may come next only if no op still unplaced finished before e was invoked.
      if (ops.some((y, k) => !placed[k] && y.completedAt !== undefined && y.completedAt < e.invokedAt)) continue;
      let next: number | null;
      if (e.op.kind === 'write') next = e.op.value;
      else if (e.op.kind === 'read') {
        if (e.result !== state) continue;
        next = state;
      } else {
        const hit = state === e.op.expect;
        if (e.completedAt !== undefined && e.result !== hit) continue;
        next = hit ? e.op.value : state;
      }
      placed[x] = true;
      const ok = go(next, answeredPlaced + (e.completedAt !== undefined ? 1 : 0));
      placed[x] = false;
      if (ok) return true;
    }
    return false;
  };
  return initials.some((s) => go(s, 0));
}

/** The witness of a failed check as a history of its own: its ops as they were, the others unanswered. */
function witnessHistory(history: readonly HistoryEntry[], r: CheckResult, relax?: number): HistoryEntry[] {
  const w = r.witness!;
  const unanswered = (i: number): HistoryEntry => ({ client: history[i]!.client, op: history[i]!.op, invokedAt: history[i]!.invokedAt });
  const kept = w.ops.flatMap((i) => {
    if (i !== relax) return [history[i]!];
    const e = history[i]!;
    // The checker's relaxations: a read or failed cas is dropped, any other answer forgotten.
    return e.op.kind === 'read' || (e.op.kind === 'cas' && e.result === false) ? [] : [unanswered(i)];
  });
  return [...kept, ...w.others.map(unanswered)];
}

/**
 * The witness's window with every op of the history in it that the witness leaves out added back
 * with its answer forgotten, except reads and failed CASes invoked inside it (which cannot help).
 * The checker claims that the witness, cut from the history by relaxations only, fails; so this,
 * which relaxes the history no further, must fail too. It catches a witness made to fail by
 * leaving out an op that would have explained it.
 */
function widened(history: readonly HistoryEntry[], r: CheckResult): HistoryEntry[] {
  const w = r.witness!;
  const until = Math.max(...w.ops.map((i) => history[i]!.completedAt!));
  const added = history.flatMap((e, i) => {
    if (w.ops.includes(i) || e.invokedAt > until || e.op.kind === 'read') return [];
    if (e.invokedAt < w.from && e.completedAt !== undefined && e.completedAt < w.from) return [];
    if (e.op.kind === 'cas' && e.result === false && e.invokedAt >= w.from) return [];
    return [{ client: e.client, op: e.op, invokedAt: e.invokedAt }];
  });
  return [...w.ops.map((i) => history[i]!), ...added];
}

/** A failed check's witness must fail on its own (so it proves the violation) and, if minimal, need every op it names. */
function expectSoundWitness(history: readonly HistoryEntry[], r: CheckResult): void {
  const w = r.witness!;
  expect(w.ops.length).toBeGreaterThan(0);
  expect(bruteForce(witnessHistory(history, r), w.initial)).toBe(false);
  expect(bruteForce(widened(history, r), w.initial), 'the witness needs an op it left out').toBe(false);
  if (w.minimal) for (const i of w.ops) expect(bruteForce(witnessHistory(history, r, i), w.initial), `op #${String(i)} is not needed`).toBe(true);
  for (const i of w.ops) expect(r.explanation).toContain(`#${String(i)} client`);
}

// ---------------------------------------------------------------------------------------------
// Random histories. A spec is one op of one client; `simulate` gives them real-time intervals and
// runs them on a sequential register, each at a random instant inside its interval.

interface Spec {
  readonly client: number;
  readonly kind: 'write' | 'read' | 'cas';
  readonly value: number;
  readonly expect: number | null;
  readonly gap: number;
  readonly duration: number;
  /** Where in its interval the op takes effect, 0 to 1. */
  readonly at: number;
  readonly lost: boolean;
  /** A lost op may take effect this long after its client gave up on it... */
  readonly late: number;
  /** ...or not at all. */
  readonly applied: boolean;
  /** Answers for histories made up rather than simulated. */
  readonly readAnswer: number | null;
  readonly casAnswer: boolean;
}

const VALUES = 4;
const specArb = (lostPercent: number): fc.Arbitrary<Spec> => fc.record({
  client: fc.nat({ max: 7 }),
  kind: fc.constantFrom('write' as const, 'read' as const, 'read' as const, 'cas' as const),
  value: fc.integer({ min: 1, max: VALUES }),
  expect: fc.option(fc.integer({ min: 1, max: VALUES }), { nil: null }),
  // Small integer times, so that ties (an answer and an invocation at the same instant) are common.
  gap: fc.integer({ min: 0, max: 4 }),
  duration: fc.integer({ min: 0, max: 6 }),
  at: fc.double({ min: 0, max: 1, noNaN: true }),
  lost: fc.integer({ min: 0, max: 99 }).map((x) => x < lostPercent),
  late: fc.integer({ min: 0, max: 20 }),
  applied: fc.boolean(),
  readAnswer: fc.option(fc.integer({ min: 1, max: VALUES + 1 }), { nil: null }),
  casAnswer: fc.boolean(),
});

/** Real-time intervals per client (one op at a time); results from a register run in effect-time order, or made up. */
function simulate(specs: readonly Spec[], clients: number, truthful = true): HistoryEntry[] {
  const clock = new Array<number>(clients).fill(0);
  const timed = specs.map((s, i) => {
    const client = s.client % clients;
    const invokedAt = clock[client]! + s.gap;
    const completedAt = invokedAt + s.duration;
    clock[client] = completedAt; // a lost op: the client timed out at completedAt and moved on
    const op: RegisterOp = s.kind === 'write' ? write(s.value) : s.kind === 'read' ? read : cas(s.expect, s.value);
    const effectAt = invokedAt + s.at * (s.duration + (s.lost ? s.late : 0));
    return { i, s, client, op, invokedAt, completedAt, effectAt };
  });
  const results = new Map<number, number | null | boolean>();
  let state: number | null = null;
  for (const t of timed.filter((x) => !x.s.lost || x.s.applied).sort((a, b) => a.effectAt - b.effectAt || a.i - b.i)) {
    if (t.op.kind === 'write') {
      state = t.op.value;
      results.set(t.i, null);
    } else if (t.op.kind === 'read') results.set(t.i, state);
    else {
      const hit = state === t.op.expect;
      if (hit) state = t.op.value;
      results.set(t.i, hit);
    }
  }
  return timed.map((t) => {
    if (t.s.lost) return lost(t.client, t.op, t.invokedAt);
    const result = truthful ? results.get(t.i)! : t.op.kind === 'read' ? t.s.readAnswer : t.op.kind === 'cas' ? t.s.casAnswer : null;
    return { client: t.client, op: t.op, invokedAt: t.invokedAt, completedAt: t.completedAt, result };
  });
}

const clientsArb = fc.integer({ min: 1, max: 7 });
const lostArb = fc.constantFrom(0, 15, 30, 50, 70);

// ---------------------------------------------------------------------------------------------

describe('checkRegisterHistory: hand-written histories', () => {
  it('accepts the empty history and a sequential one', () => {
    expect(check([]).ok).toBe(true);
    const h = [done(0, read, 0, 1, null), done(0, write(1), 2, 3), done(1, read, 4, 5, 1), done(0, write(2), 6, 7), done(1, read, 8, 9, 2)];
    const r = check(h);
    expect(r).toMatchObject({ ok: true });
    expect(r.explanation).toBeUndefined();
    expect(r.explored).toBeGreaterThan(0);
  });

  it('rejects a stale read after a completed write, and names just the write and the read', () => {
    const h = [done(0, write(1), 0, 1), done(0, write(2), 2, 3), done(1, read, 4, 5, 1)];
    const r = check(h);
    expect(r.ok).toBe(false);
    expect(r.witness).toEqual({ ops: [1, 2], others: [], from: 2, initial: [null, 1], minimal: true });
    expect(r.explanation).toContain('#1 client 0 write(2) [2, 3] ok');
    expect(r.explanation).toContain('#2 client 1 read [4, 5] → 1');
    expect(r.explanation).not.toContain('#0');
    expectSoundWitness(h, r);
  });

  it('accepts either value for a read concurrent with a write, but no third one', () => {
    const base = [done(0, write(1), 0, 1), done(0, write(2), 2, 10)];
    expect(check([...base, done(1, read, 3, 4, 1)]).ok).toBe(true);
    expect(check([...base, done(1, read, 3, 4, 2)]).ok).toBe(true);
    expect(check([...base, done(1, read, 3, 4, null)]).ok).toBe(false);
  });

  it('treats an answer and an invocation at the same instant as concurrent', () => {
    expect(check([done(0, write(1), 0, 5), done(1, read, 5, 6, null)]).ok).toBe(true);
    expect(check([done(0, write(1), 0, 5), done(1, read, 5.001, 6, null)]).ok).toBe(false);
  });

  it('rejects a lost acknowledged write: a later read sees the older value', () => {
    const h = [done(0, write(1), 0, 1), done(0, write(2), 2, 3), done(1, read, 4, 5, 2), done(2, read, 6, 7, 1)];
    const r = check(h);
    expect(r.ok).toBe(false);
    // The read of 2 pins the register at 2 before the read of 1: that pair alone is the violation.
    expect(r.witness?.ops).toEqual([2, 3]);
    expectSoundWitness(h, r);
    const nothing = [done(0, write(1), 0, 1), done(1, read, 2, 3, null)];
    expect(check(nothing).ok).toBe(false);
    expect(check(nothing).witness?.ops).toEqual([0, 1]);
  });

  it('accepts an unknown-outcome write that later shows up in reads, or that never does', () => {
    const seen = [lost(0, write(1), 0), done(1, read, 1, 2, null), done(1, read, 3, 4, 1), done(1, read, 100, 101, 1)];
    expect(check(seen).ok).toBe(true);
    const never = [lost(0, write(1), 0), done(1, read, 1, 2, null), done(1, read, 50, 51, null)];
    expect(check(never).ok).toBe(true);
    // It may take effect long after its client gave up and wrote again.
    const late = [lost(0, write(1), 0), done(0, write(2), 5, 6), done(1, read, 7, 8, 2), done(1, read, 9, 10, 1)];
    expect(check(late).ok).toBe(true);
  });

  it('rejects an unknown-outcome write seen before it was invoked, or seen to come and go', () => {
    expect(check([done(1, read, 0, 1, 1), lost(0, write(1), 2)]).ok).toBe(false);
    const flicker = [lost(0, write(1), 0), done(1, read, 1, 2, 1), done(1, read, 3, 4, null)];
    const r = check(flicker);
    expect(r.ok).toBe(false);
    expectSoundWitness(flicker, r);
  });

  it('tells configurations apart by which unknown-outcome ops they have placed', () => {
    // Found by random search against a checker that keyed configurations by completed set only:
    // the write of 3 must come at 4, just in time for the CAS expecting 3, and the write of 1 after.
    const h = [
      done(1, cas(null, 2), 3, 9, false),
      lost(3, write(1), 3),
      done(4, read, 0, 3, null),
      lost(3, write(3), 4),
      done(1, read, 12, 15, 1),
      done(2, cas(3, 3), 1, 4, true),
      done(3, read, 11, 16, 1),
    ];
    expect(bruteForce(h)).toBe(true);
    expect(check(h).ok).toBe(true);
  });

  it('keeps in the witness a write that a failed CAS may have seen', () => {
    // The CAS from null failed, so the register was not null then, yet a read after it sees null:
    // the concurrent write of 3 cannot explain both. The CAS could have seen 3, so the write is
    // part of the explanation even though no op reads 3 (found by random search).
    const h = [done(1, cas(null, 1), 2, 7, false), done(1, read, 8, 14, null), done(0, write(3), 4, 10)];
    const r = check(h);
    expect(r.witness).toEqual({ ops: [0, 1], others: [2], from: -Infinity, initial: [null], minimal: true });
    expect(r.explanation).toContain('even if any of these took effect among them (answers ignored):\n  #2 client 0 write(3) [4, 10] ok');
    expectSoundWitness(h, r);
  });

  it('ignores unanswered reads', () => {
    expect(check([done(0, write(1), 0, 1), lost(1, read, 2), done(1, read, 3, 4, 1)]).ok).toBe(true);
  });

  it('rejects a read of a value never written, or written only after the read', () => {
    const phantom = [done(0, write(1), 0, 1), done(1, read, 2, 3, 7)];
    const r = check(phantom);
    expect(r.ok).toBe(false);
    expect(r.witness?.ops).toEqual([1]);
    expect(r.explanation).toMatch(/this op .*\n {2}#1 client 1 read \[2, 3\] → 7/);
    expect(check([done(1, read, 0, 1, 7), done(0, write(7), 2, 3)]).ok).toBe(false);
    expect(check([done(1, read, 0, 1, 7)], 7).ok).toBe(true);
  });

  it('checks compare-and-set', () => {
    expect(check([done(0, cas(null, 1), 0, 1, true), done(1, read, 2, 3, 1)]).ok).toBe(true);
    expect(check([done(0, cas(null, 1), 0, 1, true), done(1, cas(null, 2), 2, 3, true)]).ok).toBe(false);
    // Two concurrent CASes from null: only one can win.
    expect(check([done(0, cas(null, 1), 0, 5, true), done(1, cas(null, 2), 0, 5, true)]).ok).toBe(false);
    expect(check([done(0, cas(null, 1), 0, 5, true), done(1, cas(null, 2), 0, 5, false), done(2, read, 6, 7, 1)]).ok).toBe(true);
    expect(check([done(0, cas(null, 1), 0, 5, false), done(1, cas(null, 2), 0, 5, true), done(2, read, 6, 7, 1)]).ok).toBe(false);
    // A failed CAS while the register surely held the expected value.
    const failed = [done(0, write(1), 0, 1), done(1, cas(1, 2), 2, 3, false)];
    const r = check(failed);
    expect(r.ok).toBe(false);
    expectSoundWitness(failed, r);
    expect(check([done(0, write(1), 0, 1), done(1, cas(1, 2), 2, 3, false), done(2, write(3), 2, 3)]).ok).toBe(true);
    // A CAS of unknown outcome shows up later, but only if its expectation could have held.
    expect(check([lost(0, cas(null, 5), 0), done(1, read, 10, 11, 5)]).ok).toBe(true);
    expect(check([done(0, write(1), 0, 1), lost(0, cas(null, 5), 2), done(1, read, 3, 4, 5)]).ok).toBe(false);
  });

  it('rejects malformed histories', () => {
    expect(() => check([done(0, write(1), 2, 1)])).toThrow(/completedAt/);
    expect(() => check([{ client: 0, op: read, invokedAt: 0, completedAt: 1 }])).toThrow(/read needs/);
    expect(() => check([{ client: 0, op: cas(null, 1), invokedAt: 0, completedAt: 1, result: 1 }])).toThrow(/cas needs/);
    expect(() => check([{ client: 0, op: read, invokedAt: 0, result: 1 }])).toThrow(/without completedAt/);
    expect(() => check([done(0, write(1), 0, 5), done(0, read, 3, 6, 1)])).toThrow(/client 0/);
  });

  it('throws rather than answering when the search exceeds maxStates', () => {
    // 12 concurrent writes and reads of distinct values: the linearized subsets blow up, and the
    // read of 99 makes the search visit all of them before failing.
    const h = [
      ...Array.from({ length: 12 }, (_, k) => done(k, write(k + 1), 0, 100)),
      ...Array.from({ length: 12 }, (_, k) => done(20 + k, read, 0, 100, k + 1)),
      done(40, read, 0, 100, 99),
    ];
    expect(() => checkRegisterHistory(h, { maxStates: 1000 })).toThrow(/too large to check/);
    expect(checkRegisterHistory(h.slice(0, -1), { maxStates: 1000 }).ok).toBe(true); // one path suffices
  });

  it('does not explore every subset of unknown-outcome writes on a failing history', () => {
    // 40 lost writes could each have happened anywhere; without pruning configurations that
    // differ only by more of them this is 2^40 configurations before the read of 99 fails.
    const h = [
      ...Array.from({ length: 40 }, (_, k) => lost(k, write(k + 1), 0)),
      done(50, write(100), 1, 2),
      ...Array.from({ length: 20 }, (_, k) => done(51, read, 3 + 2 * k, 4 + 2 * k, 100)),
      done(52, read, 100, 101, 99),
    ];
    const r = checkRegisterHistory(h, { maxStates: 100_000 });
    expect(r.ok).toBe(false);
    expect(r.witness?.ops).toEqual([h.length - 1]);
  });
});

describe('checkRegisterHistory: random histories', () => {
  it('accepts every simulated execution', () => {
    fc.assert(
      fc.property(clientsArb, fc.array(specArb(15), { maxLength: 60 }), (clients, specs) => {
        const h = simulate(specs, clients);
        const r = check(h);
        expect(r.ok, r.explanation).toBe(true);
        if (h.length <= 7) expect(bruteForce(h)).toBe(true); // the reference agrees
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with brute force on simulated executions with one read answer changed', () => {
    let rejected = 0;
    fc.assert(
      fc.property(
        clientsArb,
        lostArb.chain((p) => fc.array(specArb(p), { minLength: 1, maxLength: 7 })),
        fc.nat(),
        fc.option(fc.constantFrom(1, 2, 3, 4, 99), { nil: null }),
        (clients, specs, pick, value) => {
          const h = simulate(specs, clients);
          const reads = h.flatMap((e, i) => (e.op.kind === 'read' && e.completedAt !== undefined ? [i] : []));
          if (reads.length === 0) return;
          const i = reads[pick % reads.length]!;
          const mutated = h.map((e, k) => (k === i ? { ...e, result: value } : e));
          const expected = bruteForce(mutated);
          const r = check(mutated);
          expect(r.ok).toBe(expected);
          if (!expected) {
            rejected++;
            expectSoundWitness(mutated, r);
          }
        },
      ),
      { numRuns: 1500 },
    );
    expect(rejected).toBeGreaterThan(100); // the property is not vacuous
  });

  it('agrees with brute force on made-up histories', () => {
    let rejected = 0;
    let accepted = 0;
    fc.assert(
      // Up to 70 % of answers lost: the pruning of unknown-outcome ops gets exercised.
      fc.property(clientsArb, lostArb.chain((p) => fc.array(specArb(p), { maxLength: 7 })), fc.option(fc.integer({ min: 1, max: VALUES }), { nil: null }), (clients, specs, initial) => {
        const h = simulate(specs, clients, false);
        const expected = bruteForce(h, [initial]);
        const r = check(h, initial);
        expect(r.ok).toBe(expected);
        if (expected) accepted++;
        else {
          rejected++;
          expectSoundWitness(h, r);
        }
      }),
      { numRuns: 1500 },
    );
    expect(rejected).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(100);
  });
});

describe('checkRegisterHistory: size', () => {
  /** 6 clients, 2 000 ops with unique written values, ~3 % of answers lost. */
  function bigHistory(seed: number): HistoryEntry[] {
    const rng = new Prng(seed);
    let nextValue = 1;
    const specs: Spec[] = Array.from({ length: 2000 }, () => {
      const kind = rng.pick(['write', 'read', 'read', 'cas'] as const);
      return {
        client: rng.int(0, 5),
        kind,
        value: nextValue++,
        expect: rng.int(Math.max(1, nextValue - 8), nextValue),
        gap: rng.next() * 3,
        duration: 0.5 + rng.next() * 20,
        at: rng.next(),
        lost: rng.chance(0.03),
        late: rng.next() * 50,
        applied: rng.chance(0.5),
        readAnswer: null,
        casAnswer: false,
      };
    });
    return simulate(specs, 6);
  }

  it('checks a 2 000-op, 6-client valid history', () => {
    const h = bigHistory(1);
    const r = check(h);
    expect(r.ok, r.explanation).toBe(true);
  }, 120_000);

  it('finds and explains one stale read in a 2 000-op history', () => {
    const h = bigHistory(2);
    // A write, a later write, and a later read (about halfway) made to return the first write's value.
    const at = (i: number): HistoryEntry => h[i]!;
    const isWrite = (i: number): boolean => at(i).op.kind === 'write' && at(i).completedAt !== undefined;
    const first = h.findIndex((e, i) => i > 900 && isWrite(i));
    const second = h.findIndex((e, i) => isWrite(i) && e.invokedAt > at(first).completedAt!);
    const stale = h.findIndex((e) => e.op.kind === 'read' && e.completedAt !== undefined && e.invokedAt > at(second).completedAt!);
    const value = (at(first).op as { value: number }).value;
    const mutated = h.map((e, i) => (i === stale ? { ...e, result: value } : e));
    expect(check(h).ok).toBe(true);
    const r = check(mutated);
    expect(r.ok).toBe(false);
    expect(r.witness?.ops).toContain(stale);
    expect(r.witness?.minimal).toBe(true);
    expect(r.witness!.ops.length).toBeLessThanOrEqual(4);
  }, 120_000);
});
