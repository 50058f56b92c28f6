/**
 * Endpoint arithmetic (reference §1.3). An endpoint packs a slot and a generation:
 * `endpoint = generation * G + slot` with `G = nrTasks + SELF + 1`, so generation-0 endpoints equal
 * their slot and no endpoint of any generation collides with ANY, NONE or SELF.
 */
import { DvsError } from './errors.js';
import type { DcLimits } from './limits.js';
import { ANY, NONE, SELF } from './reserved.js';

export { ANY, NONE, SELF };

/** A cluster-wide process address inside one DC. */
export type Endpoint = number;

export const KERNEL = -1;
export const HARDWARE = KERNEL;
export const SYSTEM = -2;

/** Endpoint arithmetic for one DC's limits. Cheap to call on the message path. */
export class EndpointSpace {
  readonly limits: DcLimits;
  /** Generation size. */
  readonly genSize: number;
  /** Slot of the shared slot-allocation task, below all SYSTASKs. */
  readonly SLOTS: number;
  readonly CLOCK: number;
  readonly IDLE: number;
  readonly PROXY: number;
  readonly minSlot: number;
  readonly maxSlot: number;

  constructor(limits: DcLimits) {
    this.limits = limits;
    this.genSize = limits.nrTasks + SELF + 1;
    this.SLOTS = SYSTEM - limits.nrNodes;
    this.CLOCK = this.SLOTS - 1;
    this.IDLE = this.CLOCK - 1;
    this.PROXY = this.IDLE;
    this.minSlot = -limits.nrTasks;
    this.maxSlot = limits.nrProcs - 1;
  }

  /** The endpoint of `slot` at `generation`. */
  make(generation: number, slot: number): Endpoint {
    if (!Number.isSafeInteger(generation) || generation < 0) {
      throw new DvsError('EDVSBADVALUE', `generation must be a non-negative integer, got ${generation}`);
    }
    this.checkSlot(slot);
    return generation * this.genSize + slot;
  }

  slotOf(ep: Endpoint): number {
    const t = this.limits.nrTasks;
    return (((ep + t) % this.genSize) + this.genSize) % this.genSize - t;
  }

  generationOf(ep: Endpoint): number {
    return Math.floor((ep + this.limits.nrTasks) / this.genSize);
  }

  /** SYSTASK of node `n`: one task slot per node. */
  systask(node: number): Endpoint {
    if (!Number.isInteger(node) || node < 0 || node >= this.limits.nrNodes) {
      throw new DvsError('EDVSBADNODEID', `node ${node} outside 0..${this.limits.nrNodes - 1}`);
    }
    return SYSTEM - node;
  }

  isReserved(ep: Endpoint): boolean {
    return ep === ANY || ep === NONE || ep === SELF;
  }

  /** Index into privilege and notification bitmaps (the original's priv_id). */
  privId(slot: number): number {
    return slot + this.limits.nrTasks;
  }

  /** System processes (tasks and servers) may receiveRequest, reply, notify and be notified. */
  isSystemSlot(slot: number): boolean {
    return slot + this.limits.nrTasks < this.limits.nrSysProcs;
  }

  isTaskSlot(slot: number): boolean {
    return slot < 0;
  }

  checkSlot(slot: number): number {
    if (!Number.isInteger(slot) || slot < this.minSlot || slot > this.maxSlot) {
      throw new DvsError('EDVSRANGE', `slot ${slot} outside ${this.minSlot}..${this.maxSlot}`, { details: { slot } });
    }
    return slot;
  }

  /**
   * Validates an endpoint naming a process (not ANY/NONE/SELF) and returns its slot.
   * EDVSENDPOINT for reserved or non-integer values, EDVSRANGE for a slot outside the DC.
   */
  checkEndpoint(ep: Endpoint): number {
    if (!Number.isSafeInteger(ep) || this.isReserved(ep)) {
      throw new DvsError('EDVSENDPOINT', `not a process endpoint: ${String(ep)}`, { details: { endpoint: ep } });
    }
    if (ep < this.minSlot) {
      throw new DvsError('EDVSRANGE', `endpoint ${ep} below the lowest task slot ${this.minSlot}`, { details: { endpoint: ep } });
    }
    const slot = this.slotOf(ep);
    if (slot > this.maxSlot) {
      throw new DvsError('EDVSRANGE', `endpoint ${ep} has slot ${slot} above ${this.maxSlot}`, { details: { endpoint: ep } });
    }
    return slot;
  }

  /** Human-readable form: `slot` at generation 0, `slot@gen` otherwise; magic values by name. */
  format(ep: Endpoint): string {
    if (ep === ANY) return 'ANY';
    if (ep === NONE) return 'NONE';
    if (ep === SELF) return 'SELF';
    const gen = this.generationOf(ep);
    const slot = this.slotOf(ep);
    return gen === 0 ? String(slot) : `${slot}@${gen}`;
  }
}
