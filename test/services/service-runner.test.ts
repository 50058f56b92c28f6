/**
 * A retired incarnation never sees its end: on a kernel Process (silenced, no wrapper per call) and
 * on any other M3-IPC handle (wrapped), its pending receive and every later call stay pending
 * through the unbind that follows, so a service that retries on errors cannot spin.
 */
import { describe, expect, it } from 'vitest';
import type { M3Ipc } from '../../src/ipc/calls.js';
import { Kernel } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { ServiceRunner } from '../../src/services/service-runner.js';
import { isPending } from '../kernel/helpers.js';

function setUp(wrap: boolean): { runner: ServiceRunner; unbind: () => Promise<void>; calls: Promise<unknown>[]; peer: number; handle: () => M3Ipc } {
  const k = new Kernel({ nodeId: 0, clock: systemClock });
  k.createDc({ dcid: 1 });
  const p = k.bind(1, { slot: 3, name: 'svc' });
  const peer = k.bind(1, { name: 'peer' });
  // A plain object with the same calls is not a kernel handle: the runner wraps it.
  const inner: M3Ipc = wrap ? (Object.fromEntries(['send', 'receive', 'sendrec', 'receiveRequest', 'reply', 'replyAndReceive', 'notify', 'grant', 'revoke', 'copyFrom', 'copyTo', 'copy', 'unbind'].map((m) => [m, (...a: unknown[]) => (p as unknown as Record<string, (...x: unknown[]) => unknown>)[m]!(...a)])) as unknown as M3Ipc) : p;
  Object.assign(inner, { dcid: 1, endpoint: p.endpoint });
  const calls: Promise<unknown>[] = [];
  let ipc: M3Ipc | undefined;
  const runner = new ServiceRunner(inner, {
    run: async (h) => {
      ipc = h;
      calls.push(h.receiveRequest());
      await new Promise(() => undefined);
    },
  }, { dcid: 1, endpoint: p.endpoint, node: 0, migrated: false });
  runner.start();
  return { runner, unbind: () => p.unbind(), calls, peer: peer.endpoint, handle: () => ipc! };
}

describe('a retired service incarnation', () => {
  for (const wrap of [false, true]) {
    it(`${wrap ? 'through a wrapped handle' : 'on a kernel Process'}: its receive and later calls never settle, through the unbind`, async () => {
      const s = setUp(wrap);
      await new Promise((r) => setImmediate(r));
      expect(s.calls).toHaveLength(1);
      s.runner.retire();
      await s.unbind();
      const later = [s.handle().receiveRequest(), s.handle().send(s.peer, { type: 1, payload: 0 }), s.handle().notify(s.peer)];
      for (const c of [...s.calls, ...later]) expect(await isPending(c)).toBe(true);
      expect(s.runner.retired).toBe(true);
    });
  }
});
