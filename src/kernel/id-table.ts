/**
 * Entries keyed by the kernel's sequential request ids: a power-of-two ring of slots indexed by
 * `id & mask`, about ten times cheaper per insert and delete than a Map under the churn of
 * pipelined remote calls. An entry whose slot is wanted by a newer id while it still lives (a call
 * blocked for long) moves to a small overflow map; the ring grows only when more than half full,
 * so its size stays within twice the number of live entries.
 */
const INITIAL_SLOTS = 256;

export class IdTable<T extends { readonly id: number }> {
  private slots: (T | undefined)[] = new Array<T | undefined>(INITIAL_SLOTS).fill(undefined);
  private mask = INITIAL_SLOTS - 1;
  private inRing = 0;
  private readonly overflow = new Map<number, T>();

  get size(): number {
    return this.inRing + this.overflow.size;
  }

  get(id: number): T | undefined {
    const e = this.slots[id & this.mask];
    if (e !== undefined && e.id === id) return e;
    return this.overflow.size === 0 ? undefined : this.overflow.get(id);
  }

  /** Adds `entry` under its current id (which must not change while it is here). */
  set(entry: T): void {
    if (this.inRing * 2 >= this.slots.length) this.grow();
    const i = entry.id & this.mask;
    const old = this.slots[i];
    if (old !== undefined && old.id !== entry.id) this.overflow.set(old.id, old);
    else if (old === undefined) this.inRing++;
    this.slots[i] = entry;
  }

  delete(id: number): boolean {
    const i = id & this.mask;
    const e = this.slots[i];
    if (e !== undefined && e.id === id) {
      this.slots[i] = undefined;
      this.inRing--;
      return true;
    }
    return this.overflow.size !== 0 && this.overflow.delete(id);
  }

  /** A snapshot of every entry. */
  values(): T[] {
    const out: T[] = [];
    for (const e of this.slots) if (e !== undefined) out.push(e);
    for (const e of this.overflow.values()) out.push(e);
    return out;
  }

  private grow(): void {
    const old = this.slots;
    const n = old.length * 2;
    this.slots = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
    this.inRing = 0;
    // Ids distinct modulo the old size stay distinct modulo the new one: no collisions here.
    for (const e of old) {
      if (e === undefined) continue;
      this.slots[e.id & this.mask] = e;
      this.inRing++;
    }
  }
}
