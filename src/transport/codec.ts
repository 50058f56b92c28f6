/**
 * Value <-> bytes: standard msgpack (no msgpackr record extension), so any msgpack library can
 * speak our protocols. 64-bit integers decode as bigint (numbers never travel as int64).
 */
import { Packr } from 'msgpackr';
import { DvsError } from '../ipc/errors.js';

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint', mapsAsObjects: true });

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

/** Encodes a value; EDVSBADVALUE when msgpack cannot carry it. The result is owned by the caller. */
export function encodeValue(value: unknown): Buffer {
  return Buffer.from(encodeValueView(value));
}

/** Decodes one msgpack value that must fill `bytes` exactly; EDVSBADREQUEST for malformed input. */
export function decodeValue(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (err) {
    throw new DvsError('EDVSBADREQUEST', `malformed msgpack: ${(err as Error).message}`, { cause: err });
  }
}
