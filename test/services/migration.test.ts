/**
 * Transparent migration with real daemons as OS processes: a counter service hosted as a coroutine
 * by a daemon moves between nodes while client processes on every node keep many requests in
 * flight. No client sees an error; every reply is the next count of its sender (nothing lost,
 * doubled or reordered, the state moved along); at most one incarnation lives at any instant.
 */
import { describe, expect, it } from 'vitest';
import { migrate, serveModule, type MigrationResult } from '../../src/client/services.js';
import { COUNTER, IncarnationWatch, sharedCluster, startCallers, type CallerProcess } from './helpers.js';

const DC = 1;
const shared = sharedCluster(DC, 'mig');
const { daemon } = shared;

describe('migration between real daemons', () => {
  it('the scenarios of D1 and a client on the target: clients on every node call throughout, no error, counts in order, one incarnation at a time', { timeout: 120_000 }, async () => {
    const n1 = await daemon(1);
    const svc = await serveModule(n1, DC, COUNTER, { slot: 10, name: 'counter' });
    const callers: CallerProcess[] = [0, 1, 2].map((n) => startCallers(shared.tc.runtime(n), DC, svc.endpoint, 8));
    await Promise.all(callers.map((c) => c.ready));
    const watch = await IncarnationWatch.start([0, 1, 2].map((n) => shared.tc.runtime(n)), DC, svc.endpoint);
    const reports: MigrationResult[] = [];
    // 1 → 0 (client on 0 and a client on the server's node), 0 → 2 (coordinated by a third node), 2 → 1.
    for (const [via, to] of [
      [1, 0],
      [1, 2],
      [0, 1],
    ] as const) {
      await new Promise((r) => setTimeout(r, 300));
      reports.push(await migrate(await daemon(via), DC, svc.endpoint, to));
    }
    await new Promise((r) => setTimeout(r, 300));
    const results = await Promise.all(callers.map((c) => c.finish()));
    await watch.stop();
    expect(reports.map((r) => [r.from, r.to, r.epoch])).toEqual([
      [1, 0, 1],
      [0, 2, 2],
      [2, 1, 3],
    ]);
    for (const r of reports) expect(r.stateBytes).toBeGreaterThan(0);
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.bad).toEqual([]);
      expect(r.calls).toBeGreaterThan(20);
    }
    expect(watch.samples).toBeGreaterThan(10);
    expect(watch.max).toBe(1);
  });
});

describe('what a moving service owes and is owed', () => {
  it('a deferred reply it owes, a client blocked in receive from it and notifications sent around the move all reach their ends from the new node', { timeout: 60_000 }, async () => {
    const n0 = await daemon(0);
    const n2 = await daemon(2);
    const svc = await serveModule(n0, DC, COUNTER, { slot: 11, name: 'owing' });
    // On node 2: a client whose reply the service holds, and a subscriber blocked in receive from it.
    const held = await n2.bind(DC, { name: 'held' });
    const sub = await n2.bind(DC, { name: 'sub' });
    const releaser = await n2.bind(DC, { name: 'releaser' });
    const heldCall = held.sendrec(svc.endpoint, { type: 2, payload: 77 });
    await sub.sendrec(svc.endpoint, { type: 5, payload: 0 });
    const subscribed = sub.receive(svc.endpoint);
    // Notifications from five endpoints on two nodes: some before the move, some while it is frozen.
    // (System slots: only system processes may notify.)
    const notifiers = [await n2.bind(DC, { slot: 20, name: 'nt0' }), await n2.bind(DC, { slot: 21, name: 'nt1' }), await n0.bind(DC, { slot: 22, name: 'nt2' }), await n0.bind(DC, { slot: 23, name: 'nt3' }), await n2.bind(DC, { slot: 24, name: 'nt4' })];
    await notifiers[0]!.notify(svc.endpoint);
    await notifiers[2]!.notify(svc.endpoint);
    const moving = migrate(n0, DC, svc.endpoint, 1);
    await Promise.all(notifiers.slice(1).filter((_, i) => i !== 1).map((p) => p.notify(svc.endpoint)));
    const report = await moving;
    expect(report).toMatchObject({ from: 0, to: 1, epoch: 1 });
    const state = await releaser.sendrec(svc.endpoint, { type: 4, payload: 0 });
    expect(state.payload).toMatchObject({ held: 1 });
    expect(Object.keys((state.payload as { notified: object }).notified).length).toBe(5);
    await releaser.sendrec(svc.endpoint, { type: 3, payload: 0 });
    const r = await heldCall;
    expect(r.source).toBe(svc.endpoint);
    expect(r.payload).toEqual({ n: 1, seq: 77 });
    const m = await subscribed;
    expect(m).toMatchObject({ source: svc.endpoint, type: 7, payload: 'released' });
  });
});
