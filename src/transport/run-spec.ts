/**
 * Programs a daemon runs (docs/protocol.md, "Running programs"): what a `run` request asks for
 * (RunSpec), what the daemon reports of a run (RunInfo), and the strict readers of the `run` and
 * `stop` requests. Shared by the daemon and the client library. Pure: no I/O.
 */
import { DvsError } from '../ipc/errors.js';
import { asInt, isPlainMap, optInt, optString, reqInt, reqString, MAX_CLIENT_NAME, type Fields } from './proc-protocol.js';

/** What to run; plain data (it travels to another node when the program migrates). */
export interface RunSpec {
  readonly dcid: number;
  readonly program: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly name?: string;
  readonly slot?: number;
}

/** What a client's `run` request may leave out: the DC (the daemon's default) and the arguments. */
export type RunRequest = Omit<RunSpec, 'dcid' | 'args'> & { readonly dcid?: number; readonly args?: readonly string[] };

export const RUN_STATES = ['running', 'exited', 'failed', 'retired'] as const;
/** `failed`: it never started; `retired`: stopped because it moved to another node. */
export type RunState = (typeof RUN_STATES)[number];

/** The signals `stop` may send. */
export const STOP_SIGNALS = ['SIGTERM', 'SIGKILL', 'SIGINT'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

export interface RunEndpoint {
  readonly dcid: number;
  readonly endpoint: number;
  readonly name: string;
}

/** A run as the daemon reports it. */
export interface RunInfo {
  /** Unique per daemon incarnation, from 1. */
  readonly run: number;
  readonly node: number;
  readonly dcid: number;
  readonly pid?: number;
  readonly program: string;
  readonly args: readonly string[];
  readonly name?: string;
  readonly slot?: number;
  readonly state: RunState;
  readonly exitCode?: number;
  readonly signal?: string;
  /** ms since the epoch. */
  readonly startedAt: number;
  readonly endedAt?: number;
  /** Why it could not start (state `failed`). */
  readonly error?: string;
  /** Endpoints bound by the run's connections (hello field `run`), while it runs. */
  readonly endpoints: readonly RunEndpoint[];
}

/** Longest program, argument, cwd, environment name or value. */
export const MAX_RUN_STRING = 4096;
export const MAX_RUN_ARGS = 1024;
export const MAX_RUN_ENV = 256;
const DC_MAX = 0xffff;
const SLOT_MAX = 0xffff;

function bad(field: string, what: string): never {
  throw new DvsError('EDVSBADREQUEST', `field ${field} must be ${what}`, { details: { field } });
}

function stringList(f: Fields, field: string): string[] {
  const v = f[field];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > MAX_RUN_ARGS) bad(field, `an array of at most ${MAX_RUN_ARGS} strings`);
  return v.map((s: unknown, i) => {
    if (typeof s !== 'string' || s.length > MAX_RUN_STRING) bad(`${field}[${i}]`, `a string of at most ${MAX_RUN_STRING} characters`);
    return s;
  });
}

function stringMap(f: Fields, field: string): Record<string, string> | undefined {
  const v = f[field];
  if (v === undefined || v === null) return undefined;
  if (!isPlainMap(v)) bad(field, 'a map of strings to strings');
  const entries = Object.entries(v);
  if (entries.length > MAX_RUN_ENV) bad(field, `a map of at most ${MAX_RUN_ENV} entries`);
  const out: Record<string, string> = {};
  for (const [k, s] of entries) {
    // A name with '=' or NUL cannot be an environment variable.
    if (k.length === 0 || k.length > MAX_RUN_STRING || k.includes('=') || k.includes('\0')) bad(`${field}.${k.slice(0, 40)}`, 'named by a non-empty string without = or NUL');
    if (typeof s !== 'string' || s.length > MAX_RUN_STRING || s.includes('\0')) bad(`${field}.${k.slice(0, 40)}`, `a string of at most ${MAX_RUN_STRING} characters without NUL`);
    out[k] = s;
  }
  return out;
}

function noNul(field: string, s: string): string {
  if (s.includes('\0')) bad(field, 'a string without NUL');
  return s;
}

/** The RunSpec of a `run` request; `defaultDcid` when it names no DC (EDVSBADDCID when there is none). */
export function readRunSpec(f: Fields, defaultDcid: number | undefined): RunSpec {
  const dcid = optInt(f, 'dcid', 0, DC_MAX) ?? defaultDcid;
  const program = noNul('program', reqString(f, 'program', MAX_RUN_STRING));
  if (program.length === 0) bad('program', 'a non-empty string');
  const args = stringList(f, 'args');
  args.forEach((a, i) => noNul(`args[${i}]`, a));
  const cwd = optString(f, 'cwd', MAX_RUN_STRING);
  if (cwd !== undefined && (cwd.length === 0 || cwd.includes('\0'))) bad('cwd', 'a non-empty string without NUL');
  const env = stringMap(f, 'env');
  const name = optString(f, 'name', MAX_CLIENT_NAME);
  const slot = optInt(f, 'slot', 0, SLOT_MAX);
  if (dcid === undefined) throw new DvsError('EDVSBADDCID', 'no dcid given and the daemon has no default DC');
  return {
    dcid,
    program,
    args,
    ...(cwd === undefined ? {} : { cwd }),
    ...(env === undefined ? {} : { env }),
    ...(name === undefined ? {} : { name }),
    ...(slot === undefined ? {} : { slot }),
  };
}

/** The fields of a `stop` request. */
export function readStop(f: Fields): { run: number; signal: StopSignal } {
  const run = reqInt(f, 'run', 1);
  const signal = optString(f, 'signal', 16) ?? 'SIGTERM';
  if (!(STOP_SIGNALS as readonly string[]).includes(signal)) bad('signal', `one of ${STOP_SIGNALS.join(', ')}`);
  return { run, signal: signal as StopSignal };
}

/** `v` as a RunSpec when it is one (a spec that came over a link, e.g. to start a moved program); else undefined. */
export function asRunSpec(v: unknown): RunSpec | undefined {
  // A spec always names its DC: no daemon's default applies to it.
  if (!isPlainMap(v) || asInt(v.dcid) === undefined) return undefined;
  try {
    return readRunSpec(v, undefined);
  } catch {
    return undefined;
  }
}
