/**
 * A small typed event emitter. A listener that throws does not stop the others; its error goes to
 * the `error` listeners when there are any, else to a process warning (never an uncaught throw in the
 * middle of a store callback).
 */
export type Listener<T> = (event: T) => void;

export class Emitter<Events extends { error: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(fn as Listener<never>);
    return () => this.off(name, fn);
  }

  off<K extends keyof Events>(name: K, fn: Listener<Events[K]>): void {
    this.listeners.get(name)?.delete(fn as Listener<never>);
  }

  listenerCount(name: keyof Events): number {
    return this.listeners.get(name)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const set = this.listeners.get(name);
    if (set === undefined || set.size === 0) {
      if (name === 'error') process.emitWarning(event instanceof Error ? event.message : String(event), { code: 'DVS_UNHANDLED_ERROR' });
      return;
    }
    for (const fn of [...set]) {
      try {
        (fn as Listener<Events[K]>)(event);
      } catch (err) {
        if (name === 'error') process.emitWarning(err instanceof Error ? err.message : String(err), { code: 'DVS_LISTENER_ERROR' });
        else this.emit('error', err as Events['error']);
      }
    }
  }
}
