/**
 * Integrity of every frame after the handshake (cluster-key mode), against a man in the middle:
 * a TCP proxy between two LinkManagers that reads the stream as docs/link-protocol.md lays it out
 * (two handshake frames each way, then each frame followed by its 16-byte tag) and, once, flips a
 * byte of a data frame, replays an earlier one, or injects one it made up. Each attack is refused
 * with EDVSACCES and counted, and the link recovers on its own: every message sent across the
 * attack arrives exactly once and in order, and the peers are never declared down.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { KernelFrame } from '../../src/kernel/frames.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/index.js';
import { FAST, Harness, link, notify, waitFor, waitUp, wnotify, type TestNode } from './helpers.js';

const h = new Harness();
const proxies = new Set<MitmProxy>();
afterEach(async () => {
  await Promise.all([...proxies].map((p) => p.close()));
  proxies.clear();
  await h.closeAll();
});

/** Recovery must not race the dead timer: a long one (the link is re-made within milliseconds). */
const TIMING = { ...FAST, suspectMs: 1000, deadMs: 10_000 };

const TAG_BYTES = 16;
const HANDSHAKE_FRAMES = 2;

interface Rec {
  /** The frame and, after the handshake, its tag. */
  readonly bytes: Buffer;
  readonly sealed: boolean;
  /** The frame's `t` (frames are small and uncompressed here). */
  readonly t: string | undefined;
}

type Direction = 'dialer->acceptor' | 'acceptor->dialer';

/** Decides what the proxy forwards in place of a record: itself, or other records around or instead of it. */
type Tamper = (rec: Rec, dir: Direction) => Buffer[] | undefined;

/** Splits one direction of a connection into records, as the protocol document describes them. */
class RecordReader {
  private buf = Buffer.alloc(0);
  private frames = 0;

  push(chunk: Buffer): Rec[] {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out: Rec[] = [];
    for (;;) {
      if (this.buf.byteLength < 4) return out;
      const sealed = this.frames >= HANDSHAKE_FRAMES;
      const frameBytes = 4 + this.buf.readUInt32BE(0);
      const total = frameBytes + (sealed ? TAG_BYTES : 0);
      if (this.buf.byteLength < total) return out;
      const bytes = Buffer.from(this.buf.subarray(0, total));
      this.buf = this.buf.subarray(total);
      this.frames++;
      const [value] = new FrameDecoder().push(bytes.subarray(0, frameBytes));
      out.push({ bytes, sealed, t: (value as { t?: string } | undefined)?.t });
    }
  }
}

class MitmProxy {
  tamper: Tamper | undefined;
  connections = 0;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<MitmProxy> {
    const holder: { proxy?: MitmProxy } = {};
    const server = net.createServer((client) => holder.proxy?.relay(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new MitmProxy(server, (server.address() as net.AddressInfo).port);
    holder.proxy = proxy;
    proxies.add(proxy);
    return proxy;
  }

  private relay(client: net.Socket, targetPort: number): void {
    this.connections++;
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    for (const [from, to, dir] of [
      [client, upstream, 'dialer->acceptor'],
      [upstream, client, 'acceptor->dialer'],
    ] as const) {
      this.sockets.add(from);
      const reader = new RecordReader();
      from.on('data', (chunk: Buffer) => {
        for (const rec of reader.push(chunk)) {
          const instead = this.tamper?.(rec, dir);
          for (const b of instead ?? [rec.bytes]) to.write(b);
        }
      });
      from.on('error', end);
      from.on('close', end);
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function args(n: TestNode, from: number): number[] {
  return n.frames.filter((f) => f.from === from && f.frame.k === 'notify').map((f) => (f.frame as Extract<KernelFrame, { k: 'notify' }>).arg);
}

function expectExactlyInOrder(got: number[], count: number): void {
  expect(got.length).toBe(count);
  for (let i = 0; i < count; i++) if (got[i] !== i) throw new Error(`frame ${i} is ${got[i]}`);
}

/** The attacks, each once, on the `nth` sealed data frame of a direction. */
const ATTACKS: { name: string; dir: Direction; make: (nth: number) => Tamper }[] = [
  {
    name: 'flips one byte of a data frame',
    dir: 'dialer->acceptor',
    make: (nth) => {
      let seen = 0;
      return (rec, dir) => {
        if (dir !== 'dialer->acceptor' || !rec.sealed || rec.t !== 'data' || ++seen !== nth) return undefined;
        const b = Buffer.from(rec.bytes);
        // The last byte of the frame (a notify's argument), before the tag: still well-formed msgpack.
        b[b.byteLength - TAG_BYTES - 1]! ^= 0x01;
        return [b];
      };
    },
  },
  {
    name: 'replays an earlier data frame',
    dir: 'acceptor->dialer',
    make: (nth) => {
      let seen = 0;
      let earlier: Buffer | undefined;
      return (rec, dir) => {
        if (dir !== 'acceptor->dialer' || !rec.sealed || rec.t !== 'data') return undefined;
        seen++;
        if (seen === 2) earlier = rec.bytes;
        if (seen !== nth || earlier === undefined) return undefined;
        return [earlier, rec.bytes];
      };
    },
  },
  {
    name: 'injects a well-formed data frame it made up',
    dir: 'dialer->acceptor',
    make: (nth) => {
      let seen = 0;
      return (rec, dir) => {
        if (dir !== 'dialer->acceptor' || !rec.sealed || rec.t !== 'data' || ++seen !== nth) return undefined;
        // Sequence numbers are easy to guess; the tag is not.
        const made = encodeFrame({ t: 'data', s: 1_000_000, a: 0, f: [wnotify(-1)] });
        return [Buffer.concat([made, randomBytes(TAG_BYTES)]), rec.bytes];
      };
    },
  },
];

describe('frame integrity against a man in the middle', () => {
  it.each(ATTACKS)('refuses a proxy that $name, counts it, and recovers without loss or duplicate', async ({ dir, make }) => {
    const a = await h.node(1, { timing: TIMING });
    const b = await h.node(2, { timing: TIMING });
    const proxy = await MitmProxy.start(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    // The victim is the side that receives the attacked direction.
    const victim = dir === 'dialer->acceptor' ? { node: b, peer: 1 } : { node: a, peer: 2 };
    proxy.tamper = make(10);

    // A steady stream both ways, a few frames per event-loop turn: the attack lands mid-stream.
    const N = 2000;
    for (let i = 0; i < N; i++) {
      a.lm.send(2, notify(i));
      b.lm.send(1, notify(i));
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => b.frames.length >= N && a.frames.length >= N, 'every frame both ways', 20_000);
    expectExactlyInOrder(args(b, 1), N);
    expectExactlyInOrder(args(a, 2), N);

    const stats = victim.node.lm.peerState(victim.peer)!;
    expect(stats.macFailures).toBe(1);
    expect(stats.lastFailure).toMatchObject({ reason: 'mac', code: 'EDVSACCES' });
    expect(victim.node.lm.stats().macFailures).toBe(1);
    // Recovered by a reconnect that resumed the session (nothing reset, nothing reported down).
    expect(proxy.connections).toBeGreaterThanOrEqual(2);
    expect(a.lm.peerState(2)!.reconnects).toBeGreaterThanOrEqual(1);
    expect(a.reports.map((r) => r.state)).not.toContain('down');
    expect(b.reports.map((r) => r.state)).not.toContain('down');
    expect(a.lm.peerState(2)!.duplicatesDropped + b.lm.peerState(1)!.duplicatesDropped).toBe(0);
  });

  it('without an attack, nothing fails its MAC (the proxy itself changes nothing)', async () => {
    const a = await h.node(1, { timing: TIMING });
    const b = await h.node(2, { timing: TIMING });
    const proxy = await MitmProxy.start(b.port);
    link(a, b, proxy.port);
    await waitUp(a, b);
    for (let i = 0; i < 500; i++) a.lm.send(2, notify(i));
    await waitFor(() => b.frames.length >= 500, 'every frame');
    expectExactlyInOrder(args(b, 1), 500);
    expect(b.lm.stats().macFailures + a.lm.stats().macFailures).toBe(0);
    expect(proxy.connections).toBe(1);
  });
});
