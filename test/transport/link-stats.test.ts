/**
 * What an operator reads in LinkManager.stats() (docs/link-protocol.md, "Validation and
 * counters"): per node and per peer, connections accepted and refused, evicted before
 * authentication, handshakes failed by reason, frames refused (MAC failures, protocol errors),
 * bytes in and out. Each counter is driven by the event it counts, over real TCP.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { LINK_PROTOCOL_VERSION } from '../../src/transport/index.js';
import { Harness, KEY, link, notify, waitFor, waitUp, wnotify } from './helpers.js';
import { RawPeer } from './raw-peer.js';

const h = new Harness();
afterEach(() => h.closeAll());

const hello = (kv = 1): Record<string, unknown> => ({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv, from: 1, to: 5, inc: 7, nonce: randomBytes(32) });

describe('link counters', () => {
  it('count bytes of every connection for the node, and of the established ones for the peer', async () => {
    const [a, b] = await h.pair(1, 2);
    for (let i = 0; i < 100; i++) a.lm.send(2, notify(i));
    await waitFor(() => b.frames.length === 100, '100 frames');
    await waitFor(() => a.lm.peerState(2)!.unacked === 0, 'acknowledged');
    const node = a.lm.stats();
    const peer = a.lm.peerState(2)!;
    expect(peer.bytesOut).toBeGreaterThan(100 * 5);
    expect(peer.bytesIn).toBeGreaterThan(0);
    // The node's totals add the handshake's bytes (hello, auth out; welcome, ready in).
    expect(node.bytesOut).toBeGreaterThan(peer.bytesOut);
    expect(node.bytesIn).toBeGreaterThan(peer.bytesIn);
  });

  it('count inbound handshakes by the peer they name and by reason: version, authentication, eviction', async () => {
    const b = await h.node(5);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: await h.liveListener() }]);

    const wrongKernel = await RawPeer.connect(h, b.port);
    wrongKernel.send(hello(2));
    expect(await wrongKernel.waitClosed()).toBe(true);

    const wrongKey = await RawPeer.connect(h, b.port);
    wrongKey.send(hello());
    expect(await wrongKey.next()).toMatchObject({ t: 'welcome' });
    wrongKey.send({ t: 'auth', mac: randomBytes(32), epoch: 0, view: null, ack: 0 });
    expect(await wrongKey.waitClosed()).toBe(true);

    // Three handshakes in node 1's name at once: the oldest is evicted.
    const claims: RawPeer[] = [];
    for (let i = 0; i < 3; i++) {
      const raw = await RawPeer.connect(h, b.port);
      raw.send(hello());
      expect(await raw.next()).toMatchObject({ t: 'welcome' });
      claims.push(raw);
    }
    expect(await claims[0]!.waitClosed()).toBe(true);

    // And a connection that says nothing and goes: a probe, no failure.
    const probe = await h.connect(b.port);
    probe.destroy();
    await waitFor(() => b.lm.stats().probes === 1, 'the probe counted');

    const st = b.lm.stats();
    expect(st).toMatchObject({ accepted: 6, refused: 1, versionMismatches: 1, authFailures: 1, evictedBeforeAuth: 1, handshakeFailures: 3, probes: 1, pendingHandshakes: 2 });
    expect(st.handshakeFailuresBy).toEqual({ auth: 1, protocol: 0, timeout: 0, refused: 0, version: 1, evicted: 1, closed: 0 });
    const peer = b.lm.peerState(1)!;
    expect(peer).toMatchObject({ accepted: 5, handshakeFailures: 3, authFailures: 1 });
    expect(peer.handshakeFailuresBy).toEqual({ auth: 1, protocol: 0, timeout: 0, refused: 0, version: 1, evicted: 1, closed: 0 });
  });

  it('count frames refused on established links: MAC failures and protocol errors, per peer and for the node', async () => {
    const b = await h.node(5);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: await h.liveListener() }]);
    // A frame with a made-up tag.
    let raw = await RawPeer.connect(h, b.port);
    await raw.dial({ from: 1, to: 5, inc: 7, key: KEY });
    raw.sendRaw(Buffer.concat([Buffer.from([0, 0, 0, 12, 1, 0, 0xde, 0, 1, 0xa1, 0x74, 0xa4, 0x70, 0x69, 0x6e, 0x67]), randomBytes(16)]));
    expect(await raw.waitClosed()).toBe(true);
    // A validly sealed frame that breaks the protocol: a sequence gap.
    raw = await RawPeer.connect(h, b.port);
    await raw.dial({ from: 1, to: 5, inc: 7, key: KEY, epoch: 0, view: { inc: b.incarnation, epoch: 0 } });
    raw.send({ t: 'data', s: 9, a: 0, f: [wnotify(1)] });
    expect(await raw.waitClosed()).toBe(true);
    const st = b.lm.stats();
    expect(st).toMatchObject({ macFailures: 1, linkProtocolErrors: 1 });
    expect(b.lm.peerState(1)).toMatchObject({ macFailures: 1, protocolErrors: 1, lastFailure: { reason: 'protocol', code: 'EDVSBADREQUEST' } });
    expect(b.frames).toEqual([]);
  });

  it('stats are snapshots: a later failure does not change what was read', async () => {
    const a = await h.node(1);
    const b = await h.node(2, { clusterKey: randomBytes(32) });
    const before = a.lm.stats();
    link(a, b);
    await waitFor(() => a.lm.stats().handshakeFailuresBy.auth >= 1, 'an auth failure');
    expect(before.handshakeFailuresBy.auth).toBe(0);
    expect(a.lm.peerState(2)!.handshakeFailuresBy.auth).toBeGreaterThanOrEqual(1);
    await h.closeNode(b);
    const c = await h.node(2);
    link(a, c);
    await waitUp(a, c);
  });
});
