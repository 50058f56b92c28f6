/**
 * A binary min-heap under a caller's order: the simulator's timers and DS's waiter deadlines each
 * keep one, so the earliest is found in O(1) and taken in O(log n).
 */
export class MinHeap<T> {
  private items: T[] = [];

  /** `before(a, b)`: a comes out first. */
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(x: T): void {
    const h = this.items;
    h.push(x);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(x, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = x;
  }

  pop(): T | undefined {
    const h = this.items;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(h[r]!, h[l]!) ? r : l;
      if (!this.before(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }

  /** Keeps only the items `keep` accepts (rebuilt in O(n log n)). */
  retain(keep: (x: T) => boolean): void {
    const kept = this.items.filter(keep);
    this.items = [];
    for (const x of kept) this.push(x);
  }
}
