/**
 * PM's state as the bytes of a service snapshot (msgpack): the next pid, what it knows of each
 * SYSTASK (endpoint, incarnation), the process table, its tombstones (with their age) and the
 * waiters (with the time each has left; -1 none). What comes in is validated: EDVSBADVALUE.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { decodeValue, encodeValue } from '../../transport/codec.js';
import { asInt, isPlainMap } from '../../transport/proc-protocol.js';
import { exitPayload, readExit, type ExitInfo } from '../systask/systask-messages.js';
import { PM_MAX_WAIT_MS, PM_TOMBSTONE_MS } from './pm-messages.js';
import type { PmProcess } from './process-table.js';

export const PM_STATE_VERSION = 1;

export interface PmStateNode {
  readonly node: number;
  readonly endpoint: Endpoint;
  readonly incarnation: string | undefined;
}
export interface PmStateTomb {
  readonly waitId: string;
  readonly pid: number;
  readonly node: number;
  readonly exit: ExitInfo;
  readonly ageMs: number;
}
export interface PmStateWaiter {
  readonly source: Endpoint;
  readonly pid: number | undefined;
  readonly parent: number;
  readonly waitId: string;
  /** -1: no deadline. */
  readonly remainingMs: number;
}
export interface PmStateData {
  readonly nextPid: number;
  readonly nodes: readonly PmStateNode[];
  readonly procs: readonly PmProcess[];
  readonly tombs: readonly PmStateTomb[];
  readonly waiters: readonly PmStateWaiter[];
}

const STATES = ['running', 'exited', 'lost'] as const;

export function encodePmState(s: PmStateData): Uint8Array {
  return encodeValue({
    v: PM_STATE_VERSION,
    nextPid: s.nextPid,
    nodes: s.nodes.map((n) => [n.node, n.endpoint, n.incarnation ?? null]),
    procs: s.procs.map((p) => [p.pid, p.parent, p.node, p.program, [...p.args], p.state, p.startedAt, p.exit === undefined ? null : exitPayload(p.exit), p.usage.cpuMs, p.usage.rssKB, p.hostPid] as Payload),
    tombs: s.tombs.map((t) => [t.waitId, t.pid, t.node, exitPayload(t.exit), t.ageMs] as Payload),
    waiters: s.waiters.map((w) => [w.source, w.pid ?? null, w.parent, w.waitId, w.remainingMs]),
  });
}

function bad(what: string, cause?: unknown): never {
  throw new DvsError('EDVSBADVALUE', `PM state: ${what}`, cause === undefined ? {} : { cause });
}

function tuples(v: unknown, field: string, width: number): unknown[][] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) bad(`${field} is not an array`);
  return v.map((t: unknown, i) => {
    if (!Array.isArray(t) || t.length !== width) bad(`${field}[${i}] is not a ${width}-tuple`);
    return t as unknown[];
  });
}

function int(v: unknown, what: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  const n = asInt(v);
  if (n === undefined || n < min || n > max) bad(`${what} is not an integer in ${min}..${max}`);
  return n;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') bad(`${what} is not a string`);
  return v;
}

export function decodePmState(bytes: Uint8Array): PmStateData {
  let raw: unknown;
  try {
    raw = decodeValue(bytes);
  } catch (err) {
    bad('not msgpack', err);
  }
  if (!isPlainMap(raw)) bad('not a map');
  if (raw.v !== PM_STATE_VERSION) bad(`version ${String(raw.v)}, this PM reads ${PM_STATE_VERSION}`);
  const nodes = tuples(raw.nodes, 'nodes', 3).map(([node, ep, inc], i) => ({ node: int(node, `nodes[${i}].node`, 0), endpoint: int(ep, `nodes[${i}].endpoint`), incarnation: inc === null ? undefined : str(inc, `nodes[${i}].incarnation`) }));
  const procs = tuples(raw.procs, 'procs', 11).map(([pid, parent, node, program, args, state, startedAt, exit, cpu, rss, hostPid], i): PmProcess => {
    if (!Array.isArray(args)) bad(`procs[${i}].args is not an array`);
    if (!(STATES as readonly unknown[]).includes(state)) bad(`procs[${i}].state is not running|exited|lost`);
    if (typeof startedAt !== 'number') bad(`procs[${i}].startedAt is not a number`);
    return {
      pid: int(pid, `procs[${i}].pid`, 2),
      parent: int(parent, `procs[${i}].parent`, 1),
      node: int(node, `procs[${i}].node`, 0),
      program: str(program, `procs[${i}].program`),
      args: args.map((a: unknown) => str(a, `procs[${i}].args[]`)),
      state: state as PmProcess['state'],
      startedAt,
      exit: exit === null ? undefined : readExit(exit),
      usage: { cpuMs: int(cpu, `procs[${i}].cpuMs`, 0), rssKB: int(rss, `procs[${i}].rssKB`, 0) },
      hostPid: int(hostPid, `procs[${i}].hostPid`, 0),
    };
  });
  const tombs = tuples(raw.tombs, 'tombs', 5).map(([waitId, pid, node, exit, age], i) => ({ waitId: str(waitId, `tombs[${i}].waitId`), pid: int(pid, `tombs[${i}].pid`, 2), node: int(node, `tombs[${i}].node`, 0), exit: readExit(exit), ageMs: int(age, `tombs[${i}].ageMs`, 0, PM_TOMBSTONE_MS * 10) }));
  const waiters = tuples(raw.waiters, 'waiters', 5).map(([source, pid, parent, waitId, rem], i) => ({
    source: int(source, `waiters[${i}].source`),
    pid: pid === null ? undefined : int(pid, `waiters[${i}].pid`, 2),
    parent: int(parent, `waiters[${i}].parent`, 1),
    waitId: str(waitId, `waiters[${i}].waitId`),
    remainingMs: int(rem, `waiters[${i}].remainingMs`, -1, PM_MAX_WAIT_MS),
  }));
  return { nextPid: int(raw.nextPid, 'nextPid', 2), nodes, procs, tombs, waiters };
}
