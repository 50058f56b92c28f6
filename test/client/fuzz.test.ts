/**
 * Hostile input on the process socket: random bytes, truncated and oversized frames, valid frames
 * with mutated fields, bad grant answers. The daemon answers with typed errors or closes the
 * connection, and keeps serving well-behaved clients throughout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ERRNO, type DvsErrorCode, type Payload } from '../../src/client/index.js';
import { PROC_OPS, PROC_PROTOCOL_VERSION } from '../../src/transport/proc-protocol.js';
import { Prng } from '../../src/sim/prng.js';
import { encodeFrame } from '../../src/transport/framing.js';
import { DC, SERVER_SLOT, sleep, startHarness, track, type Harness, type RawConn } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A response is well formed: ok with a result, or a typed error whose errno matches its code. */
function expectTyped(f: Record<string, unknown>): void {
  if (f.op === 'bye') {
    const e = f.error as { code: DvsErrorCode; errno: number };
    expect(ERRNO[e.code]).toBe(e.errno);
    return;
  }
  expect(typeof f.id).toBe('number');
  if (f.ok === true) {
    expect('result' in f).toBe(true);
    return;
  }
  expect(f.ok).toBe(false);
  const e = f.error as { code: DvsErrorCode; errno: number; message: string };
  expect(Object.hasOwn(ERRNO, e.code)).toBe(true);
  expect(ERRNO[e.code]).toBe(e.errno);
  expect(typeof e.message).toBe('string');
}

/** A background well-behaved client that must keep working while the fuzz runs. */
async function healthy(h: Harness): Promise<{ stop(): Promise<number> }> {
  const c = await h.connect({ name: 'healthy' });
  const srv = h.kernel.bind(DC, { slot: SERVER_SLOT + 5 });
  const p = await c.bind(DC);
  let running = true;
  let n = 0;
  const loop = (async () => {
    while (running) {
      const served = srv.receiveRequest().then((m) => srv.reply(m.source, { type: 0, payload: m.payload }));
      const rep = await p.sendrec(srv.endpoint, { type: 1, payload: n }, { timeoutMs: 5000 });
      await served;
      expect(rep.payload).toBe(n);
      n++;
      await sleep(2);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return n;
    },
  };
}

const SPICE: unknown[] = [
  null,
  true,
  -1,
  0,
  1,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  0x7ace,
  0x8ace,
  'x',
  'ANY',
  '',
  'y'.repeat(5000),
  [],
  [1, 2],
  {},
  { owner: 1 },
  new Uint8Array(3),
  123n,
  -(2n ** 63n),
  2n ** 64n - 1n,
  new Date(0),
];

describe('process protocol: fuzz', { timeout: 60_000 }, () => {
  it('random bytes, truncated and malformed frames: typed errors or a closed connection, never a crash or a hang', async () => {
    h = await startHarness({ server: { helloTimeoutMs: 300 } });
    const bg = await healthy(h);
    const rng = new Prng(0xd75);
    const conns: RawConn[] = [];
    // Random bytes before hello.
    for (let i = 0; i < 30; i++) {
      const r = await h.raw();
      const n = rng.int(1, 3000);
      const bytes = new Uint8Array(n);
      for (let j = 0; j < n; j++) bytes[j] = rng.int(0, 255);
      if (rng.chance(0.5)) bytes.set([0, 0, 0, rng.int(2, 40), 1, 0], 0); // a plausible header
      r.sendBytes(bytes);
      conns.push(r);
    }
    // Truncated hello frames, then the peer closes its side.
    const hello = encodeFrame({ id: 1, op: 'hello', version: PROC_PROTOCOL_VERSION, token: h.token });
    for (let i = 0; i < 10; i++) {
      const r = await h.raw();
      r.sendBytes(hello.subarray(0, rng.int(1, hello.byteLength - 1)));
      if (rng.chance(0.5)) r.socket.end();
      conns.push(r);
    }
    // Hello split into single bytes still works.
    const slow = await h.raw();
    for (const b of hello) slow.sendBytes(Uint8Array.of(b));
    expect(await slow.next()).toMatchObject({ id: 1, ok: true });
    for (const r of conns) {
      expect(await r.waitClosed(3000)).toBe(true);
      for (const f of r.drain()) expectTyped(f);
    }

    // Protocol violations after hello: each closes its connection with a bye whose code docs/protocol.md §10 gives.
    const violations: [string, DvsErrorCode, (r: RawConn) => void][] = [
      ['an LZ4 body declaring a size above the limit', 'EDVSPACKSIZE', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 8, 1, 1, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00))],
      ['an LZ4 body whose size differs from its prefix', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 8, 1, 1, 2, 0, 0, 0, 0x10, 0xc0))],
      ['not a map', 'EDVSBADREQUEST', (r) => r.send(42)],
      ['an array', 'EDVSBADREQUEST', (r) => r.send([1, 2, 3])],
      ['no id', 'EDVSBADREQUEST', (r) => r.send({ op: 'ping' })],
      ['negative id', 'EDVSBADREQUEST', (r) => r.send({ id: -5, op: 'ping' })],
      ['string id', 'EDVSBADREQUEST', (r) => r.send({ id: 'one', op: 'ping' })],
      ['bad version byte', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 3, 9, 0, 0xc0))],
      ['unknown flags', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 3, 1, 0x80, 0xc0))],
      ['bogus LZ4 body', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 8, 1, 1, 4, 0, 0, 0, 0xff, 0xff))],
      ['length below the header', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 1, 1))],
      ['oversized frame', 'EDVSPACKSIZE', (r) => r.sendBytes(Uint8Array.of(0x7f, 0xff, 0xff, 0xff, 1, 0))],
      ['malformed msgpack', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 4, 1, 0, 0x92, 0x01))],
      ['trailing bytes in a body', 'EDVSBADREQUEST', (r) => r.sendBytes(Uint8Array.of(0, 0, 0, 4, 1, 0, 0x01, 0x02))],
      ['sid that is not an integer', 'EDVSBADREQUEST', (r) => r.send({ sid: 'x', ok: true })],
      [
        'nesting deeper than the decoder stack',
        'EDVSBADREQUEST',
        (r) => {
          const body = Buffer.alloc(200_001, 0x91);
          body[200_000] = 0xc0;
          const head = Buffer.alloc(6);
          head.writeUInt32BE(body.byteLength + 2, 0);
          head[4] = 1;
          r.sendBytes(Buffer.concat([head, body]));
        },
      ],
      [
        'duplicate id in flight',
        'EDVSBADREQUEST',
        (r) => {
          r.send({ id: 5, op: 'waitForBind', dcid: DC, target: 199 });
          r.send({ id: 5, op: 'ping' });
        },
      ],
    ];
    for (const [name, code, act] of violations) {
      const r = await h.rawHello();
      act(r);
      const closed = await r.waitClosed(3000);
      expect(closed, name).toBe(true);
      const frames = r.drain();
      for (const f of frames) expectTyped(f);
      expect(frames.find((f) => f.op === 'bye')?.error, name).toMatchObject({ code, errno: ERRNO[code] });
    }
    expect(await bg.stop()).toBeGreaterThan(0);
    expect(h.server.stats.protocolErrors).toBeGreaterThanOrEqual(violations.length);
  });

  it('valid frames with mutated fields get typed error responses and the connection keeps working', async () => {
    h = await startHarness({ limits: { maxCopyChunk: 1000, maxPayloadBytes: 8192 }, server: { maxFrameBytes: 65_536 } });
    const bg = await healthy(h);
    const rng = new Prng(0x5eed);
    const target = h.kernel.bind(DC, { name: 'target' });
    let r = await h.rawHello();
    const bindReq = async (conn: RawConn, id: number): Promise<number> => {
      conn.send({ id, op: 'bind', dcid: DC });
      return ((await conn.response(id)).result as { endpoint: number }).endpoint;
    };
    let ep = await bindReq(r, 1);
    const templates = (): Record<string, Record<string, unknown>> => ({
      bind: { dcid: DC },
      unbind: { dcid: DC, endpoint: ep },
      send: { dcid: DC, endpoint: ep, dst: target.endpoint, type: 1, payload: { a: 1 }, timeoutMs: 0 },
      receive: { dcid: DC, endpoint: ep, src: 0x7ace, timeoutMs: 0 },
      sendrec: { dcid: DC, endpoint: ep, dst: target.endpoint, type: 1, timeoutMs: 0 },
      receiveRequest: { dcid: DC, endpoint: ep, timeoutMs: 0 },
      reply: { dcid: DC, endpoint: ep, dst: target.endpoint, type: 1 },
      notify: { dcid: DC, endpoint: ep, dst: target.endpoint, arg: 1 },
      grant: { dcid: DC, endpoint: ep, grant: rng.int(1, 1000), length: 10, access: 'read', grantee: 0x7ace },
      revoke: { dcid: DC, endpoint: ep, grant: 1 },
      copyFrom: { dcid: DC, endpoint: ep, owner: target.endpoint, grant: 1, offset: 0, length: 10, timeoutMs: 0 },
      copyTo: { dcid: DC, endpoint: ep, owner: target.endpoint, grant: 1, offset: 0, data: new Uint8Array(10), timeoutMs: 0 },
      copy: { dcid: DC, endpoint: ep, src: { owner: target.endpoint, grant: 1 }, dst: { owner: ep, grant: 1 }, length: 10, timeoutMs: 0 },
      waitForBind: { dcid: DC, target: target.endpoint, timeoutMs: 0 },
      waitForUnbind: { dcid: DC, target: 200, timeoutMs: 0 },
      wakeup: { dcid: DC, target: ep },
      procs: { dcid: DC },
      info: {},
      cancel: { target: 12345 },
      ping: {},
    });
    let nextId = 10;
    let typed = 0;
    let reconnects = 0;
    for (let round = 0; round < 400; round++) {
      const op = rng.pick(PROC_OPS);
      const fields = { ...templates()[op]! };
      const keys = Object.keys(fields);
      const mutations = rng.int(1, 3);
      for (let m = 0; m < mutations; m++) {
        const choice = rng.int(0, 9);
        if (choice < 6 && keys.length > 0) fields[rng.pick(keys)] = rng.pick(SPICE);
        else if (choice < 8 && keys.length > 0) delete fields[rng.pick(keys)];
        else fields[rng.pick(['timeoutMs', 'payload', 'extra', 'source'])] = rng.pick(SPICE);
      }
      // Keep blocking calls bounded whatever the mutation did to their timeout.
      if (op === 'send' || op === 'receive' || op === 'sendrec' || op === 'receiveRequest' || op.startsWith('copy') || op.startsWith('waitFor')) {
        const t = fields.timeoutMs;
        if (typeof t !== 'number' || !(t >= 0 && t <= 50)) fields.timeoutMs = rng.chance(0.5) ? 0 : 20;
      }
      const id = nextId++;
      const mutatedOp = rng.chance(0.05) ? rng.pick(SPICE) : op;
      r.send({ ...fields, id, op: mutatedOp });
      const res = await r.response(id, 3000);
      expectTyped(res);
      if (res.ok === false) typed++;
      if (op === 'unbind' && res.ok === true) ep = await bindReq(r, nextId++);
      if (op === 'bind' && res.ok === true && rng.chance(0.5)) {
        r.send({ id: nextId, op: 'unbind', dcid: DC, endpoint: (res.result as { endpoint: number }).endpoint });
        await r.response(nextId++);
      }
      if (r.closed) {
        reconnects++;
        r = await h.rawHello();
        ep = await bindReq(r, nextId++);
      }
    }
    expect(typed).toBeGreaterThan(100);
    r.send({ id: nextId, op: 'ping' });
    expect(await r.response(nextId)).toMatchObject({ ok: true });
    expect(reconnects).toBeLessThan(10);
    expect(await bg.stop()).toBeGreaterThan(0);
  });

  it('payloads with msgpack extensions the daemon must not trust are refused with EDVSBADVALUE', async () => {
    h = await startHarness();
    const r = await h.rawHello();
    r.send({ id: 1, op: 'bind', dcid: DC });
    const ep = ((await r.response(1)).result as { endpoint: number }).endpoint;
    const target = h.kernel.bind(DC);
    const head = encodeFrame({ id: 2, op: 'send', dcid: DC, endpoint: ep, dst: target.endpoint, type: 1, timeoutMs: 0, payload: null });
    // Re-encode by hand: the same map with `payload` replaced by ext values msgpackr decodes to class instances.
    const exts = [
      Uint8Array.of(0xd4, 0x73, 0x00, 0x92, 0x01, 0x02), // Set
      Uint8Array.of(0xd4, 0x78, 0x00, 0x92, 0xa1, 0x61, 0xa0), // RegExp
      Uint8Array.of(0xd4, 0x65, 0x00, 0x92, 0xa1, 0x45, 0xa1, 0x6d), // Error
      Uint8Array.of(0xc7, 0x03, 0x74, 0x00, 0x00, 0x00), // Int8Array
    ];
    for (const ext of exts) {
      const body = Buffer.concat([head.subarray(6, head.byteLength - 1), ext]);
      const frame = Buffer.alloc(6 + body.byteLength);
      frame.writeUInt32BE(body.byteLength + 2, 0);
      frame[4] = 1;
      frame[5] = 0;
      body.copy(frame, 6);
      r.sendBytes(frame);
      expect(await r.response(2)).toMatchObject({ id: 2, ok: false, error: { code: 'EDVSBADVALUE', errno: -339 } });
    }
    // An extension msgpackr cannot decode breaks the protocol: the connection closes.
    const bad = await h.rawHello();
    const badBody = Buffer.concat([head.subarray(6, head.byteLength - 1), Uint8Array.of(0xd4, 0x01, 0x00)]);
    const badFrame = Buffer.alloc(6 + badBody.byteLength);
    badFrame.writeUInt32BE(badBody.byteLength + 2, 0);
    badFrame[4] = 1;
    badBody.copy(badFrame, 6);
    bad.sendBytes(badFrame);
    expect(await bad.waitClosed()).toBe(true);
    // The __proto__ key never reaches a receiver as a prototype.
    const rec = track(target.receive(ep, { timeoutMs: 1000 }));
    const proto = Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01]);
    const head2 = encodeFrame({ id: 3, op: 'send', dcid: DC, endpoint: ep, dst: target.endpoint, type: 1, timeoutMs: 500, payload: null });
    const body2 = Buffer.concat([head2.subarray(6, head2.byteLength - 1), proto]);
    const frame2 = Buffer.alloc(6 + body2.byteLength);
    frame2.writeUInt32BE(body2.byteLength + 2, 0);
    frame2[4] = 1;
    body2.copy(frame2, 6);
    r.sendBytes(frame2);
    expect(await r.response(3)).toMatchObject({ ok: true });
    const m = await rec;
    expect(Object.getPrototypeOf(m.payload)).toBe(Object.prototype);
    expect(m.payload).toEqual({ __proto_: { x: 1 } });
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    // The reference client refuses to send an own __proto__ key, as the kernel does in process.
    const c = await h.connect();
    const sender = await c.bind(DC);
    const own = JSON.parse('{"__proto__": {"x": 1}}') as Payload;
    await expect(sender.send(target.endpoint, { type: 1, payload: own }, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSBADVALUE', errno: -339 });
    await expect(h.kernel.bind(DC).send(target.endpoint, { type: 1, payload: own }, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await c.ping();
  });

  it('bad answers to grant requests become typed errors for the copier', async () => {
    h = await startHarness({ limits: { maxCopyChunk: 1000 } });
    const r = await h.rawHello();
    r.send({ id: 1, op: 'bind', dcid: DC });
    const ep = ((await r.response(1)).result as { endpoint: number }).endpoint;
    r.send({ id: 2, op: 'grant', dcid: DC, endpoint: ep, grant: 1, length: 100, access: 'readwrite', grantee: 0x7ace, whileWaiting: false });
    expect(await r.response(2)).toMatchObject({ ok: true, result: 1 });
    const copier = h.kernel.bind(DC);
    const answers: [unknown, DvsErrorCode][] = [
      [{ ok: true, data: new Uint8Array(3) }, 'EDVSPACKSIZE'],
      [{ ok: true, data: 'text' }, 'EDVSPACKSIZE'],
      [{ ok: true }, 'EDVSPACKSIZE'],
      [{ ok: 'yes' }, 'EDVSBADREQUEST'],
      [{ ok: false, error: { code: 'EDVSFAULT', errno: -14, message: 'boom' } }, 'EDVSFAULT'],
      [{ ok: false, error: { code: 'NOPE', errno: 12345 } }, 'EDVSIO'],
      [{ ok: false, error: 'bad' }, 'EDVSIO'],
      [{ ok: false, error: { errno: -13 } }, 'EDVSACCES'],
    ];
    for (const [answer, code] of answers) {
      const copy = track(copier.copyFrom({ owner: ep, grant: 1 }, new Uint8Array(10), { timeoutMs: 2000 }));
      const req = await r.next();
      expect(req).toMatchObject({ op: 'grant-read', dcid: DC, endpoint: ep, grant: 1, offset: 0, length: 10 });
      r.send({ sid: req.sid, ...(answer as object) });
      await expect(copy).rejects.toMatchObject({ code });
    }
    // Unknown sids are ignored; a correct answer works.
    r.send({ sid: 99_999, ok: true, data: new Uint8Array(1) });
    const copy = copier.copyTo({ owner: ep, grant: 1, offset: 5 }, Uint8Array.of(1, 2, 3));
    const req = await r.next();
    expect(req).toMatchObject({ op: 'grant-write', offset: 5 });
    expect(Array.from(req.data as Uint8Array)).toEqual([1, 2, 3]);
    r.send({ sid: req.sid, ok: true });
    expect(await copy).toBe(3);
  });
});
