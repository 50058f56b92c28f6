/**
 * The embedded backend over real TCP on 127.0.0.1 (port 0): authentication, the operations and their
 * errors across the wire, watches that resume without a gap after the connection is cut, lease
 * keepalive across reconnects, unreachable servers, a restarted (empty) store, a flood of silent
 * connections that must not lock clients out, and a bounded fuzz of random and mutated frames that
 * must leave the server serving.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaseKeeper } from '../../src/cluster/lease-keeper.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { StoreClient, type StoreClientOptions } from '../../src/cluster/store-client.js';
import { clientProof, STORE_PROTOCOL, STORE_PROTOCOL_VERSION } from '../../src/cluster/store-protocol.js';
import { StoreServer, type StoreServerOptions } from '../../src/cluster/store-server.js';
import type { WatchEvent } from '../../src/cluster/store.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { Prng } from '../../src/sim/prng.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/framing.js';
import { encodeValue } from '../../src/transport/codec.js';
import { SilentFlood } from '../cli/helpers.js';
import { codeOf, until } from './helpers.js';

const KEY = 'test-cluster-key-0123456789abcdef';

const servers: StoreServer[] = [];
const floods: SilentFlood[] = [];
const clients: StoreClient[] = [];
const sockets: Socket[] = [];
const cleanups: (() => void)[] = [];

async function startServer(opts: Partial<StoreServerOptions> = {}): Promise<{ server: StoreServer; port: number }> {
  const server = new StoreServer({ clusterKey: KEY, ...opts });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

async function client(port: number, opts: Partial<StoreClientOptions> = {}): Promise<StoreClient> {
  const c = await StoreClient.connect({ port, clusterKey: KEY, reconnectMinMs: 10, reconnectMaxMs: 100, ...opts });
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const f of cleanups.splice(0)) f();
  for (const f of floods.splice(0)) f.close();
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.close();
});

/** A raw protocol peer for the tests that speak the wire directly. */
class RawPeer {
  readonly frames: unknown[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();

  constructor(readonly socket: Socket) {
    sockets.push(socket);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.frames.push(...this.decoder.push(chunk));
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
    });
  }

  static async open(port: number): Promise<RawPeer> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawPeer(socket);
  }

  /** Connects and authenticates. */
  static async authed(port: number, key = KEY): Promise<RawPeer> {
    const p = await RawPeer.open(port);
    await until(() => p.frames.length >= 1, 2000, 'hello');
    const hello = p.frames.shift() as { nonce: Uint8Array };
    const nonce = Buffer.alloc(32, 7);
    p.send({ t: 'auth', proto: STORE_PROTOCOL, v: STORE_PROTOCOL_VERSION, nonce, mac: clientProof(Buffer.from(key), hello.nonce, nonce) });
    await until(() => p.frames.length >= 1 || p.closed, 2000, 'welcome');
    const welcome = p.frames.shift() as { t: string };
    if (welcome?.t !== 'welcome') throw new Error(`no welcome: ${JSON.stringify(welcome)}`);
    return p;
  }

  send(value: unknown): void {
    this.socket.write(encodeFrame(value));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Waits until the server answered something or closed, or `ms` passed. */
  async settle(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed && this.frames.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }
}

describe('authentication', () => {
  it('serves a client with the cluster key', async () => {
    const { server, port } = await startServer();
    const c = await client(port);
    expect(c.connected).toBe(true);
    expect(c.storeId).toBe(server.storeId);
    await c.put('/hello', 'world');
    expect((await c.get('/hello'))?.value).toBe('world');
    expect(server.store.getSync('/hello')?.value).toBe('world');
  });

  it('refuses a wrong key, and the client does not retry it', async () => {
    const { server, port } = await startServer();
    expect(await codeOf(StoreClient.connect({ port, clusterKey: 'another-key-of-the-wrong-cluster', connectTimeoutMs: 2000 }))).toBe('EDVSACCES');
    expect(server.stats.handshakesFailed.auth).toBe(1);
    const raw = await RawPeer.authed(port, KEY).catch(() => undefined);
    expect(raw).toBeDefined(); // the server still serves the right key
    const wrong = await RawPeer.open(port);
    await until(() => wrong.frames.length >= 1, 2000, 'hello');
    const hello = wrong.frames.shift() as { nonce: Uint8Array };
    const nonce = Buffer.alloc(32, 1);
    wrong.send({ t: 'auth', proto: STORE_PROTOCOL, v: STORE_PROTOCOL_VERSION, nonce, mac: clientProof(Buffer.from('not-the-cluster-key!!'), hello.nonce, nonce) });
    await until(() => wrong.closed, 3000, 'close after a wrong proof');
    expect(wrong.frames[0]).toMatchObject({ t: 'error', error: { code: 'EDVSACCES', errno: -13 } });
    expect(() => new StoreClient({ port, clusterKey: 'short' })).toThrow(/at least 16 bytes/);
  });

  it('closes a peer that does not authenticate in time or sends junk first', async () => {
    const { server, port } = await startServer({ handshakeTimeoutMs: 200 });
    const silent = await RawPeer.open(port);
    await until(() => silent.closed, 3000, 'handshake timeout');
    expect(silent.frames.at(-1)).toMatchObject({ t: 'error', error: { code: 'EDVSTIMEDOUT' } });
    const junk = await RawPeer.open(port);
    junk.send({ id: 1, op: 'get', key: '/x' }); // a request before auth
    await until(() => junk.closed, 3000, 'close on a request before auth');
    expect(junk.frames.at(-1)).toMatchObject({ t: 'error', error: { code: 'EDVSBADREQUEST' } });
    const flood = await RawPeer.open(port);
    flood.write(Buffer.alloc(8192, 0x41));
    await until(() => flood.closed, 3000, 'close on a flood before auth');
    expect(server.stats.framesRefused).toBeGreaterThanOrEqual(2);
    expect(server.stats.handshakesFailed.timeout).toBe(1);
  });
});

describe('a flood of silent connections', () => {
  it('does not lock clients out: the oldest silent ones make room, and authenticated clients are not counted with them', async () => {
    // A deadline of a minute: only the pending pool, not the handshake deadline, can let a client in here.
    const { server, port } = await startServer({ handshakeTimeoutMs: 60_000 });
    const before = await client(port);
    const flood = await SilentFlood.open(port, 1100);
    floods.push(flood);

    // While the flood is held: a new client (and one that was connected before) does its work.
    const c = await client(port, { connectTimeoutMs: 10_000 });
    await c.put('/during-flood', 'ok');
    expect((await c.get('/during-flood'))?.value).toBe('ok');
    expect((await before.get('/during-flood'))?.value).toBe('ok');
    const restarted = await client(port, { connectTimeoutMs: 10_000 });
    expect(await restarted.getPrefix('/during-flood')).toMatchObject({ entries: [{ key: '/during-flood' }] });
    await until(() => flood.held <= 127, 10_000, 'evicted connections closed');
    expect(flood.held).toBe(127);
    expect(flood.closedWith('EDVSAGAIN')).toBe(1100 - 127);

    // The first newcomer evicted the oldest silent one; the pool had room for the second.
    const s = server.stats;
    expect(s.connections).toEqual({ open: 130, authenticated: 3, pending: 127 });
    expect(s.accepted).toBe(1103);
    expect(s.evicted).toBe(1100 - 127);
    expect(s.refused).toBe(0);
    expect(s.bytesIn).toBeGreaterThan(0);
    expect(s.bytesOut).toBeGreaterThan(s.bytesIn);
  });

  it('the deadline closes silent connections; a full authenticated cap refuses the next one with EDVSAGAIN', async () => {
    const { server, port } = await startServer({ handshakeTimeoutMs: 300, maxPendingConnections: 4, maxConnections: 2 });
    const a = await client(port);
    const b = await client(port);
    const flood = await SilentFlood.open(port, 20);
    floods.push(flood);
    await until(() => flood.held === 0, 5000, 'every silent connection closed');
    // Evicted for a newcomer, or closed by the deadline (at least the last four, which no newcomer followed).
    const evicted = flood.closedWith('EDVSAGAIN');
    const timedOut = flood.closedWith('EDVSTIMEDOUT');
    expect(evicted + timedOut).toBe(20);
    expect(timedOut).toBeGreaterThanOrEqual(4);
    const third = await RawPeer.open(port);
    await until(() => third.frames.length >= 1, 2000, 'hello');
    const hello = third.frames.shift() as { nonce: Uint8Array };
    const nonce = Buffer.alloc(32, 3);
    third.send({ t: 'auth', proto: STORE_PROTOCOL, v: STORE_PROTOCOL_VERSION, nonce, mac: clientProof(Buffer.from(KEY), hello.nonce, nonce) });
    await until(() => third.closed, 3000, 'refusal');
    expect(third.frames.at(-1)).toMatchObject({ t: 'error', error: { code: 'EDVSAGAIN' } });
    await a.put('/k', 1);
    expect((await b.get('/k'))?.value).toBe(1);
    const s = server.stats;
    expect(s).toMatchObject({ connections: { open: 2, authenticated: 2, pending: 0 }, accepted: 23, refused: 1, evicted, handshakesFailed: { auth: 0, timeout: timedOut } });
    expect(() => new StoreServer({ clusterKey: KEY, maxPendingConnections: 0 })).toThrow(/maxPendingConnections/);
  });
});

describe('operations over the wire', () => {
  it('carries results and typed errors', async () => {
    const { port } = await startServer();
    const c = await client(port);
    expect(await c.put('/a/1', { n: 1 })).toEqual({ revision: 1 });
    await c.put('/a/2', [1, 2n, 'x', null]);
    expect((await c.get('/a/2'))?.value).toEqual([1, 2n, 'x', null]);
    expect(await c.get('/none')).toBeUndefined();
    expect((await c.getPrefix('/a/')).entries.map((e) => e.key)).toEqual(['/a/1', '/a/2']);
    const t = await c.txn({ compare: [{ key: '/a/1', modRevision: 1 }], success: [{ op: 'delete', key: '/a/', prefix: true }] });
    expect(t).toEqual({ succeeded: true, revision: 3, results: [{ op: 'delete', deleted: 2 }] });
    expect(await codeOf(c.txn({ compare: [{ key: '/a/1' } as never] }))).toBe('EDVSINVAL');
    expect(await codeOf(c.keepAlive(42))).toBe('EDVSNOENT');
    expect(await codeOf(c.grantLease(-5))).toBe('EDVSINVAL');
    expect(await codeOf(c.put('/f', (() => 0) as never))).toBe('EDVSBADVALUE'); // refused before sending
    expect(await c.delete('/a/1')).toEqual({ revision: 3, deleted: 0 });
    expect(c.calls.total()).toBe(11);
  });

  it('answers malformed requests with typed errors and closes on a request without id', async () => {
    const { port } = await startServer();
    const p = await RawPeer.authed(port);
    p.send({ id: 1, op: 'put', key: 5, value: 1 });
    p.send({ id: 2, op: 'teleport' });
    p.send({ id: 3, op: 'txn', compare: 'nope' });
    p.send({ id: 4, op: 'watch', watch: -1, prefix: '/' });
    p.send({ id: 5, op: 'ping' });
    await until(() => p.frames.length >= 5, 2000, 'five replies');
    expect(p.frames).toMatchObject([
      { id: 1, ok: false, error: { code: 'EDVSINVAL' } },
      { id: 2, ok: false, error: { code: 'EDVSNOSYS' } },
      { id: 3, ok: false, error: { code: 'EDVSINVAL' } },
      { id: 4, ok: false, error: { code: 'EDVSINVAL' } },
      { id: 5, ok: true, result: { revision: 0 } },
    ]);
    p.send({ op: 'get', key: '/x' });
    await until(() => p.closed, 3000, 'close on a request without id');
    expect(p.frames.at(-1)).toMatchObject({ t: 'error', error: { code: 'EDVSBADREQUEST' } });
  });
});

describe('watches across connection loss', () => {
  it('resume from the last revision seen: every event exactly once', async () => {
    const { server, port } = await startServer();
    const c = await client(port);
    const seen: WatchEvent[] = [];
    await c.watch('/w/', undefined, (e) => seen.push(e));
    const writes = 200;
    for (let i = 0; i < writes; i++) {
      // Written straight into the server's store: writes go on while the client is cut off.
      if (i % 3 === 2) server.store.txnSync({ compare: [], success: [{ op: 'put', key: `/w/${i}`, value: i }, { op: 'put', key: `/w/${i}b`, value: -i }] });
      else server.store.putSync(`/w/${i}`, i);
      server.store.putSync('/elsewhere', i);
      if (i % 20 === 10) server.dropConnections();
      if (i % 20 === 15) c.dropConnection();
      // Sometimes let the client reconnect, sometimes keep writing while it is away.
      if (i % 20 === 12 || i % 20 === 18) await until(() => c.connected, 3000, 'reconnect');
      if (i % 7 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    const expected = (await server.store.getPrefix('/w/')).entries.length;
    expect(expected).toBe(writes + Math.floor((writes + 0) / 3));
    await until(() => seen.length >= expected, 10_000, 'all events');
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toHaveLength(expected);
    const keys = seen.map((e) => e.key);
    expect(new Set(keys).size).toBe(keys.length);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.revision).toBeGreaterThanOrEqual(seen[i - 1]!.revision);
    expect(c.reconnects).toBeGreaterThanOrEqual(10);
  });

  it('delivers a revision split over several frames once, even when cut in the middle', async () => {
    const store = new MemoryStore({ limits: { maxValueBytes: 1000, maxKeyBytes: 100 } });
    const { server, port } = await startServer({ store, maxFrameBytes: 4000 });
    cleanups.push(() => store.closeSync());
    const c = await client(port);
    const seen: string[] = [];
    let cut = false;
    await c.watch('/big/', undefined, (e) => {
      seen.push(e.key);
      if (!cut && seen.length === 3) {
        cut = true;
        c.dropConnection();
      }
    });
    const success = Array.from({ length: 12 }, (_, i) => ({ op: 'put' as const, key: `/big/${String(i).padStart(2, '0')}`, value: 'x'.repeat(900) }));
    server.store.txnSync({ compare: [], success });
    await until(() => seen.length >= 12, 5000, 'twelve events');
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(success.map((o) => o.key));
  });

  it('ends a watch with EDVSCONNRESET when the server comes back with another store', async () => {
    const first = await startServer();
    const port = first.port;
    const c = await client(port, { requestTimeoutMs: 3000 });
    const errors: string[] = [];
    let resets = 0;
    c.on('reset', () => resets++);
    await c.watch('/', undefined, () => undefined, { onError: (e) => errors.push(e.code) });
    const lease = await c.grantLease(10_000);
    const lost: number[] = [];
    c.on('leaseLost', (e) => lost.push(e.lease));
    await first.server.close();
    const second = new StoreServer({ clusterKey: KEY, port });
    servers.push(second);
    await second.listen();
    await until(() => errors.length > 0, 5000, 'watch error');
    expect(errors).toEqual(['EDVSCONNRESET']);
    expect(resets).toBe(1);
    expect(lost).toEqual([lease]);
    expect(await c.put('/after', 1)).toEqual({ revision: 1 });
  });
});

describe('leases over the wire', () => {
  it('a kept lease outlives its TTL and a connection cut; an abandoned one expires', async () => {
    const { server, port } = await startServer();
    const c = await client(port);
    const kept = await c.grantLease(600);
    const dropped = await c.grantLease(600);
    await c.put('/l/kept', 1, { lease: kept });
    await c.put('/l/dropped', 1, { lease: dropped });
    const deletes: string[] = [];
    await c.watch('/l/', undefined, (e) => {
      if (e.type === 'delete') deletes.push(e.key);
    });
    let lostErr: unknown;
    const keeper = new LeaseKeeper({ store: c, lease: kept, ttlMs: 600, clock: systemClock, onLost: (e) => (lostErr = e) });
    keeper.start();
    cleanups.push(() => keeper.stop());
    await until(() => deletes.length > 0, 3000, 'expiry of the abandoned lease');
    expect(deletes).toEqual(['/l/dropped']);
    server.dropConnections();
    await new Promise((r) => setTimeout(r, 1200)); // two TTLs after the cut
    expect(server.store.getSync('/l/kept')).toBeDefined();
    expect(keeper.refreshes).toBeGreaterThanOrEqual(3);
    expect(lostErr).toBeUndefined();
    keeper.stop();
    await c.revokeLease(kept);
    expect(server.store.getSync('/l/kept')).toBeUndefined();
  });
});

describe('an unreachable server', () => {
  it('calls fail with EDVSNOTCONN after the timeout, and succeed again once it is back', async () => {
    const { server, port } = await startServer();
    const c = await client(port, { requestTimeoutMs: 300 });
    await c.put('/k', 1);
    await server.close();
    const started = Date.now();
    expect(await codeOf(c.get('/k'))).toBe('EDVSNOTCONN');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const refused = await StoreClient.connect({ port, clusterKey: KEY, connectTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'EDVSNOTCONN' });
    // What could not be reached, and why.
    expect(String((refused as Error).message)).toMatch(new RegExp(`store server 127\\.0\\.0\\.1:${port} unreachable for 200 ms \\(last error: connect ECONNREFUSED`));
    const again = new StoreServer({ clusterKey: KEY, port });
    servers.push(again);
    await again.listen();
    await c.whenReady(3000);
    expect(await c.get('/k')).toBeUndefined(); // a new, empty store
    await c.close();
    expect(await codeOf(c.get('/k'))).toBe('EDVSSHUTDOWN');
  });
});

describe('fuzz', () => {
  it('random and mutated frames: typed errors or closed connections, never a crash; the server still serves', async () => {
    const { server, port } = await startServer({ handshakeTimeoutMs: 300 });
    const rng = new Prng(20240601);
    const ops = ['get', 'getPrefix', 'put', 'delete', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'watch', 'unwatch', 'ping', 'bogus', ''];
    const randomValue = (depth: number): unknown => {
      switch (rng.int(0, depth > 2 ? 6 : 9)) {
        case 0:
          return rng.int(-5, 5);
        case 1:
          return rng.pick([0, -1, 1.5, 2 ** 53, -(2 ** 40), Number.NaN, Infinity]);
        case 2:
          return rng.pick(['', '/', '/a', 'x'.repeat(rng.int(0, 300)), '==', '<', 'put', 'get']);
        case 3:
          return rng.pick([null, undefined, true, false]);
        case 4:
          return Buffer.from(Array.from({ length: rng.int(0, 40) }, () => rng.int(0, 255)));
        case 5:
          return BigInt(rng.int(-1000, 1000)) * 2n ** 40n;
        case 6:
          return new Date(rng.int(0, 2 ** 31) * 1000);
        case 7:
          return Array.from({ length: rng.int(0, 5) }, () => randomValue(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (const k of ['key', 'value', 'op', 'prefix', 'lease', 'compare', 'success', 'failure', 'modRevision', 'exists', 'ttlMs', 'watch', 'fromRevision']) {
            if (rng.chance(0.3)) o[k] = randomValue(depth + 1);
          }
          return o;
        }
      }
    };
    const randomRequest = (): Record<string, unknown> => {
      const r = randomValue(1);
      const base = typeof r === 'object' && r !== null && !Array.isArray(r) && !(r instanceof Uint8Array) && !(r instanceof Date) ? (r as Record<string, unknown>) : {};
      return { ...base, id: rng.chance(0.9) ? rng.int(0, 1000) : randomValue(2), op: rng.pick(ops) };
    };
    const mutate = (bytes: Buffer): Buffer => {
      const b = Buffer.from(bytes);
      const n = rng.int(1, 4);
      for (let i = 0; i < n; i++) {
        switch (rng.int(0, 3)) {
          case 0:
            b[rng.int(0, b.length - 1)] = rng.int(0, 255);
            break;
          case 1:
            return b.subarray(0, rng.int(0, b.length - 1)); // truncated
          case 2:
            b.writeUInt32BE(rng.pick([0, 1, 2, 0x7fffffff, 0xffffffff, rng.int(3, 100)]), 0); // lying length
            break;
          default:
            b[rng.int(4, 5)] = rng.int(0, 255); // version or flags
        }
      }
      return b;
    };

    const cases = 240;
    const deadline = Date.now() + 15_000;
    let done = 0;
    const runCase = async (i: number): Promise<void> => {
      const kind = i % 6;
      const peer = kind < 2 ? await RawPeer.open(port) : await RawPeer.authed(port);
      try {
        for (let j = 0; j < rng.int(1, 4); j++) {
          if (kind === 0) peer.write(Buffer.from(Array.from({ length: rng.int(1, 64) }, () => rng.int(0, 255))));
          else if (kind === 1) peer.write(mutate(encodeFrame({ t: 'auth', proto: STORE_PROTOCOL, v: 1, nonce: Buffer.alloc(32), mac: Buffer.alloc(32) })));
          else if (kind === 2) peer.send(randomRequest());
          else if (kind === 3) peer.write(mutate(encodeFrame(randomRequest())));
          else if (kind === 4) peer.send(randomValue(0));
          else {
            // A valid header around a body that is not valid msgpack, or valid msgpack of a non-map.
            const body = rng.chance(0.5) ? Buffer.from([0xc1, 0xff, 0x00]) : encodeValue(randomValue(0));
            const head = Buffer.alloc(6);
            head.writeUInt32BE(body.length + 2, 0);
            head[4] = 1;
            peer.write(Buffer.concat([head, body]));
          }
        }
        await peer.settle(100);
      } finally {
        peer.socket.destroy();
        done++;
      }
    };
    for (let i = 0; i < cases && Date.now() < deadline; i += 12) {
      await Promise.all(Array.from({ length: Math.min(12, cases - i) }, (_, j) => runCase(i + j)));
    }
    expect(done).toBeGreaterThanOrEqual(60);
    expect(server.stats.framesRefused).toBeGreaterThan(0);
    await until(() => server.connectionCount === 0, 5000, 'every fuzz connection closed');
    // Still serving.
    const c = await client(port);
    await c.put('/after-fuzz', 'ok');
    expect((await c.get('/after-fuzz'))?.value).toBe('ok');
    const events: WatchEvent[] = [];
    await c.watch('/after-fuzz', undefined, (e) => events.push(e));
    await c.put('/after-fuzz', 'again');
    await until(() => events.length === 1, 2000, 'watch event after the fuzz');
  });
});
