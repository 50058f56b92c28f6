/**
 * The cluster directory on top of any `CoordinationStore`: nodes (under leases), DCs and their
 * members, endpoint locations and slot generations, in the key layout of keys.ts
 * (docs/coordination.md). A daemon keeps one `Directory`; it registers its node, claims the
 * endpoints its processes bind, and follows the cache's change events to create DCs in its kernel
 * and to bind and unbind remote descriptors.
 *
 * - Every lookup (`nodes`, `dc`, `endpoint`, ...) reads the cache, kept current by one watch on the
 *   whole layout: the message path never touches the store. Writes resolve once the cache has seen
 *   them (read your writes).
 * - Fixed slots (servers) are claimed with a transaction at the slot's next generation
 *   (EDVSSLOTUSED if bound or reserved elsewhere).
 * - Ephemeral (user) slots come from a per-node, per-DC pool of free slots reserved ahead of time
 *   by one transaction each (`rangeSize` at a time, each with its next generation already taken), so
 *   a client bind takes a slot from memory and only publishes its endpoint in the background.
 * - Generations only ever increase per slot: the `gen` key of a slot is persistent and bumped by
 *   every claim and reservation, across node restarts.
 * - A node's key, its endpoints and its reservations live under the node's lease: when it expires,
 *   they all disappear in one revision and every cache sees the endpoints unbound, then the node down.
 *
 * This class is the facade; each concept lives in a module of its own under directory/: the cache
 * and its watch, the node registry, DC administration, the slot pool, endpoint claims, freezes.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { systemClock } from '../runtime/system-clock.js';
import { DirectoryCache } from './directory/cache.js';
import type { DirectoryContext } from './directory/context.js';
import { DcAdmin } from './directory/dc-admin.js';
import { EndpointClaims } from './directory/endpoint-claims.js';
import { EndpointFreezes, type ThawOptions } from './directory/endpoint-freeze.js';
import { NodeRegistry } from './directory/node-registry.js';
import { directorySettings, type ClaimOptions, type DirectoryOptions, type RegisterOptions, type ReleaseOptions, type RestoreOptions } from './directory/options.js';
import type { DcDefinition, DcRecord, DirectoryEvents, EndpointRecord, NodeInfo, NodeRecord } from './directory/records.js';
import { SlotPool } from './directory/slot-pool.js';
import { TxnRunner } from './directory/txn-runner.js';
import { Emitter } from './emitter.js';
import { DirectoryKeys } from './keys.js';
import { DvsError } from '../ipc/errors.js';
import type { Compare, CoordinationStore, StoreValue } from './store.js';
import type { InstanceGroupRecord, VosRecordEntry } from './directory/records.js';
import { dcSpace } from './directory/dc-space.js';
import { checkName } from './directory/parse.js';

export {
  NAME_MAX,
  type NodeInfo,
  type NodeRecord,
  type DcDefinition,
  type DcRecord,
  type EndpointRecord,
  type NodeEvent,
  type DcEvent,
  type EndpointEvent,
  type VosRecordEntry,
  type VosRecordEvent,
  type InstanceGroupRecord,
  type InstanceGroupEvent,
  type DirectoryEvents,
} from './directory/records.js';
export type { DirectoryOptions, RegisterOptions, ClaimOptions, ReleaseOptions, RestoreOptions } from './directory/options.js';
export type { ThawOptions } from './directory/endpoint-freeze.js';

export class Directory extends Emitter<DirectoryEvents> {
  readonly keys: DirectoryKeys;
  private readonly store: CoordinationStore;
  private readonly cache: DirectoryCache;
  private readonly registry: NodeRegistry;
  private readonly admin: DcAdmin;
  private readonly pool: SlotPool;
  private readonly claims: EndpointClaims;
  private readonly freezes: EndpointFreezes;
  private readonly ctx: DirectoryContext;

  constructor(store: CoordinationStore, opts: DirectoryOptions = {}) {
    super();
    this.store = store;
    this.keys = new DirectoryKeys(opts.root ?? '/dvs');
    const clock = opts.clock ?? systemClock;
    const settings = directorySettings(opts);
    const emit = this.emit.bind(this);
    this.cache = new DirectoryCache(store, this.keys, clock, settings.cacheWaitMs, {
      emit,
      reservationChanged: (dcid, slot) => this.pool.forget(dcid, slot),
    });
    const cache = this.cache;
    const txns = new TxnRunner(store, clock, settings.maxRetries, () => cache.closed);
    const ctx: DirectoryContext = { store, keys: this.keys, clock, settings, cache, txns, emit };
    this.ctx = ctx;
    this.registry = new NodeRegistry(ctx);
    this.admin = new DcAdmin(ctx);
    this.pool = new SlotPool(ctx, this.registry);
    this.claims = new EndpointClaims(ctx, this.registry, this.pool);
    this.freezes = new EndpointFreezes(ctx);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Loads the cache (emitting events for what exists: nodes, then DCs, then endpoints) and starts the watch. */
  start(): Promise<void> {
    return this.cache.start();
  }

  /**
   * Stops the watch and the keepalives. With `revoke` (default) the leases of the nodes registered
   * here are revoked, so their keys disappear at once (a clean leave); without, they expire after
   * their TTL (what a crash looks like).
   */
  async close(opts: { revoke?: boolean } = {}): Promise<void> {
    if (this.cache.closed) return;
    this.cache.close();
    const leases = this.registry.detachAll();
    await this.claims.flush();
    if (opts.revoke ?? true) await Promise.allSettled(leases.map((lease) => this.store.revokeLease(lease)));
  }

  /** The store revision the cache reflects. */
  get revision(): number {
    return this.cache.revision;
  }

  /** Resolves once the cache reflects `revision`; EDVSTIMEDOUT after `timeoutMs`. */
  waitForRevision(revision: number, timeoutMs?: number): Promise<void> {
    return this.cache.waitForRevision(revision, timeoutMs);
  }

  /** Waits until every endpoint publication started so far has landed (or failed). */
  flush(): Promise<void> {
    return this.claims.flush();
  }

  // ---------------------------------------------------------------- cache lookups (never touch the store)

  node(nodeId: number): NodeRecord | undefined {
    return this.cache.node(nodeId);
  }

  /** Live nodes, by id. */
  nodes(): NodeRecord[] {
    return this.cache.nodes();
  }

  dc(dcid: number): DcRecord | undefined {
    return this.cache.dc(dcid);
  }

  dcs(): DcRecord[] {
    return this.cache.dcs();
  }

  /** Published endpoints of a DC, by slot. */
  endpoints(dcid: number): EndpointRecord[] {
    return this.cache.endpoints(dcid);
  }

  /** The endpoint published in `slot`, whatever its generation. */
  endpointAt(dcid: number, slot: number): EndpointRecord | undefined {
    return this.cache.endpointAt(dcid, slot);
  }

  /** The record of exactly this endpoint (slot and generation), if published. */
  lookup(dcid: number, endpoint: Endpoint): EndpointRecord | undefined {
    return this.cache.lookup(dcid, endpoint);
  }

  /** The published endpoint with this name in a DC, if any. */
  findByName(dcid: number, name: string): EndpointRecord | undefined {
    return this.cache.findByName(dcid, name);
  }

  /** Last generation handed out for a slot (-1: never). */
  generation(dcid: number, slot: number): number {
    return this.cache.generation(dcid, slot);
  }

  /** User slots reserved for `node` in `dcid` and not yet handed out by this directory. */
  reservedSlots(dcid: number, node: number): number[] {
    return this.pool.reservedSlots(dcid, node);
  }

  /** Nodes registered through this directory. */
  registeredNodes(): NodeRecord[] {
    return this.registry.records();
  }

  // ---------------------------------------------------------------- nodes

  /**
   * Registers a node under a new lease of `ttlMs`, kept alive by this directory, at the next
   * incarnation. EDVSNODEBUSY if the node id is registered and alive (unless `replace`), or being
   * registered here. A failure (the store unreachable: EDVSNOTCONN, EDVSTIMEDOUT; the timeout:
   * EDVSTIMEDOUT; an abort: EDVSINTR) leaves no registration or lease behind: call it again, with
   * backoff, until it succeeds. After a lost lease it works again as soon as the store is back.
   */
  async registerNode(info: NodeInfo, ttlMs: number, opts: RegisterOptions = {}): Promise<NodeRecord> {
    this.cache.checkOpen();
    return this.registry.register(info, ttlMs, opts);
  }

  /** Leaves cleanly: stops the keepalive and revokes the node's lease (its keys disappear at once). */
  unregisterNode(nodeId: number): Promise<void> {
    return this.registry.unregister(nodeId);
  }

  // ---------------------------------------------------------------- DCs

  /** Creates a DC; EDVSDCRUN if it exists. */
  async createDc(def: DcDefinition): Promise<DcRecord> {
    await this.opened();
    return this.admin.create(def);
  }

  /** Removes a DC with everything under it (endpoints, reservations, generations); EDVSBADDCID if none. */
  async removeDc(dcid: number): Promise<void> {
    await this.opened();
    return this.admin.remove(dcid);
  }

  /** Adds a member node; EDVSDCNODE if it is one already. */
  async addNode(dcid: number, node: number): Promise<DcRecord> {
    await this.opened();
    return this.admin.addNode(dcid, node);
  }

  /** Removes a member node, with its endpoints and reservations in the DC; EDVSNODCNODE if not a member. */
  async removeNode(dcid: number, node: number): Promise<DcRecord> {
    await this.opened();
    return this.admin.removeNode(dcid, node);
  }

  // ---------------------------------------------------------------- VOS records

  /** The DC's VOS record (opaque to the directory), if one is stored. */
  vosRecord(dcid: number): VosRecordEntry | undefined {
    return this.cache.vos(dcid);
  }

  /**
   * Stores the DC's VOS record: EDVSBADDCID when the DC does not exist, EDVSEXIST when it has one
   * already and `replace` is not set. Resolves once the cache reflects it.
   */
  async putVosRecord(dcid: number, value: StoreValue, opts: { replace?: boolean } = {}): Promise<VosRecordEntry> {
    await this.opened();
    const key = this.keys.vos(dcid);
    const compare: Compare[] = [{ key: this.keys.dc(dcid), exists: true }];
    if (opts.replace !== true) compare.push({ key, exists: false });
    const r = await this.store.txn({ compare, success: [{ op: 'put', key, value }] });
    if (!r.succeeded) {
      if (this.cache.dc(dcid) === undefined) throw new DvsError('EDVSBADDCID', `DC ${dcid} does not exist`, { details: { dcid } });
      throw new DvsError('EDVSEXIST', `DC ${dcid} runs a VOS already`, { details: { dcid } });
    }
    await this.cache.catchUp(r.revision);
    return { dcid, value, modRevision: r.revision };
  }

  /** Removes the DC's VOS record; false when it had none. */
  async removeVosRecord(dcid: number): Promise<boolean> {
    await this.opened();
    const r = await this.store.delete(this.keys.vos(dcid));
    await this.cache.catchUp(r.revision);
    return r.deleted > 0;
  }

  // ---------------------------------------------------------------- instance groups

  /** The DC's instance groups (docs/instances.md), from the cache. */
  instanceGroups(dcid: number): InstanceGroupRecord[] {
    return this.cache.instanceGroups(dcid);
  }

  instanceGroup(dcid: number, slot: number): InstanceGroupRecord | undefined {
    return this.cache.instanceGroup(dcid, slot);
  }

  /**
   * Creates or updates the instance group in `slot` of `dcid`: its instances run on `nodes`. A new
   * group takes the slot's next generation (EDVSSLOTUSED when an endpoint is bound or reserved in
   * the slot); an update keeps its endpoint, and keeps `module` and `options` unless given.
   * Resolves once the cache reflects it.
   */
  async putInstanceGroup(dcid: number, slot: number, def: { readonly nodes: readonly number[]; readonly name?: string; readonly module?: string; readonly options?: StoreValue }): Promise<InstanceGroupRecord> {
    await this.opened();
    const space = await dcSpace(this.ctx, dcid);
    space.checkSlot(slot);
    if (slot < 0) throw new DvsError('EDVSBADVALUE', `an instance group needs a non-negative slot, got ${slot}`);
    const dcRec = this.cache.dc(dcid);
    const nodes = [...new Set(def.nodes)].sort((a, b) => a - b);
    for (const n of nodes) if (dcRec !== undefined && !dcRec.nodes.includes(n)) throw new DvsError('EDVSNODCNODE', `node ${n} is not a member of DC ${dcid}`, { details: { dcid, node: n } });
    const key = this.keys.instances(dcid, slot);
    for (let attempt = 0; attempt < 8; attempt++) {
      const cur = await this.store.get(key);
      const prev = cur === undefined ? undefined : (cur.value as Record<string, unknown>);
      const genKey = this.keys.generation(dcid, slot);
      const compare: Compare[] = [
        { key: this.keys.dc(dcid), exists: true },
        { key: this.keys.endpoint(dcid, slot), exists: false },
        { key: this.keys.reservation(dcid, slot), exists: false },
        cur === undefined ? { key, exists: false } : { key, modRevision: cur.modRevision },
      ];
      let endpoint: number;
      const success: { op: 'put'; key: string; value: StoreValue }[] = [];
      if (prev !== undefined && typeof prev.endpoint === 'number') endpoint = prev.endpoint;
      else {
        const g = await this.store.get(genKey);
        const gen = typeof g?.value === 'number' ? g.value + 1 : 0;
        compare.push(g === undefined ? { key: genKey, exists: false } : { key: genKey, modRevision: g.modRevision });
        endpoint = space.make(gen, slot);
        success.push({ op: 'put', key: genKey, value: gen });
      }
      const name = checkName(def.name ?? prev?.name, `inst${slot}`);
      const module = def.module ?? (typeof prev?.module === 'string' ? prev.module : undefined);
      const options = def.options ?? (prev?.options as StoreValue | undefined);
      const value: Record<string, StoreValue> = { endpoint, name, nodes };
      if (module !== undefined) value.module = module;
      if (options !== undefined) value.options = options;
      success.push({ op: 'put', key, value });
      const r = await this.store.txn({ compare, success, failure: [] });
      if (r.succeeded) {
        await this.cache.catchUp(r.revision);
        return { dcid, slot, endpoint, name, nodes, ...(module !== undefined ? { module } : {}), ...(options !== undefined ? { options } : {}), modRevision: r.revision };
      }
      if ((await this.store.get(this.keys.dc(dcid))) === undefined) throw new DvsError('EDVSBADDCID', `DC ${dcid} does not exist`, { details: { dcid } });
      if ((await this.store.get(this.keys.endpoint(dcid, slot))) !== undefined || (await this.store.get(this.keys.reservation(dcid, slot))) !== undefined) {
        throw new DvsError('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} holds an endpoint`, { details: { dcid, slot } });
      }
    }
    throw new DvsError('EDVSAGAIN', `instance group ${dcid}/${slot} changed too often meanwhile`);
  }

  /** Removes an instance group's record; false when there was none. */
  async removeInstanceGroup(dcid: number, slot: number): Promise<boolean> {
    await this.opened();
    const r = await this.store.delete(this.keys.instances(dcid, slot));
    await this.cache.catchUp(r.revision);
    return r.deleted > 0;
  }

  // ---------------------------------------------------------------- endpoints

  /**
   * Claims an endpoint for a process of `node` (registered through this directory) in `dcid`.
   * With `slot`: that slot at its next generation, by one transaction (EDVSSLOTUSED if it is bound
   * or reserved by another node). Without: a user slot from the node's reserved pool, normally with
   * no store round trip (the endpoint is published in the background; `flush` waits for it);
   * EDVSNOSPC when the DC has no free user slot. With `generation` (and `slot`): exactly that
   * generation, EDVSENDPOINT if the slot's next one is another. EDVSTIMEDOUT after `timeoutMs`
   * (default `claimTimeoutMs`), EDVSINTR when `signal` aborts: a write of the claim that lands
   * after it gave up is undone.
   */
  async claimEndpoint(dcid: number, node: number, opts: ClaimOptions = {}): Promise<Endpoint> {
    this.cache.checkOpen();
    return this.claims.claim(dcid, node, opts);
  }

  /** Reserves a range of user slots for `node` in `dcid` now (e.g. when the node joins the DC), so later binds find them ready. */
  async reserveRange(dcid: number, node: number): Promise<number[]> {
    await this.opened();
    return this.claims.reserveRange(dcid, node);
  }

  /**
   * Publishes again an endpoint `node` still runs after its registration was lost (lease expiry
   * removed the entry): only while the slot is free, unreserved, and its last generation is still
   * this endpoint's, so nothing newer is ever overwritten. EDVSSLOTUSED when another holds the slot.
   * The entry keeps `epoch` (default 0), the epoch the endpoint had before its entry was lost.
   */
  async restoreEndpoint(dcid: number, endpoint: Endpoint, node: number, name: string, epoch = 0, opts: RestoreOptions = {}): Promise<void> {
    await this.opened();
    return this.claims.restore(dcid, endpoint, node, name, epoch, opts);
  }

  /**
   * Unpublishes an endpoint (after its process unbound). EDVSNOTBIND if not published, EDVSENDPOINT
   * if the slot holds another generation; with `opts.node`, EDVSRMTPROC if another node owns the
   * entry (the endpoint moved there: the old incarnation's exit must not unpublish it).
   */
  releaseEndpoint(dcid: number, endpoint: Endpoint, opts: ReleaseOptions = {}): Promise<void> {
    return this.claims.release(dcid, endpoint, opts);
  }

  /**
   * Freezes `endpoint` at `epoch` for at most `freezeMs` (a marker under a lease of its own): new
   * senders everywhere park until `thawEndpoint`, or until the freeze expires (its coordinator died)
   * and every cache sees the endpoint thawed where it was. EDVSNOTBIND (not published), EDVSENDPOINT
   * (another endpoint in the slot, or another epoch), EDVSBUSY (frozen already).
   */
  async freezeEndpoint(dcid: number, endpoint: Endpoint, epoch: number, freezeMs: number): Promise<EndpointRecord> {
    await this.opened();
    return this.freezes.freeze(dcid, endpoint, epoch, freezeMs);
  }

  /**
   * Thaws `endpoint`, frozen at `epoch`; with `toNode` other than its owner, moves it there at
   * `epoch + 1` in the same transaction (under that node's registration lease). EDVSPROCSTS if it is
   * not frozen (the freeze expired), EDVSENDPOINT if it changed since the freeze, EDVSNOTBIND,
   * EDVSNONODE / EDVSNODCNODE for a `toNode` not registered / not a member of the DC. With
   * `toNode` and `adoptAs`, an entry that vanished during the move (its owner's lease ended) is
   * published at `toNode` at `epoch + 1`; EDVSSLOTUSED if something newer holds the slot.
   */
  async thawEndpoint(dcid: number, endpoint: Endpoint, epoch: number, opts: ThawOptions = {}): Promise<EndpointRecord> {
    await this.opened();
    return this.freezes.thaw(dcid, endpoint, epoch, opts);
  }

  /** EDVSSHUTDOWN once closed; else the cache is loaded and watching. */
  private async opened(): Promise<void> {
    this.cache.checkOpen();
    await this.cache.start();
  }
}
