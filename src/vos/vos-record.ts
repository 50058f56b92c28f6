/**
 * The record of a booted VOS, stored in the coordination store under the DC (`dcs/<dcid>/vos`,
 * docs/vos/boot.md): the spec's text as the operator wrote it and the slots fixed at boot. Every
 * node daemon of the DC reads it and starts its share; it is re-validated on every read, since
 * the store is shared and a record may come from another version.
 */
import { DvsError } from '../ipc/errors.js';
import type { DcLimits } from '../ipc/limits.js';
import type { Payload } from '../ipc/payload.js';
import { assignSlots, vosUnits, type VosUnit } from './layout.js';
import { parseVosSpec, type VosSpec } from './spec.js';

export const VOS_RECORD_VERSION = 1;

export interface VosRecord {
  readonly version: typeof VOS_RECORD_VERSION;
  readonly dc: number;
  /** Where the spec came from (a file name), for messages. */
  readonly source: string;
  /** The spec's text. */
  readonly spec: string;
  /** Slot of every server instance but SYSTASK's (layout.ts unitKey). */
  readonly slots: Readonly<Record<string, number>>;
  /** ms since the epoch. */
  readonly bootedAt: number;
}

/** A record read back: the record and its spec, parsed. */
export interface VosBoot {
  readonly record: VosRecord;
  readonly spec: VosSpec;
}

/** The record that boots `specText` on a DC with these limits and nodes; EDVSINVAL naming the fields. */
export function makeVosRecord(specText: string, source: string, dc: { readonly dcid: number; readonly limits: DcLimits; readonly nodes: readonly number[] }, now = Date.now()): VosBoot {
  const spec = parseVosSpec(specText, source);
  if (spec.dc !== dc.dcid) throw new DvsError('EDVSINVAL', `${source}: invalid VOS spec:\n  dc: the spec is for DC ${spec.dc}, not DC ${dc.dcid}`, { details: { source, errors: [`dc: the spec is for DC ${spec.dc}, not DC ${dc.dcid}`] } });
  const slots = assignSlots(spec, dc.limits, dc.nodes);
  return { record: { version: VOS_RECORD_VERSION, dc: dc.dcid, source, spec: specText, slots, bootedAt: now }, spec };
}

function bad(dcid: number, what: string): never {
  throw new DvsError('EDVSBADVALUE', `the VOS record of DC ${dcid} is malformed: ${what}`, { details: { dcid } });
}

/** A stored record, checked; EDVSBADVALUE when malformed (the spec in it is validated again). */
export function readVosRecord(dcid: number, value: Payload): VosBoot {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) bad(dcid, 'not a map');
  const v = value as Record<string, Payload>;
  if (v.version !== VOS_RECORD_VERSION) bad(dcid, `version ${String(v.version)} (this node reads ${VOS_RECORD_VERSION})`);
  if (v.dc !== dcid) bad(dcid, `it names DC ${String(v.dc)}`);
  if (typeof v.source !== 'string' || typeof v.spec !== 'string') bad(dcid, 'source and spec must be strings');
  if (typeof v.bootedAt !== 'number') bad(dcid, 'bootedAt must be a number');
  const rawSlots = v.slots;
  if (typeof rawSlots !== 'object' || rawSlots === null || Array.isArray(rawSlots) || rawSlots instanceof Uint8Array) bad(dcid, 'slots must be a map');
  const slots: Record<string, number> = {};
  for (const [k, s] of Object.entries(rawSlots as Record<string, Payload>)) {
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) bad(dcid, `slot of ${k} must be a non-negative integer`);
    slots[k] = s;
  }
  let spec: VosSpec;
  try {
    spec = parseVosSpec(v.spec, v.source);
  } catch (err) {
    bad(dcid, err instanceof Error ? err.message : String(err));
  }
  if (spec.dc !== dcid) bad(dcid, `its spec is for DC ${spec.dc}`);
  return { record: { version: VOS_RECORD_VERSION, dc: dcid, source: v.source, spec: v.spec, slots, bootedAt: v.bootedAt }, spec };
}

/** The units of a booted VOS on the DC's current nodes; EDVSINVAL when a server's node left the DC. */
export function unitsOf(boot: VosBoot, dc: { readonly limits: DcLimits; readonly nodes: readonly number[] }): VosUnit[] {
  return vosUnits(boot.spec, boot.record.slots, dc.limits, dc.nodes);
}
