/**
 * PM's wire protocol (docs/vos/pm.md): request type numbers, the validation of each request's
 * payload, and the limits. Replies have the shapes of SYSTASK's and DS's (`okReply`/`errorReply`).
 */
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { absent, checkArgs, checkCwd, checkEnv, checkParent, checkPid, checkProgram, checkSignal, checkWaitId, fieldsOf, intIn, type KillSignal } from '../systask/systask-messages.js';

/** Request types: PM's range starts at 0x700, as MINIX's PM_BASE. */
export const PM_SPAWN = 0x700;
export const PM_WAIT = 0x701;
export const PM_KILL = 0x702;
export const PM_PS = 0x703;
export const PM_INFO = 0x704;

/** The DC's init: parent of processes nobody else started and of orphans. Never a real process. */
export const INIT_PID = 1;
/** The first pid PM gives. */
export const FIRST_PID = 2;
/** Most waiters in all (one per caller). */
export const PM_MAX_WAITERS = 1024;
/** Longest wait one request may ask for (24 h); -1 waits without a deadline. */
export const PM_MAX_WAIT_MS = 86_400_000;
/** PM's own tombstones of reported exits (waitId → answer): the last 1024, each for 10 minutes. */
export const PM_MAX_TOMBSTONES = 1024;
export const PM_TOMBSTONE_MS = 600_000;
/** Byte budget of the rows of one PM_PS page. */
export const PM_PS_PAGE_BYTES = 48 * 1024;

export interface PmSpawnRequest {
  readonly op: 'spawn';
  readonly program: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>> | undefined;
  readonly cwd: string | undefined;
  readonly node: number | undefined;
  readonly parent: number;
}
export interface PmWaitRequest {
  readonly op: 'wait';
  readonly pid: number | undefined;
  readonly parent: number;
  readonly waitId: string;
  /** -1: no deadline. */
  readonly timeoutMs: number;
}
export interface PmKillRequest {
  readonly op: 'kill';
  readonly pid: number;
  readonly signal: KillSignal;
}
export interface PmPsRequest {
  readonly op: 'ps';
  readonly node: number | undefined;
  readonly after: number;
}
export interface PmInfoRequest {
  readonly op: 'info';
}
export type PmRequest = PmSpawnRequest | PmWaitRequest | PmKillRequest | PmPsRequest | PmInfoRequest;

function optNode(v: unknown): number | undefined {
  return absent(v) ? undefined : intIn(v, 'node', 0, 0xffff);
}

/** The request a message carries; EDVSBADREQUEST for an unknown type, EDVSINVAL for a bad payload. */
export function parsePmRequest(type: number, payload: Payload): PmRequest {
  switch (type) {
    case PM_SPAWN: {
      const f = fieldsOf(payload, ['program', 'args', 'env', 'cwd', 'node', 'parent'], 'spawn');
      const program = checkProgram(f.program);
      return { op: 'spawn', program, args: checkArgs(f.args, program), env: absent(f.env) ? undefined : checkEnv(f.env), cwd: checkCwd(f.cwd), node: optNode(f.node), parent: checkParent(f.parent) };
    }
    case PM_WAIT: {
      const f = fieldsOf(payload, ['pid', 'parent', 'waitId', 'timeoutMs'], 'wait');
      const timeoutMs = intIn(f.timeoutMs, 'timeoutMs', -1, PM_MAX_WAIT_MS);
      return { op: 'wait', pid: absent(f.pid) ? undefined : checkPid(f.pid), parent: checkParent(f.parent), waitId: checkWaitId(f.waitId), timeoutMs };
    }
    case PM_KILL: {
      const f = fieldsOf(payload, ['pid', 'signal'], 'kill');
      return { op: 'kill', pid: checkPid(f.pid), signal: checkSignal(f.signal) };
    }
    case PM_PS: {
      const f = fieldsOf(payload, ['node', 'after'], 'ps', true);
      return { op: 'ps', node: optNode(f.node), after: absent(f.after) ? 0 : intIn(f.after, 'after', 0, Number.MAX_SAFE_INTEGER) };
    }
    case PM_INFO:
      fieldsOf(payload, [], 'info', true);
      return { op: 'info' };
    default:
      throw new DvsError('EDVSBADREQUEST', `unknown PM request type ${type} (0x${type.toString(16)}); PM takes 0x700..0x704`, { details: { type } });
  }
}
