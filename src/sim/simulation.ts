/**
 * Kernels on simulated nodes (sim-world.ts), one per node, each running one DC whose directory is
 * kept by the simulation itself: a bind here records the endpoint on every node at once. For the
 * whole cluster with its store, directories and reconciliation, see SimCluster. To replay a run,
 * construct the simulation again with the same options and workload.
 */
import type { KernelFrame } from '../kernel/frames.js';
import { Kernel, type BindOptions } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { resolveDcLimits, type DcLimits, type KernelLimits } from '../ipc/limits.js';
import { SimWorld, type WorldOptions } from './sim-world.js';

export interface SimulationOptions extends WorldOptions {
  /** Number of nodes; their ids are 0 .. nodes-1. */
  readonly nodes: number;
  /** The DC created on every node (all nodes are members). Default dcid 0 with default limits. */
  readonly dc?: { readonly dcid?: number; readonly name?: string; readonly limits?: Partial<DcLimits> };
  /** Options of every kernel. */
  readonly kernel?: { readonly limits?: Partial<KernelLimits>; readonly maxRedirects?: number; readonly copyWindow?: number };
}

export class Simulation extends SimWorld {
  readonly dcid: number;
  readonly space: EndpointSpace;
  private readonly kernels: Kernel[] = [];
  private readonly lastGen = new Map<number, number>();

  constructor(opts: SimulationOptions) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new RangeError(`nodes must be a positive integer, got ${String(opts.nodes)}`);
    super(opts);
    const dcid = opts.dc?.dcid ?? 0;
    const limits = resolveDcLimits({ ...opts.dc?.limits, nrNodes: opts.dc?.limits?.nrNodes ?? Math.max(opts.nodes, 4) });
    this.dcid = dcid;
    this.space = new EndpointSpace(limits);
    const all = Array.from({ length: opts.nodes }, (_, n) => n);
    for (const n of all) {
      const clock = this.kernelClock(n);
      const peer = {
        receiveFrame: (from: number, frame: KernelFrame) => this.kernel(n).receiveFrame(from, frame),
        nodeDown: (node: number) => this.kernel(n).nodeDown(node),
        nodeUp: (node: number) => this.kernel(n).nodeUp(node),
      };
      const transport = this.network.attach(n, peer);
      const k = new Kernel({ nodeId: n, clock, transport, limits: opts.kernel?.limits, maxRedirects: opts.kernel?.maxRedirects, copyWindow: opts.kernel?.copyWindow });
      k.createDc({ dcid, name: opts.dc?.name, nodes: all, limits });
      this.kernels.push(k);
    }
  }

  /** Node ids. */
  get nodes(): number[] {
    return this.kernels.map((k) => k.nodeId);
  }

  kernel(node: number): Kernel {
    const k = this.kernels[node];
    if (k === undefined) throw new RangeError(`no node ${String(node)} in this simulation`);
    return k;
  }

  // ---------------------------------------------------------------- directory

  /**
   * Binds a process on `node` and records a remote descriptor for it on every other node, as the
   * directory would. Without `slot` or `endpoint`, takes the lowest user slot free on every node.
   * The generation is one above any this simulation has seen for the slot, so a rebound slot gets a
   * new incarnation. A stale remote descriptor on `node` is dropped first; a slot bound (locally) on
   * any node is refused with EDVSSLOTUSED.
   */
  bind(node: number, opts: BindOptions = {}): Process {
    const k = this.kernel(node);
    let endpoint = opts.endpoint;
    if (endpoint === undefined) {
      const slot = opts.slot === undefined ? this.freeUserSlot() : this.space.checkSlot(opts.slot);
      endpoint = this.space.make(this.nextGeneration(slot), slot);
    }
    const slot = this.space.checkEndpoint(endpoint);
    for (const other of this.kernels) {
      const e = other.procs(this.dcid).find((r) => r.slot === slot);
      if (e?.kind === 'local') throw new DvsError('EDVSSLOTUSED', `slot ${slot} is bound on node ${other.nodeId}`, { details: { slot } });
      if (e !== undefined && other === k) k.unbind(this.dcid, e.endpoint);
    }
    const p = k.bind(this.dcid, { name: opts.name, privileges: opts.privileges, endpoint });
    this.noteGeneration(slot, this.space.generationOf(endpoint));
    for (const other of this.kernels) if (other !== k) other.bindRemote(this.dcid, endpoint, node, p.name);
    this.log(`bind n${node} ${p.name}=${endpoint}`);
    return p;
  }

  private freeUserSlot(): number {
    const { nrTasks, nrSysProcs, nrProcs } = this.space.limits;
    const used = new Set<number>();
    for (const k of this.kernels) for (const r of k.procs(this.dcid)) used.add(r.slot);
    for (let slot = Math.max(0, nrSysProcs - nrTasks); slot < nrProcs; slot++) if (!used.has(slot)) return slot;
    throw new DvsError('EDVSNOSPC', `DC ${this.dcid} has no user slot free on every node`);
  }

  private nextGeneration(slot: number): number {
    let gen = this.lastGen.get(slot) ?? -1;
    for (const k of this.kernels) {
      const e = k.procs(this.dcid).find((r) => r.slot === slot);
      if (e !== undefined && e.generation > gen) gen = e.generation;
    }
    return gen + 1;
  }

  private noteGeneration(slot: number, gen: number): void {
    if (gen > (this.lastGen.get(slot) ?? -1)) this.lastGen.set(slot, gen);
  }

  /** Where `endpoint` is bound locally, if anywhere. */
  whereIs(endpoint: Endpoint): number | undefined {
    for (const k of this.kernels) if (k.procs(this.dcid).some((r) => r.kind === 'local' && r.endpoint === endpoint)) return k.nodeId;
    return undefined;
  }

}
