/**
 * The steps of a migration between the nodes that take part (docs/migration.md): bodies of `svc`
 * kernel frames, plain msgpack-encodable maps with a type `t` and the migration id `mid`. Every
 * body from another node is validated before it is acted on.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError, ERRNO, type DvsErrorCode } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { Handover } from '../kernel/mailbox.js';

/** Coordinator → source: move `ep` (at `epoch`) to `to`. */
export interface StartMsg {
  readonly t: 'start';
  readonly mid: string;
  readonly ep: Endpoint;
  readonly epoch: number;
  readonly to: number;
  readonly coord: number;
  readonly freezeMs: number;
  readonly quiesceMs: number;
}

/** Source → target: start an incarnation from `spec`; its state follows in `state` pieces (`size` bytes in all). */
export interface PrepareMsg {
  readonly t: 'prepare';
  readonly mid: string;
  readonly ep: Endpoint;
  readonly epoch: number;
  readonly coord: number;
  readonly spec: Payload;
  readonly size: number;
  readonly freezeMs: number;
}

/** Source → target: the next piece of the state, in the frame's bulk `data`. */
export interface StateMsg {
  readonly t: 'state';
  readonly mid: string;
  readonly data: Uint8Array;
}

/** Target → source: the new incarnation is ready to take the mailbox. */
export interface PreparedMsg {
  readonly t: 'prepared';
  readonly mid: string;
}

/** Source → target: the drained mailbox; the old incarnation is retired. */
export interface HandoverMsg {
  readonly t: 'handover';
  readonly mid: string;
  readonly handover: Handover;
}

/** Target → source and coordinator: absorbed and serving; `flipped` once the directory names the target. */
export interface AbsorbedMsg {
  readonly t: 'absorbed';
  readonly mid: string;
  readonly flipped: boolean;
}

/** Source → coordinator: where the move is. */
export interface ProgressMsg {
  readonly t: 'progress';
  readonly mid: string;
  readonly stage: MigrationStage;
  readonly stateBytes?: number;
  readonly handoverBytes?: number;
  readonly blackoutMs?: number;
  /** With `prepared`: from the snapshot until the target had the whole state and its incarnation ready. */
  readonly transferMs?: number;
}

/** Any party → the others: the move failed (before the flip nothing changed). */
export interface FailedMsg {
  readonly t: 'failed';
  readonly mid: string;
  readonly code: DvsErrorCode;
  readonly message: string;
}

export type MigrationMsg = StartMsg | PrepareMsg | StateMsg | PreparedMsg | HandoverMsg | AbsorbedMsg | ProgressMsg | FailedMsg;

export type MigrationStage = 'frozen' | 'quiescent' | 'snapshot' | 'prepared' | 'drained' | 'absorbed' | 'flipped' | 'done';

/** The largest service state a move carries. */
export const MAX_STATE_BYTES = 1024 * 1024 * 1024;

const STAGES: readonly MigrationStage[] = ['frozen', 'quiescent', 'snapshot', 'prepared', 'drained', 'absorbed', 'flipped', 'done'];

function bad(what: string): never {
  throw new DvsError('EDVSBADREQUEST', `migration message: ${what}`);
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(`${what} is not an integer`);
  return v;
}

function nonNeg(v: unknown, what: string): number {
  const n = int(v, what);
  if (n < 0) bad(`${what} is negative`);
  return n;
}

function str(v: unknown, what: string, max = 256): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) bad(`${what} is not a string of 1..${max} characters`);
  return v;
}

function isHandover(v: unknown): v is Handover {
  if (typeof v !== 'object' || v === null) return false;
  const h = v as Record<string, unknown>;
  return Number.isSafeInteger(h.dcid) && Number.isSafeInteger(h.endpoint) && Number.isSafeInteger(h.epoch) && Number.isSafeInteger(h.from) && Array.isArray(h.queued) && Array.isArray(h.notifies) && Array.isArray(h.owed) && typeof h.wokenUp === 'boolean';
}

/** A body from another node as a migration message; EDVSBADREQUEST when it is not one. */
export function parseMigrationMsg(body: Payload, data?: Uint8Array): MigrationMsg {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || body instanceof Uint8Array) bad('not a map');
  const m = body as Record<string, unknown>;
  const mid = str(m.mid, 'mid', 64);
  switch (m.t) {
    case 'start':
      return { t: 'start', mid, ep: int(m.ep, 'ep'), epoch: nonNeg(m.epoch, 'epoch'), to: nonNeg(m.to, 'to'), coord: nonNeg(m.coord, 'coord'), freezeMs: nonNeg(m.freezeMs, 'freezeMs'), quiesceMs: nonNeg(m.quiesceMs, 'quiesceMs') };
    case 'prepare': {
      const size = nonNeg(m.size, 'size');
      if (size > MAX_STATE_BYTES) bad(`a state of ${size} bytes is above ${MAX_STATE_BYTES}`);
      return { t: 'prepare', mid, ep: int(m.ep, 'ep'), epoch: nonNeg(m.epoch, 'epoch'), coord: nonNeg(m.coord, 'coord'), spec: m.spec as Payload, size, freezeMs: nonNeg(m.freezeMs, 'freezeMs') };
    }
    case 'state':
      if (data === undefined) bad('a state piece without its bytes');
      return { t: 'state', mid, data };
    case 'prepared':
      return { t: 'prepared', mid };
    case 'handover':
      if (!isHandover(m.handover)) bad('handover is malformed');
      return { t: 'handover', mid, handover: m.handover };
    case 'absorbed':
      if (typeof m.flipped !== 'boolean') bad('flipped is not a boolean');
      return { t: 'absorbed', mid, flipped: m.flipped };
    case 'progress': {
      if (!STAGES.includes(m.stage as MigrationStage)) bad('unknown stage');
      const out: { -readonly [K in keyof ProgressMsg]: ProgressMsg[K] } = { t: 'progress', mid, stage: m.stage as MigrationStage };
      if (m.stateBytes !== undefined) out.stateBytes = nonNeg(m.stateBytes, 'stateBytes');
      if (m.handoverBytes !== undefined) out.handoverBytes = nonNeg(m.handoverBytes, 'handoverBytes');
      if (m.blackoutMs !== undefined) {
        if (typeof m.blackoutMs !== 'number' || !(m.blackoutMs >= 0)) bad('blackoutMs is not a non-negative number');
        out.blackoutMs = m.blackoutMs;
      }
      if (m.transferMs !== undefined) {
        if (typeof m.transferMs !== 'number' || !(m.transferMs >= 0)) bad('transferMs is not a non-negative number');
        out.transferMs = m.transferMs;
      }
      return out;
    }
    case 'failed': {
      const code = typeof m.code === 'string' && Object.hasOwn(ERRNO, m.code) ? (m.code as DvsErrorCode) : 'EDVSIO';
      return { t: 'failed', mid, code, message: typeof m.message === 'string' ? m.message.slice(0, 512) : 'migration failed' };
    }
    default:
      return bad(`unknown type ${String(m.t)}`);
  }
}
