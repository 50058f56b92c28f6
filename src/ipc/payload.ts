/**
 * What a message may carry: plain values that msgpack encodes losslessly. `checkPayload` walks a
 * value once, rejects what cannot cross the wire (EDVSBADVALUE) and bounds its encoded size
 * (EDVSMSGSIZE), so a local delivery fails exactly where a remote one would.
 */
import { DvsError } from './errors.js';

export type Payload =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Date
  | readonly Payload[]
  | { readonly [key: string]: Payload };

/** Deepest nesting accepted; also what stops a cyclic value. */
export const MAX_PAYLOAD_DEPTH = 32;

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

function lengthHeader(n: number, small: number): number {
  if (n < small) return 1;
  if (n <= 0xffff) return 3;
  return 5;
}

function bad(reason: string): never {
  throw new DvsError('EDVSBADVALUE', `payload ${reason}`);
}

function sizeOf(value: unknown, depth: number, budget: number): number {
  switch (typeof value) {
    case 'undefined':
      return 3; // msgpackr encodes undefined as a 1-byte fixext
    case 'boolean':
      return 1;
    case 'number':
      return Number.isInteger(value) && value >= -32 && value <= 127 ? 1 : 9;
    case 'bigint':
      if (value < INT64_MIN || value > UINT64_MAX) bad('bigint outside the 64-bit range');
      return 9;
    case 'string': {
      const bytes = value.length <= 16 ? value.length * 3 : Buffer.byteLength(value);
      return lengthHeader(bytes, 32) + bytes;
    }
    case 'object':
      break;
    default:
      return bad(`holds a ${typeof value}`);
  }
  if (value === null) return 1;
  if (depth >= MAX_PAYLOAD_DEPTH) bad(`nests deeper than ${MAX_PAYLOAD_DEPTH} levels (or is cyclic)`);
  if (value instanceof Uint8Array) return lengthHeader(value.byteLength, 0) + value.byteLength;
  if (Array.isArray(value)) {
    let size = lengthHeader(value.length, 16);
    for (let i = 0; i < value.length; i++) {
      size += sizeOf(value[i], depth + 1, budget - size);
      if (size > budget) return size;
    }
    return size;
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) bad('holds an invalid Date');
    return 15;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    bad(`holds a ${(value as object).constructor?.name ?? 'non-plain'} object; only plain objects, arrays, Uint8Array and Date`);
  }
  let size = 0;
  let keys = 0;
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (key === '__proto__') bad('uses the key __proto__');
    keys++;
    size += lengthHeader(key.length * 3, 32) + key.length * 3;
    size += sizeOf(record[key], depth + 1, budget - size);
    if (size > budget) return size;
  }
  return size + lengthHeader(keys, 16);
}

/**
 * Returns an upper bound of the payload's msgpack size. Throws EDVSBADVALUE for a value that
 * cannot be encoded and EDVSMSGSIZE when the bound exceeds `maxBytes`.
 */
export function checkPayload(value: unknown, maxBytes: number): number {
  // Fast path for the common small scalars.
  if (value === undefined || value === null || typeof value === 'boolean') return 1;
  if (typeof value === 'number') return 9;
  const size = sizeOf(value, 0, maxBytes);
  if (size > maxBytes) {
    throw new DvsError('EDVSMSGSIZE', `payload needs more than ${maxBytes} bytes`, { details: { limit: maxBytes } });
  }
  return size;
}
