/**
 * Reaching what a command needs (the coordination store, a node's daemon) within the command's
 * `--timeout`, and the error when that fails: it names what could not be reached, where, and why.
 */
import { DvsError } from '../ipc/errors.js';

/** Default of every `--timeout <ms>` option (docs/deploy.md). */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** `what` at `address` did not answer within `timeoutMs`; `dvs` exits with EXIT.unreachable. */
export class UnreachableError extends DvsError {
  constructor(
    readonly what: string,
    readonly address: string,
    readonly timeoutMs: number,
    readonly lastError: string | undefined,
  ) {
    super('EDVSNOTCONN', `cannot reach ${what} at ${address} within ${timeoutMs} ms${lastError === undefined ? '' : ` (last error: ${lastError})`}`);
  }
}

/** The reason inside an error, without the `EDVSXXX: ` prefix of a DvsError's message. */
export function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^EDVS[A-Z0-9]+: /, '');
}

/** `p`, or the error `onTimeout` makes if `p` has not settled within `ms`. */
export function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
