/**
 * Structural validation of every value decoded from a node link, before any of it is used: link
 * control frames (handshake, data, ack, ping) and every KernelFrame kind with its field types.
 * A violation is a DvsError EDVSBADREQUEST; the link closes the connection. Parsers return fresh
 * objects holding only the known fields, so unknown fields never reach the kernel.
 * See docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { KernelFrame } from '../kernel/frames.js';
import { MAX_NODE_ID } from './auth.js';

/** A side's session with its peer: its incarnation and how many times it reset the session. */
export interface SessionToken {
  readonly inc: number;
  readonly epoch: number;
}

/** Dialer -> acceptor, first frame on a connection. */
export interface HelloFrame {
  readonly t: 'hello';
  readonly v: number;
  readonly from: number;
  readonly to: number;
  readonly inc: number;
  readonly nonce: Uint8Array;
}

/** Acceptor -> dialer: its identity, nonce and proof (empty in certificate-only mode). */
export interface WelcomeFrame {
  readonly t: 'welcome';
  readonly v: number;
  readonly from: number;
  readonly to: number;
  readonly inc: number;
  readonly nonce: Uint8Array;
  readonly mac: Uint8Array;
}

/** Dialer -> acceptor: its proof, then its session state (epoch, view of the acceptor, last seq received). */
export interface AuthFrame {
  readonly t: 'auth';
  readonly mac: Uint8Array;
  readonly epoch: number;
  readonly view: SessionToken | null;
  readonly ack: number;
}

/** Acceptor -> dialer: the acceptor's session state; the link is established. */
export interface ReadyFrame {
  readonly t: 'ready';
  readonly epoch: number;
  readonly view: SessionToken | null;
  readonly ack: number;
}

/** A batch of kernel frames with sequence number `s`, piggybacking the cumulative ack `a`. */
export interface DataFrame {
  readonly t: 'data';
  readonly s: number;
  readonly a: number;
  readonly f: KernelFrame[];
}

export interface AckFrame {
  readonly t: 'ack';
  readonly a: number;
}

export interface PingFrame {
  readonly t: 'ping';
}

export type HandshakeFrame = HelloFrame | WelcomeFrame | AuthFrame | ReadyFrame;
export type LinkFrame = HandshakeFrame | DataFrame | AckFrame | PingFrame;

type Rec = Record<string, unknown>;

function bad(what: string): never {
  throw new DvsError('EDVSBADREQUEST', `invalid link frame: ${what}`);
}

function record(v: unknown, what: string): Rec {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Date) bad(`${what} is not a map`);
  return v as Rec;
}

/** A safe integer within [min, max]; a bigint within the safe range is accepted and converted. */
function int(o: Rec, key: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  let v = o[key];
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) v = Number(v);
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(`${key} is not a safe integer`);
  if (v < min || v > max) bad(`${key} = ${v} outside ${min}..${max}`);
  return v;
}

const uint = (o: Rec, key: string): number => int(o, key, 0);
const endpoint = (o: Rec, key: string): number => int(o, key);
const node = (o: Rec, key: string): number => int(o, key, 0, MAX_NODE_ID);

function bytes(o: Rec, key: string, length?: number): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) bad(`${key} is not binary`);
  if (length !== undefined && v.byteLength !== length) bad(`${key} is ${v.byteLength} bytes, not ${length}`);
  // A plain Uint8Array view (no copy), as a local delivery would hand over, not the decoder's Buffer.
  return v.constructor === Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function bool(o: Rec, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') bad(`${key} is not a boolean`);
  return v;
}

function kind(o: Rec, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') bad(`${key} is not a string`);
  return v;
}

function token(o: Rec, key: string): SessionToken | null {
  const v = o[key];
  if (v === null || v === undefined) return null;
  const t = record(v, key);
  return { inc: uint(t, 'inc'), epoch: uint(t, 'epoch') };
}

/** Validates one decoded kernel frame. */
export function parseKernelFrame(value: unknown): KernelFrame {
  const o = record(value, 'kernel frame');
  const k = kind(o, 'k');
  const dc = uint(o, 'dc');
  switch (k) {
    case 'send':
      return { k, dc, id: uint(o, 'id'), src: endpoint(o, 'src'), dst: endpoint(o, 'dst'), type: int(o, 'type'), payload: o.payload as Payload, rec: bool(o, 'rec') };
    case 'send-ack': {
      const base = { k, dc, id: uint(o, 'id'), rc: int(o, 'rc') } as const;
      return o.node === undefined || o.node === null ? base : { ...base, node: node(o, 'node') };
    }
    case 'cancel':
    case 'cancel-ack':
      return { k, dc, id: uint(o, 'id') };
    case 'reply':
      return { k, dc, id: uint(o, 'id'), src: endpoint(o, 'src'), dst: endpoint(o, 'dst'), type: int(o, 'type'), payload: o.payload as Payload };
    case 'reply-cancel':
      return { k, dc, client: endpoint(o, 'client'), server: endpoint(o, 'server') };
    case 'notify':
      return { k, dc, src: endpoint(o, 'src'), dst: endpoint(o, 'dst'), arg: int(o, 'arg') };
    case 'unbound':
      return { k, dc, ep: endpoint(o, 'ep') };
    case 'copy-read':
      return {
        k,
        dc,
        id: uint(o, 'id'),
        requester: endpoint(o, 'requester'),
        owner: endpoint(o, 'owner'),
        grant: int(o, 'grant'),
        offset: uint(o, 'offset'),
        length: uint(o, 'length'),
      };
    case 'copy-data': {
      const base = { k, dc, id: uint(o, 'id'), rc: int(o, 'rc') } as const;
      return o.data === undefined || o.data === null ? base : { ...base, data: bytes(o, 'data') };
    }
    case 'copy-write':
      return {
        k,
        dc,
        id: uint(o, 'id'),
        requester: endpoint(o, 'requester'),
        owner: endpoint(o, 'owner'),
        grant: int(o, 'grant'),
        offset: uint(o, 'offset'),
        data: bytes(o, 'data'),
      };
    case 'copy-ack':
      return { k, dc, id: uint(o, 'id'), rc: int(o, 'rc') };
    default:
      return bad(`unknown kernel frame kind ${JSON.stringify(k).slice(0, 40)}`);
  }
}

/** Validates one decoded link frame (and, for data frames, every kernel frame it carries). */
export function parseLinkFrame(value: unknown, nonceBytes: number, macBytes: number): LinkFrame {
  const o = record(value, 'link frame');
  const t = kind(o, 't');
  switch (t) {
    case 'data': {
      const f = o.f;
      if (!Array.isArray(f) || f.length === 0) bad('f is not a non-empty array');
      const frames = new Array<KernelFrame>(f.length);
      for (let i = 0; i < f.length; i++) frames[i] = parseKernelFrame(f[i]);
      return { t, s: int(o, 's', 1), a: uint(o, 'a'), f: frames };
    }
    case 'ack':
      return { t, a: uint(o, 'a') };
    case 'ping':
      return { t };
    case 'hello':
      return { t, v: uint(o, 'v'), from: node(o, 'from'), to: node(o, 'to'), inc: uint(o, 'inc'), nonce: bytes(o, 'nonce', nonceBytes) };
    case 'welcome': {
      const mac = bytes(o, 'mac');
      if (mac.byteLength !== 0 && mac.byteLength !== macBytes) bad(`mac is ${mac.byteLength} bytes`);
      return { t, v: uint(o, 'v'), from: node(o, 'from'), to: node(o, 'to'), inc: uint(o, 'inc'), nonce: bytes(o, 'nonce', nonceBytes), mac };
    }
    case 'auth': {
      const mac = bytes(o, 'mac');
      if (mac.byteLength !== 0 && mac.byteLength !== macBytes) bad(`mac is ${mac.byteLength} bytes`);
      return { t, mac, epoch: uint(o, 'epoch'), view: token(o, 'view'), ack: uint(o, 'ack') };
    }
    case 'ready':
      return { t, epoch: uint(o, 'epoch'), view: token(o, 'view'), ack: uint(o, 'ack') };
    default:
      return bad(`unknown link frame type ${JSON.stringify(t).slice(0, 40)}`);
  }
}
