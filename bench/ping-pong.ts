/** The floor of any rendezvous built on promises, measured beside ours in the same process. */
import { performance } from 'node:perf_hooks';

/** Two async functions handing a value back and forth through promises: the baseline. */
export function promisePingPong(): { call: (v: number) => Promise<number>; stop: () => void } {
  let serve: ((v: number) => void) | undefined;
  let answer: ((v: number) => void) | undefined;
  let running = true;
  void (async () => {
    while (running) {
      const v = await new Promise<number>((r) => (serve = r));
      answer!(v + 1);
    }
  })();
  return {
    call: (v: number) => {
      const p = new Promise<number>((r) => (answer = r));
      serve!(v);
      return p;
    },
    stop: () => {
      running = false;
      serve?.(0);
    },
  };
}

/** µs per call of `n` sequential calls of `op`, after up to 1000 unmeasured ones (the JIT warms). */
export async function usPerCall(n: number, op: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(n, 1000); i++) await op(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await op(i);
  return ((performance.now() - t0) * 1000) / n;
}
