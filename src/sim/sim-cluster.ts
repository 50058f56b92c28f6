/**
 * A whole cluster on virtual time: per node a kernel, a directory over its own link to one shared
 * in-memory store, and the reconciler that makes the kernel follow it, exactly as a daemon wires
 * them; the nodes' kernels talk over the simulated network. Nodes can crash (cut off from the
 * network and the store, then come back), links can be partitioned, and a node can lose only the
 * store. Later protocols (migration, failover) are tested here by seed before they meet real sockets.
 */
import { Directory } from '../cluster/directory.js';
import { MemoryStore } from '../cluster/memory-store.js';
import { Reconciler, type LocalBindOptions } from '../cluster/reconciler.js';
import type { DcDefinition, DcRecord } from '../cluster/directory.js';
import type { KernelFrame } from '../kernel/frames.js';
import { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import type { KernelLimits } from '../ipc/limits.js';
import { SimStoreLink } from './sim-store-link.js';
import { SimWorld, type WorldOptions } from './sim-world.js';

export interface SimClusterOptions extends WorldOptions {
  /** Number of nodes; their ids are 0 .. nodes-1. */
  readonly nodes: number;
  /** One-way latency of a store call, virtual ms. Default 2. */
  readonly storeLatency?: number;
  /** TTL of a node's registration lease, virtual ms. Default 1000. */
  readonly leaseTtlMs?: number;
  readonly kernel?: { readonly limits?: Partial<KernelLimits>; readonly maxRedirects?: number };
  /** User slots a node reserves per DC at a time. Default 4 (small, so refills happen). */
  readonly rangeSize?: number;
  /** Told when node `node`'s kernel declares `peer` down, right after its kernel and reconciler, where a daemon tells its other parts (the migration agent). */
  readonly onPeerDown?: (node: number, peer: number) => void;
}

/** One simulated node: what a daemon holds. */
export interface SimNode {
  readonly id: number;
  readonly kernel: Kernel;
  readonly directory: Directory;
  readonly reconciler: Reconciler;
  readonly store: SimStoreLink;
}

export class SimCluster extends SimWorld {
  readonly store: MemoryStore;
  private readonly members: SimNode[] = [];
  private started = false;

  constructor(opts: SimClusterOptions) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new RangeError(`nodes must be a positive integer, got ${String(opts.nodes)}`);
    super(opts);
    this.store = new MemoryStore({ clock: this.clock });
    const ttl = opts.leaseTtlMs ?? 1000;
    for (let n = 0; n < opts.nodes; n++) {
      const link = new SimStoreLink(this.store, this.clock, opts.storeLatency ?? 2);
      const directory = new Directory(link, { clock: this.clock, rangeSize: opts.rangeSize ?? 4 });
      // The kernel's observer and network peer reach the reconciler made just after it.
      const late: { reconciler?: Reconciler } = {};
      const kernel = new Kernel({
        nodeId: n,
        clock: this.kernelClock(n),
        transport: this.network.attach(n, {
          receiveFrame: (from: number, frame: KernelFrame) => kernel.receiveFrame(from, frame),
          nodeDown: (node: number) => {
            kernel.nodeDown(node);
            late.reconciler?.peerDown(node);
            opts.onPeerDown?.(n, node);
          },
          nodeUp: (node: number) => kernel.nodeUp(node),
        }),
        limits: opts.kernel?.limits,
        maxRedirects: opts.kernel?.maxRedirects,
        observer: { unbound: (dcid, endpoint) => late.reconciler?.localUnbound(dcid, endpoint) },
      });
      const reconciler = new Reconciler({
        nodeId: n,
        kernel,
        directory,
        links: { setPeers: () => undefined, linkAlive: (peer) => this.network.linked(n, peer) },
        clock: this.clock,
        node: () => ({ host: `n${n}.sim`, port: 1 }),
        ttlMs: ttl,
        wallClock: () => this.clock.now(),
        events: {
          dc: (e) => this.log(`n${n} dc ${e.type} ${e.dcid}`),
          registration: (s) => this.log(`n${n} registration ${s.state}`),
          refused: (e) => this.log(`n${n} refused ${e.what}: ${e.error.code}`),
        },
      });
      // The directory's view, in the trace: what each node's reconciler acted on.
      directory.on('endpoint', (e) => this.log(`n${n} dir ${e.type} ${e.endpoint.endpoint}@n${e.endpoint.node}#${e.endpoint.epoch}${e.endpoint.frozen ? ' frozen' : ''}`));
      directory.on('resync', (e) => this.log(`n${n} dir resync at ${e.revision}`));
      directory.on('error', (e) => this.log(`n${n} dir error ${e.code}`));
      late.reconciler = reconciler;
      this.members.push({ id: n, kernel, directory, reconciler, store: link });
    }
  }

  get nodes(): number[] {
    return this.members.map((m) => m.id);
  }

  node(n: number): SimNode {
    const m = this.members[n];
    if (m === undefined) throw new RangeError(`no node ${String(n)} in this cluster`);
    return m;
  }

  kernel(n: number): Kernel {
    return this.node(n).kernel;
  }

  /** Starts every node's reconciler (directory loaded, node registered); runs the world until they are. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    let pending = this.members.length;
    let failure: unknown;
    for (const m of this.members) {
      this.spawn(`start n${m.id}`, async () => {
        try {
          await m.reconciler.start();
        } catch (err) {
          failure ??= err;
        } finally {
          pending--;
        }
      });
    }
    await this.run({ maxTime: this.now() + 10_000 });
    if (failure !== undefined) throw failure as Error;
    if (pending > 0) throw new Error(`${pending} node(s) did not start`);
  }

  /** Creates a DC through node `via`'s directory and runs until every member's kernel runs it. */
  async createDc(def: DcDefinition, via = 0): Promise<DcRecord> {
    let record: DcRecord | undefined;
    let failure: unknown;
    this.spawn(`create dc ${def.dcid}`, async () => {
      try {
        record = await this.node(via).directory.createDc(def);
        await Promise.all((record.nodes ?? []).map((n) => this.node(n).reconciler.whenDc(def.dcid)));
      } catch (err) {
        failure = err;
      }
    });
    await this.run({ maxTime: this.now() + 10_000 });
    if (failure !== undefined) throw failure as Error;
    if (record === undefined) throw new Error(`DC ${def.dcid} was not created`);
    return record;
  }

  /** Binds on node `n` as a daemon does: claimed in the directory, then bound in its kernel. */
  bind(n: number, dcid: number, opts: LocalBindOptions = {}): Promise<Process> {
    return this.node(n).reconciler.bind(dcid, opts);
  }

  /** The node stops answering: cut off from the network and from the store. */
  override crash(n: number): void {
    this.node(n).store.setReachable(false);
    this.network.crash(n);
  }

  /** The node answers again (a frozen process resumed): network and store back. */
  override restore(n: number): void {
    this.network.restore(n);
    this.node(n).store.setReachable(true);
  }

  /** Only the store is lost to node `n` (or back, with `reachable`). */
  storeReachable(n: number, reachable: boolean): void {
    this.node(n).store.setReachable(reachable);
  }

  /** Cuts the link between two nodes. */
  partition(a: number, b: number): void {
    this.network.partition(a, b);
  }

  heal(a: number, b: number): void {
    this.network.heal(a, b);
  }

  /** Stops every node's reconciler. */
  async stop(): Promise<void> {
    for (const m of this.members) {
      this.spawn(`stop n${m.id}`, async () => {
        await m.reconciler.stop().catch(() => undefined);
        await m.directory.close().catch(() => undefined);
      });
    }
    await this.run({ maxTime: this.now() + 10_000 });
    await this.store.close();
  }
}
