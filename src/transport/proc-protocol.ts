/**
 * The process protocol (docs/protocol.md): how an OS process of any language talks to its node
 * daemon over a Unix socket. This module holds what both ends share: the protocol version, the
 * operation names, the wire shapes, limits, and the strict field readers the server validates every
 * request with. Pure: no I/O.
 */
import { DvsError, ERRNO, codeOfErrno, type DvsErrorCode } from '../ipc/errors.js';

/** Version carried in `hello`; bumped on any incompatible change of docs/protocol.md. */
export const PROC_PROTOCOL_VERSION = 1;

/** Requests a client may send after `hello`. */
export const PROC_OPS = [
  'bind',
  'unbind',
  'send',
  'receive',
  'sendrec',
  'receiveRequest',
  'reply',
  'replyAndReceive',
  'notify',
  'grant',
  'revoke',
  'copyFrom',
  'copyTo',
  'copy',
  'waitForBind',
  'waitForUnbind',
  'wakeup',
  'procs',
  'info',
  'cancel',
  'ping',
  'run',
  'runs',
  'stop',
] as const;
export type ProcOp = (typeof PROC_OPS)[number];

/** Requests the server sends to a client: the bytes of the client's grants, a service's state before a move. */
export type ServerOp = 'grant-read' | 'grant-write' | 'snapshot';

/** Events the server sends to a client: no answer expected (`bye`, an endpoint `moved`, a piece of a bind's `restored` state). */
export type ServerEvent = 'bye' | 'moved' | 'restored';

/** Largest state a service may give in a snapshot (and so get back in `restored`). */
export const MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024;

/** Bytes of a frame body kept for the request's own fields around a payload or a data chunk. */
export const FRAME_OVERHEAD_BYTES = 4096;
export const DEFAULT_PROC_MAX_FRAME_BYTES = 4 * 1024 * 1024;
export const DEFAULT_HELLO_TIMEOUT_MS = 5000;
/** Longest timeout a call may carry (Node timers overflow above it). */
export const MAX_TIMEOUT_MS = 0x7fffffff;
/** Longest connection or process name a client may declare in hello. */
export const MAX_CLIENT_NAME = 64;
export const MAX_TOKEN_LENGTH = 1024;

/** The error object of a failed request. */
export interface WireError {
  readonly code: DvsErrorCode;
  readonly errno: number;
  readonly message: string;
  readonly details?: Readonly<Record<string, string | number | boolean>>;
}

/** What `hello` returns. */
export interface HelloResult {
  readonly version: number;
  readonly nodeId: number;
  /** This connection's number, for logs. */
  readonly connection: number;
  readonly maxFrameBytes: number;
  readonly maxPayloadBytes: number;
  readonly maxCopyChunk: number;
  /** Largest `length` of one copyFrom and `data` of one copyTo request. */
  readonly maxCopyBytes: number;
  readonly maxInFlight: number;
  readonly maxEndpoints: number;
  readonly maxGrants: number;
  /**
   * How long past its timeout or abort a call may still be settling: a remote call waits for the
   * far node to confirm the withdrawal, at worst until that node is declared down (its failure-
   * detection delay). A client guarding calls locally waits at least this long. Absent means 0.
   */
  readonly settleMs?: number;
  /** DC used by `bind` when the request names none; absent when the daemon has no default. */
  readonly defaultDcid?: number;
}

/** What `bind` returns. */
export interface BindResult {
  readonly dcid: number;
  readonly endpoint: number;
  readonly slot: number;
  readonly generation: number;
  readonly name: string;
  /** A system process may receiveRequest, reply, notify and be notified. */
  readonly system: boolean;
  /**
   * The state the endpoint's previous incarnation gave in its snapshot (absent on a fresh bind and
   * for a stateless service). A state above one frame comes in `restored` events before the result,
   * and this holds its last piece.
   */
  readonly restored?: Uint8Array;
  /** True when this is the endpoint of a service moved here from another node. */
  readonly migrated?: true;
}

/** What the `moved` event says: the endpoint left this connection and lives on at `node`, from route `epoch`. */
export interface MovedEvent {
  readonly dcid: number;
  readonly endpoint: number;
  readonly node: number;
  readonly epoch: number;
}

export type Fields = Record<string, unknown>;

/** A msgpack map decoded as a plain object (not an array, not a byte string, not null). */
export function isPlainMap(v: unknown): v is Fields {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function badField(name: string, what: string, value: unknown): never {
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : typeof value === 'bigint' ? `${value}n` : typeof value === 'object' ? (value === null ? 'null' : Array.isArray(value) ? 'an array' : 'an object') : String(value);
  throw new DvsError('EDVSBADREQUEST', `field ${name} must be ${what}, got ${shown}`, { details: { field: name } });
}

/** An integer: a msgpack int (a JS number, or a bigint when sent as a 64-bit int) in the safe range. */
export function asInt(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : undefined;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
  return undefined;
}

export function reqInt(f: Fields, name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  const v = asInt(f[name]);
  if (v === undefined || v < min || v > max) badField(name, `an integer in ${min}..${max}`, f[name]);
  return v;
}

export function optInt(f: Fields, name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (f[name] === undefined || f[name] === null) return undefined;
  return reqInt(f, name, min, max);
}

export function reqString(f: Fields, name: string, maxLength: number): string {
  const v = f[name];
  if (typeof v !== 'string' || v.length > maxLength) badField(name, `a string of at most ${maxLength} characters`, v);
  return v;
}

export function optString(f: Fields, name: string, maxLength: number): string | undefined {
  if (f[name] === undefined || f[name] === null) return undefined;
  return reqString(f, name, maxLength);
}

export function optBool(f: Fields, name: string): boolean | undefined {
  const v = f[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') badField(name, 'a boolean', v);
  return v;
}

export function reqBytes(f: Fields, name: string, maxLength: number): Uint8Array {
  const v = f[name];
  if (!(v instanceof Uint8Array)) badField(name, 'a byte string (msgpack bin)', v);
  if (v.byteLength > maxLength) throw new DvsError('EDVSMSGSIZE', `field ${name} holds ${v.byteLength} bytes, above the limit of ${maxLength}`, { details: { field: name, limit: maxLength } });
  return v;
}

export function reqMap(f: Fields, name: string): Fields {
  const v = f[name];
  if (!isPlainMap(v)) badField(name, 'a map', v);
  return v;
}

/** `timeoutMs`: absent/nil or -1 waits forever, 0 does not wait, a positive value bounds the wait. */
export function optTimeout(f: Fields): number | undefined {
  const v = f.timeoutMs;
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'bigint' ? asInt(v) : v;
  if (typeof n !== 'number' || Number.isNaN(n) || (n < 0 && n !== -1) || n > MAX_TIMEOUT_MS) badField('timeoutMs', `-1 or a number in 0..${MAX_TIMEOUT_MS}`, v);
  return n;
}

/** A DvsError (or anything thrown) as the error object of a response. */
export function toWireError(err: unknown): WireError {
  if (err instanceof DvsError) {
    let details: Record<string, string | number | boolean> | undefined;
    if (err.details !== undefined) {
      for (const [k, v] of Object.entries(err.details)) {
        if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') (details ??= {})[k] = v;
      }
    }
    return details === undefined ? { code: err.code, errno: err.errno, message: err.message } : { code: err.code, errno: err.errno, message: err.message, details };
  }
  return { code: 'EDVSIO', errno: ERRNO.EDVSIO, message: 'EDVSIO: internal error' };
}

/** Rebuilds a DvsError from an error object read off the wire; unknown shapes become EDVSIO. */
export function fromWireError(e: unknown): DvsError {
  if (!isPlainMap(e)) return new DvsError('EDVSIO', 'malformed error object');
  const errno = asInt(e.errno);
  const code = typeof e.code === 'string' && Object.hasOwn(ERRNO, e.code) ? (e.code as DvsErrorCode) : errno === undefined ? undefined : codeOfErrno(errno);
  const raw = typeof e.message === 'string' ? e.message : undefined;
  if (code === undefined) return new DvsError('EDVSIO', `unknown error ${String(e.code)} (${String(e.errno)})${raw === undefined ? '' : `: ${raw}`}`);
  // The server's message already starts with the code; keep it verbatim.
  const text = raw !== undefined && raw.startsWith(`${code}: `) ? raw.slice(code.length + 2) : raw;
  let details: Record<string, unknown> | undefined;
  if (isPlainMap(e.details)) details = { ...e.details };
  return new DvsError(code, text, details === undefined ? {} : { details });
}
