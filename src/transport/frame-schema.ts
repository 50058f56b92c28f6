/**
 * Structural validation of every value decoded from a node link, before any of it is used: link
 * control frames (handshake, data, ack, ping) and every kernel frame (positional arrays, see
 * kernel-wire.ts) with its field types.
 * A violation is a DvsError EDVSBADREQUEST (a hello or welcome of another link protocol version:
 * EDVSPROTONOSUPPORT); the link closes the connection. Parsers return fresh
 * objects holding only the known fields, so unknown fields never reach the kernel.
 * See docs/link-protocol.md.
 */
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { KernelFrame } from '../kernel/frames.js';
import { LINK_PROTOCOL_VERSION, MAX_KERNEL_VERSION, MAX_NODE_ID } from './auth.js';
import { KIND, MAX_GROUPED_ACKS } from './kernel-wire.js';

/** A side's session with its peer: its incarnation and how many times it reset the session. */
export interface SessionToken {
  readonly inc: number;
  readonly epoch: number;
}

/** Dialer -> acceptor, first frame on a connection. `kv`: the kernel protocol version it speaks. */
export interface HelloFrame {
  readonly t: 'hello';
  readonly v: number;
  readonly kv: number;
  readonly from: number;
  readonly to: number;
  readonly inc: number;
  readonly nonce: Uint8Array;
}

/** Acceptor -> dialer: its identity, nonce and proof (empty in certificate-only mode). */
export interface WelcomeFrame {
  readonly t: 'welcome';
  readonly v: number;
  readonly kv: number;
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

/** The link protocol version of a hello or welcome, checked first: a peer of another version is refused as such, whatever else its frame holds. */
function version(o: Rec): number {
  const v = int(o, 'v', 0);
  if (v !== LINK_PROTOCOL_VERSION) throw new DvsError('EDVSPROTONOSUPPORT', `link protocol ${v} (this node speaks ${LINK_PROTOCOL_VERSION})`);
  return v;
}
const node = (o: Rec, key: string): number => int(o, key, 0, MAX_NODE_ID);

function bytes(o: Rec, key: string, length?: number): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) bad(`${key} is not binary`);
  if (length !== undefined && v.byteLength !== length) bad(`${key} is ${v.byteLength} bytes, not ${length}`);
  // A plain Uint8Array view (no copy), as a local delivery would hand over, not the decoder's Buffer.
  return v.constructor === Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
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

/** Element i of a positional kernel frame as a safe integer within [min, max]. */
function at(a: readonly unknown[], i: number, name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  let v = a[i];
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) v = Number(v);
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(`${name} is not a safe integer`);
  if (v < min || v > max) bad(`${name} = ${v} outside ${min}..${max}`);
  return v;
}

function atBytes(a: readonly unknown[], i: number, name: string): Uint8Array {
  const v = a[i];
  if (!(v instanceof Uint8Array)) bad(`${name} is not binary`);
  // A plain Uint8Array view (no copy), as a local delivery would hand over, not the decoder's Buffer.
  return v.constructor === Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function arity(a: readonly unknown[], min: number, max: number, what: string): void {
  if (a.length < min || a.length > max) bad(`${what} has ${a.length} elements, not ${min === max ? min : `${min}..${max}`}`);
}

const uAt = (a: readonly unknown[], i: number, name: string): number => at(a, i, name, 0);

/** Elements 2..7 of copy-read and copy-relay: which chunk of whose grant, for whom. */
function chunkSource(a: readonly unknown[]): { id: number; requester: number; owner: number; grant: number; offset: number; length: number } {
  return { id: uAt(a, 2, 'id'), requester: at(a, 3, 'requester'), owner: at(a, 4, 'owner'), grant: at(a, 5, 'grant'), offset: uAt(a, 6, 'offset'), length: uAt(a, 7, 'length') };
}

/** "Moved to node N (at epoch E)" at elements i (node) and i+1 (epoch, when the sender knows one). */
function movedTo(a: readonly unknown[], i: number): { node?: number; epoch?: number } {
  if (a[i] === null || a[i] === undefined) return {};
  const node = at(a, i, 'node', 0, MAX_NODE_ID);
  return a.length > i + 1 ? { node, epoch: at(a, i + 1, 'epoch', -1) } : { node };
}

/**
 * Validates one decoded kernel frame (the positional form of src/transport/kernel-wire.ts) and
 * appends it to `out`; a send-acks element appends one send-ack per id.
 */
export function parseKernelFrame(value: unknown, out: KernelFrame[]): void {
  if (!Array.isArray(value) || value.length < 3) bad('a kernel frame is not an array of at least 3 elements');
  const a = value as readonly unknown[];
  const code = at(a, 0, 'kind', 1, KIND.svc);
  const dc = uAt(a, 1, 'dc');
  switch (code) {
    case KIND.send: {
      arity(a, 8, 8, 'send');
      const rec = a[7];
      if (typeof rec !== 'boolean') bad('rec is not a boolean');
      out.push({ k: 'send', dc, id: uAt(a, 2, 'id'), src: at(a, 3, 'src'), dst: at(a, 4, 'dst'), type: at(a, 5, 'type'), payload: a[6] as Payload, rec });
      return;
    }
    case KIND.sendAck: {
      arity(a, 4, 6, 'send-ack');
      const base = { k: 'send-ack', dc, id: uAt(a, 2, 'id'), rc: at(a, 3, 'rc') } as const;
      out.push(a.length === 4 ? base : { ...base, ...movedTo(a, 4) });
      return;
    }
    case KIND.cancel:
      arity(a, 3, 3, 'cancel');
      out.push({ k: 'cancel', dc, id: uAt(a, 2, 'id') });
      return;
    case KIND.cancelAck: {
      arity(a, 3, 5, 'cancel-ack');
      const base = { k: 'cancel-ack', dc, id: uAt(a, 2, 'id') } as const;
      out.push(a.length === 3 ? base : { ...base, ...movedTo(a, 3) });
      return;
    }
    case KIND.svc:
      arity(a, 3, 4, 'svc');
      out.push(a.length === 3 ? { k: 'svc', dc, body: a[2] as Payload } : { k: 'svc', dc, body: a[2] as Payload, data: atBytes(a, 3, 'data') });
      return;
    case KIND.moved: {
      arity(a, 5, 5, 'moved');
      const ids = a[4];
      if (!Array.isArray(ids) || ids.length > MAX_GROUPED_ACKS) bad(`moved ids is not an array of at most ${MAX_GROUPED_ACKS} ids`);
      out.push({ k: 'moved', dc, ep: at(a, 2, 'ep'), epoch: uAt(a, 3, 'epoch'), ids: ids.map((_, i) => uAt(ids as unknown[], i, 'id')) });
      return;
    }
    case KIND.reply:
      arity(a, 7, 7, 'reply');
      out.push({ k: 'reply', dc, id: uAt(a, 2, 'id'), src: at(a, 3, 'src'), dst: at(a, 4, 'dst'), type: at(a, 5, 'type'), payload: a[6] as Payload });
      return;
    case KIND.replyCancel:
      arity(a, 5, 5, 'reply-cancel');
      out.push({ k: 'reply-cancel', dc, id: uAt(a, 2, 'id'), client: at(a, 3, 'client'), server: at(a, 4, 'server') });
      return;
    case KIND.replyCancelAck: {
      arity(a, 4, 6, 'reply-cancel-ack');
      const base = { k: 'reply-cancel-ack', dc, id: uAt(a, 2, 'id'), client: at(a, 3, 'client') } as const;
      out.push(a.length === 4 ? base : { ...base, ...movedTo(a, 4) });
      return;
    }
    case KIND.notify:
      arity(a, 5, 6, 'notify');
      out.push(a.length === 5 ? { k: 'notify', dc, src: at(a, 2, 'src'), dst: at(a, 3, 'dst'), arg: at(a, 4, 'arg') } : { k: 'notify', dc, src: at(a, 2, 'src'), dst: at(a, 3, 'dst'), arg: at(a, 4, 'arg'), origin: uAt(a, 5, 'origin') });
      return;
    case KIND.unbound:
      arity(a, 3, 3, 'unbound');
      out.push({ k: 'unbound', dc, ep: at(a, 2, 'ep') });
      return;
    case KIND.copyRead:
      arity(a, 8, 8, 'copy-read');
      out.push({ k: 'copy-read', dc, ...chunkSource(a) });
      return;
    case KIND.copyData: {
      arity(a, 4, 5, 'copy-data');
      const base = { k: 'copy-data', dc, id: uAt(a, 2, 'id'), rc: at(a, 3, 'rc') } as const;
      out.push(a.length === 4 || a[4] === null || a[4] === undefined ? base : { ...base, data: atBytes(a, 4, 'data') });
      return;
    }
    case KIND.copyWrite:
      arity(a, 8, 8, 'copy-write');
      out.push({ k: 'copy-write', dc, id: uAt(a, 2, 'id'), requester: at(a, 3, 'requester'), owner: at(a, 4, 'owner'), grant: at(a, 5, 'grant'), offset: uAt(a, 6, 'offset'), data: atBytes(a, 7, 'data') });
      return;
    case KIND.copyAck:
      arity(a, 4, 4, 'copy-ack');
      out.push({ k: 'copy-ack', dc, id: uAt(a, 2, 'id'), rc: at(a, 3, 'rc') });
      return;
    case KIND.copyRelay:
      arity(a, 12, 12, 'copy-relay');
      out.push({
        k: 'copy-relay',
        dc,
        ...chunkSource(a),
        dstNode: uAt(a, 8, 'dstNode'),
        dstOwner: at(a, 9, 'dstOwner'),
        dstGrant: at(a, 10, 'dstGrant'),
        dstOffset: uAt(a, 11, 'dstOffset'),
      });
      return;
    case KIND.sendAcks: {
      arity(a, 3, 3, 'send-acks');
      const ids = a[2];
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_GROUPED_ACKS) bad(`send-acks ids is not an array of 1..${MAX_GROUPED_ACKS} ids`);
      for (let i = 0; i < ids.length; i++) out.push({ k: 'send-ack', dc, id: uAt(ids as unknown[], i, 'id'), rc: 0 });
      return;
    }
    default:
      bad(`unknown kernel frame kind ${code}`);
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
      const frames: KernelFrame[] = [];
      for (let i = 0; i < f.length; i++) parseKernelFrame(f[i], frames);
      return { t, s: int(o, 's', 1), a: uint(o, 'a'), f: frames };
    }
    case 'ack':
      return { t, a: uint(o, 'a') };
    case 'ping':
      return { t };
    case 'hello':
      return { t, v: version(o), kv: int(o, 'kv', 0, MAX_KERNEL_VERSION), from: node(o, 'from'), to: node(o, 'to'), inc: uint(o, 'inc'), nonce: bytes(o, 'nonce', nonceBytes) };
    case 'welcome': {
      const v = version(o);
      const mac = bytes(o, 'mac');
      if (mac.byteLength !== 0 && mac.byteLength !== macBytes) bad(`mac is ${mac.byteLength} bytes`);
      return { t, v, kv: int(o, 'kv', 0, MAX_KERNEL_VERSION), from: node(o, 'from'), to: node(o, 'to'), inc: uint(o, 'inc'), nonce: bytes(o, 'nonce', nonceBytes), mac };
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
