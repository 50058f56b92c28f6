/**
 * LZ4 for wire frames (lz4-napi): the LZ4 block format with the uncompressed size prepended as a
 * little-endian u32, as lz4_flex's compress_prepend_size writes it.
 */
import { createRequire } from 'node:module';
import { DvsError } from '../ipc/errors.js';

interface Lz4 {
  compressSync(data: Buffer): Buffer;
  uncompressSync(data: Buffer): Buffer;
}

const lz4 = createRequire(import.meta.url)('lz4-napi') as Lz4;

export function compress(data: Buffer): Buffer {
  return lz4.compressSync(data);
}

/** Decompresses, refusing output above `maxBytes` before allocating it. */
export function decompress(data: Buffer, maxBytes: number): Buffer {
  if (data.byteLength < 4) throw new DvsError('EDVSBADREQUEST', 'compressed body shorter than its size prefix');
  const size = data.readUInt32LE(0);
  if (size > maxBytes) throw new DvsError('EDVSPACKSIZE', `compressed body would expand to ${size} bytes, above ${maxBytes}`);
  let out: Buffer;
  try {
    out = lz4.uncompressSync(data);
  } catch (err) {
    throw new DvsError('EDVSBADREQUEST', `malformed LZ4 body: ${(err as Error).message}`, { cause: err });
  }
  if (out.byteLength !== size) throw new DvsError('EDVSBADREQUEST', 'LZ4 body size does not match its prefix');
  return out;
}
