/**
 * Bad input: every malformed call fails with its typed error, changes nothing, and leaves the kernel
 * working (a normal send/receive succeeds right after, and the bad call was never queued).
 */
import { describe, expect, it } from 'vitest';
import { ANY, HARDWARE, NONE, SELF } from '../../src/ipc/endpoint.js';
import type { OutgoingMessage } from '../../src/ipc/message.js';
import type { Payload } from '../../src/ipc/payload.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { track } from './helpers.js';

const T = { timeoutMs: 1000 };
const G = 36 + SELF + 1;
const MAX_PAYLOAD = 1024;

interface World {
  k: Kernel;
  a: Process;
  b: Process;
  server: Process;
}

function setup(): World {
  const k = new Kernel({ nodeId: 0, clock: systemClock, limits: { maxPayloadBytes: MAX_PAYLOAD } });
  k.createDc({ dcid: 0 });
  return { k, server: k.bind(0, { slot: 1 }), a: k.bind(0), b: k.bind(0) };
}

/** The kernel still works: nothing stray is queued for b or the server, and a normal exchange succeeds. */
async function stillWorks({ k, a, b, server }: World): Promise<void> {
  await expect(b.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  await expect(server.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  const r = track(b.receive(ANY, T));
  await a.send(b.endpoint, { type: 1, payload: 'ok' }, T);
  await expect(r).resolves.toEqual({ source: a.endpoint, type: 1, payload: 'ok' });
  const sr = track(a.sendrec(server.endpoint, { type: 2 }, T));
  await expect(server.receiveRequest(T)).resolves.toMatchObject({ source: a.endpoint, type: 2 });
  await server.reply(a.endpoint, { type: 3 });
  await expect(sr).resolves.toMatchObject({ type: 3 });
  expect(k.procs(0).every((row) => row.rtsFlags === 0 && row.queued === 0)).toBe(true);
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

function cyclic(): Payload {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o as Payload;
}

describe('bad endpoints', { timeout: 2000 }, () => {
  it.each([
    ['a slot above nrProcs', 220, 'EDVSRANGE'],
    ['a slot below the lowest task', -37, 'EDVSRANGE'],
    ['a slot above nrProcs at a later generation', G + 220, 'EDVSRANGE'],
    ['ANY', ANY, 'EDVSENDPOINT'],
    ['NONE', NONE, 'EDVSENDPOINT'],
    ['SELF', SELF, 'EDVSBADDEST'],
    ['HARDWARE', HARDWARE, 'EDVSBADDEST'],
    ['a fraction', 30.5, 'EDVSENDPOINT'],
    ['NaN', Number.NaN, 'EDVSENDPOINT'],
    ['a string', '30' as unknown as number, 'EDVSENDPOINT'],
    ['an unbound slot', 100, 'EDVSNOTBIND'],
    ['a future generation of a bound slot', 2 * G + 1, 'EDVSENDPOINT'],
  ])('send/sendrec to %s fails with the typed error', async (_name, dst, code) => {
    const w = setup();
    await expect(w.a.send(dst, { type: 1 }, T)).rejects.toMatchObject({ code });
    await expect(w.a.sendrec(dst, { type: 1 }, T)).rejects.toMatchObject({ code });
    await stillWorks(w);
  });

  it('sending to oneself is EDVSBADDEST (errno -55)', async () => {
    const w = setup();
    await expect(w.a.send(w.a.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSBADDEST', errno: -55 });
    await expect(w.a.sendrec(w.a.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSBADDEST' });
    await stillWorks(w);
  });

  it('a stale endpoint (old generation of a rebound slot) is EDVSENDPOINT', async () => {
    const w = setup();
    const old = w.k.bind(0, { slot: 60 });
    await old.unbind();
    const fresh = w.k.bind(0, { slot: 60 });
    await expect(w.a.send(old.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    await expect(w.a.receive(old.endpoint, T)).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    await expect(fresh.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await stillWorks(w);
  });

  it('receive from a reserved, out-of-range or unbound source fails with the typed error', async () => {
    const w = setup();
    await expect(w.b.receive(NONE, T)).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    await expect(w.b.receive(SELF, T)).rejects.toMatchObject({ code: 'EDVSBADSRCDST' });
    await expect(w.b.receive(500, T)).rejects.toMatchObject({ code: 'EDVSRANGE' });
    await expect(w.b.receive(100, T)).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    await stillWorks(w);
  });

  it('an unknown DC is EDVSBADDCID for every kernel call', async () => {
    const w = setup();
    expect(() => w.k.bind(3)).toThrow(expect.objectContaining({ code: 'EDVSBADDCID' }) as Error);
    expect(() => w.k.unbind(3, w.a.endpoint)).toThrow(expect.objectContaining({ code: 'EDVSBADDCID' }) as Error);
    expect(() => w.k.procs(-1)).toThrow(expect.objectContaining({ code: 'EDVSBADDCID' }) as Error);
    await expect(w.k.waitForBind(3, 5, T)).rejects.toMatchObject({ code: 'EDVSBADDCID', errno: -302 });
    await stillWorks(w);
  });
});

describe('bad messages', { timeout: 2000 }, () => {
  it.each([
    ['a fraction', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a string', '1'],
    ['undefined', undefined],
    ['above 32 bits', 2 ** 31],
    ['below 32 bits', -(2 ** 31) - 1],
  ])('a message type that is %s is EDVSBADVALUE', async (_name, type) => {
    const w = setup();
    const msg = { type } as unknown as OutgoingMessage;
    await expect(w.a.send(w.b.endpoint, msg, T)).rejects.toMatchObject({ code: 'EDVSBADVALUE', errno: -339 });
    await expect(w.a.sendrec(w.server.endpoint, msg, T)).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(w.server.reply(w.a.endpoint, msg)).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await stillWorks(w);
  });

  it('the 32-bit extremes are valid message types', async () => {
    const w = setup();
    for (const type of [-(2 ** 31), 2 ** 31 - 1, 0, -1]) {
      const r = track(w.b.receive(ANY, T));
      await w.a.send(w.b.endpoint, { type }, T);
      await expect(r).resolves.toMatchObject({ type });
    }
    await stillWorks(w);
  });

  it.each([
    ['a long string', 'x'.repeat(MAX_PAYLOAD + 1)],
    ['a big byte array', new Uint8Array(MAX_PAYLOAD + 1)],
    ['a big array', Array.from({ length: 200 }, (_, i) => i * 1000.5)],
    ['a big object', Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`key${i}`, 'v'.repeat(10)]))],
  ])('a payload over maxPayloadBytes (%s) is EDVSMSGSIZE', async (_name, payload) => {
    const w = setup();
    await expect(w.a.send(w.b.endpoint, { type: 1, payload: payload as Payload }, T)).rejects.toMatchObject({ code: 'EDVSMSGSIZE', errno: -73 });
    await expect(w.a.sendrec(w.server.endpoint, { type: 1, payload: payload as Payload }, T)).rejects.toMatchObject({ code: 'EDVSMSGSIZE' });
    await expect(w.server.reply(w.a.endpoint, { type: 1, payload: payload as Payload })).rejects.toMatchObject({ code: 'EDVSMSGSIZE' });
    await stillWorks(w);
  });

  it('a payload just under the limit is delivered intact', async () => {
    const w = setup();
    const payload = new Uint8Array(MAX_PAYLOAD - 8).map((_, i) => i & 0xff);
    const r = track(w.b.receive(ANY, T));
    await w.a.send(w.b.endpoint, { type: 1, payload }, T);
    await expect(r).resolves.toMatchObject({ payload });
    await stillWorks(w);
  });

  it.each([
    ['a function', () => 1],
    ['a function inside an object', { f: () => 1 }],
    ['a symbol', Symbol('s')],
    ['a symbol inside an array', [1, Symbol('s')]],
    ['a class instance', new Point(1, 2)],
    ['a Map', new Map([[1, 2]])],
    ['a Set', new Set([1])],
    ['a cyclic object', cyclic()],
    ['a bigint above 64 bits', 2n ** 64n],
    ['a bigint below -2^63', -(2n ** 63n) - 1n],
    ['an invalid Date', new Date(Number.NaN)],
    ['a __proto__ key', JSON.parse('{"__proto__": {"x": 1}}') as unknown],
  ])('a non-encodable payload (%s) is EDVSBADVALUE', async (_name, payload) => {
    const w = setup();
    await expect(w.a.send(w.b.endpoint, { type: 1, payload: payload as Payload }, T)).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(w.a.sendrec(w.server.endpoint, { type: 1, payload: payload as Payload }, T)).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await stillWorks(w);
  });

  it('the encodable edge values are accepted', async () => {
    const w = setup();
    const payloads: Payload[] = [2n ** 64n - 1n, -(2n ** 63n), null, undefined, true, new Date(0), { nested: [1, { deep: 'x' }] }, Object.create(null) as Payload];
    for (const payload of payloads) {
      const r = track(w.b.receive(ANY, T));
      await w.a.send(w.b.endpoint, { type: 1, payload }, T);
      await expect(r).resolves.toMatchObject({ source: w.a.endpoint });
    }
    await stillWorks(w);
  });
});

describe('bad options', { timeout: 2000 }, () => {
  it.each([
    ['negative', -5],
    ['NaN', Number.NaN],
    ['a string', '10' as unknown as number],
  ])('a timeoutMs that is %s is EDVSBADVALUE', async (_name, timeoutMs) => {
    const w = setup();
    await expect(w.a.send(w.b.endpoint, { type: 1 }, { timeoutMs })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(w.b.receive(ANY, { timeoutMs })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(w.a.sendrec(w.server.endpoint, { type: 1 }, { timeoutMs })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(w.k.waitForBind(0, 100, { timeoutMs })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await stillWorks(w);
  });

  it('timeoutMs -1 waits without a timer', async () => {
    const w = setup();
    const r = track(w.b.receive(ANY, { timeoutMs: -1 }));
    await w.a.send(w.b.endpoint, { type: 4 }, { timeoutMs: -1 });
    await expect(r).resolves.toMatchObject({ type: 4 });
    await stillWorks(w);
  });
});
