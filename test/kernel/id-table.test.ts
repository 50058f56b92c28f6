/** IdTable: the ring of sequential ids with its overflow for long-lived entries. */
import { describe, expect, it } from 'vitest';
import { IdTable } from '../../src/kernel/id-table.js';

describe('IdTable', () => {
  it('behaves like a Map under sequential churn with some entries living long', () => {
    const t = new IdTable<{ id: number }>();
    const ref = new Map<number, { id: number }>();
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let id = 1; id <= 50_000; id++) {
      const e = { id };
      t.set(e);
      ref.set(id, e);
      // Most entries die soon, in order; one in 500 lives until the end.
      const victim = id - 1 - Math.floor(rnd() * 64);
      if (victim > 0 && victim % 500 !== 0) {
        expect(t.delete(victim)).toBe(ref.delete(victim));
      }
      if (id % 997 === 0) expect(t.get(victim)).toBe(ref.get(victim));
    }
    expect(t.size).toBe(ref.size);
    for (const [id, e] of ref) expect(t.get(id)).toBe(e);
    expect(t.values().map((e) => e.id).sort((a, b) => a - b)).toEqual([...ref.keys()].sort((a, b) => a - b));
    expect(t.get(50_001)).toBeUndefined();
    expect(t.delete(50_001)).toBe(false);
    // The long-lived entries did not make the ring grow with the ids issued.
    expect((t as unknown as { slots: unknown[] }).slots.length).toBeLessThanOrEqual(4 * 1024);
    for (const id of [...ref.keys()]) expect(t.delete(id)).toBe(true);
    expect(t.size).toBe(0);
    expect(t.values()).toEqual([]);
  });
});
