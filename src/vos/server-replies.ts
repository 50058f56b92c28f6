/**
 * The reply shape every VOS server shares (docs/vos/ds.md, "Replies"): success is type 0 with
 * `{ok: true, ...fields}`; failure has the errno as its type and `{ok: false, error}` (the process
 * protocol's wire error) as its payload.
 */
import type { M3Ipc } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import { toWireError, type WireError } from '../transport/proc-protocol.js';

/** The type of a successful reply. */
export const REPLY_OK = 0;

/** A failed request's reply payload (its reply type is `error.errno`). */
export interface ErrorReply {
  readonly ok: false;
  readonly error: WireError;
}

/** The reply to a failed request: its type is the errno, its payload the error object. */
export function errorReply(err: unknown): { type: number; payload: Payload } {
  const error = toWireError(err);
  const payload: ErrorReply = { ok: false, error };
  return { type: error.errno, payload: payload as unknown as Payload };
}

/** The reply to a successful request: type 0, `{ok: true, ...fields}`. */
export function okReply(fields: Record<string, Payload>): { type: number; payload: Payload } {
  return { type: REPLY_OK, payload: { ok: true, ...fields } };
}

/** Replies; a caller that no longer waits (its call timed out, or it died) is not the server's failure. */
export async function replyQuietly(ipc: M3Ipc, dst: Endpoint, out: { type: number; payload: Payload }): Promise<void> {
  try {
    await ipc.reply(dst, out);
  } catch (err) {
    if (!(err instanceof DvsError)) throw err;
  }
}
