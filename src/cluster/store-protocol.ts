/**
 * The embedded store's wire protocol, shared by `StoreServer` and `StoreClient`: frames of
 * src/transport/framing.ts carrying one msgpack map each. See docs/coordination.md for the full
 * description (handshake, requests, pushes, errors).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { DvsError, codeOfErrno, ERRNO, type DvsErrorCode } from '../ipc/errors.js';

export const STORE_PROTOCOL = 'dvs-store';
export const STORE_PROTOCOL_VERSION = 1;
export const NONCE_BYTES = 32;
/** Shortest cluster key accepted, in bytes. */
export const MIN_CLUSTER_KEY_BYTES = 16;
/** Bytes a peer may send before it has authenticated. */
export const MAX_PREAUTH_BYTES = 4096;

/** Request ops, as written in the `op` field. */
export const STORE_WIRE_OPS = ['get', 'getPrefix', 'put', 'delete', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'watch', 'unwatch', 'ping'] as const;
export type StoreWireOp = (typeof STORE_WIRE_OPS)[number];

/** An error as carried on the wire. */
export interface WireError {
  readonly code: string;
  readonly errno: number;
  readonly message: string;
}

export function clusterKeyBytes(key: string | Uint8Array): Buffer {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  if (bytes.byteLength < MIN_CLUSTER_KEY_BYTES) {
    throw new DvsError('EDVSINVAL', `cluster key must have at least ${MIN_CLUSTER_KEY_BYTES} bytes, got ${bytes.byteLength}`);
  }
  return bytes;
}

/** What the client proves: HMAC-SHA256(key, "dvs-store/1 client" | serverNonce | clientNonce). */
export function clientProof(key: Buffer, serverNonce: Uint8Array, clientNonce: Uint8Array): Buffer {
  return createHmac('sha256', key).update(`${STORE_PROTOCOL}/${STORE_PROTOCOL_VERSION} client`).update(serverNonce).update(clientNonce).digest();
}

/** What the server proves back: HMAC-SHA256(key, "dvs-store/1 server" | clientNonce | serverNonce). */
export function serverProof(key: Buffer, serverNonce: Uint8Array, clientNonce: Uint8Array): Buffer {
  return createHmac('sha256', key).update(`${STORE_PROTOCOL}/${STORE_PROTOCOL_VERSION} server`).update(clientNonce).update(serverNonce).digest();
}

export function proofMatches(expected: Buffer, got: unknown): boolean {
  return got instanceof Uint8Array && got.byteLength === expected.byteLength && timingSafeEqual(expected, got);
}

export function toWireError(err: unknown): WireError {
  if (err instanceof DvsError) return { code: err.code, errno: err.errno, message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'EDVSIO', errno: ERRNO.EDVSIO, message: `EDVSIO: internal error: ${message}` };
}

/** Rebuilds a DvsError from a wire error; unknown or malformed ones become EDVSBADREQUEST. */
export function fromWireError(e: unknown): DvsError {
  if (typeof e !== 'object' || e === null) return new DvsError('EDVSBADREQUEST', 'malformed error from the store server');
  const r = e as Record<string, unknown>;
  const message = typeof r.message === 'string' ? r.message.replace(/^EDVS[A-Z0-9]+: /, '') : undefined;
  if (typeof r.code === 'string' && Object.prototype.hasOwnProperty.call(ERRNO, r.code)) return new DvsError(r.code as DvsErrorCode, message);
  if (typeof r.errno === 'number' && codeOfErrno(r.errno) !== undefined) return DvsError.fromErrno(r.errno, message);
  return new DvsError('EDVSBADREQUEST', `store server error ${String(r.code)}: ${message ?? ''}`);
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}
