/**
 * A3 (reference §4, §2.2 wait4bind): a waiter wakes when the endpoint is bound, times out with
 * EDVSTIMEDOUT otherwise; waitForUnbind wakes when it goes away.
 */
import { describe, expect, it } from 'vitest';
import { SELF } from '../../src/ipc/endpoint.js';
import { Kernel, type Clock } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { ManualClock, isPending, track } from './helpers.js';

const G = 36 + SELF + 1;

function setup(clock: Clock = systemClock, nodes?: number[]): Kernel {
  const k = new Kernel({ nodeId: 0, clock });
  k.createDc(nodes === undefined ? { dcid: 0 } : { dcid: 0, nodes });
  return k;
}

describe('A3: waitForBind', { timeout: 2000 }, () => {
  it('wakes when the parent binds the endpoint, resolving with it', async () => {
    const k = setup();
    const w = track(k.waitForBind(0, 40, { timeoutMs: 1000 }));
    expect(await isPending(w)).toBe(true);
    const child = k.bind(0, { slot: 40 });
    await expect(w).resolves.toBe(40);
    expect(child.endpoint).toBe(40);
  });

  it('resolves at once for an endpoint that is already bound', async () => {
    const k = setup();
    const p = k.bind(0, { slot: 3 });
    await expect(k.waitForBind(0, 3, { timeoutMs: 0 })).resolves.toBe(p.endpoint);
  });

  it('wakes every waiter of the slot, and only those', async () => {
    const k = setup();
    const w1 = track(k.waitForBind(0, 40, { timeoutMs: 1000 }));
    const w2 = track(k.waitForBind(0, 40, { timeoutMs: 1000 }));
    const other = track(k.waitForBind(0, 41, { timeoutMs: 1000 }));
    k.bind(0, { slot: 40 });
    await expect(w1).resolves.toBe(40);
    await expect(w2).resolves.toBe(40);
    expect(await isPending(other)).toBe(true);
    k.bind(0, { slot: 41 });
    await expect(other).resolves.toBe(41);
  });

  it('waits for the requested generation, not an older incarnation', async () => {
    const k = setup();
    const old = k.bind(0, { slot: 40 });
    const w = track(k.waitForBind(0, G + 40, { timeoutMs: 1000 }));
    expect(await isPending(w)).toBe(true);
    await old.unbind();
    expect(await isPending(w)).toBe(true);
    const fresh = k.bind(0, { slot: 40 });
    await expect(w).resolves.toBe(fresh.endpoint);
    expect(fresh.endpoint).toBe(G + 40);
  });

  it('wakes on a remote bind too', async () => {
    const k = setup(systemClock, [0, 2]);
    const w = track(k.waitForBind(0, 7, { timeoutMs: 1000 }));
    k.bindRemote(0, 7, 2);
    await expect(w).resolves.toBe(7);
  });

  it('times out with EDVSTIMEDOUT (manual clock), and a later bind is not affected', async () => {
    const clock = new ManualClock();
    const k = setup(clock);
    const w = track(k.waitForBind(0, 40, { timeoutMs: 50 }));
    clock.advance(49);
    expect(await isPending(w)).toBe(true);
    clock.advance(1);
    await expect(w).rejects.toMatchObject({ code: 'EDVSTIMEDOUT', errno: -61 });
    expect(k.bind(0, { slot: 40 }).endpoint).toBe(40);
  });

  it('times out with EDVSTIMEDOUT on the real clock', async () => {
    const k = setup();
    const started = performance.now();
    await expect(k.waitForBind(0, 40, { timeoutMs: 20 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
  });

  it('fails at once with timeoutMs 0, and with EDVSINTR when aborted', async () => {
    const clock = new ManualClock();
    const k = setup(clock);
    await expect(k.waitForBind(0, 40, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    const ac = new AbortController();
    const w = track(k.waitForBind(0, 40, { signal: ac.signal }));
    ac.abort();
    await expect(w).rejects.toMatchObject({ code: 'EDVSINTR', errno: -4 });
    await expect(k.waitForBind(0, 40, { signal: ac.signal })).rejects.toMatchObject({ code: 'EDVSINTR' });
    // No timer left behind by a settled wait.
    const w2 = track(k.waitForBind(0, 41, { timeoutMs: 100 }));
    k.bind(0, { slot: 41 });
    await expect(w2).resolves.toBe(41);
    expect(clock.pending).toBe(0);
  });

  it('refuses reserved and out-of-range endpoints', async () => {
    const k = setup();
    await expect(k.waitForBind(0, SELF, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    await expect(k.waitForBind(0, 220, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSRANGE' });
    await expect(k.waitForBind(0, 40, { timeoutMs: -7 })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
  });
});

describe('A3: waitForUnbind', { timeout: 2000 }, () => {
  it('wakes when the endpoint is unbound, resolving with it', async () => {
    const k = setup();
    const p = k.bind(0, { slot: 40 });
    const w = track(k.waitForUnbind(0, p.endpoint, { timeoutMs: 1000 }));
    expect(await isPending(w)).toBe(true);
    await p.unbind();
    await expect(w).resolves.toBe(40);
  });

  it('resolves at once for an endpoint that is not bound (or was replaced)', async () => {
    const k = setup();
    await expect(k.waitForUnbind(0, 40, { timeoutMs: 0 })).resolves.toBe(40);
    const p = k.bind(0, { slot: 40 });
    await p.unbind();
    k.bind(0, { slot: 40 });
    await expect(k.waitForUnbind(0, 40, { timeoutMs: 0 })).resolves.toBe(40);
  });

  it('wakes when a remote descriptor is dropped', async () => {
    const k = setup(systemClock, [0, 1]);
    k.bindRemote(0, 9, 1);
    const w = track(k.waitForUnbind(0, 9, { timeoutMs: 1000 }));
    expect(await isPending(w)).toBe(true);
    k.unbind(0, 9);
    await expect(w).resolves.toBe(9);
  });

  it('times out with EDVSTIMEDOUT while the endpoint stays bound', async () => {
    const clock = new ManualClock();
    const k = setup(clock);
    const p = k.bind(0, { slot: 40 });
    const w = track(k.waitForUnbind(0, p.endpoint, { timeoutMs: 10 }));
    clock.advance(10);
    await expect(w).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(p.bound).toBe(true);
    await expect(k.waitForUnbind(0, p.endpoint, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('parent/child handshake: child waits for its bind, parent waits for its unbind', async () => {
    const k = setup();
    const child = async (): Promise<number> => {
      const ep = await k.waitForBind(0, 50, { timeoutMs: 1000 });
      return ep;
    };
    const started = child();
    const proc = k.bind(0, { slot: 50 });
    await expect(started).resolves.toBe(proc.endpoint);
    const gone = track(k.waitForUnbind(0, proc.endpoint, { timeoutMs: 1000 }));
    await proc.unbind();
    await expect(gone).resolves.toBe(proc.endpoint);
  });
});
