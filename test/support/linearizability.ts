/**
 * Linearizability checker for histories of one read/write register with compare-and-set, for tests
 * that record what clients saw from a replicated register while nodes are killed and partitioned.
 *
 *   const r = checkRegisterHistory(history);
 *   expect(r.ok, r.explanation).toBe(true);
 *
 * Semantics (Herlihy & Wing): a history is linearizable if some total order of its ops keeps every
 * op that completed before another was invoked ahead of it, and, replayed on a register that starts
 * at `initial` (default null), gives every completed op the answer it got. "Before" is strict:
 * completedAt === invokedAt counts as concurrent, because clocks are coarse and erring that way can
 * only hide a violation, never invent one. An op without completedAt may take effect at any point
 * after its invocation or never; its answer (if any) is ignored.
 *
 * Search: Wing & Gong's backtracking as improved by Lowe (the WGL algorithm of Knossos and
 * porcupine). Ops are events on a time-ordered linked list; the search linearizes, one at a time,
 * an op invoked before the earliest return still pending, and backtracks when none fits. Each
 * (set of linearized ops, register value) is expanded once. A read of the current value (or a CAS
 * failing on it) that may go next goes next with no alternative tried: moved to the front of any
 * order that works, it keeps that order working. This keeps all-concurrent histories cheap.
 * Additions for unknown outcomes:
 * - they have no return event, so they never force backtracking, and the search ends once every
 *   completed op is placed (an op left out took effect "never", or after everything observed);
 * - they are tried only after the completed candidates, and a configuration is skipped if one with
 *   the same completed set and value but a subset of the unknown-outcome ops was already expanded:
 *   anything the larger set could still do, the smaller could too (it may drop those ops). Nor is
 *   an unknown-outcome write tried right after another unknown-outcome op: it could have gone
 *   instead. Without these, a failing history with k lost writes is explored up to 2^k times.
 *
 * When a history is not linearizable, the explanation is a small witness: a sub-history that alone
 * cannot be ordered and that every linearization of the whole history would also order (so it
 * proves the violation). It is found by cutting time to the shortest failing window [S, T] (ops
 * invoked after T dropped, ops unanswered by T made unknown-outcome; ops finished before S dropped
 * with the register then allowed any value it could hold at S) and then, greedily, dropping reads
 * and failed CASes and turning other answers into unknown outcomes while it still fails, and
 * dropping unknown-outcome writes that provably could not have mattered.
 */

export type RegisterOp =
  | { readonly kind: 'write'; readonly value: number }
  | { readonly kind: 'read' } // result: the value read, or null if the register was never written (initial value is null)
  | { readonly kind: 'cas'; readonly expect: number | null; readonly value: number }; // result: boolean

export interface HistoryEntry {
  readonly client: number; // one client issues its ops one at a time
  readonly op: RegisterOp;
  readonly invokedAt: number; // any monotonic clock (ms, performance.now())
  /** Completed: the time the answer arrived and the answer. Omitted: outcome unknown (the call failed or timed out; the op may or may not have taken effect, at any time after invokedAt). */
  readonly completedAt?: number;
  readonly result?: number | null | boolean;
}

/** A sub-history that is already not linearizable on its own, and whose violation implies the whole history's. */
export interface Witness {
  /** Indexes (into the history) of completed ops that, with their answers, cannot be ordered. */
  readonly ops: readonly number[];
  /** Indexes of ops that may have taken effect among them (answers ignored) without making it possible. */
  readonly others: readonly number[];
  /** When the window they lie in opens: -Infinity if at the start of the history. */
  readonly from: number;
  /** The register values it was checked from: `initial`, or every value the register could hold when the window opened. */
  readonly initial: readonly (number | null)[];
  /** False if the search for a smaller witness ran out of budget (the witness is still a valid one). */
  readonly minimal: boolean;
}

export interface CheckResult {
  readonly ok: boolean;
  /** when !ok: a short human explanation, e.g. the smallest set of ops that cannot be ordered */
  readonly explanation?: string;
  /** Configurations (linearized set, register value) the check expanded; the explanation's search is not counted. */
  readonly explored: number;
  /** when !ok: the ops the explanation names, for tests that re-check or print them. */
  readonly witness?: Witness;
}

const DEFAULT_MAX_STATES = 5_000_000;
/** Least search budget for explaining a violation: explanations of cheap histories stay thorough. */
const MIN_EXPLAIN_STATES = 500_000;
/** At most this many ops are spelled out per list of an explanation. */
const LIST_LIMIT = 12;

const WRITE = 0;
const READ = 1;
const CAS = 2;
/** Register value code for "some value no op of this (sub)history writes, reads or expects": all such values behave alike. */
const OTHER = -1;
const FAIL = -2;

/** An op with its values as small integer codes (null is 0), so register states compare with ===. */
interface Op {
  readonly id: number;
  readonly kind: number;
  /** The value written (write, cas). */
  readonly value: number;
  /** The value expected (cas). */
  readonly expect: number;
  /** The answer: read's value code, cas's 1 (true) or 0 (false). */
  readonly result: number;
  readonly inv: number;
  /** Infinity: outcome unknown. */
  readonly comp: number;
}

type Outcome = 'ok' | 'fail' | 'budget';
interface Searched {
  readonly outcome: Outcome;
  readonly explored: number;
  /**
   * The latest time t some configuration reached with every op answered before t placed. Every
   * prefix of the history cut before t is then linearizable (ops invoked after the cut come after
   * all ops answered by it, so that configuration's order, truncated, orders the prefix).
   */
  readonly reach: number;
}

class Codec {
  private readonly codes = new Map<number, number>();
  readonly values: (number | null)[] = [null];

  code(v: number | null): number {
    if (v === null) return 0;
    let c = this.codes.get(v);
    if (c === undefined) {
      c = this.values.length;
      this.codes.set(v, c);
      this.values.push(v);
    }
    return c;
  }
}

export function checkRegisterHistory(
  history: readonly HistoryEntry[],
  opts?: { readonly initial?: number | null; readonly maxStates?: number },
): CheckResult {
  const maxStates = opts?.maxStates ?? DEFAULT_MAX_STATES;
  if (!(maxStates > 0)) throw new RangeError(`maxStates must be positive, got ${String(maxStates)}`);
  validate(history);
  const codec = new Codec();
  const init = codec.code(opts?.initial ?? null);
  // An unanswered read constrains nothing and changes nothing: it is left out of every search.
  const ops = history.map((e, id) => toOp(e, id, codec)).filter((o) => !unknownRead(o));
  const r = search(ops, [init], maxStates);
  if (r.outcome === 'budget') {
    throw new Error(
      `history too large to check: more than ${String(maxStates)} configurations explored for ${String(history.length)} ops; raise maxStates or check a shorter history`,
    );
  }
  if (r.outcome === 'ok') return { ok: true, explored: r.explored };
  // Explaining may cost a few times the check itself; no single search may outgrow maxStates (memory).
  const w = explain(ops, init, r.reach, Math.max(MIN_EXPLAIN_STATES, 3 * r.explored), maxStates);
  const witness: Witness = {
    ops: w.ops.filter((o) => o.comp !== Infinity).map((o) => o.id).sort((a, b) => a - b),
    others: w.ops.filter((o) => o.comp === Infinity).map((o) => o.id).sort((a, b) => a - b),
    from: w.from,
    initial: [...w.starts].map((c) => codec.values[c] ?? null).sort(byValue),
    minimal: w.minimal,
  };
  return { ok: false, explored: r.explored, explanation: describe(history, witness, opts?.initial ?? null), witness };
}

function validate(history: readonly HistoryEntry[]): void {
  const byClient = new Map<number, HistoryEntry[]>();
  history.forEach((e, i) => {
    const where = `history[${String(i)}]`;
    if (!Number.isFinite(e.invokedAt)) throw new RangeError(`${where}: invokedAt must be a finite number`);
    if (e.completedAt === undefined) {
      if (e.result !== undefined) throw new RangeError(`${where}: a result without completedAt (an unknown outcome has no result)`);
    } else {
      if (!Number.isFinite(e.completedAt) || e.completedAt < e.invokedAt) throw new RangeError(`${where}: completedAt must be a finite number >= invokedAt`);
      if (e.op.kind === 'read' && e.result !== null && typeof e.result !== 'number') throw new RangeError(`${where}: a completed read needs a number or null result`);
      if (e.op.kind === 'cas' && typeof e.result !== 'boolean') throw new RangeError(`${where}: a completed cas needs a boolean result`);
    }
    const list = byClient.get(e.client);
    if (list === undefined) byClient.set(e.client, [e]);
    else list.push(e);
  });
  // A client's ops overlapping means the recording is wrong, and a wrong recording would be checked
  // against the wrong real-time order.
  for (const [client, list] of byClient) {
    list.sort((a, b) => a.invokedAt - b.invokedAt);
    for (let k = 1; k < list.length; k++) {
      const before = list[k - 1]!;
      if (before.completedAt !== undefined && list[k]!.invokedAt < before.completedAt) {
        throw new RangeError(`client ${String(client)} invoked an op at ${String(list[k]!.invokedAt)} before its previous op completed (${String(before.completedAt)})`);
      }
    }
  }
}

function toOp(e: HistoryEntry, id: number, codec: Codec): Op {
  const comp = e.completedAt ?? Infinity;
  const inv = e.invokedAt;
  switch (e.op.kind) {
    case 'write':
      return { id, kind: WRITE, value: codec.code(e.op.value), expect: 0, result: 0, inv, comp };
    case 'read':
      return { id, kind: READ, value: 0, expect: 0, result: comp === Infinity ? 0 : codec.code(e.result as number | null), inv, comp };
    case 'cas':
      return { id, kind: CAS, value: codec.code(e.op.value), expect: codec.code(e.op.expect), result: e.result === true ? 1 : 0, inv, comp };
  }
}

const unknownRead = (o: Op): boolean => o.kind === READ && o.comp === Infinity;
const byInvocation = (a: Op, b: Op): number => a.inv - b.inv || a.id - b.id;
const byValue = (a: number | null, b: number | null): number => (a === null ? -1 : b === null ? 1 : a - b);

/** The register after a completed op, or FAIL if its answer is impossible from state s. */
function stepAnswered(o: Op, s: number): number {
  if (o.kind === WRITE) return o.value;
  if (o.kind === READ) return s === o.result ? s : FAIL;
  if (o.result === 1) return s === o.expect ? o.value : FAIL;
  return s !== o.expect ? s : FAIL;
}

/** The register after an op of unknown outcome (a write or cas) took effect. */
const stepUnknown = (o: Op, s: number): number => (o.kind === WRITE || s === o.expect ? o.value : s);

/**
 * WGL search from any of the register values `inits`, one after the other but sharing what was
 * learned: once a write is placed, configurations no longer depend on where they started. Completed ops are events on a doubly linked list (node 0
 * the head, 1 + 2i the call of done[i], 2 + 2i its return) sorted by time, calls before returns at
 * equal times; unknown-outcome writes and CASes are a second list of calls only.
 */
function search(ops: readonly Op[], inits: readonly number[], budget: number): Searched {
  const done: Op[] = [];
  const open: Op[] = [];
  for (const o of ops) {
    if (o.comp !== Infinity) done.push(o);
    else if (o.kind !== READ) open.push(o);
  }
  const C = done.length;
  const P = open.length;
  if (C === 0) return { outcome: 'ok', explored: 0, reach: Infinity };
  // Sorting done by invocation makes the call nodes' list order the index order: the head call is
  // then the least unlinearized index, and every index below it is linearized.
  done.sort(byInvocation);
  open.sort(byInvocation);

  const time = (n: number): number => (n & 1 ? done[(n - 1) >> 1]!.inv : done[(n - 2) >> 1]!.comp);
  const order = Array.from({ length: 2 * C }, (_, k) => k + 1).sort((a, b) => time(a) - time(b) || (b & 1) - (a & 1) || a - b);
  const next = new Int32Array(2 * C + 1);
  const prev = new Int32Array(2 * C + 1);
  let last = 0;
  for (const n of order) {
    next[last] = n;
    prev[n] = last;
    last = n;
  }
  next[last] = -1;
  const pnext = new Int32Array(P + 1);
  const pprev = new Int32Array(P + 1);
  for (let j = 0; j <= P; j++) {
    pnext[j] = j < P ? j + 1 : -1;
    pprev[j] = j - 1;
  }

  const CW = (C + 31) >>> 5;
  const lastFull = C % 32 === 0 ? 0xffffffff : 2 ** (C % 32) - 1;
  const lin = new Uint32Array(CW);
  const PW = (P + 31) >>> 5;
  const linOpen = new Uint32Array(PW);
  let hiWord = 0;
  // Key: register value and the completed set; words below the head's are all full and words
  // above hiWord all empty, so only those between are spelled out.
  const seen = new Seen(PW);
  const key = new Uint32Array(CW + 2);
  const remember = (s: number): boolean => {
    let lead = ((next[0]! - 1) >> 1) >>> 5;
    while (lead < CW && lin[lead] === (lead === CW - 1 ? lastFull : 0xffffffff)) lead++;
    let hi = hiWord;
    while (hi >= lead && lin[hi] === 0) hi--;
    key[0] = s;
    key[1] = lead;
    let n = 2;
    for (let w = lead; w <= hi; w++) key[n++] = lin[w]!;
    return seen.add(key, n, linOpen);
  };

  const lift = (n: number): void => {
    const r = n + 1;
    next[prev[n]!] = next[n]!;
    prev[next[n]!] = prev[n]!; // a call's next is never -1: its return follows
    next[prev[r]!] = next[r]!;
    if (next[r]! !== -1) prev[next[r]!] = prev[r]!;
  };
  // Undo in reverse order of the removal (dancing links): the return, then the call.
  const unlift = (n: number): void => {
    const r = n + 1;
    next[prev[r]!] = r;
    if (next[r]! !== -1) prev[next[r]!] = r;
    next[prev[n]!] = n;
    prev[next[n]!] = n;
  };

  // The stack of choices: the node taken (negative: -j for open[j - 1]), the state before it, for
  // unknown-outcome ops the cutoff in force then, and whether it was forced (no alternatives).
  const stNode = new Int32Array(C + P);
  const stState = new Int32Array(C + P);
  const stCut = new Float64Array(C + P);
  const stForced = new Uint8Array(C + P);
  let sp = 0;
  let explored = 0;
  let state = 0;
  let left = C;
  let inMain = true;
  let node = 0;
  let fresh = false; // node is next[0] of a configuration not scanned yet
  let cutoff = 0;
  let root = 0;
  let reach = -Infinity;
  for (;;) {
    if (sp === 0 && inMain && node === 0) {
      // Start (again) from the next initial value; a failed search left the lists as they were.
      if (root === inits.length) return { outcome: 'fail', explored, reach };
      state = inits[root++]!;
      node = next[0]!;
      if (!remember(state)) continue;
      if (++explored > budget) return { outcome: 'budget', explored, reach };
      fresh = true;
    }
    if (fresh) {
      fresh = false;
      // A read of the current value, or a CAS failing on it, that may go next goes next with no
      // alternative tried: moved to the front of any order that works, it keeps the order working.
      let f = node;
      while (f & 1) {
        const o = done[(f - 1) >> 1]!;
        if (o.kind === READ ? o.result === state : o.kind === CAS && o.result === 0 && o.expect !== state) break;
        f = next[f]!;
      }
      if (f & 1) {
        if (left === 1) return { outcome: 'ok', explored, reach };
        const i = (f - 1) >> 1;
        lin[i >>> 5]! |= 1 << (i & 31);
        if (i >>> 5 > hiWord) hiWord = i >>> 5;
        if (remember(state)) {
          if (++explored > budget) return { outcome: 'budget', explored, reach };
          stNode[sp] = f;
          stForced[sp] = 1;
          stState[sp++] = state;
          left--;
          lift(f);
          node = next[0]!;
          fresh = true;
          continue;
        }
        // Seen before, so it failed, and so does this configuration.
        lin[i >>> 5]! &= ~(1 << (i & 31));
        inMain = false;
        node = -1;
      }
    }
    if (inMain) {
      if (node & 1) {
        const i = (node - 1) >> 1;
        const ns = stepAnswered(done[i]!, state);
        if (ns !== FAIL) {
          if (left === 1) return { outcome: 'ok', explored, reach };
          lin[i >>> 5]! |= 1 << (i & 31);
          if (i >>> 5 > hiWord) hiWord = i >>> 5;
          if (remember(ns)) {
            if (++explored > budget) return { outcome: 'budget', explored, reach };
            stNode[sp] = node;
            stForced[sp] = 0;
            stState[sp++] = state;
            state = ns;
            left--;
            lift(node);
            node = next[0]!;
            fresh = true;
            continue;
          }
          lin[i >>> 5]! &= ~(1 << (i & 31));
        }
        node = next[node]!;
        continue;
      }
      // The earliest unanswered return: nothing invoked after it may come next.
      cutoff = done[(node - 2) >> 1]!.comp;
      if (cutoff > reach) reach = cutoff;
      inMain = false;
      node = pnext[0]!;
      continue;
    }
    if (node !== -1 && open[node - 1]!.inv <= cutoff) {
      const j = node - 1;
      const o = open[j]!;
      const ns = stepUnknown(o, state);
      // Taking effect without changing the register is the same as not taking effect (yet); and a
      // write right after another unknown-outcome op could as well have gone instead of that op.
      if (ns !== state && !(o.kind === WRITE && sp > 0 && stNode[sp - 1]! < 0)) {
        linOpen[j >>> 5]! |= 1 << (j & 31);
        if (remember(ns)) {
          if (++explored > budget) return { outcome: 'budget', explored, reach };
          stNode[sp] = -node;
          stForced[sp] = 0;
          stState[sp] = state;
          stCut[sp++] = cutoff;
          state = ns;
          pnext[pprev[node]!] = pnext[node]!;
          if (pnext[node]! !== -1) pprev[pnext[node]!] = pprev[node]!;
          inMain = true;
          node = next[0]!;
          fresh = true;
          continue;
        }
        linOpen[j >>> 5]! &= ~(1 << (j & 31));
      }
      node = pnext[node]!;
      continue;
    }
    if (sp === 0) {
      inMain = true;
      node = 0;
      continue;
    }
    const n = stNode[--sp]!;
    state = stState[sp]!;
    if (n > 0) {
      const i = (n - 1) >> 1;
      unlift(n);
      lin[i >>> 5]! &= ~(1 << (i & 31));
      left++;
      if (stForced[sp]) {
        inMain = false;
        node = -1;
      } else {
        inMain = true;
        node = next[n]!;
      }
    } else {
      const p = -n;
      const j = p - 1;
      pnext[pprev[p]!] = p;
      if (pnext[p]! !== -1) pprev[pnext[p]!] = p;
      linOpen[j >>> 5]! &= ~(1 << (j & 31));
      inMain = false;
      cutoff = stCut[sp]!;
      node = pnext[p]!;
    }
  }
}

/**
 * The configurations expanded so far: a hash table (chained, in typed arrays: millions of entries
 * must stay cheap) from a key of 32-bit words to the sets of unknown-outcome ops (pw words each)
 * seen with it. Entry e is pool[off[e]] = key length, then the key, then the set.
 */
class Seen {
  private pool = new Uint32Array(1 << 12);
  private used = 0;
  private heads = new Int32Array(1 << 10).fill(-1);
  private chain = new Int32Array(1 << 10);
  private off = new Int32Array(1 << 10);
  private hash = new Int32Array(1 << 10);
  private count = 0;

  constructor(private readonly pw: number) {}

  /** Records (key, open) and returns true, unless the same key was recorded with a subset of open. */
  add(key: Uint32Array, len: number, open: Uint32Array): boolean {
    let h = len;
    for (let k = 0; k < len; k++) h = Math.imul(h ^ key[k]!, 0x9e3779b1) ^ (h >>> 15);
    h = Math.imul(h ^ (h >>> 13), 0x85ebca6b) ^ (h >>> 16);
    const pool = this.pool;
    const pw = this.pw;
    for (let e = this.heads[h & (this.heads.length - 1)]!; e !== -1; e = this.chain[e]!) {
      const o = this.off[e]!;
      if (this.hash[e] !== h || pool[o] !== len) continue;
      let same = true;
      for (let k = 0; k < len && same; k++) same = pool[o + 1 + k] === key[k];
      if (!same) continue;
      let subset = true;
      for (let w = 0; w < pw && subset; w++) subset = (pool[o + 1 + len + w]! & ~open[w]!) === 0;
      if (subset) return false;
    }
    if (this.used + 1 + len + pw > this.pool.length) this.pool = grow(this.pool, this.used + 1 + len + pw);
    if (this.count === this.chain.length) this.rehash();
    const o = this.used;
    this.pool[o] = len;
    this.pool.set(key.subarray(0, len), o + 1);
    this.pool.set(open, o + 1 + len);
    this.used += 1 + len + pw;
    const e = this.count++;
    const b = h & (this.heads.length - 1);
    this.off[e] = o;
    this.hash[e] = h;
    this.chain[e] = this.heads[b]!;
    this.heads[b] = e;
    return true;
  }

  private rehash(): void {
    const size = this.chain.length * 2;
    this.chain = grow(this.chain, size);
    this.off = grow(this.off, size);
    this.hash = grow(this.hash, size);
    this.heads = new Int32Array(size).fill(-1);
    for (let e = 0; e < this.count; e++) {
      const b = this.hash[e]! & (size - 1);
      this.chain[e] = this.heads[b]!;
      this.heads[b] = e;
    }
  }
}

function grow<T extends Uint32Array | Int32Array>(a: T, atLeast: number): T {
  let size = a.length * 2;
  while (size < atLeast) size *= 2;
  const b = new (a.constructor as new (n: number) => T)(size);
  b.set(a);
  return b;
}

/** A sub-history to check: its ops, and the register values it may start from (codes). */
interface Window {
  readonly ops: readonly Op[];
  /** The time the window opens: -Infinity when it starts with the history (from `initial` only). */
  readonly from: number;
  readonly starts: ReadonlySet<number>;
}

/** The start values worth trying: those the window's ops mention, plus OTHER for all the rest at once. */
function startCodes(w: Window): number[] {
  const mentioned = new Set<number>();
  for (const o of w.ops) {
    if (o.kind === READ) mentioned.add(o.result);
    else mentioned.add(o.value);
    if (o.kind === CAS) mentioned.add(o.expect);
  }
  const codes = [...w.starts].filter((c) => mentioned.has(c));
  if (codes.length < w.starts.size) codes.push(OTHER);
  return codes;
}

const asUnknown = (o: Op): Op => (o.comp === Infinity ? o : { ...o, comp: Infinity });
/** Relaxing an op: dropping it if it cannot change the register, else forgetting its answer. Either way no linearization is lost. */
const relaxable = (o: Op): boolean => o.kind === READ || (o.kind === CAS && o.result === 0);

/** The history up to time T: later ops dropped, ops not answered by T of unknown outcome. */
function upTo(ops: readonly Op[], t: number): Op[] {
  return ops.filter((o) => o.inv <= t && !(o.comp > t && o.kind === READ)).map((o) => (o.comp <= t ? o : asUnknown(o)));
}

/**
 * The window from time S: ops answered before S dropped, ops still running at S of unknown
 * outcome, and the register free to start at any value it could hold at S (the initial one or one
 * written by an op invoked before S).
 */
function from(ops: readonly Op[], s: number, init: number): Window {
  const starts = new Set([init]);
  for (const o of ops) if (o.inv < s && o.kind !== READ) starts.add(o.value);
  const kept = ops.filter((o) => o.inv >= s || (o.comp >= s && o.kind !== READ)).map((o) => (o.inv >= s ? o : asUnknown(o)));
  return { ops: kept, from: s, starts };
}

function explain(ops: readonly Op[], init: number, reach: number, budget: number, perSearch: number): Window & { readonly minimal: boolean } {
  let left = budget;
  let minimal = true;
  // Only a search that ran to the end counts as failing; one that ran out of budget keeps the
  // larger window, which is still a valid witness.
  const fails = (w: Window): boolean => {
    if (left <= 0) {
      minimal = false;
      return false;
    }
    const r = search(w.ops, startCodes(w), Math.min(left, perSearch));
    left -= r.explored;
    if (r.outcome === 'budget') minimal = false;
    return r.outcome === 'fail';
  };
  const whole = (o: readonly Op[]): Window => ({ ops: o, from: -Infinity, starts: new Set([init]) });

  // The earliest T whose prefix fails (cutting later is a relaxation, so failing is monotone in T),
  // no earlier than the main search's reach. The last answer's prefix fails: it is the whole
  // history less ops invoked after every answer, which cannot help. Failing checks cost the most,
  // and the first T is usually at or just past the reach, hence probing forward from there.
  const ends = [...new Set(ops.filter((o) => o.comp !== Infinity).map((o) => o.comp))].sort((a, b) => a - b);
  const first = Math.max(0, ends.findIndex((t) => t >= reach));
  const end = probe(first, ends.length - 1, (k) => fails(whole(upTo(ops, ends[k]!))));
  const prefix = upTo(ops, ends[end]!);
  // The latest S whose window still fails (index 0: the whole prefix from the initial value),
  // probing back from T: those windows are the small ones.
  const starts = [...new Set(prefix.map((o) => o.inv))].sort((a, b) => a - b);
  const lo = starts.length - 1 - probe(0, starts.length - 1, (k) => fails(from(prefix, starts[starts.length - 1 - k]!, init)));
  let best = lo === 0 ? whole(prefix) : from(prefix, starts[lo]!, init);

  // Relax answered ops in ever smaller chunks while the window fails (ddmin-like: few checks when
  // most ops are irrelevant); the last pass, one op at a time, leaves each remaining answer needed.
  // Reads and failed CASes go first: dropping them makes the later checks cheaper. Dropping idle
  // unknown-outcome ops makes the window stricter, so it may free more answers: repeat until stable.
  let todo = best.ops.filter((o) => o.comp !== Infinity).sort((a, b) => Number(relaxable(b)) - Number(relaxable(a)) || byInvocation(a, b));
  let size = Math.max(1, todo.length >> 1);
  for (;;) {
    const keep: Op[] = [];
    for (let k = 0; k < todo.length; k += size) {
      const chunk = new Set(todo.slice(k, k + size));
      const relaxed = best.ops.filter((o) => !(chunk.has(o) && relaxable(o))).map((o) => (chunk.has(o) ? asUnknown(o) : o));
      if (fails({ ...best, ops: relaxed })) best = { ...best, ops: relaxed };
      else keep.push(...chunk);
    }
    todo = keep;
    if (size > 1 && todo.length > 0) {
      size = Math.max(1, size >> 1);
      continue;
    }
    const fewer = withoutIdle(best.ops);
    if (fewer.length === best.ops.length) break;
    best = { ...best, ops: fewer };
    todo = best.ops.filter((o) => o.comp !== Infinity);
    size = 1;
  }
  return { ...best, minimal };
}

/**
 * The window less the unknown-outcome ops that cannot matter: those writing a value no other op
 * reads or expects. Had one taken effect, the ops after it until the next write could not tell
 * (no read sees its value, no CAS expects it), so any order using it still works without it,
 * except where a completed failed CAS expected the value it overwrote: hence nothing is dropped if
 * the window has a completed failed CAS. The witness stays valid, and it still fails (fewer
 * options).
 */
function withoutIdle(ops: readonly Op[]): readonly Op[] {
  if (ops.some((o) => o.kind === CAS && o.comp !== Infinity && o.result === 0)) return ops;
  let cur = ops;
  for (;;) {
    const idle = (q: Op): boolean =>
      q.comp === Infinity && !cur.some((o) => o !== q && ((o.kind === READ && o.result === q.value) || (o.kind === CAS && o.expect === q.value)));
    const next = cur.filter((o) => !idle(o));
    if (next.length === cur.length) return cur;
    cur = next;
  }
}

/**
 * The least k in [lo, hi] with pred(k), for pred monotone (false then true) and pred(hi) taken as
 * true: probes lo, lo + 1, lo + 3, lo + 7, … then bisects the last gap, so an answer near lo costs
 * few probes beyond it.
 */
function probe(lo: number, hi: number, pred: (k: number) => boolean): number {
  let bad = lo - 1;
  let k = lo;
  for (let step = 1; k < hi && !pred(k); step *= 2) {
    bad = k;
    k = Math.min(hi, k + step);
  }
  let good = k;
  while (good - bad > 1) {
    const mid = (bad + good) >> 1;
    if (pred(mid)) good = mid;
    else bad = mid;
  }
  return good;
}

function describe(history: readonly HistoryEntry[], w: Witness, initial: number | null): string {
  const list = (ids: readonly number[]): string => {
    const shown = ids.slice(0, LIST_LIMIT).map((id) => `\n  ${describeEntry(history, id)}`);
    return shown.join('') + (ids.length > LIST_LIMIT ? `\n  … and ${String(ids.length - LIST_LIMIT)} more` : '');
  };
  const values = (vs: readonly (number | null)[]): string =>
    vs.slice(0, LIST_LIMIT).map(String).join(', ') + (vs.length > LIST_LIMIT ? `, … (${String(vs.length)} values)` : '');
  const start =
    w.from === -Infinity ? `the register starting at ${String(initial)}` : `whatever the register held at ${fmt(w.from)} (${values(w.initial)})`;
  const n = w.ops.length;
  let text = `not linearizable: no order of ${n === 1 ? 'this op' : `these ${String(n)} ops`} respects real time and the register, from ${start}:${list(w.ops)}`;
  if (w.others.length > 0) text += `\neven if any of these took effect among them (answers ignored):${list(w.others)}`;
  if (!w.minimal) text += '\n(the search for a smaller explanation ran out of budget)';
  return text;
}

function describeEntry(history: readonly HistoryEntry[], id: number): string {
  const e = history[id]!;
  const op = e.op.kind === 'write' ? `write(${String(e.op.value)})` : e.op.kind === 'read' ? 'read' : `cas(${String(e.op.expect)} → ${String(e.op.value)})`;
  const answer = e.completedAt === undefined ? ' no answer' : e.op.kind === 'write' ? ' ok' : ` → ${String(e.result)}`;
  return `#${String(id)} client ${String(e.client)} ${op} [${fmt(e.invokedAt)}, ${e.completedAt === undefined ? '?' : fmt(e.completedAt)}]${answer}`;
}

const fmt = (t: number): string => String(Math.round(t * 1000) / 1000);
