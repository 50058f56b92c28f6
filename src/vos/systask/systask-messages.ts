/**
 * SYSTASK's wire protocol (docs/vos/systask.md): request type numbers, the validation of each
 * request's payload, the replies and the limits. Requests come from PM (and, in principle, any
 * system process of the DC), so every field is checked here. The reply helpers (`okReply`,
 * `errorReply`) are shared with PM: same shapes as DS's.
 */
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { asInt, isPlainMap } from '../../transport/proc-protocol.js';
import type { ErrorReply } from '../server-replies.js';
import { badField as bad, fieldsOf, intIn, optBool, shown } from '../../transport/request-fields.js';

/** Request types: SYSTASK's range starts at 0x600, as MINIX's KERNEL_CALL (SYS_*). */
export const SYS_HELLO = 0x600;
export const SYS_SPAWN = 0x601;
export const SYS_KILL = 0x602;
export const SYS_PS = 0x603;
export const SYS_REAP = 0x604;

/** Reply type of a success; a failure's reply type is its errno (negative). */
export const SYS_OK = 0;

/** Lowest VOS pid a spawn may carry (pid 1 is the DC's init, which is PM's, not a process). */
export const MIN_VOS_PID = 2;
/** Longest program path, in characters. */
export const SYS_MAX_PROGRAM = 1024;
/** Most arguments, and most characters of program and arguments together. */
export const SYS_MAX_ARGS = 128;
export const SYS_MAX_ARGV_CHARS = 16 * 1024;
/** Most environment entries of one request, and most characters of their names and values together. */
export const SYS_MAX_ENV = 128;
export const SYS_MAX_ENV_CHARS = 16 * 1024;
/** Longest cwd path. */
export const SYS_MAX_CWD = 1024;
/** Longest waitId. */
export const SYS_MAX_WAIT_ID = 64;
/** Most processes (running or exited, not reaped) one SYSTASK keeps. */
export const SYS_MAX_PROCESSES = 4096;
/** Tombstones of reaped processes: the last 1024, each for 10 minutes. */
export const SYS_MAX_TOMBSTONES = 1024;
export const SYS_TOMBSTONE_MS = 600_000;
/** Byte budget of the rows of one SYS_PS page (the message limit is 64 KiB; the rest is headroom). */
export const SYS_PS_PAGE_BYTES = 48 * 1024;

export const SIGNALS = ['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const;
export type KillSignal = (typeof SIGNALS)[number];

export interface HelloRequest {
  readonly op: 'hello';
}
export interface SpawnRequest {
  readonly op: 'spawn';
  readonly pid: number;
  readonly program: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | undefined;
  /** PM's parent pid, kept and echoed in SYS_PS so a restarted PM can rebuild the tree (default 1). */
  readonly parent: number;
}
export interface KillRequest {
  readonly op: 'kill';
  readonly pid: number;
  readonly signal: KillSignal;
}
export interface PsRequest {
  readonly op: 'ps';
  /** Rows with a pid above this one (the previous page's `next`). */
  readonly after: number;
  /** Whether to list the tombstones of reaped processes too. */
  readonly reaped: boolean;
}
export interface ReapRequest {
  readonly op: 'reap';
  readonly pid: number;
  readonly waitId: string;
}
export type SysRequest = HelloRequest | SpawnRequest | KillRequest | PsRequest | ReapRequest;

/** How a process ended, as SYSTASK reports it. */
export interface ExitInfo {
  readonly code?: number;
  readonly signal?: string;
  readonly reason?: string;
  readonly oomKilled?: boolean;
  /** Wall-clock ms (Date.now()) of the node. */
  readonly endedAt?: number;
}

export interface ProcUsage {
  readonly cpuMs: number;
  readonly rssKB: number;
}

export interface SysProcessRow {
  readonly pid: number;
  readonly parent: number;
  readonly hostPid: number;
  readonly program: string;
  readonly args: readonly string[];
  readonly state: 'running' | 'exited';
  readonly startedAt: number;
  readonly exit?: ExitInfo;
  readonly usage: ProcUsage;
}

export interface SysReapedRow {
  readonly pid: number;
  readonly waitId: string;
  readonly exit: ExitInfo;
}

/** A failed request's reply payload (its reply type is `error.errno`). */
export type SysErrorReply = ErrorReply;

export { fieldsOf, intIn, optBool, shown };

export function absent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}


export function checkPid(v: unknown, field = 'pid'): number {
  return intIn(v, field, MIN_VOS_PID, Number.MAX_SAFE_INTEGER);
}

/** A parent pid: 1 (init) or a process's pid. */
export function checkParent(v: unknown, field = 'parent'): number {
  if (absent(v)) return 1;
  return intIn(v, field, 1, Number.MAX_SAFE_INTEGER);
}

export function checkProgram(v: unknown, field = 'program'): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > SYS_MAX_PROGRAM || v.includes('\0')) bad(field, `must be a string of 1..${SYS_MAX_PROGRAM} characters without NUL, got ${shown(v)}`);
  return v;
}

export function checkArgs(v: unknown, program: string, field = 'args'): string[] {
  if (absent(v)) return [];
  if (!Array.isArray(v)) bad(field, `must be an array of strings, got ${shown(v)}`);
  if (v.length > SYS_MAX_ARGS) bad(field, `at most ${SYS_MAX_ARGS} arguments, got ${v.length}`);
  let total = program.length;
  for (const [i, a] of v.entries()) {
    if (typeof a !== 'string' || a.includes('\0')) bad(field, `[${i}] must be a string without NUL, got ${shown(a)}`);
    total += a.length;
  }
  if (total > SYS_MAX_ARGV_CHARS) bad(field, `program and arguments hold ${total} characters, above ${SYS_MAX_ARGV_CHARS}`);
  return v as string[];
}

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkEnv(v: unknown, field = 'env'): Record<string, string> {
  if (absent(v)) return {};
  if (!isPlainMap(v)) bad(field, `must be a map of strings, got ${shown(v)}`);
  const entries = Object.entries(v);
  if (entries.length > SYS_MAX_ENV) bad(field, `at most ${SYS_MAX_ENV} entries, got ${entries.length}`);
  let total = 0;
  const out: Record<string, string> = {};
  for (const [k, val] of entries) {
    if (!ENV_NAME_RE.test(k)) bad(field, `bad variable name ${shown(k)}`);
    if (typeof val !== 'string' || val.includes('\0')) bad(field, `${k} must be a string without NUL, got ${shown(val)}`);
    total += k.length + val.length;
    out[k] = val;
  }
  if (total > SYS_MAX_ENV_CHARS) bad(field, `holds ${total} characters, above ${SYS_MAX_ENV_CHARS}`);
  return out;
}

export function checkCwd(v: unknown, field = 'cwd'): string | undefined {
  if (absent(v)) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > SYS_MAX_CWD || v.includes('\0')) bad(field, `must be a path of 1..${SYS_MAX_CWD} characters, got ${shown(v)}`);
  return v;
}

export function checkSignal(v: unknown, field = 'signal'): KillSignal {
  if (absent(v)) return 'SIGTERM';
  if (typeof v !== 'string' || !(SIGNALS as readonly string[]).includes(v)) bad(field, `must be one of ${SIGNALS.join(', ')}, got ${shown(v)}`);
  return v as KillSignal;
}

export function checkWaitId(v: unknown, field = 'waitId'): string {
  if (typeof v !== 'string' || v.length < 1 || v.length > SYS_MAX_WAIT_ID || !/^[\x21-\x7e]+$/.test(v)) bad(field, `must be 1..${SYS_MAX_WAIT_ID} printable ASCII characters, got ${shown(v)}`);
  return v;
}

/** The request a message carries; EDVSBADREQUEST for an unknown type, EDVSINVAL for a bad payload. */
export function parseSysRequest(type: number, payload: Payload): SysRequest {
  switch (type) {
    case SYS_HELLO:
      fieldsOf(payload, [], 'hello', true);
      return { op: 'hello' };
    case SYS_SPAWN: {
      const f = fieldsOf(payload, ['pid', 'program', 'args', 'env', 'cwd', 'parent'], 'spawn');
      const program = checkProgram(f.program);
      return { op: 'spawn', pid: checkPid(f.pid), program, args: checkArgs(f.args, program), env: checkEnv(f.env), cwd: checkCwd(f.cwd), parent: checkParent(f.parent) };
    }
    case SYS_KILL: {
      const f = fieldsOf(payload, ['pid', 'signal'], 'kill');
      return { op: 'kill', pid: checkPid(f.pid), signal: checkSignal(f.signal) };
    }
    case SYS_PS: {
      const f = fieldsOf(payload, ['after', 'reaped'], 'ps', true);
      return { op: 'ps', after: absent(f.after) ? 0 : intIn(f.after, 'after', 0, Number.MAX_SAFE_INTEGER), reaped: optBool(f.reaped, 'reaped') };
    }
    case SYS_REAP: {
      const f = fieldsOf(payload, ['pid', 'waitId'], 'reap');
      return { op: 'reap', pid: checkPid(f.pid), waitId: checkWaitId(f.waitId) };
    }
    default:
      throw new DvsError('EDVSBADREQUEST', `unknown SYSTASK request type ${type} (0x${type.toString(16)}); SYSTASK takes 0x600..0x604`, { details: { type } });
  }
}

export { errorReply, okReply } from '../server-replies.js';

/** An exit as a wire map (absent fields left out). */
export function exitPayload(e: ExitInfo): Record<string, Payload> {
  const out: Record<string, Payload> = {};
  if (e.code !== undefined) out.code = e.code;
  if (e.signal !== undefined) out.signal = e.signal;
  if (e.reason !== undefined) out.reason = e.reason;
  if (e.oomKilled === true) out.oomKilled = true;
  if (e.endedAt !== undefined) out.endedAt = e.endedAt;
  return out;
}

/** Reads an exit map (from SYSTASK's replies or a state), keeping only well-typed fields. */
export function readExit(v: unknown): ExitInfo {
  if (!isPlainMap(v)) return {};
  const code = asInt(v.code);
  const endedAt = typeof v.endedAt === 'number' && Number.isFinite(v.endedAt) ? v.endedAt : undefined;
  return {
    ...(code !== undefined ? { code } : {}),
    ...(typeof v.signal === 'string' ? { signal: v.signal } : {}),
    ...(typeof v.reason === 'string' ? { reason: v.reason } : {}),
    ...(v.oomKilled === true ? { oomKilled: true } : {}),
    ...(endedAt !== undefined ? { endedAt } : {}),
  };
}
