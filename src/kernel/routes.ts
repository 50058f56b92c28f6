/**
 * Routes: where each endpoint of a DC lives, as this kernel knows it. The one place that answers
 * that question (DESIGN.md, "Moving endpoints"). A slot's route is one of
 * - local: bound here (the LocalProc itself),
 * - remote(node, epoch): owned by another node,
 * - frozen(epoch): moving; new senders park here until the route is set again or the freeze's
 *   deadline passes (then the previous route comes back),
 * - group(members, primary, epoch): served by several members (replica groups fill it in).
 * A slot may also hold an instance group (`InstanceSet`, instances.ts): one endpoint bound by a
 * stateless instance on each of several nodes; its route is the local instance where one runs
 * here, else group(the other members), and calls pick a member by power of two choices.
 * Every change of location is epoch-checked by `order`: a route learnt from a "moved" answer, an
 * autobind or a directory event never replaces a newer one, and a route learnt from traffic never
 * replaces one the directory, a move or a local bind gave (at any generation). `sourceFrom` says
 * whether a frame from a node may carry an endpoint as its source, by these routes alone.
 */
import type { EndpointSpace, Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { OutgoingMessage } from '../ipc/message.js';
import type { TimerHandle } from './clock.js';
import type { NotifyFrame, SendFrame } from './frames.js';
import type { LocalProc } from './proc.js';
import type { Waiter } from './waiter.js';

export interface RemoteRoute {
  readonly kind: 'remote';
  readonly endpoint: Endpoint;
  readonly slot: number;
  node: number;
  epoch: number;
  name: string;
}

export interface GroupRoute {
  readonly kind: 'group';
  readonly endpoint: Endpoint;
  readonly slot: number;
  epoch: number;
  name: string;
  readonly members: readonly number[];
  /** The member that serves calls now (replica groups: the primary). */
  readonly primary: number;
}

/** A local send, sendrec or notify waiting for a frozen route to be set again. */
export type ParkedCall =
  | { readonly kind: 'send'; readonly proc: LocalProc; readonly msg: OutgoingMessage; readonly waiter: Waiter<void> }
  | { readonly kind: 'sendrec'; readonly proc: LocalProc; readonly msg: OutgoingMessage }
  | { readonly kind: 'notify'; readonly proc: LocalProc; readonly arg: number }
  /** A frame from another node that reached this node while the route was frozen. */
  | { readonly kind: 'frame'; readonly from: number; readonly frame: SendFrame | NotifyFrame }
  /**
   * A frame from another node whose source is this moving endpoint, sent from a node other than the
   * one its previous route names (maybe the node it moves to): its source is checked again, and the
   * frame handled, once the route is set again.
   */
  | { readonly kind: 'held'; readonly from: number; readonly frame: SendFrame | NotifyFrame };

export interface FrozenRoute {
  readonly kind: 'frozen';
  readonly endpoint: Endpoint;
  readonly slot: number;
  readonly epoch: number;
  readonly name: string;
  /** Where the endpoint lived when frozen: restored if the freeze expires. */
  readonly previous: LocalProc | RemoteRoute | GroupRoute;
  readonly parked: ParkedCall[];
  timer: TimerHandle | undefined;
}

/**
 * An instance group (docs/instances.md): one endpoint of a stateless service bound by an instance
 * on each member node. The directory gives the members; this kernel counts its own outstanding
 * calls per member to choose between two (power of two choices).
 */
export interface InstanceSet {
  readonly endpoint: Endpoint;
  readonly slot: number;
  name: string;
  epoch: number;
  /** Nodes with a live instance, as the directory and the links say (this node's own included if listed). */
  members: number[];
  /** This kernel's calls in flight per member node. */
  readonly load: Map<number, number>;
  /** Calls this kernel sent per member node (attempts, resends included). */
  readonly sent: Map<number, number>;
  /** Calls resent to another member after theirs failed. */
  resent: number;
}

export type Route = LocalProc | RemoteRoute | FrozenRoute | GroupRoute;
/** A route other than frozen: where calls actually go. */
export type SettledRoute = LocalProc | RemoteRoute | GroupRoute;

/** Epoch of a location learnt from traffic (autobind): older than any epoch a directory or a move gives. */
export const TRAFFIC_EPOCH = -1;

/** A route learnt from traffic (autobind), not given by the directory, a move or a local bind. */
export function isLearnt(r: Route | undefined): boolean {
  return r?.kind === 'remote' && r.epoch === TRAFFIC_EPOCH;
}

/**
 * What a kernel's routes say of a frame's source (`RouteTable.sourceFrom`):
 * - 'known': the slot's route is this very endpoint and names the sending node;
 * - 'new': nothing contradicts it: an empty slot, or a route learnt from traffic from the same node
 *   for an older generation; learnt from the frame (autobind);
 * - 'dead': from a node the slot's route names, an older generation than the route's; or, in an
 *   empty slot, one not newer than the directory gave there: the incarnation is gone;
 * - 'moving': this very endpoint, frozen here, from a node other than the one it was on (maybe the
 *   node it moves to): held until the route is set again, then checked again;
 * - 'foreign': the slot is bound here, or its route names another node (at any generation), or a
 *   newer generation than the directory gave, even from the same node: refused.
 */
export type SourceCheck = 'known' | 'new' | 'dead' | 'moving' | 'foreign';

/** Whether a settled route names `node` (a group: any member). */
function names(r: SettledRoute, node: number): boolean {
  if (r.kind === 'local') return false;
  return r.kind === 'remote' ? r.node === node : r.members.includes(node);
}

/** The process bound here behind a route, if any (a frozen route keeps its local owner until drained). */
export function ownerOf(r: Route | undefined): LocalProc | undefined {
  if (r === undefined) return undefined;
  if (r.kind === 'local') return r;
  return r.kind === 'frozen' && r.previous.kind === 'local' ? r.previous : undefined;
}

/** The node a settled route sends to (a group's primary). */
export function nodeOf(r: RemoteRoute | GroupRoute): number {
  return r.kind === 'remote' ? r.node : r.primary;
}

export class RouteTable {
  readonly space: EndpointSpace;
  private readonly dcid: number;
  /** Routes indexed by slot + nrTasks. */
  private readonly entries: (Route | undefined)[];
  /** Highest generation this kernel has seen per slot, from traffic too; -1 = never. */
  private readonly lastGen: number[];
  /**
   * Highest generation per slot that a route not learnt from traffic named (the directory, a move,
   * a local bind); -1 = never. Traffic cannot raise it: a forged source never fences the directory.
   */
  private readonly knownGen: number[];
  /** Instance groups by slot. */
  private readonly instanceSets = new Map<number, InstanceSet>();

  constructor(dcid: number, space: EndpointSpace) {
    this.dcid = dcid;
    this.space = space;
    const total = space.limits.nrTasks + space.limits.nrProcs;
    this.entries = new Array<Route | undefined>(total).fill(undefined);
    this.lastGen = new Array<number>(total).fill(-1);
    this.knownGen = new Array<number>(total).fill(-1);
  }

  at(slot: number): Route | undefined {
    return this.entries[slot + this.space.limits.nrTasks];
  }

  /** The process bound here in `slot`, frozen or not. */
  localAt(slot: number): LocalProc | undefined {
    return ownerOf(this.entries[slot + this.space.limits.nrTasks]);
  }

  lastGeneration(slot: number): number {
    return this.lastGen[slot + this.space.limits.nrTasks] ?? -1;
  }

  /** Highest generation of `slot` given by the directory, a move or a local bind (never by traffic). */
  knownGeneration(slot: number): number {
    return this.knownGen[slot + this.space.limits.nrTasks] ?? -1;
  }

  /** Sets `slot`'s route (also to record a route changed in place, e.g. learnt, then confirmed by the directory). */
  set(slot: number, route: Route): void {
    const i = slot + this.space.limits.nrTasks;
    this.entries[i] = route;
    const gen = this.space.generationOf(route.endpoint);
    if (gen > (this.lastGen[i] ?? -1)) this.lastGen[i] = gen;
    if (!isLearnt(route) && gen > (this.knownGen[i] ?? -1)) this.knownGen[i] = gen;
  }

  clear(slot: number): void {
    this.entries[slot + this.space.limits.nrTasks] = undefined;
  }

  /** The instance group of `slot`, if it holds one. */
  instancesAt(slot: number): InstanceSet | undefined {
    return this.instanceSets.get(slot);
  }

  /** The instance group whose endpoint is `ep`, if any. */
  instancesOf(ep: Endpoint): InstanceSet | undefined {
    const inst = this.instanceSets.get(this.space.slotOf(ep));
    return inst?.endpoint === ep ? inst : undefined;
  }

  setInstances(inst: InstanceSet): void {
    this.instanceSets.set(inst.slot, inst);
    const i = inst.slot + this.space.limits.nrTasks;
    const gen = this.space.generationOf(inst.endpoint);
    if (gen > (this.lastGen[i] ?? -1)) this.lastGen[i] = gen;
    if (gen > (this.knownGen[i] ?? -1)) this.knownGen[i] = gen;
  }

  clearInstances(slot: number): void {
    this.instanceSets.delete(slot);
  }

  *allInstances(): IterableIterator<InstanceSet> {
    yield* this.instanceSets.values();
  }

  /**
   * How a location (`endpoint` at `epoch`) compares with the slot's current route: 'newer' (a later
   * generation, or a later epoch of the same one), 'same' (this very endpoint at this epoch), or
   * 'older' (never to replace the current route). A location learnt from traffic (`TRAFFIC_EPOCH`)
   * is older than any route the directory, a move or a local bind gave, whatever its generation;
   * a location from one of those replaces a route learnt from traffic, whatever that route's
   * generation, unless older than a generation they gave the slot before. An empty slot takes any
   * generation not older than the last one they gave there (from traffic: only a later one).
   */
  order(endpoint: Endpoint, epoch: number): 'newer' | 'same' | 'older' {
    const slot = this.space.slotOf(endpoint);
    const cur = this.at(slot);
    const gen = this.space.generationOf(endpoint);
    const learnt = epoch === TRAFFIC_EPOCH;
    const known = this.knownGeneration(slot);
    if (cur === undefined) return (learnt ? gen > known : gen >= known) ? 'newer' : 'older';
    if (cur.endpoint !== endpoint && learnt !== isLearnt(cur)) return learnt || gen < known ? 'older' : 'newer';
    const curGen = this.space.generationOf(cur.endpoint);
    if (gen !== curGen) return gen > curGen ? 'newer' : 'older';
    if (epoch === cur.epoch) return 'same';
    return epoch > cur.epoch ? 'newer' : 'older';
  }

  /**
   * Whether a frame from `node` may carry `src` as its source, by what this table knows (see
   * `SourceCheck`). A frozen route speaks from the node its previous route names.
   */
  sourceFrom(src: Endpoint, node: number): SourceCheck {
    const slot = this.space.slotOf(src);
    const cur = this.at(slot);
    const gen = this.space.generationOf(src);
    // An instance group's endpoint speaks from any member node, this one's own instance or not.
    const inst = this.instanceSets.get(slot);
    if (inst !== undefined && inst.endpoint === src) return inst.members.includes(node) ? 'known' : 'foreign';
    if (cur === undefined) return gen > this.knownGeneration(slot) ? 'new' : 'dead';
    if (ownerOf(cur) !== undefined) return 'foreign';
    const settled = cur.kind === 'frozen' ? cur.previous : cur;
    const curGen = this.space.generationOf(cur.endpoint);
    if (!names(settled, node)) return cur.kind === 'frozen' && gen === curGen ? 'moving' : 'foreign';
    if (gen === curGen) return 'known';
    if (gen < curGen) return 'dead';
    return isLearnt(cur) ? 'new' : 'foreign';
  }

  *all(): IterableIterator<Route> {
    for (const e of this.entries) if (e !== undefined) yield e;
  }

  /** Every process bound here, frozen or not. */
  *locals(): IterableIterator<LocalProc> {
    for (const e of this.entries) {
      const p = ownerOf(e);
      if (p !== undefined) yield p;
    }
  }

  /**
   * Resolves an endpoint to its route, or throws the error a caller should see: EDVSENDPOINT for a
   * reserved value or a stale generation (the slot holds another incarnation), EDVSRANGE outside the DC,
   * EDVSDSTDIED (or `deadCode`) for an incarnation gone from a now free slot, EDVSNOTBIND otherwise.
   */
  lookup(ep: Endpoint, deadCode: 'EDVSDSTDIED' | 'EDVSSRCDIED' = 'EDVSDSTDIED'): Route {
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
