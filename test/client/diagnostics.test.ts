/** What the process server tells an operator: the daemon's state in `info`, and its counters. */
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { PROC_PROTOCOL_VERSION } from '../../src/transport/proc-protocol.js';
import { encodeFrame } from '../../src/transport/framing.js';
import { DC, startHarness, until, type Harness } from './helpers.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('process server: diagnostics', { timeout: 10_000 }, () => {
  it('info carries the daemon state from the info hook as field node, read at each request', async () => {
    let registered = false;
    h = await startHarness({ server: { info: () => ({ registered, links: { up: 2 }, store: 'embedded' }) } });
    const c = await h.connect();
    expect((await c.nodeInfo()).node).toEqual({ registered: false, links: { up: 2 }, store: 'embedded' });
    registered = true;
    const info = await c.nodeInfo();
    expect(info.node).toMatchObject({ registered: true });
    expect(info.nodeId).toBe(0);
    await h.close();
    // Without a hook there is no node field.
    h = await startHarness();
    const c2 = await h.connect();
    expect('node' in (await c2.nodeInfo())).toBe(false);
  });

  it('counts connections open, accepted and refused, failed handshakes, refused frames, bytes, requests and errors', async () => {
    h = await startHarness({ server: { maxConnections: 2 } });
    const s = h.server.stats;
    expect(s).toMatchObject({ open: 0, accepted: 0, refused: 0, authFailures: 0, protocolErrors: 0, bytesIn: 0, bytesOut: 0, requests: 0, errorResponses: 0, slicesYielded: 0 });

    // A wrong token: a failed handshake.
    await expect(connect({ socketPath: h.socketPath, token: 'wrong' })).rejects.toMatchObject({ code: 'EDVSACCES' });
    expect(s.authFailures).toBe(1);
    await until(() => s.open === 0);

    // Exact bytes each way for one request.
    const r = await h.rawHello();
    expect(s.open).toBe(1);
    const inBefore = s.bytesIn;
    const outBefore = s.bytesOut;
    const requestsBefore = s.requests;
    const ping = encodeFrame({ id: 1, op: 'ping' });
    r.sendBytes(ping);
    expect(await r.response(1)).toMatchObject({ ok: true });
    expect(s.bytesIn - inBefore).toBe(ping.byteLength);
    expect(s.bytesOut - outBefore).toBe(encodeFrame({ id: 1, ok: true, result: null }).byteLength);
    expect(s.requests - requestsBefore).toBe(1);

    // An error response (the refused hello above was one too).
    expect(s.errorResponses).toBe(1);
    r.send({ id: 2, op: 'receive', dcid: DC, endpoint: 999, src: 0 });
    expect(await r.response(2)).toMatchObject({ ok: false, error: { code: 'EDVSNOTBIND' } });
    expect(s.errorResponses).toBe(2);

    // A second connection fills the server; a third is refused.
    const second = await h.raw();
    await until(() => s.open === 2);
    const third = await h.raw();
    expect(await third.next()).toMatchObject({ op: 'bye', error: { code: 'EDVSAGAIN' } });
    expect(s.refused).toBe(1);
    expect(s.accepted).toBe(3);

    // A frame that breaks the protocol closes its connection.
    second.send({ id: 1, op: 'hello', version: PROC_PROTOCOL_VERSION, token: h.token });
    expect(await second.next()).toMatchObject({ ok: true });
    second.send([1, 2, 3]);
    expect(await second.waitClosed()).toBe(true);
    expect(s.protocolErrors).toBe(1);
    await until(() => s.open === 1);
    r.destroy();
    await until(() => s.open === 0);
  });
});
