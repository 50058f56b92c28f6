/**
 * Authentication of node links: the cluster-key handshake (good key, wrong key either way,
 * reflection, refusals, kernel protocol versions, timeout), mutual TLS (good chain, rogue chain,
 * a certificate of another node either way), and the exact HMAC input.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, handshakeMac, handshakeMacInput, LINK_PROTOCOL_VERSION, ROLE_ACCEPTOR, ROLE_DIALER, type LinkTlsOptions } from '../../src/transport/index.js';
import { Harness, KEY, link, notify, wnotify, waitFor, waitUp } from './helpers.js';
import { RawPeer } from './raw-peer.js';

const h = new Harness();
afterEach(() => h.closeAll());

const tlsDir = new URL('./fixtures/tls/', import.meta.url);
const pem = (name: string): Buffer => readFileSync(new URL(name, tlsDir));
const ca = pem('ca.pem');
const tlsA: LinkTlsOptions = { key: pem('node-1-key.pem'), cert: pem('node-1.pem'), ca };
const tlsB: LinkTlsOptions = { key: pem('node-2-key.pem'), cert: pem('node-2.pem'), ca };
/** Issued to node 3 (named by a subjectAltName URI, its CN names no node). */
const tlsC: LinkTlsOptions = { key: pem('node-3-key.pem'), cert: pem('node-3.pem'), ca };
const tlsRogue: LinkTlsOptions = { key: pem('rogue-key.pem'), cert: pem('rogue.pem'), ca: pem('rogue-ca.pem') };
/** A rogue certificate that trusts the cluster CA (so only the other side can refuse it). */
const tlsRogueTrusting: LinkTlsOptions = { ...tlsRogue, ca };
/** A cluster that trusts a second CA too, which issued node 0's certificate. */
const caBoth = [ca, pem('ca-b.pem')];
const tlsNode0: LinkTlsOptions = { key: pem('node-0-key.pem'), cert: pem('node-0.pem'), ca: caBoth };

describe('cluster-key handshake', () => {
  it('authenticates both sides and reports each peer up with its incarnation', async () => {
    const [a, b] = await h.pair(1, 2);
    expect(a.reports).toEqual([expect.objectContaining({ node: 2, state: 'up', inc: b.incarnation })]);
    expect(b.reports).toEqual([expect.objectContaining({ node: 1, state: 'up', inc: a.incarnation })]);
    a.lm.send(2, notify(1));
    b.lm.send(1, notify(2));
    await waitFor(() => a.frames.length === 1 && b.frames.length === 1, 'a frame each way');
    expect(b.frames[0]).toEqual({ from: 1, frame: notify(1) });
    expect(a.frames[0]).toEqual({ from: 2, frame: notify(2) });
    expect(a.lm.stats()).toMatchObject({ authFailures: 0, handshakeFailures: 0 });
  });

  it('a peer with the wrong key gets nothing and is counted', async () => {
    const a = await h.node(1);
    const b = await h.node(2, { clusterKey: randomBytes(32) });
    link(a, b);
    a.lm.send(2, notify(1));
    b.lm.send(1, notify(2));
    // Three refused attempts: the link never came up meanwhile, whatever was queued.
    await waitFor(() => a.lm.peerState(2)!.authFailures >= 3, 'repeated auth failures');
    expect(a.frames).toEqual([]);
    expect(b.frames).toEqual([]);
    expect(a.reports.some((r) => r.state === 'up')).toBe(false);
    expect(b.reports.some((r) => r.state === 'up')).toBe(false);
    expect(a.lm.stats().authFailures).toBeGreaterThanOrEqual(3);
    expect(b.lm.stats().handshakeFailures).toBeGreaterThanOrEqual(2);
    expect(b.lm.peerState(1)!.framesIn).toBe(0);
    expect(a.lm.peerState(2)!.framesOut).toBe(0);
  });

  it('a dialer with the wrong key is closed after its auth frame, before any kernel frame', async () => {
    const b = await h.node(5);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: 1 }]);
    b.lm.send(1, notify(9));
    const raw = await RawPeer.connect(h, b.port);
    // A peer with the wrong key cannot compute a valid proof: it sends whatever it has.
    raw.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 5, inc: 77, nonce: randomBytes(32) });
    const welcome = (await raw.next()) as { t: string };
    expect(welcome.t).toBe('welcome');
    raw.send({ t: 'auth', mac: randomBytes(32), epoch: 0, view: null, ack: 0 });
    raw.send({ t: 'data', s: 1, a: 0, f: [wnotify(1)] });
    expect(await raw.waitClosed()).toBe(true);
    expect(raw.values).toEqual([]); // no ready, no data
    expect(b.frames).toEqual([]);
    expect(b.lm.stats()).toMatchObject({ authFailures: 1, handshakeFailures: 1 });
    expect(b.reports.some((r) => r.state === 'up')).toBe(false);
  });

  it('a reflected proof (the acceptor role) does not authenticate the dialer', async () => {
    const b = await h.node(5);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: 1 }]);
    const raw = await RawPeer.connect(h, b.port);
    const nonce = randomBytes(32);
    raw.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 5, inc: 77, nonce });
    const welcome = (await raw.next()) as { mac: Uint8Array };
    raw.send({ t: 'auth', mac: welcome.mac, epoch: 0, view: null, ack: 0 });
    expect(await raw.waitClosed()).toBe(true);
    expect(b.lm.stats().authFailures).toBe(1);
  });

  it('the hand-written dialer of the protocol document is accepted and exchanges frames', async () => {
    const b = await h.node(5);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: 1 }]);
    b.lm.send(1, notify(41));
    const raw = await RawPeer.connect(h, b.port);
    const { welcome, ready } = await raw.dial({ from: 1, to: 5, inc: 1234, key: KEY });
    expect(welcome).toMatchObject({ t: 'welcome', v: LINK_PROTOCOL_VERSION, kv: 1, from: 5, to: 1, inc: b.incarnation });
    expect(ready).toEqual({ t: 'ready', epoch: 0, view: null, ack: 0 });
    // The frame queued before the link existed arrives as data frame 1 (its tag verified by the raw peer).
    expect(await raw.next()).toEqual({ t: 'data', s: 1, a: 0, f: [wnotify(41)] });
    raw.send({ t: 'data', s: 1, a: 1, f: [wnotify(42), wnotify(43)] });
    await waitFor(() => b.frames.length === 2, 'two frames');
    expect(b.frames.map((f) => f.frame)).toEqual([notify(42), notify(43)]);
    expect(b.reports).toEqual([expect.objectContaining({ node: 1, state: 'up', inc: 1234 })]);
    expect(await raw.next()).toEqual({ t: 'ack', a: 1 });
    expect(raw.macError).toBe(false);
    expect(b.lm.stats().macFailures).toBe(0);
  });

  it('refuses hellos from the wrong direction, for another node, from strangers or in another version', async () => {
    const b = await h.node(5);
    b.lm.setPeers([
      { nodeId: 1, host: '127.0.0.1', port: 1 },
      { nodeId: 7, host: '127.0.0.1', port: 1 },
    ]);
    const hellos = [
      { from: 7, to: 5, v: LINK_PROTOCOL_VERSION }, // 7 > 5: node 5 dials node 7, never the reverse
      { from: 1, to: 6, v: LINK_PROTOCOL_VERSION },
      { from: 3, to: 5, v: LINK_PROTOCOL_VERSION }, // not a peer
      { from: 1, to: 5, v: LINK_PROTOCOL_VERSION + 1 },
    ];
    for (const x of hellos) {
      const raw = await RawPeer.connect(h, b.port);
      raw.send({ t: 'hello', kv: 1, inc: 1, nonce: randomBytes(32), ...x });
      expect(await raw.waitClosed()).toBe(true);
      expect(raw.values).toEqual([]);
    }
    expect(b.lm.stats()).toMatchObject({ refused: 4, handshakeFailures: 4, versionMismatches: 1 });
  });

  it('nodes speaking different kernel protocol versions never link: refused and counted on both sides', async () => {
    const a = await h.node(1, { kernelVersion: 1 });
    const b = await h.node(2, { kernelVersion: 2 });
    link(a, b);
    a.lm.send(2, notify(1));
    await waitFor(() => b.lm.stats().versionMismatches >= 3, 'repeated refusals by the acceptor');
    expect(b.lm.stats().refused).toBeGreaterThanOrEqual(3);
    expect(a.reports).toEqual([]);
    expect(b.reports).toEqual([]);
    expect(b.frames).toEqual([]);

    // The dialer refuses a welcome of another kernel version too (an acceptor written by hand).
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      const decoder = new FrameDecoder();
      s.on('data', (chunk: Buffer) => {
        for (const v of decoder.push(chunk)) {
          const hello = v as { t: string; from: number; inc: number };
          if (hello.t !== 'hello') continue;
          s.write(encodeFrame({ t: 'welcome', v: LINK_PROTOCOL_VERSION, kv: 9, from: 3, to: hello.from, inc: 5, nonce: randomBytes(32), mac: randomBytes(32) }));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const c = await h.node(1, { kernelVersion: 1 });
      c.lm.setPeers([{ nodeId: 3, host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }]);
      await waitFor(() => c.lm.stats().versionMismatches >= 2, 'the dialer refusing the welcome');
      expect(c.lm.stats().authFailures).toBe(0);
      expect(c.reports).toEqual([]);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('the proofs cover both kernel versions: a hello whose version was rewritten on the way fails authentication', async () => {
    const b = await h.node(5);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: 1 }]);
    const raw = await RawPeer.connect(h, b.port);
    const nonce = randomBytes(32);
    // The hello says 1 (what b speaks); the dialer itself spoke 2 and proves that.
    raw.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 5, inc: 77, nonce });
    const welcome = (await raw.next()) as { nonce: Uint8Array; inc: number; kv: number };
    const p = { version: LINK_PROTOCOL_VERSION, dialerNonce: nonce, acceptorNonce: welcome.nonce, dialerNode: 1, acceptorNode: 5, dialerIncarnation: 77, acceptorIncarnation: welcome.inc, dialerKernelVersion: 2, acceptorKernelVersion: welcome.kv };
    raw.send({ t: 'auth', mac: handshakeMac(KEY, ROLE_DIALER, p), epoch: 0, view: null, ack: 0 });
    expect(await raw.waitClosed()).toBe(true);
    expect(raw.values).toEqual([]);
    expect(b.lm.stats().authFailures).toBe(1);
    expect(b.reports).toEqual([]);
  });

  it('closes a connection that never sends its hello at helloMs, one that never completes its handshake at handshakeMs', async () => {
    const b = await h.node(5, { timing: { heartbeatMs: 50, suspectMs: 250, deadMs: 800, handshakeMs: 400, helloMs: 150 } });
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: await h.liveListener() }]);
    const silent = await RawPeer.connect(h, b.port);
    silent.sendRaw(Buffer.from([0, 0])); // a byte or two, so that it is no mere probe
    let t0 = Date.now();
    expect(await silent.waitClosed(5000)).toBe(true);
    // Not before helloMs (150 ms, less a few ms: timers and Date.now round differently), well before handshakeMs.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150 - 10);
    expect(Date.now() - t0).toBeLessThan(400);
    expect(b.lm.stats()).toMatchObject({ handshakeTimeouts: 1, handshakeFailures: 1 });

    const stuck = await RawPeer.connect(h, b.port);
    t0 = Date.now();
    stuck.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 5, inc: 77, nonce: randomBytes(32) });
    expect(await stuck.next()).toMatchObject({ t: 'welcome' });
    expect(await stuck.waitClosed(5000)).toBe(true);
    // A hello in time lifts the hello deadline: closed at handshakeMs (400 ms, less a few ms).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400 - 10);
    expect(b.lm.stats()).toMatchObject({ handshakeTimeouts: 2, handshakeFailures: 2 });
  });

  it('MACs exactly the documented 106 bytes', () => {
    const p = {
      version: LINK_PROTOCOL_VERSION,
      dialerNonce: Buffer.alloc(32, 0xd1),
      acceptorNonce: Buffer.alloc(32, 0xa2),
      dialerNode: 3,
      acceptorNode: 0x01020304,
      dialerIncarnation: 2 ** 40 + 5,
      acceptorIncarnation: 6,
      dialerKernelVersion: 1,
      acceptorKernelVersion: 0x0a0b0c0d,
    };
    const input = handshakeMacInput(ROLE_DIALER, p);
    expect(input.byteLength).toBe(106);
    expect(input.subarray(0, 8).toString('ascii')).toBe('dvs-link');
    expect([input[8], input[9]]).toEqual([5, 0x44]);
    expect(input.subarray(10, 42)).toEqual(Buffer.alloc(32, 0xd1));
    expect(input.subarray(42, 74)).toEqual(Buffer.alloc(32, 0xa2));
    expect(input.subarray(74, 82).toString('hex')).toBe('0000000301020304');
    expect(input.subarray(82, 98).toString('hex')).toBe('0000010000000005' + '0000000000000006');
    expect(input.subarray(98, 106).toString('hex')).toBe('00000001' + '0a0b0c0d');
    expect(handshakeMacInput(ROLE_ACCEPTOR, p)[9]).toBe(0x41);
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    // Independent reference: HMAC-SHA256 over the same bytes.
    expect(handshakeMac(key, ROLE_DIALER, p).toString('hex')).toBe(createHmac('sha256', key).update(input).digest('hex'));
  });
});

describe('mutual TLS', () => {
  it('the certificate chain authenticates: frames flow without a cluster key', async () => {
    const a = await h.node(1, { clusterKey: undefined, tls: tlsA });
    const b = await h.node(2, { clusterKey: undefined, tls: tlsB });
    link(a, b);
    await waitUp(a, b);
    a.lm.send(2, notify(1));
    b.lm.send(1, notify(2));
    await waitFor(() => a.frames.length === 1 && b.frames.length === 1, 'a frame each way');
  });

  it('with both TLS and a key, both are checked', async () => {
    const a = await h.node(1, { tls: tlsA });
    const b = await h.node(2, { tls: tlsB, clusterKey: randomBytes(32) });
    link(a, b);
    await waitFor(() => a.lm.peerState(2)!.authFailures >= 1, 'auth failure inside TLS');
    expect(a.reports).toEqual([]);
  });

  it('a dialer with a certificate from another CA is refused by the acceptor', async () => {
    const a = await h.node(1, { clusterKey: undefined, tls: tlsRogueTrusting });
    const b = await h.node(2, { clusterKey: undefined, tls: tlsB });
    link(a, b);
    a.lm.send(2, notify(1));
    // Refused again on the dialer's next attempt: the link never came up meanwhile.
    await waitFor(() => b.lm.stats().authFailures >= 2, 'TLS client refused');
    expect(b.frames).toEqual([]);
    expect(b.reports).toEqual([]);
    expect(a.reports.some((r) => r.state === 'up')).toBe(false);
  });

  it('an acceptor with a certificate from another CA is refused by the dialer', async () => {
    const a = await h.node(1, { clusterKey: undefined, tls: tlsA });
    const b = await h.node(2, { clusterKey: undefined, tls: tlsRogue });
    link(a, b);
    await waitFor(() => a.lm.stats().authFailures >= 1, 'TLS server refused');
    expect(a.lm.peerState(2)!.authFailures).toBeGreaterThanOrEqual(1);
    expect(a.reports.some((r) => r.state === 'up')).toBe(false);
    expect(b.frames).toEqual([]);
  });

  it('a certificate named by subjectAltName URI links its node', async () => {
    const a = await h.node(1, { clusterKey: undefined, tls: tlsA });
    const c = await h.node(3, { clusterKey: undefined, tls: tlsC });
    link(a, c);
    await waitUp(a, c);
    c.lm.send(1, notify(3));
    await waitFor(() => a.frames.length === 1, 'a frame from node 3');
  });

  it('a dialer holding another node\'s certificate is refused by the acceptor', async () => {
    // Node 1 presents node 3's (valid, cluster-signed) certificate.
    const a = await h.node(1, { clusterKey: undefined, tls: tlsC });
    const b = await h.node(2, { clusterKey: undefined, tls: tlsB });
    link(a, b);
    a.lm.send(2, notify(1));
    await waitFor(() => b.lm.stats().authFailures >= 2, 'impersonating dialer refused');
    expect(b.frames).toEqual([]);
    expect(b.reports).toEqual([]);
    expect(a.reports.some((r) => r.state === 'up')).toBe(false);
  });

  it('an acceptor holding another node\'s certificate is refused by the dialer', async () => {
    // Node 2 presents node 1's certificate: the dialer (node 1) expects node 2.
    const a = await h.node(1, { clusterKey: undefined, tls: tlsA });
    const b = await h.node(2, { clusterKey: undefined, tls: { ...tlsA } });
    link(a, b);
    a.lm.send(2, notify(1));
    await waitFor(() => a.lm.peerState(2)!.authFailures >= 2, 'impersonating acceptor refused');
    expect(b.frames).toEqual([]);
    expect(a.reports.some((r) => r.state === 'up')).toBe(false);
  });

  it('node 2\'s valid certificate does not let a dialer claiming to be node 1 in', async () => {
    const a = await h.node(1, { clusterKey: undefined, tls: tlsB });
    const b = await h.node(2, { clusterKey: undefined, tls: tlsB });
    link(a, b);
    a.lm.send(2, notify(1));
    await waitFor(() => b.lm.stats().authFailures >= 2, 'the acceptor refusing the claim');
    expect(b.frames).toEqual([]);
    expect(b.reports).toEqual([]);
    expect(a.reports).toEqual([]);
  });

  it('node 2\'s valid certificate does not let an acceptor claiming to be node 1 in', async () => {
    // Node 0 dials node 1; the node answering as 1 holds node 2's certificate.
    const dialer = await h.node(0, { clusterKey: undefined, tls: tlsNode0 });
    const impostor = await h.node(1, { clusterKey: undefined, tls: { ...tlsB, ca: caBoth } });
    link(dialer, impostor);
    dialer.lm.send(1, notify(1));
    await waitFor(() => dialer.lm.peerState(1)!.authFailures >= 2, 'the dialer refusing the claim');
    expect(impostor.frames).toEqual([]);
    expect(dialer.reports).toEqual([]);
    expect(impostor.reports).toEqual([]);
    // The same dialer links with the real node 1.
    const real = await h.node(1, { clusterKey: undefined, tls: { ...tlsA, ca: caBoth } });
    link(dialer, real);
    await waitUp(dialer, real);
  });

  it('a plain TCP client cannot talk to a TLS node', async () => {
    const b = await h.node(5, { clusterKey: undefined, tls: tlsB });
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: 1 }]);
    const raw = await RawPeer.connect(h, b.port);
    raw.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 5, inc: 1, nonce: randomBytes(32) });
    expect(await raw.waitClosed()).toBe(true);
    expect(b.frames).toEqual([]);
  });
});
