/**
 * Checks shared by servers' request parsers (the VOS's, the replica groups'): a request comes from any process of the DC,
 * so every field is validated, and a bad one is an EDVSINVAL that names it.
 */
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import { asInt, isPlainMap } from './proc-protocol.js';

/** A value as an error message shows it: short, and never a whole buffer. */
export function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return 'a map';
  return String(v);
}

export function badField(field: string, what: string): never {
  throw new DvsError('EDVSINVAL', `${field}: ${what}`, { details: { field } });
}

/** The request's fields; EDVSINVAL for a payload that is not a map (nil counts as `{}` when `emptyOk`) or has a field not in `allowed`. */
export function fieldsOf(payload: Payload, allowed: readonly string[], op: string, emptyOk = false): Record<string, unknown> {
  if (emptyOk && (payload === undefined || payload === null)) return {};
  if (!isPlainMap(payload)) badField('payload', `a ${op} request must carry a map, got ${shown(payload)}`);
  for (const k of Object.keys(payload)) {
    if (!allowed.includes(k)) badField(k, `unknown field of a ${op} request (fields: ${allowed.join(', ')})`);
  }
  return payload;
}

export function intIn(v: unknown, field: string, min: number, max: number): number {
  const n = asInt(v);
  if (n === undefined || n < min || n > max) badField(field, `must be an integer in ${min}..${max}, got ${shown(v)}`);
  return n;
}

export function optIntIn(v: unknown, field: string, min: number, max: number): number | undefined {
  return v === undefined || v === null ? undefined : intIn(v, field, min, max);
}

export function optBool(v: unknown, field: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') badField(field, `must be a boolean, got ${shown(v)}`);
  return v;
}

export function optBytes(v: unknown, field: string, max: number): Uint8Array | undefined {
  if (v === undefined || v === null) return undefined;
  if (!(v instanceof Uint8Array)) badField(field, `must be bytes, got ${shown(v)}`);
  if (v.length > max) badField(field, `holds ${v.length} bytes, more than ${max}`);
  return v;
}
