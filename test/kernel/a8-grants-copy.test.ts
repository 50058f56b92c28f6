/**
 * A8 (reference §4, §2.2 vcopy, §6.2 grants): copyFrom/copyTo/third-party copy keep every byte across
 * chunk boundaries; EDVSPROCSTS when the owner is not blocked in IPC with the requester; EDVSACCES for
 * a wrong grantee or access; EDVSRANGE outside the grant window; a revoked grant is EDVSBADVALUE;
 * grantee ANY; whileWaiting: false.
 */
import { describe, expect, it } from 'vitest';
import { ANY, NONE, SELF } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { track } from './helpers.js';

const T = { timeoutMs: 1000 };
const CHUNK = 1000;
const LEN = 3 * CHUNK + 17;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return (err as DvsError).code;
  }
  return undefined;
}

/** Deterministic pseudo-random bytes, never all equal, so a shifted copy is detected. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function setup(): Kernel {
  const k = new Kernel({ nodeId: 0, clock: systemClock, limits: { maxCopyChunk: CHUNK } });
  k.createDc({ dcid: 0 });
  return k;
}

/**
 * `client` blocks in sendrec with `server`, whose request the server has taken. Returns the pending
 * sendrec in a box (an async function would otherwise wait for it).
 */
async function blockWith(client: Process, server: Process): Promise<{ reply: Promise<unknown> }> {
  const reply = track(client.sendrec(server.endpoint, { type: 1 }, T));
  await expect(server.receive(client.endpoint, T)).resolves.toMatchObject({ source: client.endpoint });
  return { reply };
}

/** Asserts dst[dstAt + i] === src[srcAt + i] for i < len, and that the rest of dst equals `fill`. */
function expectCopied(dst: Uint8Array, dstAt: number, src: Uint8Array, srcAt: number, len: number, fill = 0): void {
  let bad = -1;
  for (let i = 0; i < dst.length; i++) {
    const want = i >= dstAt && i < dstAt + len ? src[srcAt + i - dstAt] : fill;
    if (dst[i] !== want) {
      bad = i;
      break;
    }
  }
  expect(bad, `first wrong byte at ${bad}`).toBe(-1);
}

describe('A8: copies across chunk boundaries', { timeout: 2000 }, () => {
  it('copyFrom: the server reads a client grant window at odd offsets, every byte intact', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const buf = pattern(5000, 7);
    const g = client.grant(buf, { grantee: server.endpoint, access: 'read', offset: 3, length: 4001 });
    const { reply: sr } = await blockWith(client, server);
    const into = new Uint8Array(4000);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g, offset: 7 }, into, { intoOffset: 5, length: LEN })).resolves.toBe(LEN);
    expectCopied(into, 5, buf, 3 + 7, LEN);
    // Default length: the room left in `into`.
    const small = new Uint8Array(1500);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g, offset: 1 }, small)).resolves.toBe(1500);
    expectCopied(small, 0, buf, 4, 1500);
    expect(k.procs(0).find((r) => r.endpoint === server.endpoint)?.counters.lclCopies).toBe(2);
    await server.reply(client.endpoint, { type: 0 });
    await sr;
  });

  it('copyTo: the server writes into a client grant window at odd offsets, nothing outside it', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const buf = new Uint8Array(5000);
    const g = client.grant(buf, { grantee: server.endpoint, access: 'write', offset: 11, length: 4011 });
    const { reply: sr } = await blockWith(client, server);
    const data = pattern(LEN, 99);
    await expect(server.copyTo({ owner: client.endpoint, grant: g, offset: 9 }, data)).resolves.toBe(LEN);
    expectCopied(buf, 11 + 9, data, 0, LEN);
    await server.reply(client.endpoint, { type: 0 });
    await sr;
  });

  it('third-party copy between two grants, neither owned by the requester', async () => {
    const k = setup();
    const requester = k.bind(0, { slot: 1 });
    const a = k.bind(0);
    const b = k.bind(0);
    const src = pattern(6000, 3);
    const dst = new Uint8Array(6000).fill(0xee);
    const ga = a.grant(src, { grantee: requester.endpoint, access: 'read', offset: 13, length: 5000 });
    const gb = b.grant(dst, { grantee: requester.endpoint, access: 'readwrite', offset: 21, length: 5000 });
    const { reply: sa } = await blockWith(a, requester);
    const { reply: sb } = await blockWith(b, requester);
    await expect(requester.copy({ owner: a.endpoint, grant: ga, offset: 1 }, { owner: b.endpoint, grant: gb, offset: 999 }, LEN)).resolves.toBe(LEN);
    expectCopied(dst, 21 + 999, src, 13 + 1, LEN, 0xee);
    await requester.reply(a.endpoint, { type: 0 });
    await requester.reply(b.endpoint, { type: 0 });
    await Promise.all([sa, sb]);
  });

  it('copies between two grants of one owner, and from/to the caller’s own grant via SELF', async () => {
    const k = setup();
    const p = k.bind(0);
    const buf = pattern(4000, 11);
    const out = new Uint8Array(4000);
    const g1 = p.grant(buf, { grantee: p.endpoint, access: 'read' });
    const g2 = p.grant(out, { grantee: p.endpoint, access: 'write' });
    await expect(p.copy({ owner: SELF, grant: g1, offset: 5 }, { owner: p.endpoint, grant: g2, offset: 2 }, LEN)).resolves.toBe(LEN);
    expectCopied(out, 2, buf, 5, LEN);
    const back = new Uint8Array(LEN);
    await expect(p.copyFrom({ owner: SELF, grant: g1 }, back)).resolves.toBe(LEN);
    expectCopied(back, 0, buf, 0, LEN);
  });

  it('a zero-length copy succeeds and moves nothing', async () => {
    const k = setup();
    const p = k.bind(0);
    const buf = new Uint8Array(10);
    const g = p.grant(buf, { grantee: p.endpoint, access: 'write' });
    await expect(p.copyTo({ owner: SELF, grant: g, offset: 10 }, new Uint8Array(0))).resolves.toBe(0);
    expect(buf.every((b) => b === 0)).toBe(true);
  });
});

describe('A8: EDVSPROCSTS unless the owner is blocked with the requester', { timeout: 2000 }, () => {
  it('refuses a copy while the owner runs, receives from someone else, or waits on another server', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const otherServer = k.bind(0, { slot: 2 });
    const client = k.bind(0);
    const buf = pattern(100, 5);
    const g = client.grant(buf, { grantee: server.endpoint, access: 'readwrite' });
    const into = new Uint8Array(10);
    const procsts = { code: 'EDVSPROCSTS', errno: -324 };
    // Running (not in IPC).
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, into)).rejects.toMatchObject(procsts);
    await expect(server.copyTo({ owner: client.endpoint, grant: g }, into)).rejects.toMatchObject(procsts);
    // Blocked receiving from another process.
    const rv = track(client.receive(otherServer.endpoint, T));
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, into)).rejects.toMatchObject(procsts);
    await otherServer.send(client.endpoint, { type: 0 }, T);
    await rv;
    // In sendrec with another server.
    const { reply: sr } = await blockWith(client, otherServer);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, into)).rejects.toMatchObject(procsts);
    // The server it is blocked with is not the grantee.
    await expect(otherServer.copyFrom({ owner: client.endpoint, grant: g }, into)).rejects.toMatchObject({ code: 'EDVSACCES' });
    await otherServer.reply(client.endpoint, { type: 0 });
    await sr;
    expect(into.every((b) => b === 0)).toBe(true);
  });

  it('allows the copy while the owner is blocked sending to the requester (request still queued)', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const buf = pattern(2500, 9);
    const g = client.grant(buf, { grantee: server.endpoint, access: 'read' });
    const sr = track(client.sendrec(server.endpoint, { type: 1 }, T));
    const into = new Uint8Array(2500);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, into)).resolves.toBe(2500);
    expectCopied(into, 0, buf, 0, 2500);
    await expect(server.receiveRequest(T)).resolves.toMatchObject({ source: client.endpoint });
    await server.reply(client.endpoint, { type: 0 });
    await sr;
  });

  it('in a third-party copy, both owners must be blocked with the requester', async () => {
    const k = setup();
    const requester = k.bind(0, { slot: 1 });
    const a = k.bind(0);
    const b = k.bind(0);
    const src = pattern(100, 1);
    const dst = new Uint8Array(100);
    const ga = a.grant(src, { grantee: requester.endpoint, access: 'read' });
    const gb = b.grant(dst, { grantee: requester.endpoint, access: 'write' });
    const { reply: sa } = await blockWith(a, requester);
    await expect(requester.copy({ owner: a.endpoint, grant: ga }, { owner: b.endpoint, grant: gb }, 100)).rejects.toMatchObject({ code: 'EDVSPROCSTS' });
    expect(dst.every((x) => x === 0)).toBe(true);
    const { reply: sb } = await blockWith(b, requester);
    await expect(requester.copy({ owner: a.endpoint, grant: ga }, { owner: b.endpoint, grant: gb }, 100)).resolves.toBe(100);
    expectCopied(dst, 0, src, 0, 100);
    await requester.reply(a.endpoint, { type: 0 });
    await requester.reply(b.endpoint, { type: 0 });
    await Promise.all([sa, sb]);
  });

  it('whileWaiting: false lets the grantee copy at any time', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const buf = pattern(LEN, 4);
    const g = client.grant(buf, { grantee: server.endpoint, access: 'readwrite', whileWaiting: false });
    const into = new Uint8Array(LEN);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, into)).resolves.toBe(LEN);
    expectCopied(into, 0, buf, 0, LEN);
    await expect(server.copyTo({ owner: client.endpoint, grant: g, offset: 1 }, new Uint8Array([1, 2, 3]))).resolves.toBe(3);
    expect([...buf.subarray(0, 5)]).toEqual([buf[0], 1, 2, 3, buf[4]]);
  });
});

describe('A8: grant checks', { timeout: 2000 }, () => {
  it('EDVSACCES for a requester that is not the grantee', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const stranger = k.bind(0, { slot: 2 });
    const client = k.bind(0);
    const g = client.grant(new Uint8Array(10), { grantee: server.endpoint, access: 'readwrite', whileWaiting: false });
    await expect(stranger.copyFrom({ owner: client.endpoint, grant: g }, new Uint8Array(10))).rejects.toMatchObject({ code: 'EDVSACCES', errno: -13 });
    await expect(stranger.copyTo({ owner: client.endpoint, grant: g }, new Uint8Array(10))).rejects.toMatchObject({ code: 'EDVSACCES' });
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, new Uint8Array(10))).resolves.toBe(10);
  });

  it('EDVSACCES for the wrong access: writing a read grant, reading a write grant', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const buf = new Uint8Array(10).fill(5);
    const gr = client.grant(buf, { grantee: server.endpoint, access: 'read', whileWaiting: false });
    const gw = client.grant(buf, { grantee: server.endpoint, access: 'write', whileWaiting: false });
    await expect(server.copyTo({ owner: client.endpoint, grant: gr }, new Uint8Array(10))).rejects.toMatchObject({ code: 'EDVSACCES' });
    await expect(server.copyFrom({ owner: client.endpoint, grant: gw }, new Uint8Array(10))).rejects.toMatchObject({ code: 'EDVSACCES' });
    await expect(server.copy({ owner: client.endpoint, grant: gw }, { owner: client.endpoint, grant: gr }, 5)).rejects.toMatchObject({ code: 'EDVSACCES' });
    expect(buf.every((b) => b === 5)).toBe(true);
  });

  it('grantee ANY lets any requester copy', async () => {
    const k = setup();
    const owner = k.bind(0, { slot: 1 });
    const x = k.bind(0);
    const y = k.bind(0);
    const buf = pattern(64, 2);
    const g = owner.grant(buf, { grantee: ANY, access: 'read', whileWaiting: false });
    for (const p of [x, y]) {
      const into = new Uint8Array(64);
      await expect(p.copyFrom({ owner: owner.endpoint, grant: g }, into)).resolves.toBe(64);
      expectCopied(into, 0, buf, 0, 64);
    }
  });

  it('EDVSRANGE for bytes outside the grant window; nothing moves', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const buf = pattern(5000, 8);
    const g = client.grant(buf, { grantee: server.endpoint, access: 'readwrite', offset: 100, length: LEN, whileWaiting: false });
    const before = buf.slice();
    const range = { code: 'EDVSRANGE', errno: -34 };
    await expect(server.copyFrom({ owner: client.endpoint, grant: g, offset: 1 }, new Uint8Array(LEN))).rejects.toMatchObject(range);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g, offset: LEN + 1 }, new Uint8Array(0))).rejects.toMatchObject(range);
    await expect(server.copyTo({ owner: client.endpoint, grant: g, offset: LEN - 2 }, new Uint8Array(3))).rejects.toMatchObject(range);
    await expect(server.copyTo({ owner: client.endpoint, grant: g, offset: -1 }, new Uint8Array(3))).rejects.toMatchObject(range);
    // A third-party copy whose destination overflows fails before any chunk is written.
    const g2 = client.grant(buf, { grantee: server.endpoint, access: 'write', offset: 0, length: 2500, whileWaiting: false });
    await expect(server.copy({ owner: client.endpoint, grant: g }, { owner: client.endpoint, grant: g2 }, LEN)).rejects.toMatchObject(range);
    expect(buf).toEqual(before);
    // The exact window is fine.
    await expect(server.copyFrom({ owner: client.endpoint, grant: g }, new Uint8Array(LEN))).resolves.toBe(LEN);
  });

  it('revoke: later copies get EDVSBADVALUE; revoking twice too; other grants keep working', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const g1 = client.grant(new Uint8Array(10), { grantee: server.endpoint, access: 'read', whileWaiting: false });
    const g2 = client.grant(new Uint8Array(10), { grantee: server.endpoint, access: 'read', whileWaiting: false });
    expect(g2).not.toBe(g1);
    expect(k.procs(0).find((r) => r.endpoint === client.endpoint)?.grants).toBe(2);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g1 }, new Uint8Array(10))).resolves.toBe(10);
    client.revoke(g1);
    await expect(server.copyFrom({ owner: client.endpoint, grant: g1 }, new Uint8Array(10))).rejects.toMatchObject({ code: 'EDVSBADVALUE', errno: -339 });
    expect(codeOf(() => client.revoke(g1))).toBe('EDVSBADVALUE');
    expect(codeOf(() => client.revoke(12345))).toBe('EDVSBADVALUE');
    await expect(server.copyFrom({ owner: client.endpoint, grant: g2 }, new Uint8Array(10))).resolves.toBe(10);
    await expect(server.copyFrom({ owner: client.endpoint, grant: 999 }, new Uint8Array(10))).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
  });

  it('refuses bad grant requests', async () => {
    const k = setup();
    const p = k.bind(0);
    const buf = new Uint8Array(10);
    expect(codeOf(() => p.grant([1, 2, 3] as unknown as Uint8Array, { grantee: ANY, access: 'read' }))).toBe('EDVSBADVALUE');
    expect(codeOf(() => p.grant(buf, { grantee: ANY, access: 'exec' as 'read' }))).toBe('EDVSBADVALUE');
    expect(codeOf(() => p.grant(buf, { grantee: ANY, access: 'read', offset: 11 }))).toBe('EDVSRANGE');
    expect(codeOf(() => p.grant(buf, { grantee: ANY, access: 'read', offset: 4, length: 7 }))).toBe('EDVSRANGE');
    expect(codeOf(() => p.grant(buf, { grantee: NONE, access: 'read' }))).toBe('EDVSENDPOINT');
    expect(codeOf(() => p.grant(buf, { grantee: 220, access: 'read' }))).toBe('EDVSRANGE');
    expect(k.procs(0)[0]?.grants).toBe(0);
    await expect(p.copyFrom({ owner: SELF, grant: 1 }, 'abc' as unknown as Uint8Array)).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(p.copyTo({ owner: SELF, grant: 1 }, null as unknown as Uint8Array)).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(p.copy({ owner: SELF, grant: 1 }, { owner: SELF, grant: 1 }, -1)).rejects.toMatchObject({ code: 'EDVSRANGE' });
    await expect(p.copyFrom({ owner: 77, grant: 1 }, buf)).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    await expect(p.copyFrom({ owner: ANY, grant: 1 }, buf)).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
  });
});
