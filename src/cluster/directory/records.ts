/**
 * What the directory tells its users: the records of nodes, DCs and endpoints as the cache holds
 * them, and the events by which it reports their changes.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import type { DvsError } from '../../ipc/errors.js';
import type { DcLimits } from '../../ipc/limits.js';
import type { LeaseId, StoreValue } from '../store.js';

/** Longest DC or endpoint name (as in the kernel). */
export const NAME_MAX = 32;

export interface NodeInfo {
  readonly nodeId: number;
  /** Where the node's link listener is reached. */
  readonly host: string;
  readonly port: number;
  /** Anything else peers should know (admin port, process socket, version); plain values. */
  readonly meta?: { readonly [key: string]: StoreValue };
}

export interface NodeRecord extends NodeInfo {
  /** Bumped by every registration of this node id: a restarted daemon is a new incarnation. */
  readonly incarnation: number;
  /** The lease the node's keys live under. */
  readonly lease: LeaseId;
}

export interface DcDefinition {
  readonly dcid: number;
  readonly name?: string;
  readonly nodes?: readonly number[];
  readonly limits?: Partial<DcLimits>;
}

export interface DcRecord {
  readonly dcid: number;
  readonly name: string;
  /** Member nodes, ascending. */
  readonly nodes: readonly number[];
  readonly limits: DcLimits;
}

export interface EndpointRecord {
  readonly dcid: number;
  readonly slot: number;
  readonly generation: number;
  readonly endpoint: Endpoint;
  /** The node that owns the endpoint. */
  readonly node: number;
  readonly name: string;
  /**
   * The endpoint's location counter, stored in its entry: 0 when claimed or published, one more at
   * every move to another node (entries written without it read as 0).
   */
  readonly epoch: number;
  /** The modRevision of the endpoint's key: changes whenever the entry does (the guard of a compare-and-swap). */
  readonly modRevision: number;
  /** A freeze marker names this endpoint: new senders park until it is thawed or the freeze expires. */
  readonly frozen: boolean;
  /** The freeze's lifetime in ms (its lease's TTL), when frozen. */
  readonly freezeMs?: number;
  /**
   * The endpoint is a replica group's (docs/replication.md): when its entry goes without an unbind
   * (its primary's node died), senders park this long for the next primary instead of failing.
   */
  readonly failoverMs?: number;
}

export type NodeEvent = { readonly type: 'up' | 'changed' | 'down'; readonly node: NodeRecord };
export type DcEvent = { readonly type: 'created' | 'changed' | 'removed'; readonly dc: DcRecord; readonly previous?: DcRecord };
/** A DC's VOS record (opaque here) as stored, with the revision it was written at. */
export interface VosRecordEntry {
  readonly dcid: number;
  readonly value: StoreValue;
  readonly modRevision: number;
}
export type VosRecordEvent = { readonly type: 'set'; readonly entry: VosRecordEntry } | { readonly type: 'removed'; readonly dcid: number };
/**
 * An instance group (docs/instances.md): one endpoint of a stateless service with an instance on
 * each of `nodes`, as stored under `inst/<slot>`. `module` and `options` say what the daemons run
 * there (opaque to the directory).
 */
export interface InstanceGroupRecord {
  readonly dcid: number;
  readonly slot: number;
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly nodes: readonly number[];
  readonly module?: string;
  readonly options?: StoreValue;
  readonly modRevision: number;
}
export type InstanceGroupEvent = { readonly type: 'set'; readonly group: InstanceGroupRecord; readonly previous?: InstanceGroupRecord } | { readonly type: 'removed'; readonly group: InstanceGroupRecord };
export type EndpointEvent = { readonly type: 'bound' | 'unbound'; readonly endpoint: EndpointRecord; readonly previous?: EndpointRecord };

export interface DirectoryEvents {
  node: NodeEvent;
  dc: DcEvent;
  endpoint: EndpointEvent;
  vos: VosRecordEvent;
  instances: InstanceGroupEvent;
  /** A node registered here lost its lease: the cluster considers it dead; re-register (a new incarnation). */
  leaseLost: { readonly nodeId: number; readonly error: DvsError };
  /** The cache was rebuilt from a fresh read after its watch ended (compaction, store reset). */
  resync: { readonly revision: number };
  /** Background failures: a publication that did not land, a malformed key, a failed resync. */
  error: DvsError;
}

/** How the parts of the directory emit through the facade. */
export type EmitDirectoryEvent = <K extends keyof DirectoryEvents>(name: K, event: DirectoryEvents[K]) => void;

/** A free user slot reserved by a node's range, as stored under `resv/<slot>`. */
export interface Reservation {
  readonly node: number;
  readonly generation: number;
  readonly lease: number;
  readonly modRevision: number;
}

/** A freeze marker, as stored under `frz/<slot>` (under a lease of its own). */
export interface FreezeMarker {
  readonly endpoint: number;
  /** The epoch the endpoint was frozen at. */
  readonly epoch: number;
  /** The modRevision of the endpoint's entry when it was frozen: a thaw requires it unchanged. */
  readonly recordRevision: number;
  /** The TTL the freeze was given. */
  readonly ms: number;
  readonly lease: number;
  readonly modRevision: number;
}

/** The last generation handed out for a slot, as stored under `gen/<slot>`. */
export interface GenEntry {
  readonly generation: number;
  readonly modRevision: number;
}
