/**
 * The `bind` request: an exact endpoint passed through unchanged, checked, and refused when its
 * generation cannot be had; a bind through the daemon's hook bounded by its timeout, cancellable,
 * and never leaving an endpoint bound that no client holds.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ANY, DvsError, ERRNO, type DvsErrorCode } from '../../src/client/index.js';
import type { AbortLike } from '../../src/ipc/calls.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import type { Process } from '../../src/kernel/process.js';
import type { BindHookOptions } from '../../src/node/proc-server.js';
import { DC, socketOf, startHarness, track, until, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function expectCode(p: Promise<unknown>, code: DvsErrorCode): Promise<DvsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DvsError);
  expect((err as DvsError).code).toBe(code);
  expect((err as DvsError).errno).toBe(ERRNO[code]);
  return err as DvsError;
}

function spaceOf(h: Harness): EndpointSpace {
  return new EndpointSpace(h.kernel.dcInfo(DC).limits);
}

/** A bind hook that records its calls and binds only when the test releases it. */
function heldHook(h: () => Harness): { hook: (dcid: number, opts: BindHookOptions) => Promise<Process>; calls: BindHookOptions[]; release(): void } {
  const calls: BindHookOptions[] = [];
  const waiting: (() => void)[] = [];
  return {
    calls,
    hook: (dcid, opts) => {
      calls.push(opts);
      return new Promise<Process>((resolve, reject) => {
        waiting.push(() => {
          try {
            resolve(h().kernel.bind(dcid, { ...(opts.slot === undefined ? {} : { slot: opts.slot }), ...(opts.name === undefined ? {} : { name: opts.name }) }));
          } catch (err) {
            reject(err as Error);
          }
        });
      });
    },
    release() {
      for (const w of waiting.splice(0)) w();
    },
  };
}

describe('process protocol: bind with an exact endpoint', { timeout: 10_000 }, () => {
  it('binds exactly that slot and generation; EDVSSLOTUSED while bound, EDVSENDPOINT for a generation already had', async () => {
    h = await startHarness();
    const space = spaceOf(h);
    const c = await h.connect();
    const ep = space.make(2, 40);
    const p = await c.bind(DC, { endpoint: ep, name: 'exact' });
    expect({ endpoint: p.endpoint, slot: p.slot, generation: p.generation, name: p.name }).toEqual({ endpoint: ep, slot: 40, generation: 2, name: 'exact' });
    expect(h.kernel.procs(DC).find((r) => r.slot === 40)).toMatchObject({ endpoint: ep, generation: 2 });
    await expectCode(c.bind(DC, { endpoint: space.make(3, 40) }), 'EDVSSLOTUSED');
    await p.unbind();
    await expectCode(c.bind(DC, { endpoint: ep }), 'EDVSENDPOINT');
    await expectCode(c.bind(DC, { endpoint: space.make(1, 40) }), 'EDVSENDPOINT');
    const next = await c.bind(DC, { slot: 40, endpoint: space.make(5, 40) });
    expect(next.generation).toBe(5);
    // A slot alone takes the slot's next generation.
    await next.unbind();
    expect((await c.bind(DC, { slot: 40 })).generation).toBe(6);
  });

  it('an endpoint that is no process endpoint of the DC, or not in the slot given, gets the kernel error; a bad shape EDVSBADREQUEST naming the field', async () => {
    h = await startHarness();
    const space = spaceOf(h);
    const c = await h.connect();
    await expectCode(c.bind(DC, { endpoint: ANY }), 'EDVSENDPOINT');
    await expectCode(c.bind(DC, { endpoint: space.make(0, space.maxSlot) + 1 }), 'EDVSRANGE');
    const mismatch = await expectCode(c.bind(DC, { slot: 41, endpoint: space.make(1, 40) }), 'EDVSBADVALUE');
    expect(mismatch.details).toMatchObject({ slot: 41 });
    const r = await h.rawHello();
    const shapes: [Record<string, unknown>, string][] = [
      [{ endpoint: 'x' }, 'endpoint'],
      [{ endpoint: 1.5 }, 'endpoint'],
      [{ endpoint: [40] }, 'endpoint'],
      [{ endpoint: 2 ** 60 }, 'endpoint'],
      [{ slot: true }, 'slot'],
      [{ name: 7 }, 'name'],
      [{ timeoutMs: -5 }, 'timeoutMs'],
      [{ timeoutMs: 'soon' }, 'timeoutMs'],
    ];
    let id = 1;
    for (const [fields, field] of shapes) {
      r.send({ id, op: 'bind', dcid: DC, ...fields });
      expect(await r.response(id), JSON.stringify(fields)).toMatchObject({ ok: false, error: { code: 'EDVSBADREQUEST', errno: -107, details: { field } } });
      id++;
    }
    expect(h.kernel.procs(DC)).toEqual([]);
  });

  it('the bind hook gets slot, endpoint and name unchanged, with the timeout and an abort signal', async () => {
    const seen: BindHookOptions[] = [];
    h = await startHarness({
      server: {
        bind: (dcid, opts) => {
          seen.push(opts);
          return h!.kernel.bind(dcid, { ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }), ...(opts.slot === undefined ? {} : { slot: opts.slot }), ...(opts.name === undefined ? {} : { name: opts.name }) });
        },
      },
    });
    const space = spaceOf(h);
    const c = await h.connect();
    const p = await c.bind(DC, { slot: 42, endpoint: space.make(3, 42), name: 'hooked', timeoutMs: 5000 });
    expect(p.generation).toBe(3);
    const q = await c.bind(DC);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatchObject({ slot: 42, endpoint: space.make(3, 42), name: 'hooked', timeoutMs: 5000 });
    expect(seen[0]!.signal.aborted).toBe(false);
    expect(Object.keys(seen[1]!).sort()).toEqual(['signal']);
    expect((await c.nodeInfo()).endpoints.map((e) => e.endpoint).sort()).toEqual([p.endpoint, q.endpoint].sort());
    // A synchronous hook's bind is not left in flight: cancelling it finds nothing.
    const r = await h.rawHello();
    r.send({ id: 1, op: 'bind', dcid: DC });
    expect(await r.response(1)).toMatchObject({ ok: true });
    r.send({ id: 2, op: 'cancel', target: 1 });
    expect(await r.response(2)).toMatchObject({ ok: true, result: false });
  });
});

describe('process protocol: bind through a hook that does not answer', { timeout: 10_000 }, () => {
  it('times out with EDVSTIMEDOUT and aborts the hook; a bind that completes later is unbound at once', async () => {
    const held = heldHook(() => h!);
    h = await startHarness({ server: { bind: held.hook, maxEndpoints: 1 } });
    const c = await h.connect({ localGraceMs: 60_000 });
    const t0 = Date.now();
    await expectCode(c.bind(DC, { name: 'late', timeoutMs: 100 }), 'EDVSTIMEDOUT');
    // Answered by the daemon at its timeout, not by the client's local guard a minute later.
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(held.calls[0]).toMatchObject({ name: 'late', timeoutMs: 100 });
    expect(held.calls[0]!.signal.aborted).toBe(true);
    // The expired bind no longer counts against maxEndpoints.
    const next = track(c.bind(DC, { name: 'next', timeoutMs: 5000 }));
    await until(() => held.calls.length === 2);
    held.release();
    const p = await next;
    expect(p.name).toBe('next');
    // Both hooks bound; the one whose call had expired was unbound at once.
    await until(() => !h!.kernel.procs(DC).some((r) => r.name === 'late'));
    expect(h.kernel.procs(DC).map((r) => r.name)).toEqual(['next']);
    expect((await c.nodeInfo()).endpoints.map((e) => e.name)).toEqual(['next']);
  });

  it('is cancelled by cancel (EDVSINTR), by an AbortSignal through the client, and by the connection closing; the hook sees each abort', async () => {
    const held = heldHook(() => h!);
    h = await startHarness({ server: { bind: held.hook } });
    const r = await h.rawHello();
    r.send({ id: 1, op: 'bind', dcid: DC, name: 'raw' });
    await until(() => held.calls.length === 1);
    r.send({ id: 2, op: 'cancel', target: 1 });
    expect(await r.response(2)).toMatchObject({ ok: true, result: true });
    expect(await r.response(1)).toMatchObject({ ok: false, error: { code: 'EDVSINTR', errno: -4 } });
    expect(held.calls[0]!.signal.aborted).toBe(true);

    const c = await h.connect({ localGraceMs: 60_000 });
    const ac = new AbortController();
    const viaSignal = track(c.bind(DC, { name: 'signalled', signal: ac.signal }));
    await until(() => held.calls.length === 2);
    ac.abort();
    await expectCode(viaSignal, 'EDVSINTR');
    expect(held.calls[1]!.signal.aborted).toBe(true);

    const c2 = await h.connect();
    const dropped = track(c2.bind(DC, { name: 'dropped' }));
    await until(() => held.calls.length === 3);
    socketOf(c2).destroy();
    await expectCode(dropped, 'EDVSNOTCONN');
    await until(() => held.calls[2]!.signal.aborted);

    // Every hook completes now, after its call ended: nothing stays bound.
    held.release();
    await until(() => h!.kernel.procs(DC).length === 0 && held.calls.every((o: { signal: AbortLike }) => o.signal.aborted));
    await c.ping();
    expect(h.kernel.procs(DC)).toEqual([]);
  });

  it('a success that reaches the client after its local guard gave up is unbound by the client', async () => {
    const held = heldHook(() => h!);
    h = await startHarness({ server: { bind: held.hook } });
    const c = await h.connect({ localGraceMs: 50 });
    const socket = socketOf(c);
    // The client's guard gives up 50 ms after the call's timeout; the daemon answers well before it.
    const late = track(c.bind(DC, { name: 'orphan', timeoutMs: 300 }));
    await until(() => held.calls.length === 1);
    // The client stops reading: the daemon's success waits in the socket past the client's guard.
    socket.pause();
    held.release();
    await until(() => h!.kernel.procs(DC).some((r) => r.name === 'orphan'));
    await expectCode(late, 'EDVSTIMEDOUT');
    socket.resume();
    await until(() => !h!.kernel.procs(DC).some((r) => r.name === 'orphan'));
    expect(c.processes).toEqual([]);
  });
});
