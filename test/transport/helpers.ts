/**
 * Test helpers for node links: managers on 127.0.0.1:0 that record what they deliver and report,
 * a cuttable TCP proxy between two nodes, and bounded polling. Everything is closed by closeAll.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { KernelFrame } from '../../src/kernel/frames.js';
import { kernelFrameToWire, LinkManager, type LinkManagerOptions, type LinkTiming } from '../../src/transport/index.js';

export const KEY = randomBytes(32);

/** Short timers for tests; still far above loopback latencies. */
export const FAST: Partial<LinkTiming> = { heartbeatMs: 50, suspectMs: 250, deadMs: 800, reconnectMs: 20, handshakeMs: 1000 };

export interface Report {
  readonly node: number;
  readonly state: 'up' | 'suspect' | 'down';
  readonly inc: number | undefined;
  readonly at: number;
}

export interface TestNode {
  readonly lm: LinkManager;
  readonly nodeId: number;
  readonly incarnation: number;
  readonly port: number;
  readonly frames: { from: number; frame: KernelFrame }[];
  readonly reports: Report[];
}

let nextInc = Date.now();

export function notify(arg: number, dc = 1): KernelFrame {
  return { k: 'notify', dc, src: -2, dst: 3, arg };
}

/** notify(arg, dc) in its wire form, for peers written by hand (docs/link-protocol.md, section 6). */
export function wnotify(arg: number, dc = 1): unknown[] {
  return kernelFrameToWire(notify(arg, dc));
}

/** Polls `cond` every few ms; rejects after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Harness {
  private readonly managers = new Set<LinkManager>();
  private readonly proxies = new Set<TcpProxy>();
  private readonly sockets = new Set<net.Socket>();
  private readonly servers = new Set<net.Server>();

  async node(nodeId: number, opts: Partial<LinkManagerOptions> = {}): Promise<TestNode> {
    const frames: TestNode['frames'] = [];
    const reports: Report[] = [];
    const incarnation = opts.incarnation ?? nextInc++;
    const lm = new LinkManager({
      nodeId,
      incarnation,
      clusterKey: KEY,
      listen: { host: '127.0.0.1', port: 0 },
      timing: FAST,
      onFrame: (from, frame) => frames.push({ from, frame }),
      onPeerState: (node, state, inc) => reports.push({ node, state, inc, at: Date.now() }),
      ...opts,
    });
    this.managers.add(lm);
    const { port } = await lm.start();
    return { lm, nodeId, incarnation, port, frames, reports };
  }

  /** Two nodes linked directly (a dials b when a < b). */
  async pair(a = 1, b = 2, opts: Partial<LinkManagerOptions> = {}): Promise<[TestNode, TestNode]> {
    const na = await this.node(a, opts);
    const nb = await this.node(b, opts);
    link(na, nb);
    await waitUp(na, nb);
    return [na, nb];
  }

  async proxy(targetPort: number): Promise<TcpProxy> {
    const p = await TcpProxy.start(targetPort);
    this.proxies.add(p);
    return p;
  }

  /**
   * The port of a listener that accepts connections and does nothing with them: the address to list
   * for a peer played by hand, whose process is alive (a crash detector probing it is answered).
   */
  async liveListener(): Promise<number> {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      this.sockets.add(s);
    });
    this.servers.add(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  /** A raw client socket, closed by closeAll. */
  async connect(port: number): Promise<net.Socket> {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    this.sockets.add(s);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return s;
  }

  async closeNode(n: TestNode): Promise<void> {
    this.managers.delete(n.lm);
    await n.lm.close();
  }

  async closeAll(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await Promise.all([...this.managers].map((m) => m.close()));
    this.managers.clear();
    await Promise.all([...this.proxies].map((p) => p.close()));
    this.proxies.clear();
    await Promise.all([...this.servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.servers.clear();
  }
}

/** Tells each node about the other. */
export function link(a: TestNode, b: TestNode, portOfB = b.port, portOfA = a.port): void {
  a.lm.setPeers([{ nodeId: b.nodeId, host: '127.0.0.1', port: portOfB }]);
  b.lm.setPeers([{ nodeId: a.nodeId, host: '127.0.0.1', port: portOfA }]);
}

export async function waitUp(a: TestNode, b: TestNode): Promise<void> {
  await waitFor(() => a.lm.peerState(b.nodeId)?.state === 'up' && b.lm.peerState(a.nodeId)?.state === 'up', `link ${a.nodeId}-${b.nodeId} up`);
}

/**
 * A TCP relay to `targetPort` that a test can cut (every connection destroyed, bytes in flight
 * lost) or turn into a black hole (connections stay open, nothing is forwarded).
 */
export class TcpProxy {
  blackhole = false;
  connections = 0;
  /** When set, the next `cutsLeft` connections are destroyed after relaying this many bytes (both ways), mid-chunk. */
  cutAfterBytes: number | undefined;
  cutsLeft = 0;
  cuts = 0;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const holder: { proxy?: TcpProxy } = {};
    const server = net.createServer((client) => holder.proxy?.relay(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    holder.proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    return holder.proxy;
  }

  private relay(client: net.Socket, targetPort: number): void {
    this.connections++;
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    let budget = this.cutAfterBytes !== undefined && this.cutsLeft > 0 ? this.cutAfterBytes : Infinity;
    if (budget !== Infinity) this.cutsLeft--;
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (chunk: Buffer) => {
        if (this.blackhole) return;
        if (chunk.byteLength < budget) {
          budget -= chunk.byteLength;
          to.write(chunk);
          return;
        }
        // Relay part of this chunk, then the connection dies with the rest in flight.
        if (budget !== Infinity) {
          to.write(chunk.subarray(0, budget), () => end());
          budget = 0;
          this.cuts++;
          from.pause();
        }
      });
      from.on('error', end);
      from.on('close', end);
    }
  }

  /** Stops reading both ways on every relayed connection: bytes back up in TCP, nothing is lost. */
  pause(): void {
    for (const [a, b] of this.pairs) {
      a.pause();
      b.pause();
    }
  }

  resume(): void {
    for (const [a, b] of this.pairs) {
      a.resume();
      b.resume();
    }
  }

  /** Destroys every relayed connection. */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
