/**
 * DC and kernel dimensions. In the original these were compile-time constants (reference §1.2);
 * here they are configuration, validated once when a DC or kernel is created.
 */
import { DvsError } from './errors.js';
import { NONE } from './reserved.js';

/** Dimensions of one DC's endpoint space. */
export interface DcLimits {
  /** Non-task slots (servers and users): slots 0 .. nrProcs-1. */
  readonly nrProcs: number;
  /** Task slots, numbered negatively: -nrTasks .. -1. Must hold KERNEL, one SYSTASK per node, SLOTS, CLOCK, IDLE. */
  readonly nrTasks: number;
  /** Slots, counted from -nrTasks upwards, that are "system" (tasks + servers) for privileges, notify, rcvrqst, reply. */
  readonly nrSysProcs: number;
  /** Largest node id + 1 the DC can span; one SYSTASK slot per node. */
  readonly nrNodes: number;
}

/** Kernel-wide limits on what a single call may carry. */
export interface KernelLimits {
  /** Largest encoded payload of one message, in bytes. */
  readonly maxPayloadBytes: number;
  /** Largest chunk of one copy step; bigger copies are split into chunks of this size. */
  readonly maxCopyChunk: number;
}

/** Fixed task slots besides the SYSTASKs: KERNEL/HARDWARE, SLOTS, CLOCK, IDLE/PROXY. */
export const NR_FIXED_TASKS = 4;

/** Most slots (tasks + procs) one DC may have. */
export const MAX_SLOTS = 0x1000;

/** Server slots a DC gets by default on top of its task slots. */
export const DEFAULT_SERVER_SLOTS = 28;

export const DEFAULT_DC_LIMITS: DcLimits = Object.freeze({
  nrNodes: 32,
  nrTasks: 32 + NR_FIXED_TASKS,
  nrProcs: 220,
  nrSysProcs: 64,
});

export const DEFAULT_KERNEL_LIMITS: KernelLimits = Object.freeze({
  maxPayloadBytes: 64 * 1024,
  maxCopyChunk: 1024 * 1024,
});

function positiveInt(name: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new DvsError('EDVSBADVALUE', `${name} must be an integer in 1..${max}, got ${String(value)}`);
  }
  return value;
}

/** Fills defaults and checks that the endpoint space is consistent; throws EDVSBADVALUE otherwise. */
export function resolveDcLimits(partial: Partial<DcLimits> = {}): DcLimits {
  const nrNodes = positiveInt('nrNodes', partial.nrNodes ?? DEFAULT_DC_LIMITS.nrNodes, MAX_SLOTS - NR_FIXED_TASKS - 1);
  const nrTasks = positiveInt('nrTasks', partial.nrTasks ?? nrNodes + NR_FIXED_TASKS, MAX_SLOTS - 1);
  // Generation-0 endpoints equal their slot, so user slots must stay below the reserved magic values.
  const nrProcs = positiveInt('nrProcs', partial.nrProcs ?? DEFAULT_DC_LIMITS.nrProcs, NONE);
  if (nrTasks + nrProcs > MAX_SLOTS) {
    throw new DvsError('EDVSBADVALUE', `nrTasks + nrProcs (${nrTasks + nrProcs}) must not exceed ${MAX_SLOTS}: notification types carry the source's privilege id in 12 bits`);
  }
  // By default, as many server slots as the original (NR_SERVERS + 1 = 28 beyond the tasks).
  const nrSysProcs = positiveInt('nrSysProcs', partial.nrSysProcs ?? Math.min(nrTasks + DEFAULT_SERVER_SLOTS, nrTasks + nrProcs), nrTasks + nrProcs);
  if (nrTasks < nrNodes + NR_FIXED_TASKS) {
    throw new DvsError('EDVSBADVALUE', `nrTasks (${nrTasks}) must be at least nrNodes + ${NR_FIXED_TASKS} (${nrNodes + NR_FIXED_TASKS})`);
  }
  if (nrSysProcs < nrTasks) {
    throw new DvsError('EDVSBADVALUE', `nrSysProcs (${nrSysProcs}) must cover every task slot (${nrTasks})`);
  }
  return Object.freeze({ nrNodes, nrTasks, nrProcs, nrSysProcs });
}

export function resolveKernelLimits(partial: Partial<KernelLimits> = {}): KernelLimits {
  return Object.freeze({
    maxPayloadBytes: positiveInt('maxPayloadBytes', partial.maxPayloadBytes ?? DEFAULT_KERNEL_LIMITS.maxPayloadBytes, 64 * 1024 * 1024),
    maxCopyChunk: positiveInt('maxCopyChunk', partial.maxCopyChunk ?? DEFAULT_KERNEL_LIMITS.maxCopyChunk, 16 * 1024 * 1024),
  });
}
