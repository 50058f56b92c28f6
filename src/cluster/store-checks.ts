/**
 * Validation of store requests, shared by the in-memory store (the authority) and the embedded
 * server (which receives them from the network): every field is checked before anything runs, so a
 * malformed request is a typed error (EDVSINVAL, EDVSBADVALUE, EDVSMSGSIZE), never a crash.
 */
import { DvsError } from '../ipc/errors.js';
import type { CompareOp } from './store.js';

export interface StoreLimits {
  /** Longest key or prefix, in UTF-8 bytes. */
  readonly maxKeyBytes: number;
  /** Largest encoded value, in bytes. */
  readonly maxValueBytes: number;
  /** Most compares, and most ops per branch, of one transaction (etcd's default is 128). */
  readonly maxTxnOps: number;
  /** Shortest and longest lease TTL, in ms. */
  readonly minLeaseTtlMs: number;
  readonly maxLeaseTtlMs: number;
}

export const DEFAULT_STORE_LIMITS: StoreLimits = Object.freeze({
  maxKeyBytes: 4096,
  maxValueBytes: 1024 * 1024,
  maxTxnOps: 128,
  minLeaseTtlMs: 1,
  maxLeaseTtlMs: 24 * 3600 * 1000,
});

function invalid(message: string): never {
  throw new DvsError('EDVSINVAL', message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

export function checkKey(key: unknown, limits: StoreLimits, what = 'key'): string {
  if (typeof key !== 'string') invalid(`${what} must be a string, got ${typeof key}`);
  if (key.length === 0 && what === 'key') invalid('key must not be empty');
  if (key.length > limits.maxKeyBytes || Buffer.byteLength(key) > limits.maxKeyBytes) invalid(`${what} longer than ${limits.maxKeyBytes} bytes`);
  return key;
}

export function checkPrefix(prefix: unknown, limits: StoreLimits): string {
  return checkKey(prefix, limits, 'prefix');
}

export function checkRevision(rev: unknown, what: string): number {
  if (typeof rev !== 'number' || !Number.isSafeInteger(rev) || rev < 0) invalid(`${what} must be a non-negative integer, got ${String(rev)}`);
  return rev;
}

export function checkLeaseId(lease: unknown): number {
  if (typeof lease !== 'number' || !Number.isSafeInteger(lease) || lease <= 0) invalid(`lease id must be a positive integer, got ${String(lease)}`);
  return lease;
}

export function checkTtl(ttlMs: unknown, limits: StoreLimits): number {
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs < limits.minLeaseTtlMs || ttlMs > limits.maxLeaseTtlMs) {
    invalid(`lease TTL must be an integer in ${limits.minLeaseTtlMs}..${limits.maxLeaseTtlMs} ms, got ${String(ttlMs)}`);
  }
  return ttlMs;
}

const COMPARE_OPS: ReadonlySet<string> = new Set(['==', '!=', '<', '>']);
const NUMERIC_TARGETS = ['createRevision', 'modRevision', 'version', 'lease'] as const;
export type CompareTarget = (typeof NUMERIC_TARGETS)[number] | 'value' | 'exists';
const TARGETS: readonly CompareTarget[] = [...NUMERIC_TARGETS, 'value', 'exists'];

/** A compare reduced to its target, for evaluation. */
export interface CheckedCompare {
  readonly key: string;
  readonly op: CompareOp;
  readonly target: CompareTarget;
  readonly operand: unknown;
}

export function checkCompare(c: unknown, limits: StoreLimits): CheckedCompare {
  if (!isRecord(c)) invalid('a compare must be an object');
  const key = checkKey(c.key, limits);
  const op = c.op ?? '==';
  if (typeof op !== 'string' || !COMPARE_OPS.has(op)) invalid(`compare op must be one of == != < >, got ${String(op)}`);
  const present = TARGETS.filter((t) => Object.prototype.hasOwnProperty.call(c, t));
  if (present.length !== 1) invalid(`a compare needs exactly one of ${TARGETS.join(', ')}; got ${present.length === 0 ? 'none' : present.join(', ')}`);
  const target = present[0]!;
  const operand = c[target];
  if (target === 'exists') {
    if (typeof operand !== 'boolean') invalid('compare exists takes a boolean');
    if (op !== '==' && op !== '!=') invalid('compare exists takes only == or !=');
  } else if (target === 'value') {
    if (op !== '==' && op !== '!=') invalid('compare value takes only == or != (values compare by encoding)');
  } else if (typeof operand !== 'number' || !Number.isSafeInteger(operand)) {
    invalid(`compare ${target} takes an integer, got ${String(operand)}`);
  }
  return { key, op: op as CompareOp, target, operand };
}

/** A txn op with its fields checked. */
export type CheckedOp =
  | { readonly op: 'put'; readonly key: string; readonly value: unknown; readonly lease: number }
  | { readonly op: 'delete'; readonly key: string; readonly prefix: boolean }
  | { readonly op: 'get'; readonly key: string; readonly prefix: boolean };

export function checkTxnOp(o: unknown, limits: StoreLimits): CheckedOp {
  if (!isRecord(o)) invalid('a txn op must be an object');
  const prefix = o.prefix ?? false;
  if (typeof prefix !== 'boolean') invalid('txn op prefix must be a boolean');
  switch (o.op) {
    case 'put': {
      if (o.prefix !== undefined) invalid('a put has no prefix');
      return { op: 'put', key: checkKey(o.key, limits), value: o.value, lease: o.lease === undefined || o.lease === null || o.lease === 0 ? 0 : checkLeaseId(o.lease) };
    }
    case 'delete':
    case 'get':
      return { op: o.op, key: prefix ? checkPrefix(o.key, limits) : checkKey(o.key, limits), prefix };
    default:
      return invalid(`txn op must be put, delete or get, got ${String(o.op)}`);
  }
}

function overlaps(a: CheckedOp, b: CheckedOp): boolean {
  const aPre = a.op !== 'put' && a.prefix;
  const bPre = b.op !== 'put' && b.prefix;
  if (aPre && bPre) return a.key.startsWith(b.key) || b.key.startsWith(a.key);
  if (aPre) return b.key.startsWith(a.key);
  if (bPre) return a.key.startsWith(b.key);
  return a.key === b.key;
}

function checkBranch(ops: unknown, limits: StoreLimits, name: string): CheckedOp[] {
  if (ops === undefined || ops === null) return [];
  if (!Array.isArray(ops)) invalid(`txn ${name} must be an array`);
  if (ops.length > limits.maxTxnOps) invalid(`txn ${name} has ${ops.length} ops, more than ${limits.maxTxnOps}`);
  const checked = ops.map((o) => checkTxnOp(o, limits));
  // As on etcd: no key may be written twice in one transaction.
  const writes = checked.filter((o) => o.op !== 'get');
  for (let i = 0; i < writes.length; i++) {
    for (let j = i + 1; j < writes.length; j++) {
      if (overlaps(writes[i]!, writes[j]!)) invalid(`txn ${name} writes key ${writes[j]!.key} more than once`);
    }
  }
  return checked;
}

export interface CheckedTxn {
  readonly compare: CheckedCompare[];
  readonly success: CheckedOp[];
  readonly failure: CheckedOp[];
}

export function checkTxn(req: unknown, limits: StoreLimits): CheckedTxn {
  if (!isRecord(req)) invalid('a txn must be an object');
  const compare = req.compare ?? [];
  if (!Array.isArray(compare)) invalid('txn compare must be an array');
  if (compare.length > limits.maxTxnOps) invalid(`txn has ${compare.length} compares, more than ${limits.maxTxnOps}`);
  return {
    compare: compare.map((c) => checkCompare(c, limits)),
    success: checkBranch(req.success, limits, 'success'),
    failure: checkBranch(req.failure, limits, 'failure'),
  };
}

