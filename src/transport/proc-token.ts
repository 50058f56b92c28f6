/**
 * The shared secret of the process socket: a token file readable only by its owner (mode 0600),
 * written by whoever starts the daemon and read by the daemon and its clients.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { DvsError } from '../ipc/errors.js';
import { MAX_TOKEN_LENGTH } from './proc-protocol.js';

/** A fresh random token: 32 bytes, hex. */
export function generateToken(): string {
  return randomBytes(32).toString('hex');
}

/** Writes a new token to `path` with mode 0600 (atomically replacing an older one) and returns it. */
export async function createTokenFile(path: string, token: string = generateToken()): Promise<string> {
  checkToken(token);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${token}\n`, 'utf8');
    await fh.chmod(0o600);
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await chmod(path, 0o600);
  return token;
}

/**
 * Reads a token file. With `strict` (the daemon's side) the file must not be readable or writable
 * by group or others (EDVSACCES otherwise).
 */
export async function readTokenFile(path: string, strict = false): Promise<string> {
  let text: string;
  try {
    if (strict) {
      const st = await stat(path);
      if ((st.mode & 0o077) !== 0) throw new DvsError('EDVSACCES', `token file ${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8)}); it must be 0600`);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof DvsError) throw err;
    throw new DvsError('EDVSACCES', `cannot read token file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return checkToken(text.trim());
}

export function checkToken(token: unknown): string {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    throw new DvsError('EDVSBADVALUE', `a token must be a non-empty string of at most ${MAX_TOKEN_LENGTH} characters`);
  }
  return token;
}

/** Constant-time comparison (both sides hashed first, so lengths do not leak either). */
export function tokensEqual(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected, 'utf8').digest();
  const b = createHash('sha256').update(given, 'utf8').digest();
  return timingSafeEqual(a, b);
}
