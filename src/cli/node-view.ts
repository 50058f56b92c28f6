/**
 * A node's own view of itself: the `node` field of its daemon's `info` result (docs/protocol.md),
 * `{registration: {state, since, attempts, lastError?}, links?, procServer?, store?}`. Daemons that
 * do not report it, or report it malformed, give no registration (shown as '-'), never an error.
 */
import { isPlainMap } from '../transport/proc-protocol.js';

export const REGISTRATION_STATES = ['registered', 'registering', 'unregistered'] as const;
export type RegistrationState = (typeof REGISTRATION_STATES)[number];

export interface Registration {
  readonly state: RegistrationState;
  /** ISO time of the last change of state. */
  readonly since: string;
  /** Registration attempts in the current state. */
  readonly attempts: number;
  readonly lastError?: string;
}

export interface NodeView {
  /** Undefined when the node does not report a well-formed one. */
  readonly registration: Registration | undefined;
  /** The whole `node` object as the daemon sent it (counters of links, process server, store...). */
  readonly node: Readonly<Record<string, unknown>>;
}

function parseRegistration(r: unknown): Registration | undefined {
  if (!isPlainMap(r)) return undefined;
  const { state, since, attempts, lastError } = r;
  if (typeof state !== 'string' || !(REGISTRATION_STATES as readonly string[]).includes(state)) return undefined;
  if (typeof since !== 'string' || Number.isNaN(Date.parse(since))) return undefined;
  if (typeof attempts !== 'number' || !Number.isSafeInteger(attempts) || attempts < 0) return undefined;
  if (lastError !== undefined && typeof lastError !== 'string') return undefined;
  return { state: state as RegistrationState, since, attempts, ...(lastError === undefined ? {} : { lastError }) };
}

/** The view in an `info` result; undefined when the daemon reports no `node` object. */
export function parseNodeView(info: unknown): NodeView | undefined {
  if (!isPlainMap(info) || !isPlainMap(info.node)) return undefined;
  return { registration: parseRegistration(info.node.registration), node: info.node };
}
