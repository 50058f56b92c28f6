/** Per-connection limits of the daemon, and LZ4 frames in both directions. */
import { afterEach, describe, expect, it } from 'vitest';
import { ANY, type DvsError } from '../../src/client/index.js';
import { encodeFrame, FLAG_LZ4 } from '../../src/transport/framing.js';
import { DC, sameBytes, startHarness, track, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('process protocol: limits and compression', { timeout: 10_000 }, () => {
  it('requests in flight above maxInFlight are refused with EDVSAGAIN; endpoints and grants are bounded', async () => {
    h = await startHarness({ server: { maxInFlight: 4, maxEndpoints: 2, maxGrants: 2 } });
    const errors: DvsError[] = [];
    const c = await h.connect({ onAsyncError: (e) => errors.push(e) });
    const waits = [0, 1, 2, 3].map((i) => track(c.waitForBind(DC, 100 + i)));
    await expect(c.waitForBind(DC, 110)).rejects.toMatchObject({ code: 'EDVSAGAIN', errno: -11 });
    // Another connection binds the slots waited for: the waits complete and free their places.
    const others = [await h.connect(), await h.connect()];
    for (let i = 0; i < 4; i++) await others[i >> 1]!.bind(DC, { slot: 100 + i });
    await expect(Promise.all(waits)).resolves.toEqual([100, 101, 102, 103]);
    await c.bind(DC);
    await c.bind(DC);
    await expect(c.bind(DC)).rejects.toMatchObject({ code: 'EDVSNOSPC' });
    const p = c.processes[0]!;
    p.grant(new Uint8Array(1), { grantee: ANY, access: 'read' });
    p.grant(new Uint8Array(1), { grantee: ANY, access: 'read' });
    p.grant(new Uint8Array(1), { grantee: ANY, access: 'read' });
    await c.ping();
    expect(errors.map((e) => e.code)).toEqual(['EDVSNOSPC']);
    await p.unbind();
    // Unbinding freed an endpoint and its grants.
    const q = await c.bind(DC);
    q.grant(new Uint8Array(1), { grantee: ANY, access: 'read' });
    await c.ping();
    expect(errors).toHaveLength(1);
  });

  it('at the in-flight limit, cancel, ping, info and unbind are still served; other requests get EDVSAGAIN', async () => {
    h = await startHarness({ server: { maxInFlight: 2 } });
    const r = await h.rawHello();
    r.send({ id: 1, op: 'bind', dcid: DC });
    const ep = ((await r.response(1)).result as { endpoint: number }).endpoint;
    r.send({ id: 2, op: 'receive', dcid: DC, endpoint: ep, src: ANY });
    r.send({ id: 3, op: 'waitForBind', dcid: DC, target: 150 });
    r.send({ id: 4, op: 'waitForBind', dcid: DC, target: 151 });
    expect(await r.response(4)).toMatchObject({ ok: false, error: { code: 'EDVSAGAIN', errno: -11 } });
    r.send({ id: 5, op: 'ping' });
    expect(await r.response(5)).toMatchObject({ ok: true, result: null });
    r.send({ id: 6, op: 'info' });
    expect(await r.response(6)).toMatchObject({ ok: true, result: { nodeId: 0, endpoints: [{ dcid: DC, endpoint: ep }] } });
    r.send({ id: 7, op: 'cancel', target: 3 });
    expect(await r.response(7)).toMatchObject({ ok: true, result: true });
    expect(await r.response(3)).toMatchObject({ ok: false, error: { code: 'EDVSINTR', errno: -4 } });
    // At the limit again; unbind still goes through and ends the endpoint's receive.
    r.send({ id: 8, op: 'waitForBind', dcid: DC, target: 152 });
    r.send({ id: 9, op: 'unbind', dcid: DC, endpoint: ep });
    expect(await r.response(9)).toMatchObject({ ok: true });
    expect(await r.response(2)).toMatchObject({ ok: false, error: { code: 'EDVSSHUTDOWN' } });
    r.send({ id: 10, op: 'cancel', target: 8 });
    expect(await r.response(10)).toMatchObject({ ok: true, result: true });
    expect(await r.response(8)).toMatchObject({ ok: false, error: { code: 'EDVSINTR' } });

    // The client library at the limit: aborting a call is answered by the daemon, not by the local guard.
    const c = await h.connect({ localGraceMs: 60_000 });
    const ac = new AbortController();
    const waits = [track(c.waitForBind(DC, 160, { signal: ac.signal })), track(c.waitForBind(DC, 161))];
    await expect(c.waitForBind(DC, 162)).rejects.toMatchObject({ code: 'EDVSAGAIN' });
    ac.abort();
    await expect(waits[0]).rejects.toMatchObject({ code: 'EDVSINTR' });
    await c.bind(DC, { slot: 161 });
    await expect(waits[1]).resolves.toBe(161);
  });

  it('large frames travel LZ4-compressed when both sides agree, and plain otherwise', async () => {
    h = await startHarness({ limits: { maxPayloadBytes: 400_000 } });
    const zipped = await h.connect({ compress: true });
    const plain = await h.connect(); // compress defaults to false
    const a = await zipped.bind(DC);
    const b = await plain.bind(DC);
    const big = { text: 'dvs '.repeat(40_000), bytes: new Uint8Array(50_000).fill(7) };
    const r = track(b.receive(a.endpoint));
    await a.send(b.endpoint, { type: 1, payload: big });
    const m = await r;
    expect(m.source).toBe(a.endpoint);
    expect((m.payload as typeof big).text).toBe(big.text);
    expect(sameBytes((m.payload as typeof big).bytes, big.bytes)).toBe('equal');
    const r2 = track(a.receive(b.endpoint));
    await b.send(a.endpoint, { type: 2, payload: big });
    const m2 = (await r2).payload as typeof big;
    expect(m2.text).toBe(big.text);
    expect(sameBytes(m2.bytes, big.bytes)).toBe('equal');
    // The encoding really is compressed on the wire toward a client that announced lz4.
    expect(encodeFrame(big, { compressMinBytes: 16 * 1024 })[5]! & FLAG_LZ4).toBe(FLAG_LZ4);
  });
});
