/**
 * What a request handler (proc-ops.ts, proc-bind.ts) may use of its connection, and the field
 * readers every handler shares.
 */
import type { AbortSwitch } from '../ipc/calls.js';
import { DvsError } from '../ipc/errors.js';
import { optInt, type Fields } from '../transport/proc-protocol.js';
import type { ConnContext } from './proc-context.js';
import type { ConnEndpoints } from './proc-endpoints.js';
import type { GrantRequests } from './proc-grant-requests.js';

const DC_MAX = 0xffff;

/** What a handler may use of its connection. */
export interface OpHost {
  /** The connection's number. */
  readonly id: number;
  readonly ctx: ConnContext;
  readonly bound: ConnEndpoints;
  readonly grantRequests: GrantRequests;
  /** The run the connection said in hello it belongs to (`dvs run`). */
  readonly run: number | undefined;
  /** True once the connection closed: a bind that completes now is undone. */
  readonly released: boolean;
  /** Registers a blocking call as in flight (cancellable) and returns the options that carry its abort signal. */
  blocking(id: number, f: Fields): { timeoutMs?: number; signal: AbortSwitch };
  /** Registers a non-blocking call still in flight (a grant backend may answer later): tracked, not cancellable. */
  tracked<T>(id: number, p: Promise<T>): Promise<T>;
  /** Sends a frame that expects no answer (an event such as a piece of a bind's `restored` state), after those already written. */
  event(frame: Fields): void;
  /** Aborts blocking request `target`; false when none is in flight. */
  cancel(target: number): boolean;
}

/** The request's DC: `dcid`, or the daemon's default. */
export function dcidOf(c: OpHost, f: Fields): number {
  const dcid = optInt(f, 'dcid', 0, DC_MAX) ?? c.ctx.defaultDcid;
  if (dcid === undefined) throw new DvsError('EDVSBADDCID', 'no dcid given and the daemon has no default DC');
  return dcid;
}
