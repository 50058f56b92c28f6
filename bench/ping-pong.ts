/** The floor of any rendezvous built on promises, measured beside ours in the same process. */

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
