/**
 * Value <-> bytes: standard msgpack (no msgpackr record extension), so any msgpack library can
 * speak our protocols. 64-bit integers decode as bigint (numbers never travel as int64).
 */
import { Packr } from 'msgpackr';
import { DvsError } from '../ipc/errors.js';

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint', mapsAsObjects: true });

/** Encodes a value; EDVSBADVALUE when msgpack cannot carry it. The result is owned by the caller. */
export function encodeValue(value: unknown): Buffer {
  try {
    // Copy out: msgpackr may hand back a view of a buffer it reuses.
    return Buffer.from(packr.pack(value));
  } catch (err) {
    throw new DvsError('EDVSBADVALUE', `cannot encode value: ${(err as Error).message}`, { cause: err });
  }
}

/** Decodes one msgpack value that must fill `bytes` exactly; EDVSBADREQUEST for malformed input. */
export function decodeValue(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (err) {
    throw new DvsError('EDVSBADREQUEST', `malformed msgpack: ${(err as Error).message}`, { cause: err });
  }
}
