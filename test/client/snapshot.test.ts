/**
 * Migration in the process protocol (docs/protocol.md, Migration): the daemon asks a client's service
 * for its state (`snapshot`), a bind hook hands a moved service its state back (`restored`,
 * `migrated`), and an endpoint that moved leaves its connection (`moved`) without being unbound.
 * A real ProcServer on a Unix socket and real clients.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DvsError, ERRNO, type DvsClient, type RemoteProcess } from '../../src/client/index.js';
import type { BindHook } from '../../src/node/proc-server.js';
import type { ProcConnection } from '../../src/node/proc-conn.js';
import { DC, SERVER_SLOT, isReceiving, pattern, rowOf, sameBytes, startHarness, track, until, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DvsError);
  expect((err as DvsError).errno).toBe(ERRNO[(err as DvsError).code]);
  return (err as DvsError).code;
}

/** A client's server endpoint blocked in receiveRequest, and the daemon's connection that bound it. */
async function blockedServer(opts: { grantTimeoutMs?: number; bind?: BindHook } = {}): Promise<{ c: DvsClient; srv: RemoteProcess; conn: ProcConnection; pending: Promise<unknown> }> {
  h = await startHarness({ server: opts });
  const c = await h.connect();
  const srv = await c.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
  const pending = track(srv.receiveRequest());
  const kernel = h.kernel;
  await until(() => isReceiving(kernel, srv.endpoint), 5000, 'server blocked in receiveRequest');
  const conn = h.server.connectionOf(DC, srv.endpoint);
  if (conn === undefined) throw new Error('no connection holds the server endpoint');
  return { c, srv, conn, pending };
}

describe('process protocol: snapshot', { timeout: 30_000 }, () => {
  it('the daemon gets the bytes a blocked service gives; without a hook, undefined (stateless)', async () => {
    const { srv, conn } = await blockedServer();
    expect(await conn.requestSnapshot(DC, srv.endpoint, 5000)).toBeUndefined();
    const state = pattern(1000, 5);
    let asked = 0;
    srv.onSnapshot(() => {
      asked++;
      return state;
    });
    const got = await conn.requestSnapshot(DC, srv.endpoint, 5000);
    expect(got).toBeInstanceOf(Uint8Array);
    expect(sameBytes(got ?? new Uint8Array(0), state)).toBe('equal');
    expect(asked).toBe(1);
    // The service is still blocked in its receive: a snapshot does not disturb it.
    expect(isReceiving(h!.kernel, srv.endpoint)).toBe(true);
    // An empty state is an empty state, not a stateless service.
    srv.onSnapshot(() => new Uint8Array(0));
    expect((await conn.requestSnapshot(DC, srv.endpoint, 5000))?.byteLength).toBe(0);
  });

  it('a state larger than a frame (9 MiB against 4 MiB frames) arrives whole, in pieces', async () => {
    const { c, srv, conn } = await blockedServer();
    expect(c.info.maxFrameBytes).toBe(4 * 1024 * 1024);
    const state = pattern(9 * 1024 * 1024 + 17, 9);
    srv.onSnapshot(async () => {
      await Promise.resolve();
      return state;
    });
    const got = await conn.requestSnapshot(DC, srv.endpoint, 20_000);
    expect(sameBytes(got ?? new Uint8Array(0), state)).toBe('equal');
  });

  it('a hook that refuses with EDVSMIGRATE fails the snapshot with it; any other error too', async () => {
    const { srv, conn } = await blockedServer();
    srv.onSnapshot(() => {
      throw new DvsError('EDVSMIGRATE', 'busy in a transaction');
    });
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint, 5000))).toBe('EDVSMIGRATE');
    srv.onSnapshot(() => Promise.reject(new DvsError('EDVSBUSY')));
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint, 5000))).toBe('EDVSBUSY');
    // A hook failing with something that is no DvsError is the client's internal error.
    srv.onSnapshot(() => {
      throw new Error('bug');
    });
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint, 5000))).toBe('EDVSIO');
  });

  it('a client that never answers fails the snapshot with EDVSTIMEDOUT; the connection stays usable', async () => {
    const { c, srv, conn } = await blockedServer();
    srv.onSnapshot(() => new Promise<Uint8Array>(() => undefined));
    const started = Date.now();
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint, 300))).toBe('EDVSTIMEDOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    await c.ping({ timeoutMs: 5000 });
    srv.onSnapshot(() => new Uint8Array([1, 2, 3]));
    expect([...((await conn.requestSnapshot(DC, srv.endpoint, 5000)) ?? [])]).toEqual([1, 2, 3]);
  });

  it('the connection closing fails a waiting snapshot with EDVSSRCDIED, and a later one too', async () => {
    const { c, srv, conn } = await blockedServer();
    srv.onSnapshot(() => new Promise<Uint8Array>(() => undefined));
    const waiting = track(conn.requestSnapshot(DC, srv.endpoint, 20_000));
    await c.close();
    expect(await codeOf(waiting)).toBe('EDVSSRCDIED');
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint, 1000))).toBe('EDVSNOTBIND');
  });

  it('an endpoint the connection does not hold, or a bad timeout, is refused', async () => {
    const { srv, conn } = await blockedServer();
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint + 1, 1000))).toBe('EDVSNOTBIND');
    expect(await codeOf(conn.requestSnapshot(DC, srv.endpoint, 0))).toBe('EDVSBADVALUE');
    expect(h!.server.connectionOf(DC, srv.endpoint + 1)).toBeUndefined();
  });
});

describe('process protocol: restored state on bind', { timeout: 30_000 }, () => {
  /** A bind hook that hands out `restored` for slot SERVER_SLOT, as the daemon does for a moved service. */
  function restoringHook(restored: Uint8Array): BindHook {
    return (dcid, o) => {
      const process = h!.kernel.bind(dcid, { ...(o.slot === undefined ? {} : { slot: o.slot }), ...(o.name === undefined ? {} : { name: o.name }) });
      return o.slot === SERVER_SLOT ? { process, restored, migrated: true } : process;
    };
  }

  it('a hook returning {process, restored, migrated: true}: the client sees the bytes and migrated; a fresh bind sees neither', async () => {
    const state = pattern(5000, 3);
    h = await startHarness({ server: { bind: restoringHook(state) } });
    const c = await h.connect();
    const moved = await c.bind(DC, { slot: SERVER_SLOT, name: 'srv' });
    expect(moved.migrated).toBe(true);
    expect(sameBytes(moved.restored ?? new Uint8Array(0), state)).toBe('equal');
    const fresh = await c.bind(DC, { name: 'fresh' });
    expect(fresh.migrated).toBe(false);
    expect(fresh.restored).toBeUndefined();
  });

  it('an asynchronous hook with a 9 MiB state: the client gets it whole (restored events, then the result)', async () => {
    const state = pattern(9 * 1024 * 1024 + 3, 4);
    const sync = restoringHook(state);
    h = await startHarness({ server: { bind: async (dcid, o) => sync(dcid, o) } });
    const c = await h.connect();
    const p = await c.bind(DC, { slot: SERVER_SLOT, timeoutMs: 20_000 });
    expect(p.migrated).toBe(true);
    expect(sameBytes(p.restored ?? new Uint8Array(0), state)).toBe('equal');
    // The connection is in order afterwards.
    await c.ping({ timeoutMs: 5000 });
  });

  it('a restored state that is not bytes is refused and leaves nothing bound', async () => {
    h = await startHarness({ server: { bind: (dcid, o) => ({ process: h!.kernel.bind(dcid, o.slot === undefined ? {} : { slot: o.slot }), restored: 'oops' as unknown as Uint8Array }) } });
    const c = await h.connect();
    expect(await codeOf(c.bind(DC, { slot: 5 }))).toBe('EDVSMSGSIZE');
    expect(h.kernel.procs(DC).filter((r) => r.kind === 'local')).toEqual([]);
  });
});

describe('process protocol: endpoint moved', { timeout: 30_000 }, () => {
  it('the client is told, the endpoint is no longer bound there, and closing the connection does not unbind the slot', async () => {
    h = await startHarness();
    const c = await h.connect();
    const seen: { node: number; epoch: number }[] = [];
    const srv = await c.bind(DC, { slot: SERVER_SLOT, name: 'srv', onMoved: (info) => seen.push(info) });
    const other = await c.bind(DC, { name: 'other' });
    const conn = h.server.connectionOf(DC, srv.endpoint);
    expect(conn).toBeDefined();
    // The kernel slot stays bound here, standing for the new owner: only this connection's claim goes.
    expect(conn?.endpointMoved(DC, srv.endpoint, 7, 3)).toBe(true);
    await until(() => seen.length === 1, 5000, 'moved event');
    expect(seen).toEqual([{ node: 7, epoch: 3 }]);
    expect(srv.bound).toBe(false);
    expect(srv.moved).toEqual({ node: 7, epoch: 3 });
    expect(c.processes).toEqual([other]);
    expect(await codeOf(srv.receive(0))).toBe('EDVSNOTBIND');
    expect(h.server.connectionOf(DC, srv.endpoint)).toBeUndefined();
    // Told again (the connection no longer holds it): the client, which no longer has it either, ignores it.
    expect(conn?.endpointMoved(DC, srv.endpoint, 7, 3)).toBe(false);
    await c.ping({ timeoutMs: 5000 });
    expect(seen).toHaveLength(1);
    expect((await c.nodeInfo()).endpoints.map((e) => e.endpoint)).toEqual([other.endpoint]);
    await c.close();
    const kernel = h.kernel;
    await until(() => rowOf(kernel, other.endpoint) === undefined, 5000, 'the other endpoint unbound by the close');
    expect(rowOf(kernel, srv.endpoint)).toBeDefined();
  });
});

describe('process protocol: a move drained by the kernel', { timeout: 30_000 }, () => {
  it('the receive fails with EDVSSHUTDOWN (details.node), then moved; the close leaves the slot routed to the new node', async () => {
    h = await startHarness({ server: { grantTimeoutMs: 5000 } });
    const kernel = h.kernel;
    kernel.addNode(DC, 1);
    const c = await h.connect();
    let movedSeen: { node: number; epoch: number } | undefined;
    const srv = await c.bind(DC, { slot: SERVER_SLOT, name: 'srv', onMoved: (info) => (movedSeen = info) });
    srv.onSnapshot(() => new Uint8Array([42]));
    const pending = track(srv.receiveRequest());
    await until(() => isReceiving(kernel, srv.endpoint), 5000, 'server blocked in receiveRequest');
    const conn = h.server.connectionOf(DC, srv.endpoint);
    if (conn === undefined) throw new Error('no connection holds the server endpoint');
    expect(kernel.freeze(DC, srv.endpoint, kernel.route(DC, srv.endpoint).epoch + 1, 20_000)).toBe(true);
    // Without a timeout the server's grant timeout applies.
    expect([...((await conn.requestSnapshot(DC, srv.endpoint)) ?? [])]).toEqual([42]);
    const handover = kernel.drain(DC, srv.endpoint, 1);
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'EDVSSHUTDOWN', details: { node: 1 } });
    expect(conn.endpointMoved(DC, srv.endpoint, 1, handover.epoch)).toBe(true);
    await until(() => movedSeen !== undefined, 5000, 'moved event');
    expect(movedSeen).toEqual({ node: 1, epoch: handover.epoch });
    expect(srv.bound).toBe(false);
    await c.close();
    await until(() => h!.server.connectionCount === 0, 5000, 'connection closed');
    expect(kernel.route(DC, srv.endpoint)).toMatchObject({ kind: 'remote', node: 1, epoch: handover.epoch });
  });
});

describe('process protocol: moved after the endpoint was forgotten', { timeout: 30_000 }, () => {
  it('a request naming the drained endpoint before endpointMoved does not keep the client from learning where it went', async () => {
    h = await startHarness();
    const kernel = h.kernel;
    kernel.addNode(DC, 1);
    const c = await h.connect();
    let seen: { node: number; epoch: number } | undefined;
    const srv = await c.bind(DC, { slot: SERVER_SLOT, onMoved: (info) => (seen = info) });
    const pending = track(srv.receiveRequest());
    await until(() => isReceiving(kernel, srv.endpoint), 5000, 'server blocked');
    const conn = h.server.connectionOf(DC, srv.endpoint);
    expect(kernel.freeze(DC, srv.endpoint, kernel.route(DC, srv.endpoint).epoch + 1, 20_000)).toBe(true);
    const handover = kernel.drain(DC, srv.endpoint, 1);
    expect(await codeOf(pending)).toBe('EDVSSHUTDOWN');
    // The client names the retired endpoint again: the daemon finds it unbound and forgets it.
    expect(await codeOf(srv.receiveRequest({ timeoutMs: 1000 }))).toBe('EDVSNOTBIND');
    expect(conn?.endpointMoved(DC, srv.endpoint, 1, handover.epoch)).toBe(false);
    await until(() => seen !== undefined, 5000, 'moved event');
    expect(seen).toEqual({ node: 1, epoch: handover.epoch });
    expect(srv.bound).toBe(false);
  });
});
