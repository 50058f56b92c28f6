/** One DC as seen by one kernel: its endpoint space, member nodes and process table. */
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { DcLimits } from '../ipc/limits.js';
import type { LocalProc, ProcEntry, RemoteProc } from './proc.js';
import type { Waiter } from './waiter.js';

export interface BindWatch {
  /** Resolve on bind of this slot (any generation) or on unbind of this exact endpoint. */
  readonly slot: number;
  readonly endpoint: Endpoint | undefined;
  readonly unbind: boolean;
  readonly waiter: Waiter<Endpoint>;
}

export class DcState {
  readonly dcid: number;
  readonly name: string;
  readonly space: EndpointSpace;
  readonly nodes: Set<number>;
  /** Entries indexed by slot + nrTasks. */
  private readonly entries: (ProcEntry | undefined)[];
  /** Highest generation this kernel has seen bound per slot; -1 = never. */
  private readonly lastGen: number[];
  readonly watches = new Set<BindWatch>();

  constructor(dcid: number, name: string, limits: DcLimits, nodes: Iterable<number>) {
    this.dcid = dcid;
    this.name = name;
    this.space = new EndpointSpace(limits);
    this.nodes = new Set(nodes);
    const total = limits.nrTasks + limits.nrProcs;
    this.entries = new Array<ProcEntry | undefined>(total).fill(undefined);
    this.lastGen = new Array<number>(total).fill(-1);
  }

  get limits(): DcLimits {
    return this.space.limits;
  }

  entryAt(slot: number): ProcEntry | undefined {
    return this.entries[slot + this.space.limits.nrTasks];
  }

  lastGeneration(slot: number): number {
    return this.lastGen[slot + this.space.limits.nrTasks] ?? -1;
  }

  set(slot: number, entry: ProcEntry): void {
    const i = slot + this.space.limits.nrTasks;
    this.entries[i] = entry;
    const gen = this.space.generationOf(entry.endpoint);
    if (gen > (this.lastGen[i] ?? -1)) this.lastGen[i] = gen;
  }

  clear(slot: number): void {
    this.entries[slot + this.space.limits.nrTasks] = undefined;
  }

  *all(): IterableIterator<ProcEntry> {
    for (const e of this.entries) if (e !== undefined) yield e;
  }

  *locals(): IterableIterator<LocalProc> {
    for (const e of this.entries) if (e !== undefined && e.kind === 'local') yield e;
  }

  *remotes(): IterableIterator<RemoteProc> {
    for (const e of this.entries) if (e !== undefined && e.kind === 'remote') yield e;
  }

  /**
   * Resolves an endpoint to its entry, or throws the error a caller should see: EDVSENDPOINT for a
   * reserved value or a stale generation (the slot holds another incarnation), EDVSRANGE outside the DC,
   * EDVSDSTDIED (or `deadCode`) for an incarnation gone from a now free slot, EDVSNOTBIND otherwise.
   */
  lookup(ep: Endpoint, deadCode: 'EDVSDSTDIED' | 'EDVSSRCDIED' = 'EDVSDSTDIED'): ProcEntry {
    const slot = this.space.checkEndpoint(ep);
    const entry = this.entries[slot + this.space.limits.nrTasks];
    if (entry !== undefined && entry.endpoint === ep) return entry;
    if (entry !== undefined) {
      throw new DvsError('EDVSENDPOINT', `stale endpoint ${this.space.format(ep)}: slot ${slot} holds ${this.space.format(entry.endpoint)}`, { details: { endpoint: ep } });
    }
    if (this.space.generationOf(ep) <= this.lastGeneration(slot)) {
      throw new DvsError(deadCode, `endpoint ${this.space.format(ep)} is gone`, { details: { endpoint: ep } });
    }
    throw new DvsError('EDVSNOTBIND', `endpoint ${this.space.format(ep)} is not bound`, { details: { endpoint: ep } });
  }

  /** Lowest free non-system slot, for binds that name none. */
  freeUserSlot(): number {
    const { nrTasks, nrSysProcs, nrProcs } = this.space.limits;
    for (let slot = Math.max(0, nrSysProcs - nrTasks); slot < nrProcs; slot++) {
      if (this.entries[slot + nrTasks] === undefined) return slot;
    }
    throw new DvsError('EDVSNOSPC', `DC ${this.dcid} has no free user slot`);
  }
}
