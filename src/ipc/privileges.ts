/**
 * Per-process privileges (reference §2.3): a level, the calls it may make and the system slots it
 * may send to. receiveRequest, reply and notify are reserved for system slots whatever is allowed.
 */
import { DvsError } from './errors.js';

export const PRIV_LEVELS = ['user', 'server', 'task', 'system', 'kernel', 'proxy'] as const;
export type PrivLevel = (typeof PRIV_LEVELS)[number];

export const IPC_CALLS = ['send', 'receive', 'sendrec', 'receiveRequest', 'reply', 'notify', 'grant', 'copy'] as const;
export type IpcCall = (typeof IPC_CALLS)[number];

/** Calls only system processes may make (reference §2.3). */
export const SYSTEM_ONLY_CALLS: readonly IpcCall[] = ['receiveRequest', 'reply', 'notify'];

export interface Privileges {
  readonly level: PrivLevel;
  readonly allowedCalls: readonly IpcCall[];
  /** System slots this process may send to; user slots are never restricted. `'all'` allows every one. */
  readonly ipcTo: 'all' | readonly number[];
}

export const CALL_BIT: Readonly<Record<IpcCall, number>> = Object.freeze(
  Object.fromEntries(IPC_CALLS.map((c, i) => [c, 1 << i])) as Record<IpcCall, number>,
);
export const ALL_CALLS_MASK = (1 << IPC_CALLS.length) - 1;

export function callMask(calls: readonly IpcCall[]): number {
  let mask = 0;
  for (const c of calls) {
    const bit = CALL_BIT[c];
    if (bit === undefined) throw new DvsError('EDVSBADVALUE', `unknown IPC call ${String(c)}`);
    mask |= bit;
  }
  return mask;
}

export function callsOfMask(mask: number): IpcCall[] {
  return IPC_CALLS.filter((c) => (mask & CALL_BIT[c]) !== 0);
}

export function checkPrivileges(p: Privileges): Privileges {
  if (!PRIV_LEVELS.includes(p.level)) throw new DvsError('EDVSBADVALUE', `unknown privilege level ${String(p.level)}`);
  callMask(p.allowedCalls);
  if (p.ipcTo !== 'all' && (!Array.isArray(p.ipcTo) || !p.ipcTo.every((s) => Number.isInteger(s)))) {
    throw new DvsError('EDVSBADVALUE', 'ipcTo must be "all" or a list of slot numbers');
  }
  return p;
}

/** Defaults by slot kind: tasks and servers may do everything; users may not use system-only calls. */
export function defaultPrivileges(slot: number, isSystem: boolean): Privileges {
  if (!isSystem) {
    return { level: 'user', allowedCalls: IPC_CALLS.filter((c) => !SYSTEM_ONLY_CALLS.includes(c)), ipcTo: 'all' };
  }
  return { level: slot < 0 ? 'task' : 'server', allowedCalls: [...IPC_CALLS], ipcTo: 'all' };
}
