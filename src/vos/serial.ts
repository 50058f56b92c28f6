/**
 * Runs async tasks one after another. An endpoint has one thread of control (one receive-side call,
 * one copy at a time), so a server or client with many concurrent tasks sends them through one of
 * these; a failed task does not stop the ones after it.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
