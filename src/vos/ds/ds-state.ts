/**
 * DS's state as the bytes of a service snapshot (msgpack), so DS moves like any service: the table,
 * and the waiters with the time each has left (clocks of two nodes do not compare, durations do).
 * The replies the waiters are owed travel in the kernel's mailbox handover; carrying who waits for
 * what lets the new incarnation answer them instead of leaving them to time out on their side.
 * What comes in is validated: a state from elsewhere is input like any other.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import { decodeValue, encodeValue } from '../../transport/codec.js';
import { asInt } from '../../transport/proc-protocol.js';
import { checkEndpointField, checkName, DS_MAX_WAIT_MS } from './ds-messages.js';

export const DS_STATE_VERSION = 1;

export interface DsState {
  readonly names: readonly { readonly name: string; readonly endpoint: Endpoint; readonly publisher: Endpoint }[];
  readonly waiters: readonly { readonly source: Endpoint; readonly name: string; readonly remainingMs: number }[];
}

export function encodeDsState(s: DsState): Uint8Array {
  return encodeValue({
    v: DS_STATE_VERSION,
    names: s.names.map((n) => [n.name, n.endpoint, n.publisher]),
    waiters: s.waiters.map((w) => [w.source, w.name, w.remainingMs]),
  });
}

function bad(what: string, cause?: unknown): never {
  throw new DvsError('EDVSBADVALUE', `DS state: ${what}`, cause === undefined ? {} : { cause });
}

function tuples(v: unknown, field: string, width: number): unknown[][] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) bad(`${field} is not an array`);
  return v.map((t: unknown, i) => {
    if (!Array.isArray(t) || t.length !== width) bad(`${field}[${i}] is not a ${width}-tuple`);
    return t as unknown[];
  });
}

/** Reads a state written by encodeDsState; EDVSBADVALUE for anything else. */
export function decodeDsState(bytes: Uint8Array): DsState {
  let raw: unknown;
  try {
    raw = decodeValue(bytes);
  } catch (err) {
    bad('not msgpack', err);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('not a map');
  const m = raw as Record<string, unknown>;
  if (m.v !== DS_STATE_VERSION) bad(`version ${String(m.v)}, this DS reads ${DS_STATE_VERSION}`);
  try {
    const seen = new Set<string>();
    const names = tuples(m.names, 'names', 3).map(([name, endpoint, publisher], i) => {
      const n = checkName(name, `names[${i}].name`);
      if (seen.has(n)) bad(`names[${i}]: ${JSON.stringify(n)} appears twice`);
      seen.add(n);
      return { name: n, endpoint: checkEndpointField(endpoint, `names[${i}].endpoint`), publisher: checkEndpointField(publisher, `names[${i}].publisher`) };
    });
    const waiters = tuples(m.waiters, 'waiters', 3).map(([source, name, remaining], i) => {
      const ms = asInt(remaining);
      if (ms === undefined || ms < 0 || ms > DS_MAX_WAIT_MS) bad(`waiters[${i}].remainingMs is not in 0..${DS_MAX_WAIT_MS}`);
      return { source: checkEndpointField(source, `waiters[${i}].source`), name: checkName(name, `waiters[${i}].name`), remainingMs: ms };
    });
    return { names, waiters };
  } catch (err) {
    if (err instanceof DvsError && err.code !== 'EDVSBADVALUE') bad(err.message, err);
    throw err;
  }
}
