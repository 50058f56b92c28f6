/** A connection that closes unbinds its endpoints: peers waiting on them get the kernel's cascade. */
import { afterEach, describe, expect, it } from 'vitest';
import { ANY, DvsError, ERRNO } from '../../src/client/index.js';
import { DC, SERVER_SLOT, isReceiving, queuedOn, socketOf, startHarness, track, until, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function expectCode(p: Promise<unknown>, code: keyof typeof ERRNO): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DvsError);
  expect((err as DvsError).code).toBe(code);
  expect((err as DvsError).errno).toBe(ERRNO[code]);
}

describe('process protocol: connection close', { timeout: 10_000 }, () => {
  it('a peer receiving from a client that closes gets EDVSSRCDIED; a queued sender gets EDVSDSTDIED', async () => {
    h = await startHarness();
    const c = await h.connect();
    const gone = await c.bind(DC);
    const gone2 = await c.bind(DC);
    const peer = h.kernel.bind(DC);
    const sender = h.kernel.bind(DC);
    const r = track(peer.receive(gone.endpoint));
    const s = track(sender.send(gone2.endpoint, { type: 1 }));
    expect(isReceiving(h.kernel, peer.endpoint)).toBe(true);
    expect(queuedOn(h.kernel, gone2.endpoint)).toBe(1);
    await c.close();
    await expectCode(r, 'EDVSSRCDIED');
    await expectCode(s, 'EDVSDSTDIED');
    expect(h.kernel.procs(DC).map((p) => p.endpoint).sort()).toEqual([peer.endpoint, sender.endpoint].sort());
    await expectCode(gone.receive(ANY), 'EDVSNOTCONN');
    expect(gone.bound).toBe(false);
  });

  it('a sendrec caller waiting for a client server that dies gets EDVSDEADSRCDST; an abrupt drop cascades too', async () => {
    h = await startHarness();
    const c = await h.connect();
    const srv = await c.bind(DC, { slot: SERVER_SLOT });
    const caller = h.kernel.bind(DC);
    const queued = h.kernel.bind(DC);
    const pending = track(srv.receiveRequest());
    const call = track(caller.sendrec(srv.endpoint, { type: 1 }));
    await pending;
    const q = track(queued.sendrec(srv.endpoint, { type: 2 }));
    expect(queuedOn(h.kernel, srv.endpoint)).toBe(1);
    socketOf(c).destroy();
    await expectCode(call, 'EDVSDEADSRCDST');
    await expectCode(q, 'EDVSDEADSRCDST');
    await until(() => h!.kernel.procs(DC).length === 2);
  });

  it('a client that drops mid-call: its own pending calls fail with EDVSNOTCONN and the daemon forgets it', async () => {
    h = await startHarness();
    const c = await h.connect();
    const a = await c.bind(DC);
    const calls = [track(a.receive(ANY)), track(c.waitForBind(DC, 60)), track(a.send(h.kernel.bind(DC).endpoint, { type: 1 }))];
    // Requests of a connection are handled in order: once the ping is answered, all three wait in the daemon.
    await c.ping();
    expect(isReceiving(h.kernel, a.endpoint)).toBe(true);
    socketOf(c).destroy();
    for (const p of calls) await expectCode(p, 'EDVSNOTCONN');
    await until(() => h!.server.connectionCount === 0);
    expect(h.kernel.procs(DC).some((p) => p.endpoint === a.endpoint)).toBe(false);
    // The waitForBind of the dead connection was withdrawn: binding slot 60 later disturbs nobody.
    const later = await (await h.connect()).bind(DC, { slot: 60 });
    expect(later.slot).toBe(60);
  });

  it('unbind through the client cascades like an in-process unbind', async () => {
    h = await startHarness();
    const c = await h.connect();
    const a = await c.bind(DC);
    const peer = h.kernel.bind(DC);
    const r = track(peer.receive(a.endpoint));
    expect(isReceiving(h.kernel, peer.endpoint)).toBe(true);
    await a.unbind();
    await a.unbind();
    await expectCode(r, 'EDVSSRCDIED');
    await expectCode(a.send(peer.endpoint, { type: 1 }), 'EDVSNOTBIND');
    expect(() => a.grant(new Uint8Array(1), { grantee: ANY, access: 'read' })).toThrow(/EDVSNOTBIND/);
    expect(c.processes).toEqual([]);
  });

  it('an endpoint unbound by the kernel (not by its client) fails the client call with EDVSSHUTDOWN and then EDVSNOTBIND', async () => {
    h = await startHarness();
    const c = await h.connect();
    const a = await c.bind(DC);
    const r = track(a.receive(ANY));
    await until(() => isReceiving(h!.kernel, a.endpoint), 5000, 'a receiving');
    h.kernel.unbind(DC, a.endpoint);
    await expectCode(r, 'EDVSSHUTDOWN');
    await expectCode(a.receive(ANY), 'EDVSNOTBIND');
    await a.unbind();
  });

  it('an asynchronous bind hook (the daemon claiming endpoints in its directory) binds for clients; a bind that completes after the client left is undone', async () => {
    const calls: unknown[] = [];
    let held = false;
    let slowBound = false;
    let release: () => void = () => undefined;
    h = await startHarness({
      server: {
        bind: async (dcid, { signal, ...opts }) => {
          expect(signal.aborted).toBe(false);
          calls.push({ dcid, ...opts });
          if (opts.name === 'slow') {
            await new Promise<void>((resolve) => {
              release = resolve;
              held = true;
            });
          }
          const p = h!.kernel.bind(dcid, { ...opts, slot: opts.slot ?? 120 + calls.length });
          if (opts.name === 'slow') slowBound = true;
          return p;
        },
      },
    });
    const c = await h.connect();
    const p = await c.bind(DC, { name: 'viahook' });
    expect(p.slot).toBe(121);
    expect(calls).toEqual([{ dcid: DC, name: 'viahook' }]);
    const c2 = await h.connect();
    const slow = track(c2.bind(DC, { name: 'slow' }));
    await until(() => held, 5000, 'the slow bind held');
    socketOf(c2).destroy();
    await expectCode(slow, 'EDVSNOTCONN');
    await until(() => h!.server.connectionCount === 1);
    release();
    // The hook binds 'slow' when released; the connection is gone, so it is unbound at once.
    await until(() => slowBound && !h!.kernel.procs(DC).some((r) => r.name === 'slow'), 5000, "'slow' bound, then unbound");
    expect(calls).toHaveLength(2);
    expect(h.kernel.procs(DC).map((r) => r.name)).toEqual(['viahook']);
  });
});
