/**
 * A hand-written link peer over a raw socket, built only from the byte-level rules of
 * docs/link-protocol.md: used to check the handshake and to feed a LinkManager bad input.
 */
import type net from 'node:net';
import { encodeFrame, FrameDecoder, handshakeMac, LINK_PROTOCOL_VERSION, newNonce, ROLE_ACCEPTOR, ROLE_DIALER, verifyHandshakeMac } from '../../src/transport/index.js';
import type { Harness } from './helpers.js';

export interface DialOptions {
  readonly from: number;
  readonly to: number;
  readonly inc: number;
  readonly key: Uint8Array;
  readonly epoch?: number;
  readonly view?: { inc: number; epoch: number } | null;
  readonly ack?: number;
  /** Mutates the auth frame before it is sent. */
  readonly tamperAuth?: (auth: Record<string, unknown>) => unknown;
}

export class RawPeer {
  readonly values: unknown[] = [];
  closed = false;
  decodeError: unknown;
  private readonly decoder = new FrameDecoder();
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        // Heartbeats come whenever the other side is idle: tests never want them.
        for (const v of this.decoder.push(chunk)) if ((v as { t?: unknown } | null)?.t !== 'ping') this.values.push(v);
      } catch (err) {
        this.decodeError = err;
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static async connect(h: Harness, port: number): Promise<RawPeer> {
    return new RawPeer(await h.connect(port));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(value: unknown): void {
    this.socket.write(encodeFrame(value));
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next decoded value, or undefined when the connection closed first or `ms` passed. */
  async next(ms = 5000): Promise<unknown> {
    const deadline = Date.now() + ms;
    while (this.values.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.values.shift();
  }

  /** The next value that is not a bare acknowledgement. */
  async nextData(ms = 5000): Promise<unknown> {
    for (;;) {
      const v = await this.next(ms);
      if ((v as { t?: unknown } | undefined)?.t !== 'ack') return v;
    }
  }

  /** Waits until the other side closed the connection; false after `ms`. */
  async waitClosed(ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return this.closed;
  }

  /** Runs the dialer's side of the handshake; returns the `ready` frame (or what came instead). */
  async dial(o: DialOptions): Promise<{ welcome: Record<string, unknown> | undefined; ready: unknown }> {
    const nonce = newNonce();
    this.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, from: o.from, to: o.to, inc: o.inc, nonce });
    const welcome = (await this.next()) as Record<string, unknown> | undefined;
    if (welcome?.t !== 'welcome') return { welcome, ready: undefined };
    const p = {
      version: LINK_PROTOCOL_VERSION,
      dialerNonce: nonce,
      acceptorNonce: welcome.nonce as Uint8Array,
      dialerNode: o.from,
      acceptorNode: o.to,
      dialerIncarnation: o.inc,
      acceptorIncarnation: welcome.inc as number,
    };
    if (!verifyHandshakeMac(o.key, ROLE_ACCEPTOR, p, welcome.mac as Uint8Array)) throw new Error('acceptor proof does not verify');
    const auth = { t: 'auth', mac: handshakeMac(o.key, ROLE_DIALER, p), epoch: o.epoch ?? 0, view: o.view ?? null, ack: o.ack ?? 0 };
    this.send(o.tamperAuth === undefined ? auth : o.tamperAuth(auth));
    return { welcome, ready: await this.next() };
  }
}
