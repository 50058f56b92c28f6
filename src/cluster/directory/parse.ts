/**
 * Checks of what the directory reads and is given: stored values parsed into records (a value that
 * does not parse is malformed and ignored), and the arguments of its calls.
 */
import { resolveDcLimits, type DcLimits } from '../../ipc/limits.js';
import type { KeyValue, StoreValue, TxnOpResult } from '../store.js';
import { fail } from './failures.js';
import { NAME_MAX, type InstanceGroupRecord, type DcDefinition, type DcRecord, type EndpointRecord, type FreezeMarker, type NodeRecord, type Reservation } from './records.js';

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

export function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

export function checkName(name: unknown, fallback: string): string {
  const n = name ?? fallback;
  if (typeof n !== 'string' || n.length > NAME_MAX) fail('EDVSNAMESIZE', `name must be a string of at most ${NAME_MAX} characters`);
  return n;
}

/** A DC definition as it will be stored: name defaulted, limits resolved, members deduplicated and sorted. */
export function checkDc(def: DcDefinition): DcRecord {
  if (!isRecord(def)) fail('EDVSINVAL', 'a DC definition must be an object');
  if (!isInt(def.dcid, 0, 0xffff)) fail('EDVSBADDCID', `DC id must be an integer in 0..65535, got ${String(def.dcid)}`);
  const name = checkName(def.name, `DC${def.dcid}`);
  const limits = resolveDcLimits(def.limits);
  const nodes = [...new Set(def.nodes ?? [])].sort((a, b) => a - b);
  for (const n of nodes) if (!isInt(n, 0, limits.nrNodes - 1)) fail('EDVSBADNODEID', `node ${String(n)} outside 0..${limits.nrNodes - 1}`);
  return { dcid: def.dcid, name, nodes, limits: { ...limits } };
}

/** The entries a transaction's `get` op returned (none for another op). */
export function entriesOf(r: TxnOpResult | undefined): KeyValue[] {
  return r !== undefined && r.op === 'get' ? r.entries : [];
}

export function parseNode(kv: KeyValue, nodeId: number): NodeRecord | undefined {
  const v = kv.value;
  if (!isRecord(v) || v.nodeId !== nodeId || typeof v.host !== 'string' || !isInt(v.port, 0, 65535) || !isInt(v.incarnation, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  const rec: NodeRecord = { nodeId, host: v.host, port: v.port, incarnation: v.incarnation, lease: kv.lease ?? 0 };
  return isRecord(v.meta) ? { ...rec, meta: v.meta as Record<string, StoreValue> } : rec;
}

export function parseDc(v: unknown, dcid: number): DcRecord | undefined {
  if (!isRecord(v) || v.dcid !== dcid || typeof v.name !== 'string' || !Array.isArray(v.nodes) || !isRecord(v.limits)) return undefined;
  let limits: DcLimits;
  try {
    limits = resolveDcLimits(v.limits as Partial<DcLimits>);
  } catch {
    return undefined;
  }
  const nodes = v.nodes.filter((n): n is number => isInt(n, 0, limits.nrNodes - 1));
  if (nodes.length !== v.nodes.length) return undefined;
  return { dcid, name: v.name, nodes: [...nodes].sort((a, b) => a - b), limits };
}

/** An endpoint entry, not frozen (the cache sets `frozen` from the slot's marker). */
/** The longest a replica group's senders park for its next primary. */
export const MAX_FAILOVER_MS = 600_000;

export function parseEndpoint(kv: KeyValue, dcid: number, slot: number): EndpointRecord | undefined {
  const v = kv.value;
  if (!isRecord(v) || !isInt(v.endpoint, -0x10000, Number.MAX_SAFE_INTEGER) || !isInt(v.generation, 0, Number.MAX_SAFE_INTEGER) || !isInt(v.node, 0, 4095) || typeof v.name !== 'string') {
    return undefined;
  }
  const epoch = v.epoch ?? 0;
  if (!isInt(epoch, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  const rec: EndpointRecord = { dcid, slot, generation: v.generation, endpoint: v.endpoint, node: v.node, name: v.name, epoch, modRevision: kv.modRevision, frozen: false };
  return isInt(v.failoverMs, 1, MAX_FAILOVER_MS) ? { ...rec, failoverMs: v.failoverMs } : rec;
}

/** The record as frozen (or not) by `marker`: only a marker naming this very endpoint freezes it. */
export function withFreeze(rec: EndpointRecord, marker: FreezeMarker | undefined): EndpointRecord {
  const frozen = marker !== undefined && marker.endpoint === rec.endpoint;
  if (frozen === rec.frozen && (!frozen || rec.freezeMs === marker.ms)) return rec;
  const { freezeMs: _old, ...base } = rec;
  return frozen ? { ...base, frozen, freezeMs: marker.ms } : { ...base, frozen };
}

export function parseFreeze(kv: KeyValue): FreezeMarker | undefined {
  const v = kv.value;
  if (!isRecord(v) || !isInt(v.endpoint, -0x10000, Number.MAX_SAFE_INTEGER) || !isInt(v.epoch, 0, Number.MAX_SAFE_INTEGER) || !isInt(v.recordRevision, 0, Number.MAX_SAFE_INTEGER) || !isInt(v.ms, 1, Number.MAX_SAFE_INTEGER)) {
    return undefined;
  }
  return { endpoint: v.endpoint, epoch: v.epoch, recordRevision: v.recordRevision, ms: v.ms, lease: kv.lease ?? 0, modRevision: kv.modRevision };
}

export function parseReservation(kv: KeyValue): Reservation | undefined {
  const v = kv.value;
  if (!isRecord(v) || !isInt(v.node, 0, 4095) || !isInt(v.generation, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  return { node: v.node, generation: v.generation, lease: kv.lease ?? 0, modRevision: kv.modRevision };
}

/** An instance group's record under `inst/<slot>`, or undefined when malformed. */
export function parseInstanceGroup(kv: KeyValue, dcid: number, slot: number): InstanceGroupRecord | undefined {
  const v = kv.value;
  if (!isRecord(v) || !isInt(v.endpoint, 0, 0xffffffff) || typeof v.name !== 'string' || !Array.isArray(v.nodes)) return undefined;
  const nodes: number[] = [];
  for (const n of v.nodes) {
    if (!isInt(n, 0, 0xffff)) return undefined;
    nodes.push(n);
  }
  if (v.module !== undefined && typeof v.module !== 'string') return undefined;
  const rec: InstanceGroupRecord = { dcid, slot, endpoint: v.endpoint, name: v.name, nodes: [...new Set(nodes)].sort((a, b) => a - b), modRevision: kv.modRevision };
  return { ...rec, ...(typeof v.module === 'string' ? { module: v.module } : {}), ...(v.options !== undefined ? { options: v.options as StoreValue } : {}) };
}
