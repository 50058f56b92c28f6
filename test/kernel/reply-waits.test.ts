/** ReplyWaits: the remote clients a process owes a reply, kept as tombstones once answered. */
import { describe, expect, it } from 'vitest';
import { ReplyWaits } from '../../src/kernel/mailbox.js';

describe('ReplyWaits', () => {
  it('owes a reply from set until answered, and again after the next request', () => {
    const w = new ReplyWaits();
    expect(w.get(7)).toBeUndefined();
    w.set(7, 2, 100);
    expect(w.get(7)).toEqual(expect.objectContaining({ node: 2, id: 100 }));
    w.answered(7);
    expect(w.get(7)).toBeUndefined();
    // A second reply finds nothing owed.
    w.answered(7);
    expect(w.get(7)).toBeUndefined();
    w.set(7, 3, 101);
    expect(w.get(7)).toEqual(expect.objectContaining({ node: 3, id: 101 }));
  });

  it('withdraws only a live wait with that node and id', () => {
    const w = new ReplyWaits();
    w.set(7, 2, 100);
    w.set(8, 2, 200);
    expect(w.withdraw(2, 999)).toBe(false);
    expect(w.withdraw(3, 100)).toBe(false);
    expect(w.withdraw(2, 100)).toBe(true);
    expect(w.get(7)).toBeUndefined();
    // Already withdrawn: not owed twice.
    expect(w.withdraw(2, 100)).toBe(false);
    expect(w.get(8)?.id).toBe(200);
  });

  it('forgets a dead client, and every client of a failed node', () => {
    const w = new ReplyWaits();
    w.set(7, 2, 100);
    w.set(8, 2, 200);
    w.set(9, 3, 300);
    w.forget(9);
    expect(w.get(9)).toBeUndefined();
    w.forgetNode(2);
    expect(w.get(7)).toBeUndefined();
    expect(w.get(8)).toBeUndefined();
    expect(w.withdraw(2, 100)).toBe(false);
    // A client that comes back later starts afresh.
    w.set(7, 4, 400);
    expect(w.get(7)).toEqual(expect.objectContaining({ node: 4, id: 400 }));
  });
});
