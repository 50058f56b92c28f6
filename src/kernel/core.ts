/**
 * The state one kernel's modules share (its DCs, the nodes known down, frame ids, the outgoing
 * transport) and the modules themselves, each holding one concept: rendezvous (local IPC calls),
 * remote calls, copies, route moves and the unbind cascade. The Kernel facade is the public face.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError, type DvsErrorCode } from '../ipc/errors.js';
import type { DcLimits, KernelLimits } from '../ipc/limits.js';
import type { Clock } from './clock.js';
import { Cascade } from './cascade.js';
import { Copies } from './copies.js';
import type { DcState } from './dc.js';
import type { KernelFrame, KernelTransport } from './frames.js';
import { InstanceCalls } from './instances.js';
import { RouteMoves } from './moves.js';
import type { LocalProc } from './proc.js';
import { RemoteCalls } from './remote-calls.js';
import { Rendezvous } from './rendezvous.js';
import type { RemoteRoute, GroupRoute } from './routes.js';

export interface KernelStats {
  framesIn: number;
  framesOut: number;
  /** Frames refused: unknown DC, sender node not a member, malformed content, a source the sender does not own. */
  framesRefused: number;
  /** Of those, frames whose source endpoint belongs to another node than the one that sent it. */
  sourcesRefused: number;
  /** Replies that found no sendrec waiting for them (the client gave up or died). */
  repliesDropped: number;
  /** Notifications that reached this node after their destination had moved on (not forwarded). */
  notifiesDropped: number;
  /** Calls parked on frozen routes, and released. */
  parked: number;
}

/** Told after a local bind and after a local unbind, e.g. to publish the endpoint in the directory. */
export interface KernelObserver {
  bound?(dcid: number, endpoint: Endpoint, name: string): void;
  unbound?(dcid: number, endpoint: Endpoint): void;
  /** A frame from another node was refused (counted in stats too). */
  refused?(from: number, kind: string, code: DvsErrorCode): void;
}

export interface CoreConfig {
  readonly nodeId: number;
  readonly clock: Clock;
  readonly transport: KernelTransport | undefined;
  readonly limits: KernelLimits;
  readonly maxRedirects: number;
  readonly copyWindow: number;
  readonly observer: KernelObserver | undefined;
  /** How long a handed-over sender's old address answers "moved" for late cancels. */
  readonly tombstoneMs: number;
  /** Uniform in [0, 1): the draws of power of two choices among an instance group's members. */
  readonly random: () => number;
}

export function fail(code: DvsErrorCode, message?: string, details?: Readonly<Record<string, unknown>>): never {
  throw new DvsError(code, message, details === undefined ? {} : { details });
}

export class KernelCore {
  readonly nodeId: number;
  readonly clock: Clock;
  readonly limits: KernelLimits;
  readonly transport: KernelTransport | undefined;
  readonly observer: KernelObserver | undefined;
  readonly maxRedirects: number;
  readonly copyWindow: number;
  readonly tombstoneMs: number;
  readonly random: () => number;
  readonly stats: KernelStats = { framesIn: 0, framesOut: 0, framesRefused: 0, sourcesRefused: 0, repliesDropped: 0, notifiesDropped: 0, parked: 0 };
  readonly dcs = new Map<number, DcState>();
  readonly downNodes = new Set<number>();
  running = true;
  private nextId = 1;

  readonly rendezvous: Rendezvous;
  readonly remote: RemoteCalls;
  readonly copies: Copies;
  readonly moves: RouteMoves;
  readonly cascade: Cascade;
  readonly instances: InstanceCalls;

  constructor(cfg: CoreConfig) {
    this.nodeId = cfg.nodeId;
    this.clock = cfg.clock;
    this.limits = cfg.limits;
    this.transport = cfg.transport;
    this.observer = cfg.observer;
    this.maxRedirects = cfg.maxRedirects;
    this.copyWindow = cfg.copyWindow;
    this.tombstoneMs = cfg.tombstoneMs;
    this.random = cfg.random;
    // Modules reach each other through this core only inside their methods, never while constructed.
    this.rendezvous = new Rendezvous(this);
    this.remote = new RemoteCalls(this);
    this.copies = new Copies(this);
    this.moves = new RouteMoves(this);
    this.cascade = new Cascade(this);
    this.instances = new InstanceCalls(this);
  }

  /** A fresh id for a frame that expects an answer (unique among this kernel's outstanding requests). */
  newId(): number {
    return this.nextId++;
  }

  /** Counts a refused frame and tells the observer. */
  refused(from: number, kind: string, code: DvsErrorCode): void {
    this.stats.framesRefused++;
    this.observer?.refused?.(from, kind, code);
  }

  emit(node: number, frame: KernelFrame): void {
    if (this.transport === undefined) return;
    this.stats.framesOut++;
    this.transport.send(node, frame);
  }

  checkRunning(): void {
    if (!this.running) fail('EDVSDVSINIT', `the kernel of node ${this.nodeId} is shut down`);
  }

  checkNodeId(node: number, limits: DcLimits): void {
    if (!Number.isInteger(node) || node < 0 || node >= limits.nrNodes) fail('EDVSBADNODEID', `node ${String(node)} outside 0..${limits.nrNodes - 1}`);
  }

  dc(dcid: number): DcState {
    this.checkRunning();
    const dc = this.dcs.get(dcid);
    if (dc === undefined) fail('EDVSBADDCID', `no DC ${String(dcid)} on node ${this.nodeId}`);
    return dc;
  }

  /** The process bound here as `endpoint` (frozen or not), or EDVSRMTPROC / the lookup's error. */
  localProc(dc: DcState, endpoint: Endpoint): LocalProc {
    const route = dc.routes.lookup(endpoint);
    if (route.kind === 'local') return route;
    if (route.kind === 'frozen' && route.previous.kind === 'local') return route.previous;
    fail('EDVSRMTPROC', `endpoint ${dc.space.format(endpoint)} lives elsewhere`);
  }

  /** A remote route (or a group's primary) can be used now: member, transport, node up. */
  checkRoute(dc: DcState, route: RemoteRoute | GroupRoute): number {
    const node = route.kind === 'remote' ? route.node : route.primary;
    if (!dc.nodes.has(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dc.dcid}`);
    if (this.transport === undefined) fail('EDVSNOPROXY', 'this kernel has no transport to other nodes');
    if (this.downNodes.has(node)) fail('EDVSNOTCONN', `node ${node} is down`, { node });
    return node;
  }

  /** Resolves the bind watches of `slot` that its new state satisfies. */
  fireWatches(dc: DcState, slot: number): void {
    if (dc.watches.size === 0) return;
    const entry = dc.routes.at(slot);
    for (const w of dc.watches) {
      if (w.slot !== slot) continue;
      if (w.unbind ? entry?.endpoint !== w.endpoint : entry !== undefined && dc.space.generationOf(entry.endpoint) >= dc.space.generationOf(w.endpoint ?? 0)) {
        dc.watches.delete(w);
        w.waiter.resolve(w.endpoint !== undefined && w.unbind ? w.endpoint : (entry?.endpoint ?? slot));
      }
    }
  }
}
