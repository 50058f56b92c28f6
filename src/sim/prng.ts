/**
 * A small seeded PRNG for the simulator: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator,
 * 128 bits of state, period at least 2^32), seeded from one 32-bit integer through splitmix32.
 * The same seed always yields the same sequence on every platform: only 32-bit integer arithmetic.
 */

/** splitmix32: spreads one 32-bit seed over several well-mixed 32-bit words. */
function splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [next, z >>> 0];
}

export class Prng {
  /** The seed this generator started from (as an unsigned 32-bit integer). */
  readonly seed: number;
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`PRNG seed must be an integer, got ${String(seed)}`);
    this.seed = seed >>> 0;
    let s = this.seed;
    let w: number;
    [s, w] = splitmix32(s);
    this.a = w | 0;
    [s, w] = splitmix32(s);
    this.b = w | 0;
    [s, w] = splitmix32(s);
    this.c = w | 0;
    [, w] = splitmix32(s);
    this.d = w | 0;
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** The next unsigned 32-bit integer. */
  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.nextU32() / 0x1_0000_0000;
  }

  /** An integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo) {
      throw new RangeError(`int(${String(lo)}, ${String(hi)}) needs integers with lo <= hi`);
    }
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick() from an empty array');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A new array with the items in random order (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }

  /** An independent generator seeded from this one: lets subsystems draw without disturbing each other. */
  fork(): Prng {
    return new Prng(this.nextU32());
  }
}
