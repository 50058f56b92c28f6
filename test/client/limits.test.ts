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
