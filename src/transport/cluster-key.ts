/** The cluster key file: the shared secret of links and of the embedded store, as hex text. */
import { readFile } from 'node:fs/promises';
import { DvsError } from '../ipc/errors.js';

/** The cluster key of a key file (hex, at least 16 bytes). */
export async function readClusterKeyFile(file: string): Promise<Buffer> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new DvsError('EDVSBADFILE', `cannot read cluster key ${file}: ${(err as Error).message}`);
  }
  if (!/^[0-9a-fA-F]{32,}$/.test(text) || text.length % 2 !== 0) throw new DvsError('EDVSBADVALUE', `cluster key in ${file} must be at least 16 bytes of hex`);
  return Buffer.from(text, 'hex');
}
