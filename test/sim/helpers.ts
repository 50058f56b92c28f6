/** Small helpers shared by the simulator tests. */
import { isDvsError } from '../../src/ipc/errors.js';
import type { SimWorld, SimResult } from '../../src/sim/index.js';

export interface Outcome<T> {
  readonly ok: boolean;
  readonly value: T | undefined;
  /** DvsError code, or 'THROWN' for anything else. */
  readonly code: string | undefined;
  /** Virtual time at which the call settled. */
  readonly at: number;
}

/** Awaits a call and records how and when it ended, without throwing. */
export async function outcome<T>(sim: SimWorld, p: Promise<T>): Promise<Outcome<T>> {
  try {
    const value = await p;
    return { ok: true, value, code: undefined, at: sim.now() };
  } catch (err) {
    return { ok: false, value: undefined, code: isDvsError(err) ? err.code : `THROWN ${String(err)}`, at: sim.now() };
  }
}

/** Fails with the trace when a run did not end cleanly. */
export function assertClean(sim: SimWorld, r: SimResult): void {
  if (r.reason !== 'done' || r.errors.length > 0 || r.unfinished.length > 0) {
    const errs = r.errors.map((e) => `${e.name}: ${e.error instanceof Error ? (e.error.stack ?? e.error.message) : String(e.error)}`).join('\n');
    throw new Error(`run not clean (reason ${r.reason}, unfinished [${r.unfinished.join(', ')}])\n${errs}\n${sim.formatTrace(80)}`);
  }
}
