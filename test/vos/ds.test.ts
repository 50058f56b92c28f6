/**
 * DS, the name server, on the in-process kernel: every request and its rules, bad input answered
 * with typed errors while DS keeps serving, deferred `wait` replies (answered on publish, on their
 * deadline, many at once while others are served, bounded, no timer per waiter), holders found dead,
 * and the table (with its waiters) carried by snapshot/restore, through a real mailbox handover too.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { ERRNO, isDvsError } from '../../src/ipc/errors.js';
import type { Message } from '../../src/ipc/message.js';
import type { Payload } from '../../src/ipc/payload.js';
import { Kernel, type Clock, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { ServiceRunner } from '../../src/services/service-runner.js';
import { Simulation } from '../../src/sim/index.js';
import { DsClient } from '../../src/vos/ds/ds-client.js';
import { assumeAlive, kernelLiveness } from '../../src/vos/ds/ds-liveness.js';
import { DS_LIST, DS_LOOKUP, DS_MAX_LIST, DS_MAX_NAME, DS_MAX_WAIT_MS, DS_PUBLISH, DS_UNPUBLISH, DS_WAIT } from '../../src/vos/ds/ds-messages.js';
import { DsServer, type DsOptions } from '../../src/vos/ds/ds-server.js';
import { decodeDsState } from '../../src/vos/ds/ds-state.js';
import { isPending, ManualClock, track } from '../kernel/helpers.js';

const DC = 1;
const DS_SLOT = 3;

interface Rig {
  readonly k: Kernel;
  readonly server: DsServer;
  readonly dsEp: number;
  readonly done: Promise<void>;
  /** A new process of the DC with a DS client. */
  client(name: string, timeoutMs?: number): { p: Process; ds: DsClient };
  stop(): Promise<void>;
}

function rig(opts: DsOptions & { clock?: Clock; kernel?: Kernel } = {}): Rig {
  const clock = opts.clock ?? systemClock;
  const k = opts.kernel ?? new Kernel({ nodeId: 0, clock });
  if (opts.kernel === undefined) k.createDc({ dcid: DC });
  const p = k.bind(DC, { name: 'ds', slot: DS_SLOT });
  const server = new DsServer({ now: () => clock.now(), ...opts });
  const done = server.run(p, { dcid: DC, endpoint: p.endpoint, node: 0, migrated: false, signal: new AbortController().signal });
  return {
    k,
    server,
    dsEp: p.endpoint,
    done,
    client: (name, timeoutMs = 2000) => {
      const c = k.bind(DC, { name });
      return { p: c, ds: new DsClient(c, p.endpoint, { timeoutMs }) };
    },
    // As a host stops a service: its endpoint is unbound, and DS's loop ends.
    stop: async () => {
      await p.unbind();
      await done;
    },
  };
}

/** Yields until `cond` holds (bounded), for states reached through the kernel's promises. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never reached: ${what}`);
}

/** The code a promise fails with (or 'resolved'). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return isDvsError(err) ? err.code : `THROWN ${String(err)}`;
  }
}

const T = { timeoutMs: 2000 };

describe('DS requests', { timeout: 10_000 }, () => {
  it('publish, lookup, list and unpublish', async () => {
    const r = rig();
    const fs = r.client('fs');
    const app = r.client('app');
    await expect(fs.ds.publish('fs')).resolves.toEqual({ endpoint: fs.p.endpoint });
    await expect(app.ds.lookup('fs')).resolves.toBe(fs.p.endpoint);
    await app.ds.publish('app/1');
    expect(await app.ds.list()).toEqual([
      { name: 'app/1', endpoint: app.p.endpoint },
      { name: 'fs', endpoint: fs.p.endpoint },
    ]);
    expect(await app.ds.list('app/')).toEqual([{ name: 'app/1', endpoint: app.p.endpoint }]);
    await expect(fs.ds.unpublish('fs')).resolves.toBe(fs.p.endpoint);
    expect(await codeOf(app.ds.lookup('fs'))).toBe('EDVSNOENT');
    expect(await codeOf(fs.ds.unpublish('fs'))).toBe('EDVSNOENT');
    expect(r.server.info().names).toBe(1);
    await r.stop();
  });

  it('a publisher may unpublish, and so may the endpoint it named; another may not, unless with force', async () => {
    const r = rig();
    const pm = r.client('pm');
    const fs = r.client('fs');
    const other = r.client('other');
    await expect(pm.ds.publish('fs', { endpoint: fs.p.endpoint })).resolves.toEqual({ endpoint: fs.p.endpoint });
    await expect(other.ds.lookup('fs')).resolves.toBe(fs.p.endpoint);
    const refused = await other.ds.unpublish('fs').catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'EDVSPERM', details: { publisher: pm.p.endpoint } });
    await expect(other.ds.lookup('fs')).resolves.toBe(fs.p.endpoint);
    await expect(pm.ds.unpublish('fs')).resolves.toBe(fs.p.endpoint);

    await pm.ds.publish('fs', { endpoint: fs.p.endpoint });
    await expect(fs.ds.unpublish('fs')).resolves.toBe(fs.p.endpoint);

    await pm.ds.publish('fs', { endpoint: fs.p.endpoint });
    await expect(other.ds.unpublish('fs', { force: true })).resolves.toBe(fs.p.endpoint);
    expect(await codeOf(other.ds.lookup('fs'))).toBe('EDVSNOENT');
    await r.stop();
  });

  it('a name held by another live endpoint is refused with EDVSEXIST unless replace; the same endpoint again is fine', async () => {
    const r = rig();
    const a = r.client('a');
    const b = r.client('b');
    await a.ds.publish('svc');
    await expect(a.ds.publish('svc')).resolves.toEqual({ endpoint: a.p.endpoint });
    const err = await b.ds.publish('svc').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EDVSEXIST', details: { name: 'svc', endpoint: a.p.endpoint } });
    await expect(b.ds.lookup('svc')).resolves.toBe(a.p.endpoint);
    await expect(b.ds.publish('svc', { replace: true })).resolves.toEqual({ endpoint: b.p.endpoint, replaced: a.p.endpoint });
    await expect(a.ds.lookup('svc')).resolves.toBe(b.p.endpoint);
    // The name now belongs to b: a is neither its publisher nor the endpoint it names.
    expect(await codeOf(a.ds.unpublish('svc'))).toBe('EDVSPERM');
    await r.stop();
  });

  it('a holder that died: lookup says not found and forgets it, publish over it succeeds (reply probe)', async () => {
    const r = rig();
    const old = r.client('old');
    const app = r.client('app');
    await old.ds.publish('svc');
    await old.ds.publish('other');
    await old.p.unbind();
    expect(await codeOf(app.ds.lookup('svc'))).toBe('EDVSNOENT');
    expect(r.server.info().names).toBe(1);
    await expect(app.ds.publish('other')).resolves.toEqual({ endpoint: app.p.endpoint, replaced: old.p.endpoint });
    // A newer incarnation of the same slot makes the old endpoint stale: gone too.
    const gone = r.client('gone');
    await gone.ds.publish('stale');
    await gone.p.unbind();
    const successor = r.k.bind(DC, { slot: r.k.slotOf(DC, gone.p.endpoint), name: 'successor' });
    expect(successor.endpoint).not.toBe(gone.p.endpoint);
    await expect(app.ds.publish('stale')).resolves.toEqual({ endpoint: app.p.endpoint, replaced: gone.p.endpoint });
    // A live holder that is busy elsewhere (blocked in a receive) is not disturbed by the probe.
    const busy = r.client('busy');
    await busy.ds.publish('busy');
    const pendingReceive = track(busy.p.receive(ANY, { timeoutMs: 2000 }));
    expect(await codeOf(app.ds.publish('busy'))).toBe('EDVSEXIST');
    expect(await isPending(pendingReceive)).toBe(true);
    await app.p.send(busy.p.endpoint, { type: 7 }, T);
    await expect(pendingReceive).resolves.toMatchObject({ source: app.p.endpoint, type: 7 });
    await r.stop();
  });

  it('with the kernel as liveness the same holds; with assumeAlive a dead holder stays until replaced', async () => {
    const k = new Kernel({ nodeId: 0, clock: systemClock });
    k.createDc({ dcid: DC });
    const r = rig({ kernel: k, alive: kernelLiveness(k, DC) });
    const old = r.client('old');
    const app = r.client('app');
    await old.ds.publish('svc');
    await old.p.unbind();
    expect(await codeOf(app.ds.lookup('svc'))).toBe('EDVSNOENT');
    await r.stop();

    const r2 = rig({ alive: assumeAlive });
    const old2 = r2.client('old');
    const app2 = r2.client('app');
    await old2.ds.publish('svc');
    await old2.p.unbind();
    await expect(app2.ds.lookup('svc')).resolves.toBe(old2.p.endpoint);
    expect(await codeOf(app2.p.sendrec(old2.p.endpoint, { type: 1 }, T))).toBe('EDVSDSTDIED');
    expect(await codeOf(app2.ds.publish('svc'))).toBe('EDVSEXIST');
    await expect(app2.ds.publish('svc', { replace: true })).resolves.toMatchObject({ replaced: old2.p.endpoint });
    await r2.stop();
  });

  it('list pages through many names in name order', async () => {
    const r = rig();
    const c = r.client('c');
    const names = Array.from({ length: DS_MAX_LIST + 44 }, (_, i) => `n/${String(i).padStart(3, '0')}`);
    for (const n of [...names].reverse()) await c.ds.publish(n);
    const first = await c.ds.listPage('n/');
    expect(first.entries).toHaveLength(DS_MAX_LIST);
    expect(first.next).toBe(names[DS_MAX_LIST - 1]);
    const second = await c.ds.listPage('n/', first.next);
    expect(second.entries.map((e) => e.name)).toEqual(names.slice(DS_MAX_LIST));
    expect(second.next).toBeUndefined();
    expect((await c.ds.list()).map((e) => e.name)).toEqual(names);
    expect(await c.ds.listPage('n/1', undefined, 3)).toEqual({ entries: names.slice(100, 103).map((name) => ({ name, endpoint: c.p.endpoint })), next: 'n/102' });
    expect(await c.ds.list('zz')).toEqual([]);
    await r.stop();
  });
});

describe('DS bad input', { timeout: 10_000 }, () => {
  const long = 'x'.repeat(DS_MAX_NAME + 1);
  const cases: [string, number, Payload, string, string?][] = [
    ['empty name', DS_PUBLISH, { name: '' }, 'EDVSNAMESIZE', 'name'],
    ['name of 65 characters', DS_LOOKUP, { name: long }, 'EDVSNAMESIZE', 'name'],
    ['oversize name', DS_WAIT, { name: 'y'.repeat(10_000), timeoutMs: 5 }, 'EDVSNAMESIZE', 'name'],
    ['name with a space', DS_PUBLISH, { name: 'a b' }, 'EDVSINVAL', 'name'],
    ['name with a non-ASCII character', DS_LOOKUP, { name: 'café' }, 'EDVSINVAL', 'name'],
    ['name not a string', DS_LOOKUP, { name: 42 }, 'EDVSINVAL', 'name'],
    ['missing name', DS_UNPUBLISH, {}, 'EDVSINVAL', 'name'],
    ['replace not a boolean', DS_PUBLISH, { name: 'a', replace: 'yes' }, 'EDVSINVAL', 'replace'],
    ['endpoint not an integer', DS_PUBLISH, { name: 'a', endpoint: 'me' }, 'EDVSINVAL', 'endpoint'],
    ['endpoint ANY', DS_PUBLISH, { name: 'a', endpoint: ANY }, 'EDVSINVAL', 'endpoint'],
    ['negative wait', DS_WAIT, { name: 'a', timeoutMs: -1 }, 'EDVSINVAL', 'timeoutMs'],
    ['wait above the limit', DS_WAIT, { name: 'a', timeoutMs: DS_MAX_WAIT_MS + 1 }, 'EDVSINVAL', 'timeoutMs'],
    ['wait without timeoutMs', DS_WAIT, { name: 'a' }, 'EDVSINVAL', 'timeoutMs'],
    ['fractional wait', DS_WAIT, { name: 'a', timeoutMs: 1.5 }, 'EDVSINVAL', 'timeoutMs'],
    ['force not a boolean', DS_UNPUBLISH, { name: 'a', force: 1 }, 'EDVSINVAL', 'force'],
    ['list limit 0', DS_LIST, { limit: 0 }, 'EDVSINVAL', 'limit'],
    ['list prefix with a space', DS_LIST, { prefix: 'a b' }, 'EDVSINVAL', 'prefix'],
    ['unknown field (a typo)', DS_PUBLISH, { name: 'a', replce: true }, 'EDVSINVAL', 'replce'],
    ['payload not a map', DS_LOOKUP, 'fs', 'EDVSINVAL', 'payload'],
    ['payload an array', DS_PUBLISH, ['fs'], 'EDVSINVAL', 'payload'],
    ['no payload', DS_LOOKUP, undefined, 'EDVSINVAL', 'payload'],
    ['unknown request type', 0x999, { name: 'a' }, 'EDVSBADREQUEST'],
    ['type 0', 0, null, 'EDVSBADREQUEST'],
  ];

  it.each(cases)('%s: a typed error reply naming the field, and DS keeps serving', async (_label, type, payload, code, field) => {
    const r = rig();
    const c = r.client('c');
    const reply = await c.p.sendrec(r.dsEp, { type, payload }, T);
    expect(reply.type).toBe(ERRNO[code as keyof typeof ERRNO]);
    const p = reply.payload as { ok: boolean; error: { code: string; errno: number; message: string; details?: Record<string, unknown> } };
    expect(p.ok).toBe(false);
    expect(p.error.code).toBe(code);
    expect(p.error.errno).toBe(reply.type);
    if (field !== undefined) {
      expect(p.error.details?.field).toBe(field);
      expect(p.error.message).toContain(`${field}:`);
    }
    // The client helper turns it into the same DvsError.
    if (type === DS_LOOKUP && isPlainMapLike(payload)) expect(await codeOf(c.ds.lookup(String((payload as { name: unknown }).name)))).toBe(code);
    await c.ds.publish('still-here');
    await expect(c.ds.lookup('still-here')).resolves.toBe(c.p.endpoint);
    expect(r.server.info().requests).toBeGreaterThanOrEqual(3);
    await r.stop();
  });

  it('a plain send (no sendrec to answer) and random payloads of every type never stop DS', async () => {
    const r = rig();
    const c = r.client('c');
    await c.p.send(r.dsEp, { type: DS_PUBLISH, payload: { name: 'sent' } }, T);
    await until(() => r.server.info().names === 1, 'the plain send served');
    const value: fc.Arbitrary<Payload> = fc.oneof(
      fc.constant(null),
      fc.string({ maxLength: 80 }),
      fc.integer(),
      fc.boolean(),
      fc.dictionary(fc.constantFrom('name', 'endpoint', 'replace', 'timeoutMs', 'force', 'prefix', 'after', 'limit', 'x'), fc.oneof(fc.string({ maxLength: 70 }), fc.integer({ min: -5, max: 100_000 }), fc.boolean(), fc.constant(null)), { maxKeys: 4 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: DS_PUBLISH - 1, max: DS_LIST + 1 }), value, async (type, payload) => {
        // A wait that would block is given a zero timeout so each call returns.
        const p = type === DS_WAIT && typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? { ...payload, timeoutMs: 0 } : payload;
        const reply: Message = await c.p.sendrec(r.dsEp, { type, payload: p as Payload }, T);
        const body = reply.payload as { ok?: unknown; error?: { code?: unknown; errno?: unknown } };
        expect(typeof body.ok).toBe('boolean');
        if (body.ok === true) expect(reply.type).toBe(0);
        else {
          expect(reply.type).toBe(body.error?.errno);
          expect(reply.type).toBeLessThan(0);
        }
      }),
      { numRuns: 300, seed: 15 },
    );
    await c.ds.publish('after-fuzz', { replace: true });
    await expect(c.ds.lookup('after-fuzz')).resolves.toBe(c.p.endpoint);
    await r.stop();
  });
});

function isPlainMapLike(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { name?: unknown }).name === 'string';
}

describe('DS wait: deferred replies', { timeout: 10_000 }, () => {
  it('answers at once when the name is there, and a waiter as soon as it is published', async () => {
    const r = rig();
    const fs = r.client('fs');
    const app = r.client('app');
    const w = track(app.ds.waitFor('fs', 5000));
    await until(() => r.server.info().waiters === 1, 'the waiter registered');
    expect(await isPending(w)).toBe(true);
    await fs.ds.publish('fs');
    // Waiters are answered before the publisher hears back.
    expect(await isPending(w)).toBe(false);
    await expect(w).resolves.toBe(fs.p.endpoint);
    expect(r.server.info().waiters).toBe(0);
    await expect(app.ds.waitFor('fs', 5000)).resolves.toBe(fs.p.endpoint);
    expect(await codeOf(app.ds.waitFor('absent', 0))).toBe('EDVSTIMEDOUT');
    await r.stop();
  });

  it('a wait times out with EDVSTIMEDOUT at its deadline, with one kernel timer for all waiters', async () => {
    const clock = new ManualClock();
    const r = rig({ clock });
    const waiters = Array.from({ length: 20 }, (_, i) => r.k.bind(DC, { name: `w${i}` }));
    // Raw sendrecs without a timeout of their own: the only timers are DS's.
    const calls = waiters.map((w, i) => track(w.sendrec(r.dsEp, { type: DS_WAIT, payload: { name: 'late', timeoutMs: 100 + (i % 4) * 10 } })));
    await until(() => r.server.info().waiters === 20, 'all waiters registered');
    expect(clock.pending).toBe(1);
    clock.advance(99);
    for (const c of calls) expect(await isPending(c)).toBe(true);
    clock.advance(1);
    await until(() => r.server.info().waiters === 15, 'the first five answered');
    const replies = await Promise.all(calls.filter((_, i) => i % 4 === 0));
    for (const m of replies) expect(m).toMatchObject({ type: ERRNO.EDVSTIMEDOUT, payload: { ok: false, error: { code: 'EDVSTIMEDOUT' } } });
    for (const [i, c] of calls.entries()) if (i % 4 !== 0) expect(await isPending(c)).toBe(true);
    clock.advance(30);
    await until(() => r.server.info().waiters === 0, 'all answered');
    await Promise.all(calls);
    await until(() => clock.pending === 0, 'no timer left');
    expect(clock.pending).toBe(0);
    await r.stop();
  });

  it('many waiters wait while other clients are served, then each gets its own name', async () => {
    const r = rig();
    const names = ['a', 'b', 'c', 'd'];
    const waiters = Array.from({ length: 40 }, (_, i) => ({ ...r.client(`w${i}`), name: names[i % names.length]! }));
    const calls = waiters.map((w) => track(w.ds.waitFor(w.name, 20_000)));
    await until(() => r.server.info().waiters === 40, 'all waiters registered');
    // Meanwhile DS serves everyone else at once.
    const others = Array.from({ length: 10 }, (_, i) => r.client(`o${i}`));
    await Promise.all(others.map((o, i) => o.ds.publish(`other/${i}`)));
    expect(await Promise.all(others.map((o, i) => o.ds.lookup(`other/${i}`)))).toEqual(others.map((o) => o.p.endpoint));
    for (const c of calls) expect(await isPending(c)).toBe(true);
    const holders = names.map((n) => r.client(`holder-${n}`));
    for (const [i, n] of names.entries()) await holders[i]!.ds.publish(n);
    const got = await Promise.all(calls);
    expect(got).toEqual(waiters.map((w) => holders[names.indexOf(w.name)]!.p.endpoint));
    expect(r.server.info().waiters).toBe(0);
    await r.stop();
  });

  it('waiters are bounded per name and in all (EDVSAGAIN)', async () => {
    const r = rig({ limits: { waitersPerName: 2, waitersTotal: 3 } });
    const ws = Array.from({ length: 5 }, (_, i) => r.client(`w${i}`));
    const a0 = track(ws[0]!.ds.waitFor('x', 20_000));
    const a1 = track(ws[1]!.ds.waitFor('x', 20_000));
    await until(() => r.server.info().waiters === 2, 'two waiters');
    const full = await ws[2]!.ds.waitFor('x', 20_000).catch((e: unknown) => e);
    expect(full).toMatchObject({ code: 'EDVSAGAIN', details: { name: 'x', limit: 2 } });
    const a3 = track(ws[3]!.ds.waitFor('y', 20_000));
    await until(() => r.server.info().waiters === 3, 'three waiters');
    expect(await codeOf(ws[4]!.ds.waitFor('z', 20_000))).toBe('EDVSAGAIN');
    await ws[4]!.ds.publish('x');
    await expect(a0).resolves.toBe(ws[4]!.p.endpoint);
    await expect(a1).resolves.toBe(ws[4]!.p.endpoint);
    expect(r.server.info().waiters).toBe(1);
    await ws[4]!.ds.publish('y');
    await expect(a3).resolves.toBe(ws[4]!.p.endpoint);
    await r.stop();
  });

  it('a caller whose wait call ended on its side (timed out) and who calls again is not counted twice', async () => {
    const clock = new ManualClock();
    const r = rig({ clock });
    const w = r.k.bind(DC, { name: 'w' });
    const first = track(w.sendrec(r.dsEp, { type: DS_WAIT, payload: { name: 'n', timeoutMs: 1000 } }, { timeoutMs: 10 }));
    await until(() => r.server.info().waiters === 1, 'waiting');
    clock.advance(10);
    expect(await codeOf(first)).toBe('EDVSTIMEDOUT');
    const second = track(w.sendrec(r.dsEp, { type: DS_WAIT, payload: { name: 'm', timeoutMs: 1000 } }));
    await until(() => r.server.info().requests === 2, 'second request taken');
    expect(r.server.info().waiters).toBe(1);
    const pub = r.k.bind(DC, { name: 'pub' });
    await pub.sendrec(r.dsEp, { type: DS_PUBLISH, payload: { name: 'm' } }, T);
    await expect(second).resolves.toMatchObject({ type: 0, payload: { ok: true, name: 'm', endpoint: pub.endpoint } });
    await r.stop();
  });

  it('a waiter that died is skipped when its name is published', async () => {
    const r = rig();
    const doomed = r.client('doomed');
    const alive = r.client('alive');
    const d = track(doomed.ds.waitFor('n', 20_000));
    const a = track(alive.ds.waitFor('n', 20_000));
    await until(() => r.server.info().waiters === 2, 'two waiters');
    await doomed.p.unbind();
    expect(await codeOf(d)).not.toBe('resolved');
    const pub = r.client('pub');
    await pub.ds.publish('n');
    await expect(a).resolves.toBe(pub.p.endpoint);
    await r.stop();
  });

  it('the table is bounded (EDVSNOSPC), and a replace within it is fine', async () => {
    const r = rig({ limits: { maxNames: 2 } });
    const c = r.client('c');
    await c.ds.publish('a');
    await c.ds.publish('b');
    expect(await codeOf(c.ds.publish('c'))).toBe('EDVSNOSPC');
    await c.ds.publish('b');
    await c.ds.unpublish('a');
    await c.ds.publish('c');
    expect((await c.ds.list()).map((e) => e.name)).toEqual(['b', 'c']);
    await r.stop();
  });
});

describe('DS state: snapshot and restore', { timeout: 10_000 }, () => {
  it('round trip keeps the table and who published what', async () => {
    const r = rig();
    const pm = r.client('pm');
    const fs = r.client('fs');
    await pm.ds.publish('fs', { endpoint: fs.p.endpoint });
    await pm.ds.publish('pm');
    const state = r.server.snapshot();
    await r.stop();

    // A new incarnation on another kernel: same endpoints of the DC, same table.
    const k2 = new Kernel({ nodeId: 0, clock: systemClock });
    k2.createDc({ dcid: DC });
    const pm2 = k2.bind(DC, { endpoint: pm.p.endpoint, name: 'pm' });
    const fs2 = k2.bind(DC, { endpoint: fs.p.endpoint, name: 'fs' });
    const other = k2.bind(DC, { name: 'other' });
    const next = new DsServer();
    next.restore(state);
    expect(next.info()).toMatchObject({ names: 2, waiters: 0 });
    const r2 = { p: k2.bind(DC, { name: 'ds', slot: DS_SLOT }) };
    const done = next.run(r2.p, { dcid: DC, endpoint: r2.p.endpoint, node: 0, migrated: true, signal: new AbortController().signal });
    const asOther = new DsClient(other, r2.p.endpoint);
    expect(await asOther.list()).toEqual([
      { name: 'fs', endpoint: fs.p.endpoint },
      { name: 'pm', endpoint: pm.p.endpoint },
    ]);
    expect(await codeOf(asOther.unpublish('fs'))).toBe('EDVSPERM');
    await expect(new DsClient(pm2, r2.p.endpoint).unpublish('fs')).resolves.toBe(fs2.endpoint);
    await r2.p.unbind();
    await done;
  });

  it('carries the waiters with the time each has left', async () => {
    const clock = new ManualClock();
    const r = rig({ clock });
    const w = r.k.bind(DC, { name: 'w' });
    const call = track(w.sendrec(r.dsEp, { type: DS_WAIT, payload: { name: 'n', timeoutMs: 500 } }));
    await until(() => r.server.info().waiters === 1, 'waiting');
    clock.advance(200);
    const state = decodeDsState(r.server.snapshot());
    expect(state.waiters).toEqual([{ source: w.endpoint, name: 'n', remainingMs: 300 }]);
    const next = new DsServer({ now: () => 1000 });
    next.restore(r.server.snapshot());
    expect(next.info().waiters).toBe(1);
    // Stopping DS here (no move) fails the waiter's call through the unbind cascade.
    await r.stop();
    expect(await codeOf(call)).toBe('EDVSDEADSRCDST');
  });

  it('a state that is not DS state is refused with EDVSBADVALUE', () => {
    const ds = new DsServer();
    for (const bad of [new Uint8Array([0xc1]), new Uint8Array([0x01]), new DsServer({ limits: { maxNames: 1 } }).snapshot().subarray(0, 2)]) {
      expect(() => ds.restore(bad)).toThrow(expect.objectContaining({ code: 'EDVSBADVALUE' }));
    }
  });

  // Waiters on the old owner's node and on a third node. A waiter on the target node itself is
  // not answered after the move: the kernel's absorb drops an owed reply to a client of its own
  // node whose remote sendrec was taken but not yet answered (still in its send phase, as no
  // send-ack comes for a taken sendrec), in src/kernel/moves.ts localClient; skipped until fixed.
  it('after a real move (freeze, snapshot, drain, absorb on another node) the waiters are answered from the new node', async () => {
    await moveWithWaiters([0, 1]);
  });
  it('after a real move, a waiter on the target node is answered too (its sendrec still in its send phase when the mailbox arrived: regression)', async () => {
    await moveWithWaiters([2]);
  });
});

/** DS on node 0 with waiters on `waiterNodes`, moved to node 2 as the migration agent moves a service; then the name is published. */
async function moveWithWaiters(waiterNodes: number[]): Promise<void> {
  const sim = new Simulation({ seed: 15, nodes: 3, latency: { min: 5, max: 5 }, dc: { dcid: DC } });
  const dsProc = sim.bind(0, { slot: DS_SLOT, name: 'ds' });
  const ep = dsProc.endpoint;
  const first = new DsServer({ now: () => sim.now() });
  const runner0 = new ServiceRunner(dsProc, first, { dcid: DC, endpoint: ep, node: 0, migrated: false });
  runner0.start();
  const waiters = waiterNodes.map((n, i) => sim.bind(n, { name: `w${i}` }));
  const pub = sim.bind(1, { name: 'pub' });
  const results: (number | string)[] = [];
  for (const w of waiters) {
    sim.spawn(`wait ${w.endpoint}`, async () => {
      results.push(await new DsClient(w, ep).waitFor('fs', 5000).catch((e: unknown) => (isDvsError(e) ? e.code : 'THROWN')));
      // Answered by the publish, well before the wait's own deadline.
      expect(sim.now()).toBeLessThan(1000);
    });
  }
  let second: DsServer | undefined;
  sim.spawn('mover', async () => {
    await sim.sleep(100);
    expect(first.info().waiters).toBe(waiters.length);
    for (const n of sim.nodes) expect(sim.kernel(n).freeze(DC, ep, 0, 10_000)).toBe(true);
    const state = await runner0.snapshot();
    runner0.retire();
    const h = sim.kernel(0).drain(DC, ep, 2);
    expect(h.owed).toHaveLength(waiters.length);
    second = new DsServer({ now: () => sim.now() });
    second.restore(state!);
    expect(second.info().waiters).toBe(waiters.length);
    const moved = sim.kernel(2).absorb(h, { name: 'ds' });
    sim.kernel(1).bindRemote(DC, ep, 2, 'ds', 1);
    new ServiceRunner(moved, second, { dcid: DC, endpoint: ep, node: 2, migrated: true }).start();
    await sim.sleep(50);
    await new DsClient(pub, ep).publish('fs');
  });
  const run = await sim.run({ maxTime: 10_000 });
  expect(run.errors).toEqual([]);
  expect(run.reason).toBe('done');
  expect(results).toEqual(waiters.map(() => pub.endpoint));
  expect(second?.info()).toMatchObject({ names: 1, waiters: 0 });
}
