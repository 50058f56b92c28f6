/**
 * Benchmark conventions: each suite yields results; `run.ts` prints one JSON object per line with
 * `--json` (suite, case, value, unit, and when a baseline ran in the same process, `baseline` and
 * `slowdown` = how many times slower we are), or a table otherwise.
 */
import { performance } from 'node:perf_hooks';

export interface BenchResult {
  readonly suite: string;
  readonly case: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: number;
  readonly slowdown?: number;
  readonly [extra: string]: unknown;
}

export interface Suite {
  readonly name: string;
  readonly description: string;
  run(opts: SuiteOptions): Promise<BenchResult[]>;
}

export interface SuiteOptions {
  /** Scales iteration counts; 1 is the default, smaller for a quick look. */
  readonly scale: number;
}

/** Throughput in ops/s where higher is better: slowdown = baseline / ours. */
export function throughput(suite: string, name: string, ours: number, baseline: number, extra: Record<string, unknown> = {}): BenchResult {
  return { suite, case: name, value: round(ours), unit: 'ops/s', baseline: round(baseline), slowdown: round(baseline / ours, 2), ...extra };
}

/** Time where lower is better: slowdown = ours / baseline. */
export function latency(suite: string, name: string, ours: number, baseline: number, unit = 'us', extra: Record<string, unknown> = {}): BenchResult {
  return { suite, case: name, value: round(ours, 3), unit, baseline: round(baseline, 3), slowdown: round(ours / baseline, 2), ...extra };
}

export function round(v: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(sorted: Float64Array | readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Runs `loop(n)` (which performs n operations) and returns ops/s. */
export async function opsPerSecond(n: number, loop: (n: number) => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await loop(n);
  return (n / (performance.now() - t0)) * 1000;
}

/** Per-operation latency samples in µs, sorted, for `n` sequential operations. */
export async function latencySamples(n: number, op: () => Promise<unknown>): Promise<Float64Array> {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op();
    out[i] = (performance.now() - t0) * 1000;
  }
  return out.sort();
}

/**
 * Interleaves ours and the baseline over several rounds after a warm-up, so both see the same
 * machine state, and returns the median of each.
 */
export async function compare(rounds: number, ours: () => Promise<number>, base: () => Promise<number>): Promise<{ ours: number; base: number }> {
  await ours();
  await base();
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    a.push(await ours());
    b.push(await base());
  }
  return { ours: median(a), base: median(b) };
}
