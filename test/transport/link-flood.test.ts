/**
 * A flood of unauthenticated connections on a link port (docs/link-protocol.md, "Before
 * authentication"): silent connections held open, and new ones all the time, must not keep a real
 * peer out. The oldest silent connection makes room for a newcomer, an address that is no peer's
 * gets a small share, and a peer's own handshakes have a budget of their own where the newest wins.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LINK_PROTOCOL_VERSION } from '../../src/transport/index.js';
import { FAST, Harness, link, notify, waitFor, waitUp } from './helpers.js';
import { RawPeer } from './raw-peer.js';

const h = new Harness();
const floods = new Set<Flood>();
afterEach(async () => {
  for (const f of floods) f.stop();
  floods.clear();
  await h.closeAll();
});

/**
 * Silent TCP connections to a port: `hold` of them open at all times (each one closed is replaced
 * at once), and one more every `everyMs`, up to `maxOpened` in all.
 */
class Flood {
  opened = 0;
  connected = 0;
  private readonly sockets = new Set<net.Socket>();
  private running = true;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly port: number,
    hold: number,
    everyMs: number,
    private readonly maxOpened: number,
    private readonly localAddress?: string,
  ) {
    floods.add(this);
    for (let i = 0; i < hold; i++) this.open(true);
    this.timer = setInterval(() => this.open(false), everyMs);
  }

  private open(replace: boolean): void {
    if (!this.running || this.opened >= this.maxOpened) return;
    this.opened++;
    const s = net.connect({ host: '127.0.0.1', port: this.port, ...(this.localAddress === undefined ? {} : { localAddress: this.localAddress }) });
    this.sockets.add(s);
    s.on('connect', () => this.connected++);
    s.on('error', () => {});
    s.on('close', () => {
      this.sockets.delete(s);
      if (replace) this.open(true);
    });
  }

  stop(): void {
    this.running = false;
    clearInterval(this.timer);
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}

describe('a flood of unauthenticated connections', () => {
  it('does not cut linked nodes apart: a hiccup of their link heals while the flood goes on', async () => {
    const a = await h.node(1);
    const b = await h.node(2);
    const proxy = await h.proxy(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    // 150 silent connections held on the acceptor's port, and a new one every 10 ms.
    const flood = new Flood(b.port, 150, 10, 20_000);
    await waitFor(() => flood.connected >= 150 && b.lm.stats().pendingHandshakes >= 64, 'the pre-authentication slots all taken');

    // A hiccup: the link's TCP connection dies; the dialer redials into the flood.
    const before = a.lm.peerState(2)!.reconnects;
    const cutAt = Date.now();
    proxy.cut();
    await waitFor(() => a.lm.peerState(2)!.reconnects > before && a.lm.peerState(2)!.connected && b.lm.peerState(1)!.connected, 'the link re-made', 10_000);
    // Back well inside its dead window (FAST: deadMs 800), so never declared down.
    expect(Date.now() - cutAt).toBeLessThan(FAST.deadMs!);
    a.lm.send(2, notify(1));
    await waitFor(() => b.frames.length === 1, 'a frame after the hiccup');
    expect(a.reports.map((r) => r.state)).not.toContain('down');
    expect(b.reports.map((r) => r.state)).not.toContain('down');
    const opened = flood.opened;
    // The flood went on meanwhile, and the acceptor made room in it for the newcomer.
    await waitFor(() => flood.opened > opened, 'more flood connections');
    expect(b.lm.stats().evictedBeforeAuth).toBeGreaterThan(0);
    expect(a.lm.peerState(2)!.state).toBe('up');
  });

  it('gives an address that is no peer\'s a small share of silent connections, and refuses the rest', async () => {
    const b = await h.node(2);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: 1 }]);
    // From 127.0.0.2 (loopback, but not the listed address of any peer).
    const flood = new Flood(b.port, 0, 5, 20, '127.0.0.2');
    await waitFor(() => flood.opened === 20 && b.lm.stats().refused >= 12, 'the stranger refused beyond its share');
    expect(b.lm.stats().refused).toBe(12);
    expect(b.lm.stats().pendingHandshakes).toBe(8);
    // A connection from the peer's address still gets in.
    const raw = await RawPeer.connect(h, b.port);
    raw.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 2, inc: 5, nonce: randomBytes(32) });
    expect(await raw.next()).toMatchObject({ t: 'welcome', from: 2, to: 1 });
  });

  it('keeps a budget of handshakes per claimed peer, where the newest wins', async () => {
    const a = await h.node(1);
    const b = await h.node(2);
    b.lm.setPeers([{ nodeId: 1, host: '127.0.0.1', port: a.port }]);
    // Three hellos in node 1's name that never authenticate: the third evicts the first.
    const claims: RawPeer[] = [];
    for (let i = 0; i < 3; i++) {
      const raw = await RawPeer.connect(h, b.port);
      raw.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 2, inc: 5, nonce: randomBytes(32) });
      expect(await raw.next()).toMatchObject({ t: 'welcome' });
      claims.push(raw);
    }
    expect(await claims[0]!.waitClosed()).toBe(true);
    expect(claims[1]!.closed || claims[2]!.closed).toBe(false);
    expect(b.lm.stats()).toMatchObject({ evictedBeforeAuth: 1, pendingHandshakes: 2 });
    // The real node 1 is the newest: it links.
    a.lm.setPeers([{ nodeId: 2, host: '127.0.0.1', port: b.port }]);
    await waitUp(a, b);
    expect(b.lm.stats().evictedBeforeAuth).toBe(2);
  });
});
