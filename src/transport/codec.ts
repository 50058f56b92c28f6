/**
 * Value <-> bytes: standard msgpack (no msgpackr record extension), so any msgpack library can
 * speak our protocols. 64-bit integers decode as bigint (numbers never travel as int64).
 */
import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import { DvsError } from '../ipc/errors.js';

const OPTIONS = { useRecords: false, moreTypes: false, int64AsType: 'bigint', mapsAsObjects: true } as const;
const packr = new Packr(OPTIONS);
/** Decodes binary fields as copies, for bytes that are about to be reused. */
const copyingUnpackr = new Packr({ ...OPTIONS, copyBuffers: true });

/**
 * Encodes a value into msgpack's scratch buffer and returns a view of it, valid only until the
 * next encode: copy it out before anything else encodes. EDVSBADVALUE when msgpack cannot carry it.
 */
export function encodeValueView(value: unknown): Uint8Array {
  try {
    return packr.pack(value);
  } catch (err) {
    throw new DvsError('EDVSBADVALUE', `cannot encode value: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Encodes a value after `room` (0-255) bytes left for the caller (a frame header), in one buffer:
 * `[room bytes][msgpack]`. The bytes are msgpack's and are never written over by later encodes
 * (msgpackr moves on in its buffer, or to a new one); the result shares that buffer the way small
 * Buffers share Node's pool. EDVSBADVALUE when msgpack cannot carry the value.
 */
export function encodeValueAfter(value: unknown, room: number): Buffer {
  try {
    return packr.pack(value, RESERVE_START_SPACE | room);
  } catch (err) {
    throw new DvsError('EDVSBADVALUE', `cannot encode value: ${(err as Error).message}`, { cause: err });
  }
}

/** Encodes a value; EDVSBADVALUE when msgpack cannot carry it. The result is owned by the caller. */
export function encodeValue(value: unknown): Buffer {
  return Buffer.from(encodeValueView(value));
}

/** Decodes one msgpack value that must fill `bytes` exactly; EDVSBADREQUEST for malformed input. */
export function decodeValue(bytes: Uint8Array): unknown {
  return decodeValueIn(bytes, 0, bytes.byteLength);
}

/**
 * Decodes one msgpack value that must fill `bytes[start, end)` exactly, where it lies (no view of
 * the range is made); binary fields are views of `bytes`, or copies with `copyBinaries` (when
 * `bytes` is about to be reused). EDVSBADREQUEST for malformed input.
 */
export function decodeValueIn(bytes: Uint8Array, start: number, end: number, copyBinaries = false): unknown {
  if (end <= start) throw new DvsError('EDVSBADREQUEST', 'malformed msgpack: no bytes');
  try {
    return (copyBinaries ? copyingUnpackr : packr).unpack(bytes, { start, end });
  } catch (err) {
    throw new DvsError('EDVSBADREQUEST', `malformed msgpack: ${(err as Error).message}`, { cause: err });
  }
}
