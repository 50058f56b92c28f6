/**
 * A hand-written link peer over a raw socket, built only from the byte-level rules of
 * docs/link-protocol.md: used to check the handshake and to feed a LinkManager bad input. After
 * a handshake in cluster-key mode it seals what it sends and verifies what it receives (frame
 * integrity, section 4), with its own key derivation written from the document.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import type net from 'node:net';
import { encodeFrame, FrameDecoder, handshakeMac, LINK_PROTOCOL_VERSION, newNonce, ROLE_ACCEPTOR, ROLE_DIALER, verifyHandshakeMac, type HandshakeParams } from '../../src/transport/index.js';
import type { Harness } from './helpers.js';

export interface DialOptions {
  readonly from: number;
  readonly to: number;
  readonly inc: number;
  readonly key: Uint8Array;
  /** Kernel protocol version sent in hello (default 1). */
  readonly kv?: number;
  readonly epoch?: number;
  readonly view?: { inc: number; epoch: number } | null;
  readonly ack?: number;
  /** Mutates the auth frame before it is sent. */
  readonly tamperAuth?: (auth: Record<string, unknown>) => unknown;
}

/** The frame key of one direction, exactly as docs/link-protocol.md derives it. */
export function docFrameKey(clusterKey: Uint8Array, role: number, p: HandshakeParams): Buffer {
  const info = Buffer.alloc(49);
  let at = info.write('dvs-link-frames', 0, 'ascii');
  info[at++] = p.version;
  info[at++] = role;
  at = info.writeUInt32BE(p.dialerNode, at);
  at = info.writeUInt32BE(p.acceptorNode, at);
  at = info.writeBigUInt64BE(BigInt(p.dialerIncarnation), at);
  at = info.writeBigUInt64BE(BigInt(p.acceptorIncarnation), at);
  at = info.writeUInt32BE(p.dialerKernelVersion, at);
  info.writeUInt32BE(p.acceptorKernelVersion, at);
  return Buffer.from(hkdfSync('sha256', clusterKey, Buffer.concat([p.dialerNonce, p.acceptorNonce]), info, 32));
}

/** The 16-byte tag of frame number `n` (from 0, per direction) under `key`: AES-256-GCM, IV = 0u32 | n:u64be, AAD = the frame. */
export function docFrameTag(key: Buffer, n: number, frame: Buffer): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(n), 4);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(frame);
  c.final();
  return c.getAuthTag();
}

function docFrameTagValid(key: Buffer, n: number, frame: Buffer, tag: Buffer): boolean {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(n), 4);
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAAD(frame);
  d.setAuthTag(tag);
  try {
    d.final();
    return true;
  } catch {
    return false;
  }
}

export class RawPeer {
  readonly values: unknown[] = [];
  closed = false;
  decodeError: unknown;
  /** A received frame whose tag did not verify. */
  macError = false;
  private pending = Buffer.alloc(0);
  private framesIn = 0;
  private receiveKey: Buffer | undefined;
  private received = 0;
  private sendKey: Buffer | undefined;
  private sent = 0;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      try {
        this.parse();
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

  /** Frames as the document lays them out: length, version, flags, body; after the two handshake frames, a tag. */
  private parse(): void {
    for (;;) {
      if (this.pending.byteLength < 4) return;
      const total = 4 + this.pending.readUInt32BE(0);
      const key = this.framesIn >= 2 ? this.receiveKey : undefined;
      const need = total + (key === undefined ? 0 : 16);
      if (this.pending.byteLength < need) return;
      const frame = this.pending.subarray(0, total);
      if (key !== undefined && !docFrameTagValid(key, this.received++, frame, this.pending.subarray(total, need))) {
        this.macError = true;
        this.socket.destroy();
        return;
      }
      this.pending = this.pending.subarray(need);
      this.framesIn++;
      for (const v of new FrameDecoder().push(Buffer.from(frame))) {
        // Heartbeats come whenever the other side is idle: tests never want them.
        if ((v as { t?: unknown } | null)?.t !== 'ping') this.values.push(v);
      }
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Sends a frame, sealed once the handshake is through. */
  send(value: unknown): void {
    const frame = encodeFrame(value);
    const key = this.sendKey;
    this.socket.write(key === undefined ? frame : Buffer.concat([frame, docFrameTag(key, this.sent++, frame)]));
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
    const kv = o.kv ?? 1;
    this.send({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv, from: o.from, to: o.to, inc: o.inc, nonce });
    const welcome = (await this.next()) as Record<string, unknown> | undefined;
    if (welcome?.t !== 'welcome') return { welcome, ready: undefined };
    const p: HandshakeParams = {
      version: LINK_PROTOCOL_VERSION,
      dialerNonce: nonce,
      acceptorNonce: welcome.nonce as Uint8Array,
      dialerNode: o.from,
      acceptorNode: o.to,
      dialerIncarnation: o.inc,
      acceptorIncarnation: welcome.inc as number,
      dialerKernelVersion: kv,
      acceptorKernelVersion: welcome.kv as number,
    };
    if (!verifyHandshakeMac(o.key, ROLE_ACCEPTOR, p, welcome.mac as Uint8Array)) throw new Error('acceptor proof does not verify');
    // What follows `ready` is sealed: the keys must be there before it arrives.
    this.receiveKey = docFrameKey(o.key, ROLE_ACCEPTOR, p);
    const auth = { t: 'auth', mac: handshakeMac(o.key, ROLE_DIALER, p), epoch: o.epoch ?? 0, view: o.view ?? null, ack: o.ack ?? 0 };
    this.send(o.tamperAuth === undefined ? auth : o.tamperAuth(auth));
    const ready = await this.next();
    if ((ready as { t?: unknown } | undefined)?.t === 'ready') this.sendKey = docFrameKey(o.key, ROLE_DIALER, p);
    return { welcome, ready };
  }
}
