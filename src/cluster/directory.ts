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
 */
import { EndpointSpace, KERNEL, type Endpoint } from '../ipc/endpoint.js';
import { DvsError, type DvsErrorCode } from '../ipc/errors.js';
import { resolveDcLimits, type DcLimits } from '../ipc/limits.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { systemClock } from '../runtime/system-clock.js';
import { Emitter } from './emitter.js';
import { DirectoryKeys, type ParsedKey } from './keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { Compare, CoordinationStore, KeyValue, LeaseId, StoreValue, TxnOp, TxnOpResult, TxnRequest, TxnResult, Unsubscribe, WatchEvent } from './store.js';

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
  /** The modRevision of the endpoint's key: changes whenever the entry does (a fencing epoch for moves). */
  readonly epoch: number;
}

export type NodeEvent = { readonly type: 'up' | 'changed' | 'down'; readonly node: NodeRecord };
export type DcEvent = { readonly type: 'created' | 'changed' | 'removed'; readonly dc: DcRecord; readonly previous?: DcRecord };
export type EndpointEvent = { readonly type: 'bound' | 'unbound'; readonly endpoint: EndpointRecord; readonly previous?: EndpointRecord };

export interface DirectoryEvents {
  node: NodeEvent;
  dc: DcEvent;
  endpoint: EndpointEvent;
  /** A node registered here lost its lease: the cluster considers it dead; re-register (a new incarnation). */
  leaseLost: { readonly nodeId: number; readonly error: DvsError };
  /** The cache was rebuilt from a fresh read after its watch ended (compaction, store reset). */
  resync: { readonly revision: number };
  /** Background failures: a publication that did not land, a malformed key, a failed resync. */
  error: DvsError;
}

export interface DirectoryOptions {
  /** Key prefix of the layout. Default '/dvs'. */
  readonly root?: string;
  /** Timers (lease keepalive, waits, resync backoff). Default: the system clock. */
  readonly clock?: Clock;
  /** User slots a node reserves per DC at a time. Default 16, at most 32 (one txn stays under etcd's 128 ops). */
  readonly rangeSize?: number;
  /** A background refill starts when a node's pool falls below this. Default rangeSize / 4. */
  readonly refillBelow?: number;
  /** Attempts of a transaction that lost a race before EDVSBUSY. Default 8. */
  readonly maxRetries?: number;
  /** How long a write waits for the cache to catch up with it. Default 5000 ms. */
  readonly cacheWaitMs?: number;
}

export interface RegisterOptions {
  /** Take over a live registration of the same node id (a restarted daemon whose old lease has not expired): its lease is revoked. */
  readonly replace?: boolean;
}

export interface ClaimOptions {
  /** A fixed slot (servers, tasks); without one, a user slot from the node's pool. */
  readonly slot?: number;
  /** Default `ep<slot>`. */
  readonly name?: string;
}

interface Reservation {
  readonly node: number;
  readonly generation: number;
  readonly lease: number;
  readonly modRevision: number;
}

interface GenEntry {
  readonly generation: number;
  readonly modRevision: number;
}

interface Registration {
  readonly record: NodeRecord;
  readonly ttlMs: number;
  readonly keeper: LeaseKeeper;
}

interface DcState {
  record: DcRecord | undefined;
  modRevision: number;
  space: EndpointSpace | undefined;
  readonly eps: Map<number, EndpointRecord>;
  readonly gens: Map<number, GenEntry>;
  readonly resv: Map<number, Reservation>;
}

/** A DC's state as read from the store by a transaction that lost a race. */
interface DcSnapshot {
  readonly record: DcRecord | undefined;
  readonly modRevision: number;
  readonly eps: ReadonlySet<number>;
  readonly gens: ReadonlyMap<number, GenEntry>;
  readonly resv: ReadonlyMap<number, Reservation>;
}

const noop = (): void => undefined;

function fail(code: DvsErrorCode, message: string, details?: Record<string, unknown>): never {
  throw new DvsError(code, message, details === undefined ? {} : { details });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function checkName(name: unknown, fallback: string): string {
  const n = name ?? fallback;
  if (typeof n !== 'string' || n.length > NAME_MAX) fail('EDVSNAMESIZE', `name must be a string of at most ${NAME_MAX} characters`);
  return n;
}

function entriesOf(r: TxnOpResult | undefined): KeyValue[] {
  return r !== undefined && r.op === 'get' ? r.entries : [];
}

export class Directory extends Emitter<DirectoryEvents> {
  readonly keys: DirectoryKeys;
  private readonly store: CoordinationStore;
  private readonly clock: Clock;
  private readonly rangeSize: number;
  private readonly refillBelow: number;
  private readonly maxRetries: number;
  private readonly cacheWaitMs: number;

  private readonly nodeMap = new Map<number, NodeRecord>();
  private readonly dcMap = new Map<number, DcState>();
  /** Every cached key and its modRevision, to diff against a fresh read on resync. */
  private readonly known = new Map<string, number>();
  private rev = 0;
  private revWaiters: { rev: number; resolve: () => void }[] = [];
  private flushScheduled = false;

  private readonly registrations = new Map<number, Registration>();
  /** `dcid/slot` of reserved slots handed out whose publication has not shown in the cache yet. */
  private readonly inFlight = new Set<string>();
  private readonly refills = new Map<string, Promise<void>>();
  private readonly publishing = new Map<string, Promise<void>>();
  /** Releases in progress by `dcid/slot`: a claim of the same slot waits for them (a server restarting at once). */
  private readonly releasing = new Map<string, Promise<void>>();

  private unwatch: Unsubscribe | undefined;
  private started: Promise<void> | undefined;
  private resyncTimer: TimerHandle | undefined;
  private resyncing = false;
  private closed = false;

  constructor(store: CoordinationStore, opts: DirectoryOptions = {}) {
    super();
    this.store = store;
    this.keys = new DirectoryKeys(opts.root ?? '/dvs');
    this.clock = opts.clock ?? systemClock;
    this.rangeSize = opts.rangeSize ?? 16;
    if (!isInt(this.rangeSize, 1, 32)) fail('EDVSINVAL', `rangeSize must be an integer in 1..32, got ${String(opts.rangeSize)}`);
    this.refillBelow = opts.refillBelow ?? Math.max(1, Math.floor(this.rangeSize / 4));
    this.maxRetries = opts.maxRetries ?? 8;
    this.cacheWaitMs = opts.cacheWaitMs ?? 5000;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Loads the cache (emitting events for what exists: nodes, then DCs, then endpoints) and starts the watch. */
  start(): Promise<void> {
    this.started ??= this.load();
    return this.started;
  }

  /**
   * Stops the watch and the keepalives. With `revoke` (default) the leases of the nodes registered
   * here are revoked, so their keys disappear at once (a clean leave); without, they expire after
   * their TTL (what a crash looks like).
   */
  async close(opts: { revoke?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.resyncTimer !== undefined) this.clock.clearTimer(this.resyncTimer);
    this.unwatch?.();
    this.unwatch = undefined;
    const regs = [...this.registrations.values()];
    this.registrations.clear();
    for (const r of regs) r.keeper.stop();
    await Promise.allSettled([...this.publishing.values()]);
    if (opts.revoke ?? true) await Promise.allSettled(regs.map((r) => this.store.revokeLease(r.record.lease)));
    for (const w of this.revWaiters.splice(0)) w.resolve();
  }

  /** The store revision the cache reflects. */
  get revision(): number {
    return this.rev;
  }

  /** Resolves once the cache reflects `revision`; EDVSTIMEDOUT after `timeoutMs`. */
  waitForRevision(revision: number, timeoutMs = this.cacheWaitMs): Promise<void> {
    if (this.rev >= revision || this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.revWaiters = this.revWaiters.filter((w) => w !== waiter);
        reject(new DvsError('EDVSTIMEDOUT', `directory cache did not reach revision ${revision} within ${timeoutMs} ms (at ${this.rev})`));
      });
      const waiter = {
        rev: revision,
        resolve: () => {
          this.clock.clearTimer(timer);
          resolve();
        },
      };
      this.revWaiters.push(waiter);
    });
  }

  /** Waits until every endpoint publication started so far has landed (or failed). */
  async flush(): Promise<void> {
    while (this.publishing.size > 0) await Promise.allSettled([...this.publishing.values()]);
  }

  // ---------------------------------------------------------------- cache lookups (never touch the store)

  node(nodeId: number): NodeRecord | undefined {
    return this.nodeMap.get(nodeId);
  }

  /** Live nodes, by id. */
  nodes(): NodeRecord[] {
    return [...this.nodeMap.values()].sort((a, b) => a.nodeId - b.nodeId);
  }

  dc(dcid: number): DcRecord | undefined {
    return this.dcMap.get(dcid)?.record;
  }

  dcs(): DcRecord[] {
    const out: DcRecord[] = [];
    for (const s of this.dcMap.values()) if (s.record !== undefined) out.push(s.record);
    return out.sort((a, b) => a.dcid - b.dcid);
  }

  /** Published endpoints of a DC, by slot. */
  endpoints(dcid: number): EndpointRecord[] {
    const s = this.dcMap.get(dcid);
    if (s === undefined) return [];
    return [...s.eps.values()].sort((a, b) => a.slot - b.slot);
  }

  /** The endpoint published in `slot`, whatever its generation. */
  endpointAt(dcid: number, slot: number): EndpointRecord | undefined {
    return this.dcMap.get(dcid)?.eps.get(slot);
  }

  /** The record of exactly this endpoint (slot and generation), if published. */
  lookup(dcid: number, endpoint: Endpoint): EndpointRecord | undefined {
    const s = this.dcMap.get(dcid);
    if (s?.space === undefined || !Number.isSafeInteger(endpoint)) return undefined;
    const rec = s.eps.get(s.space.slotOf(endpoint));
    return rec?.endpoint === endpoint ? rec : undefined;
  }

  /** The published endpoint with this name in a DC, if any. */
  findByName(dcid: number, name: string): EndpointRecord | undefined {
    for (const rec of this.dcMap.get(dcid)?.eps.values() ?? []) if (rec.name === name) return rec;
    return undefined;
  }

  /** Last generation handed out for a slot (-1: never). */
  generation(dcid: number, slot: number): number {
    return this.dcMap.get(dcid)?.gens.get(slot)?.generation ?? -1;
  }

  /** User slots reserved for `node` in `dcid` and not yet handed out by this directory. */
  reservedSlots(dcid: number, node: number): number[] {
    const reg = this.registrations.get(node);
    const s = this.dcMap.get(dcid);
    if (reg === undefined || s === undefined) return [];
    const out: number[] = [];
    for (const [slot, r] of s.resv) if (r.node === node && r.lease === reg.record.lease && !this.inFlight.has(`${dcid}/${slot}`)) out.push(slot);
    return out.sort((a, b) => a - b);
  }

  /** Nodes registered through this directory. */
  registeredNodes(): NodeRecord[] {
    return [...this.registrations.values()].map((r) => r.record);
  }

  // ---------------------------------------------------------------- nodes

  /**
   * Registers a node under a new lease of `ttlMs`, kept alive by this directory, at the next
   * incarnation. EDVSNODEBUSY if the node id is registered and alive (unless `replace`).
   */
  async registerNode(info: NodeInfo, ttlMs: number, opts: RegisterOptions = {}): Promise<NodeRecord> {
    this.checkOpen();
    await this.start();
    const nodeId = info.nodeId;
    if (!isInt(nodeId, 0, 4095)) fail('EDVSBADNODEID', `node id must be an integer in 0..4095, got ${String(nodeId)}`);
    if (typeof info.host !== 'string' || info.host.length === 0 || info.host.length > 255) fail('EDVSINVAL', 'host must be a non-empty string');
    if (!isInt(info.port, 0, 65535)) fail('EDVSINVAL', `port must be an integer in 0..65535, got ${String(info.port)}`);
    if (info.meta !== undefined && !isRecord(info.meta)) fail('EDVSINVAL', 'meta must be a plain object');
    if (this.registrations.has(nodeId)) fail('EDVSNODEBUSY', `node ${nodeId} is already registered by this directory`);
    const since = this.clock.now();
    const lease = await this.store.grantLease(ttlMs);
    const nodeKey = this.keys.node(nodeId);
    const incKey = this.keys.incarnation(nodeId);
    try {
      let inc: KeyValue | undefined = await this.store.get(incKey);
      for (let attempt = 0; ; attempt++) {
        if (attempt >= this.maxRetries) fail('EDVSBUSY', `could not register node ${nodeId}: too much contention`);
        const last = typeof inc?.value === 'number' ? inc.value : 0;
        const incarnation = last + 1;
        const value: Record<string, StoreValue> = { nodeId, host: info.host, port: info.port, incarnation };
        if (info.meta !== undefined) value.meta = info.meta;
        const { r } = await this.txnRetry({
          compare: [
            { key: nodeKey, exists: false },
            { key: incKey, modRevision: inc?.modRevision ?? 0 },
          ],
          success: [
            { op: 'put', key: incKey, value: incarnation },
            { op: 'put', key: nodeKey, value, lease },
          ],
          failure: [
            { op: 'get', key: nodeKey },
            { op: 'get', key: incKey },
          ],
        });
        const existing = entriesOf(r.results[0])[0];
        inc = entriesOf(r.results[1])[0];
        // Succeeded, or an attempt whose reply was lost did (the node key is under our new lease).
        if (r.succeeded || existing?.lease === lease) {
          const record: NodeRecord = { ...(value as unknown as NodeInfo), incarnation, lease };
          const keeper = new LeaseKeeper({ store: this.store, lease, ttlMs, clock: this.clock, since, onLost: (err) => this.onLeaseLost(nodeId, lease, err) });
          this.registrations.set(nodeId, { record, ttlMs, keeper });
          keeper.start();
          await this.catchUp(r.revision);
          return record;
        }
        if (existing !== undefined) {
          if (!(opts.replace ?? false)) fail('EDVSNODEBUSY', `node ${nodeId} is registered and alive`, { nodeId });
          if (existing.lease !== undefined) await this.store.revokeLease(existing.lease).catch(noop);
          else await this.store.delete(nodeKey);
        }
      }
    } catch (err) {
      await this.store.revokeLease(lease).catch(noop);
      throw err;
    }
  }

  /** Leaves cleanly: stops the keepalive and revokes the node's lease (its keys disappear at once). */
  async unregisterNode(nodeId: number): Promise<void> {
    const reg = this.registrations.get(nodeId);
    if (reg === undefined) fail('EDVSNONODE', `node ${nodeId} is not registered by this directory`);
    this.registrations.delete(nodeId);
    reg.keeper.stop();
    await this.store.revokeLease(reg.record.lease).catch((err: unknown) => {
      if (!(err instanceof DvsError && err.code === 'EDVSNOENT')) throw err;
    });
  }

  // ---------------------------------------------------------------- DCs

  /** Creates a DC; EDVSDCRUN if it exists. */
  async createDc(def: DcDefinition): Promise<DcRecord> {
    this.checkOpen();
    await this.start();
    const record = this.checkDc(def);
    const key = this.keys.dc(record.dcid);
    const { r, lost } = await this.txnRetry({ compare: [{ key, exists: false }], success: [{ op: 'put', key, value: record as unknown as StoreValue }], failure: [{ op: 'get', key }] });
    const found = entriesOf(r.results[0])[0];
    const ours = lost && found !== undefined && JSON.stringify(parseDc(found.value, record.dcid)) === JSON.stringify(record);
    if (!r.succeeded && !ours) fail('EDVSDCRUN', `DC ${record.dcid} already exists`, { dcid: record.dcid });
    await this.catchUp(r.revision);
    return record;
  }

  /** Removes a DC with everything under it (endpoints, reservations, generations); EDVSBADDCID if none. */
  async removeDc(dcid: number): Promise<void> {
    this.checkOpen();
    await this.start();
    const key = this.keys.dc(dcid);
    // Endpoints first, then the record: caches see the endpoints unbound before the DC goes.
    const { r, lost } = await this.txnRetry({
      compare: [{ key, exists: true }],
      success: [
        { op: 'delete', key: this.keys.dcTree(dcid), prefix: true },
        { op: 'delete', key },
      ],
    });
    if (!r.succeeded && !lost) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    await this.catchUp(r.revision);
  }

  /** Adds a member node; EDVSDCNODE if it is one already. */
  async addNode(dcid: number, node: number): Promise<DcRecord> {
    this.checkOpen();
    await this.start();
    return this.updateMembers(dcid, (dc) => {
      if (!isInt(node, 0, dc.limits.nrNodes - 1)) fail('EDVSBADNODEID', `node ${String(node)} outside 0..${dc.limits.nrNodes - 1}`);
      if (dc.nodes.includes(node)) fail('EDVSDCNODE', `node ${node} is already a member of DC ${dcid}`, { dcid, node });
      return [...dc.nodes, node].sort((a, b) => a - b);
    });
  }

  /** Removes a member node, with its endpoints and reservations in the DC; EDVSNODCNODE if not a member. */
  async removeNode(dcid: number, node: number): Promise<DcRecord> {
    this.checkOpen();
    await this.start();
    const record = await this.updateMembers(
      dcid,
      (dc) => {
        if (!dc.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
        return dc.nodes.filter((n) => n !== node);
      },
      node,
    );
    // A claim or publication of that node racing with the update may still have landed: sweep until
    // nothing of it is left (no new claim can land: they compare the DC record).
    for (let pass = 0; pass < this.maxRetries; pass++) {
      const tree = await this.store.getPrefix(this.keys.dcTree(dcid));
      const leftovers = this.keysOfNode(dcid, tree.entries, node);
      if (leftovers.length === 0) break;
      const { r } = await this.txnRetry({ compare: [], success: leftovers.map((key): TxnOp => ({ op: 'delete', key })) });
      await this.catchUp(r.revision);
    }
    return record;
  }

  // ---------------------------------------------------------------- endpoints

  /**
   * Claims an endpoint for a process of `node` (registered through this directory) in `dcid`.
   * With `slot`: that slot at its next generation, by one transaction (EDVSSLOTUSED if it is bound
   * or reserved by another node). Without: a user slot from the node's reserved pool, normally with
   * no store round trip (the endpoint is published in the background; `flush` waits for it);
   * EDVSNOSPC when the DC has no free user slot.
   */
  async claimEndpoint(dcid: number, node: number, opts: ClaimOptions = {}): Promise<Endpoint> {
    this.checkOpen();
    await this.start();
    const reg = this.registrations.get(node);
    if (reg === undefined) fail('EDVSNONODE', `node ${node} is not registered by this directory`, { node });
    if (opts.slot !== undefined) return this.claimFixed(dcid, node, reg, opts.slot, opts.name);
    if (opts.name !== undefined) checkName(opts.name, '');
    const s = await this.dcForClaim(dcid, node);
    for (let round = 0; round < 3; round++) {
      const taken = this.takeFromPool(dcid, node, reg.record.lease);
      if (taken !== undefined) {
        const [slot, res] = taken;
        const endpoint = s.space!.make(res.generation, slot);
        const name = checkName(opts.name, `ep${slot}`);
        void this.publish(dcid, slot, res, { endpoint, generation: res.generation, node, name }, reg.record.lease);
        if (this.reservedSlots(dcid, node).length < this.refillBelow) {
          this.refill(dcid, node).catch((err: unknown) => {
            if (!(err instanceof DvsError && (err.code === 'EDVSNOSPC' || err.code === 'EDVSNONODE'))) this.emit('error', asDvsError(err));
          });
        }
        return endpoint;
      }
      await this.refill(dcid, node);
    }
    return fail('EDVSNOSPC', `DC ${dcid} has no free user slot for node ${node}`, { dcid, node });
  }

  /** Reserves a range of user slots for `node` in `dcid` now (e.g. when the node joins the DC), so later binds find them ready. */
  async reserveRange(dcid: number, node: number): Promise<number[]> {
    this.checkOpen();
    await this.start();
    if (!this.registrations.has(node)) fail('EDVSNONODE', `node ${node} is not registered by this directory`, { node });
    await this.refill(dcid, node);
    return this.reservedSlots(dcid, node);
  }

  /**
   * Publishes again an endpoint `node` still runs after its registration was lost (lease expiry
   * removed the entry): only while the slot is free, unreserved, and its last generation is still
   * this endpoint's, so nothing newer is ever overwritten. EDVSSLOTUSED when another holds the slot.
   */
  async restoreEndpoint(dcid: number, endpoint: Endpoint, node: number, name: string): Promise<void> {
    this.checkOpen();
    await this.start();
    const reg = this.registrations.get(node);
    if (reg === undefined) fail('EDVSNONODE', `node ${node} is not registered by this directory`, { node });
    const record = this.dc(dcid);
    if (record === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    const space = new EndpointSpace(record.limits);
    const slot = space.checkEndpoint(endpoint);
    const generation = space.generationOf(endpoint);
    const epKey = this.keys.endpoint(dcid, slot);
    const { r } = await this.txnRetry({
      compare: [
        { key: epKey, exists: false },
        { key: this.keys.reservation(dcid, slot), exists: false },
        { key: this.keys.generation(dcid, slot), value: generation },
      ],
      success: [{ op: 'put', key: epKey, value: { endpoint, generation, node, name: checkName(name, `ep${slot}`) }, lease: reg.record.lease }],
      failure: [{ op: 'get', key: epKey }],
    });
    if (r.succeeded) {
      await this.catchUp(r.revision);
      return;
    }
    const holder = entriesOf(r.results[0])[0];
    if (holder !== undefined && isRecord(holder.value) && holder.value.endpoint === endpoint && holder.value.node === node) return;
    fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} moved on; endpoint ${endpoint} cannot be restored`, { dcid, slot, endpoint });
  }

  /** Unpublishes an endpoint (after its process unbound). EDVSNOTBIND if not published, EDVSENDPOINT if the slot holds another generation. */
  releaseEndpoint(dcid: number, endpoint: Endpoint): Promise<void> {
    const p = this.release(dcid, endpoint);
    const space = this.dcMap.get(dcid)?.space;
    if (space !== undefined && Number.isSafeInteger(endpoint)) {
      const tag = `${dcid}/${space.slotOf(endpoint)}`;
      const tracked = p.then(noop, noop).finally(() => {
        if (this.releasing.get(tag) === tracked) this.releasing.delete(tag);
      });
      this.releasing.set(tag, tracked);
    }
    return p;
  }

  private async release(dcid: number, endpoint: Endpoint): Promise<void> {
    this.checkOpen();
    await this.start();
    await this.publishing.get(`${dcid}/${endpoint}`)?.catch(noop);
    const s = this.dcMap.get(dcid);
    let space = s?.space;
    if (space === undefined) {
      const kv = await this.store.get(this.keys.dc(dcid));
      const rec = kv === undefined ? undefined : parseDc(kv.value, dcid);
      if (rec === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      space = new EndpointSpace(rec.limits);
    }
    const slot = space.checkEndpoint(endpoint);
    const key = this.keys.endpoint(dcid, slot);
    let current: KeyValue | undefined = await this.store.get(key);
    let lostOnce = false;
    for (let attempt = 0; attempt < this.maxRetries; attempt++) {
      const rec = current === undefined ? undefined : parseEndpoint(current, dcid, slot);
      // After an attempt whose reply was lost, a slot that no longer holds the endpoint means it landed.
      if (lostOnce && rec?.endpoint !== endpoint) return;
      if (rec === undefined) fail('EDVSNOTBIND', `endpoint ${space.format(endpoint)} of DC ${dcid} is not published`, { dcid, endpoint });
      if (rec.endpoint !== endpoint) fail('EDVSENDPOINT', `slot ${slot} of DC ${dcid} holds ${space.format(rec.endpoint)}, not ${space.format(endpoint)}`, { dcid, endpoint });
      const { r, lost } = await this.txnRetry({ compare: [{ key, modRevision: rec.epoch }], success: [{ op: 'delete', key }], failure: [{ op: 'get', key }] });
      lostOnce ||= lost;
      if (r.succeeded) {
        await this.catchUp(r.revision);
        return;
      }
      current = entriesOf(r.results[0])[0];
    }
    fail('EDVSBUSY', `could not release endpoint ${endpoint} of DC ${dcid}: too much contention`);
  }

  // ---------------------------------------------------------------- claims (internals)

  private async claimFixed(dcid: number, node: number, reg: Registration, slot: number, name: string | undefined): Promise<Endpoint> {
    await this.releasing.get(`${dcid}/${slot}`);
    const s = await this.dcForClaim(dcid, node);
    const space = s.space!;
    space.checkSlot(slot);
    if (slot === KERNEL) fail('EDVSBADPROC', 'the KERNEL/HARDWARE slot cannot be claimed');
    const epName = checkName(name, `ep${slot}`);
    const lease = reg.record.lease;
    // A slot of our own pool: publish the reservation.
    const mine = s.resv.get(slot);
    if (mine !== undefined && mine.node === node && mine.lease === lease && !this.inFlight.has(`${dcid}/${slot}`)) {
      this.inFlight.add(`${dcid}/${slot}`);
      const endpoint = space.make(mine.generation, slot);
      await this.publish(dcid, slot, mine, { endpoint, generation: mine.generation, node, name: epName }, lease, true);
      return endpoint;
    }
    const dcKey = this.keys.dc(dcid);
    const epKey = this.keys.endpoint(dcid, slot);
    const resvKey = this.keys.reservation(dcid, slot);
    const genKey = this.keys.generation(dcid, slot);
    let dcRev = s.modRevision;
    let record = s.record!;
    let gen = s.gens.get(slot) ?? { generation: -1, modRevision: 0 };
    for (let attempt = 0; attempt < this.maxRetries; attempt++) {
      if (!record.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
      const generation = gen.generation + 1;
      const spaceNow = new EndpointSpace(record.limits);
      spaceNow.checkSlot(slot);
      const endpoint = spaceNow.make(generation, slot);
      const { r, lost } = await this.txnRetry({
        compare: [
          { key: dcKey, modRevision: dcRev },
          { key: epKey, exists: false },
          { key: resvKey, exists: false },
          { key: genKey, modRevision: gen.modRevision },
        ],
        success: [
          { op: 'put', key: genKey, value: generation },
          { op: 'put', key: epKey, value: { endpoint, generation, node, name: epName }, lease },
        ],
        failure: [
          { op: 'get', key: dcKey },
          { op: 'get', key: epKey },
          { op: 'get', key: resvKey },
          { op: 'get', key: genKey },
        ],
      });
      if (r.succeeded) {
        await this.catchUp(r.revision);
        return endpoint;
      }
      const [dcKv, epKv, resvKv, genKv] = r.results.map((x) => entriesOf(x)[0]);
      const fresh = dcKv === undefined ? undefined : parseDc(dcKv.value, dcid);
      if (fresh === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      if (epKv !== undefined) {
        const holder = parseEndpoint(epKv, dcid, slot);
        // Our own attempt whose reply was lost: same lease, the generation we asked for.
        if (lost && epKv.lease === lease && holder?.generation === generation && holder.node === node) {
          await this.catchUp(epKv.modRevision);
          return endpoint;
        }
        fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} is bound by node ${holder?.node ?? '?'}`, { dcid, slot, node: holder?.node });
      }
      if (resvKv !== undefined) {
        const res = parseReservation(resvKv);
        fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} is reserved by node ${res?.node ?? '?'}`, { dcid, slot, node: res?.node });
      }
      record = fresh;
      dcRev = dcKv!.modRevision;
      gen = genKv === undefined ? { generation: -1, modRevision: 0 } : { generation: typeof genKv.value === 'number' ? genKv.value : -1, modRevision: genKv.modRevision };
    }
    return fail('EDVSBUSY', `could not claim slot ${slot} of DC ${dcid}: too much contention`);
  }

  /** The cached DC, checked for a claim by `node` (read from the store if the cache has not seen it yet). */
  private async dcForClaim(dcid: number, node: number): Promise<DcState> {
    let s = this.dcMap.get(dcid);
    if (s?.record === undefined) {
      const kv = await this.store.get(this.keys.dc(dcid));
      if (kv === undefined || parseDc(kv.value, dcid) === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      await this.catchUp(kv.modRevision);
      s = this.dcMap.get(dcid);
      if (s?.record === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    }
    if (!s.record!.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
    return s;
  }

  private takeFromPool(dcid: number, node: number, lease: number): [number, Reservation] | undefined {
    const s = this.dcMap.get(dcid);
    if (s === undefined) return undefined;
    let best: [number, Reservation] | undefined;
    for (const [slot, r] of s.resv) {
      if (r.node !== node || r.lease !== lease || this.inFlight.has(`${dcid}/${slot}`)) continue;
      if (best === undefined || slot < best[0]) best = [slot, r];
    }
    if (best !== undefined) this.inFlight.add(`${dcid}/${best[0]}`);
    return best;
  }

  /**
   * Turns a reservation into a published endpoint (delete the reservation, put the endpoint, in one
   * transaction that requires the reservation unchanged). Retried while the store is unreachable; a
   * reservation lost meanwhile (lease expired, node removed) is reported as an `error` event, or
   * thrown when `wait`.
   */
  private publish(dcid: number, slot: number, res: Reservation, value: { endpoint: number; generation: number; node: number; name: string }, lease: number, wait = false): Promise<void> {
    const resvKey = this.keys.reservation(dcid, slot);
    const epKey = this.keys.endpoint(dcid, slot);
    const tag = `${dcid}/${value.endpoint}`;
    const run = async (): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await this.store.txn({
            compare: [{ key: resvKey, modRevision: res.modRevision }],
            success: [
              { op: 'delete', key: resvKey },
              { op: 'put', key: epKey, value, lease },
            ],
            failure: [{ op: 'get', key: epKey }],
          });
          if (r.succeeded) {
            await this.catchUp(r.revision);
            return;
          }
          // Lost reply of an earlier attempt that did land?
          const ep = entriesOf(r.results[0])[0];
          if (ep !== undefined && isRecord(ep.value) && ep.value.endpoint === value.endpoint && ep.value.node === value.node) return;
          this.inFlight.delete(`${dcid}/${slot}`);
          fail('EDVSSLOTUSED', `reservation of slot ${slot} in DC ${dcid} was lost before endpoint ${value.endpoint} was published`, { dcid, slot, endpoint: value.endpoint });
        } catch (err) {
          const e = asDvsError(err);
          const transient = e.code === 'EDVSNOTCONN' || e.code === 'EDVSTIMEDOUT';
          if (!transient || attempt + 1 >= this.maxRetries || this.closed) throw e;
          await this.sleep(Math.min(2000, 50 * 2 ** attempt));
        }
      }
    };
    const p = run().finally(() => {
      if (this.publishing.get(tag) === p) this.publishing.delete(tag);
    });
    this.publishing.set(tag, p);
    if (wait) return p;
    p.catch((err: unknown) => this.emit('error', asDvsError(err)));
    return p.catch(noop);
  }

  /** Tops up `node`'s pool in `dcid` to `rangeSize` reserved slots; one refill per node and DC at a time. */
  private refill(dcid: number, node: number): Promise<void> {
    const tag = `${dcid}/${node}`;
    let p = this.refills.get(tag);
    if (p === undefined) {
      p = this.doRefill(dcid, node).finally(() => this.refills.delete(tag));
      this.refills.set(tag, p);
    }
    return p;
  }

  private async doRefill(dcid: number, node: number): Promise<void> {
    const reg = this.registrations.get(node);
    if (reg === undefined) fail('EDVSNONODE', `node ${node} is not registered by this directory`, { node });
    const lease = reg.record.lease;
    let snap = this.snapshotFromCache(dcid);
    for (let attempt = 0; attempt < this.maxRetries; attempt++) {
      if (snap.record === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      if (!snap.record.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
      const have = this.reservedSlots(dcid, node).length;
      const need = this.rangeSize - have;
      if (need <= 0) return;
      const { nrProcs, nrSysProcs, nrTasks } = snap.record.limits;
      const firstUser = Math.max(0, nrSysProcs - nrTasks);
      const count = nrProcs - firstUser;
      const picked: number[] = [];
      // Each node starts its scan at its own offset, so concurrent refills rarely collide.
      const start = count > 0 ? (node * this.rangeSize) % count : 0;
      for (let i = 0; i < count && picked.length < need; i++) {
        const slot = firstUser + ((start + i) % count);
        if (!snap.eps.has(slot) && !snap.resv.has(slot)) picked.push(slot);
      }
      if (picked.length === 0) {
        if (have > 0) return;
        fail('EDVSNOSPC', `DC ${dcid} has no free user slot`, { dcid });
      }
      const compare: Compare[] = [{ key: this.keys.dc(dcid), modRevision: snap.modRevision }];
      const success: TxnOp[] = [];
      for (const slot of picked) {
        const g = snap.gens.get(slot);
        const generation = (g?.generation ?? -1) + 1;
        compare.push(
          { key: this.keys.endpoint(dcid, slot), exists: false },
          { key: this.keys.reservation(dcid, slot), exists: false },
          { key: this.keys.generation(dcid, slot), modRevision: g?.modRevision ?? 0 },
        );
        success.push({ op: 'put', key: this.keys.generation(dcid, slot), value: generation }, { op: 'put', key: this.keys.reservation(dcid, slot), value: { node, generation }, lease });
      }
      const { r } = await this.txnRetry({
        compare,
        success,
        failure: [
          { op: 'get', key: this.keys.dc(dcid) },
          { op: 'get', key: this.keys.dcTree(dcid), prefix: true },
        ],
      });
      if (r.succeeded) {
        await this.catchUp(r.revision);
        return;
      }
      snap = this.snapshotFromEntries(dcid, entriesOf(r.results[0])[0], entriesOf(r.results[1]));
    }
    fail('EDVSBUSY', `could not reserve slots in DC ${dcid}: too much contention`);
  }

  private snapshotFromCache(dcid: number): DcSnapshot {
    const s = this.dcMap.get(dcid);
    if (s === undefined) return { record: undefined, modRevision: 0, eps: new Set(), gens: new Map(), resv: new Map() };
    return { record: s.record, modRevision: s.modRevision, eps: new Set(s.eps.keys()), gens: s.gens, resv: s.resv };
  }

  private snapshotFromEntries(dcid: number, dcKv: KeyValue | undefined, entries: KeyValue[]): DcSnapshot {
    const eps = new Set<number>();
    const gens = new Map<number, GenEntry>();
    const resv = new Map<number, Reservation>();
    for (const kv of entries) {
      const p = this.keys.parse(kv.key);
      if (p === undefined || p.kind === 'node' || p.kind === 'incarnation' || p.kind === 'dc' || p.dcid !== dcid) continue;
      if (p.kind === 'ep') eps.add(p.slot);
      else if (p.kind === 'gen' && typeof kv.value === 'number') gens.set(p.slot, { generation: kv.value, modRevision: kv.modRevision });
      else if (p.kind === 'resv') {
        const r = parseReservation(kv);
        // A malformed reservation still occupies the slot.
        resv.set(p.slot, r ?? { node: -1, generation: -1, lease: 0, modRevision: kv.modRevision });
      }
    }
    return { record: dcKv === undefined ? undefined : parseDc(dcKv.value, dcid), modRevision: dcKv?.modRevision ?? 0, eps, gens, resv };
  }

  private keysOfNode(dcid: number, entries: KeyValue[], node: number): string[] {
    const out: string[] = [];
    for (const kv of entries) {
      const p = this.keys.parse(kv.key);
      if (p === undefined || p.kind !== 'ep' && p.kind !== 'resv' || p.dcid !== dcid) continue;
      if (isRecord(kv.value) && kv.value.node === node) out.push(kv.key);
    }
    return out;
  }

  private async updateMembers(dcid: number, change: (dc: DcRecord) => number[], dropNode?: number): Promise<DcRecord> {
    const key = this.keys.dc(dcid);
    let lostOnce = false;
    for (let attempt = 0; attempt < this.maxRetries; attempt++) {
      const kv = await this.store.get(key);
      const dc = kv === undefined ? undefined : parseDc(kv.value, dcid);
      if (dc === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      let nodes: number[];
      try {
        nodes = change(dc);
      } catch (err) {
        // After an attempt whose reply was lost, "already a member" / "not a member" is that attempt's work.
        if (lostOnce && err instanceof DvsError && (err.code === 'EDVSDCNODE' || err.code === 'EDVSNODCNODE')) return dc;
        throw err;
      }
      const record: DcRecord = { ...dc, nodes };
      const ops: TxnOp[] = [];
      if (dropNode !== undefined) {
        // The node's endpoints and reservations go first: caches unbind them before the DC changes.
        const tree = await this.store.getPrefix(this.keys.dcTree(dcid));
        for (const k of this.keysOfNode(dcid, tree.entries, dropNode)) ops.push({ op: 'delete', key: k });
      }
      ops.push({ op: 'put', key, value: record as unknown as StoreValue });
      const { r, lost } = await this.txnRetry({ compare: [{ key, modRevision: kv!.modRevision }], success: ops });
      lostOnce ||= lost;
      if (r.succeeded) {
        await this.catchUp(r.revision);
        return record;
      }
    }
    return fail('EDVSBUSY', `could not update DC ${dcid}: too much contention`);
  }

  private checkDc(def: DcDefinition): DcRecord {
    if (!isRecord(def)) fail('EDVSINVAL', 'a DC definition must be an object');
    if (!isInt(def.dcid, 0, 0xffff)) fail('EDVSBADDCID', `DC id must be an integer in 0..65535, got ${String(def.dcid)}`);
    const name = checkName(def.name, `DC${def.dcid}`);
    const limits = resolveDcLimits(def.limits);
    const nodes = [...new Set(def.nodes ?? [])].sort((a, b) => a - b);
    for (const n of nodes) if (!isInt(n, 0, limits.nrNodes - 1)) fail('EDVSBADNODEID', `node ${String(n)} outside 0..${limits.nrNodes - 1}`);
    return { dcid: def.dcid, name, nodes, limits: { ...limits } };
  }

  // ---------------------------------------------------------------- cache maintenance

  private async load(): Promise<void> {
    this.checkOpen();
    const r = await this.store.getPrefix(this.keys.prefix);
    this.applySnapshot(r.entries, r.revision);
    await this.watchFrom(r.revision);
  }

  private async watchFrom(revision: number): Promise<void> {
    const unwatch = await this.store.watch(this.keys.prefix, revision, (ev) => this.onWatchEvent(ev), { onError: (err) => this.onWatchError(err) });
    if (this.closed) unwatch();
    else this.unwatch = unwatch;
  }

  private onWatchEvent(ev: WatchEvent): void {
    if (this.closed) return;
    if (ev.type === 'put') {
      this.applyKey(ev.key, { key: ev.key, value: ev.value, createRevision: ev.createRevision, modRevision: ev.revision, version: ev.version, ...(ev.lease === undefined ? {} : { lease: ev.lease }) });
    } else {
      this.applyKey(ev.key, undefined);
    }
    this.setRevision(ev.revision);
  }

  private onWatchError(err: DvsError): void {
    if (this.closed) return;
    // The watch ended (history compacted, store reset, ...): rebuild from a fresh read.
    this.emit('error', err);
    this.unwatch?.();
    this.unwatch = undefined;
    this.scheduleResync(0);
  }

  private scheduleResync(delayMs: number): void {
    if (this.closed || this.resyncing || this.resyncTimer !== undefined) return;
    this.resyncTimer = this.clock.setTimer(delayMs, () => {
      this.resyncTimer = undefined;
      this.resyncing = true;
      this.resync().then(
        () => {
          this.resyncing = false;
        },
        (err: unknown) => {
          this.resyncing = false;
          this.emit('error', asDvsError(err));
          this.scheduleResync(Math.min(5000, Math.max(100, delayMs * 2)));
        },
      );
    });
  }

  /** Rebuilds the cache from a fresh read, emitting the differences as events, and watches again. */
  private async resync(): Promise<void> {
    if (this.closed) return;
    const r = await this.store.getPrefix(this.keys.prefix);
    const fresh = new Map(r.entries.map((kv) => [kv.key, kv]));
    const gone = [...this.known.keys()].filter((k) => !fresh.has(k));
    // Endpoints and reservations first, then DCs, then nodes: the reverse of creation.
    gone.sort((a, b) => rank(this.keys.parse(b)) - rank(this.keys.parse(a)));
    for (const k of gone) this.applyKey(k, undefined);
    this.applySnapshot(
      r.entries.filter((kv) => this.known.get(kv.key) !== kv.modRevision),
      r.revision,
    );
    await this.watchFrom(r.revision);
    this.emit('resync', { revision: r.revision });
  }

  private applySnapshot(entries: KeyValue[], revision: number): void {
    const sorted = [...entries].sort((a, b) => rank(this.keys.parse(a.key)) - rank(this.keys.parse(b.key)) || (a.key < b.key ? -1 : 1));
    for (const kv of sorted) this.applyKey(kv.key, kv);
    this.setRevision(revision);
  }

  private setRevision(revision: number): void {
    if (revision > this.rev) this.rev = revision;
    // The other events of this revision are delivered in the same synchronous run: settle waiters after it.
    if (this.revWaiters.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        const ready = this.revWaiters.filter((w) => w.rev <= this.rev);
        this.revWaiters = this.revWaiters.filter((w) => w.rev > this.rev);
        for (const w of ready) w.resolve();
      });
    }
  }

  /** Waits for the cache to reflect a write of ours; a slow watch delays, never fails, the write. */
  private async catchUp(revision: number): Promise<void> {
    try {
      await this.waitForRevision(revision);
    } catch {
      // The write is done; the cache will follow.
    }
  }

  private dcState(dcid: number): DcState {
    let s = this.dcMap.get(dcid);
    if (s === undefined) {
      s = { record: undefined, modRevision: 0, space: undefined, eps: new Map(), gens: new Map(), resv: new Map() };
      this.dcMap.set(dcid, s);
    }
    return s;
  }

  /** Applies one key's new state (undefined: deleted) to the cache and emits the change. */
  private applyKey(key: string, kv: KeyValue | undefined): void {
    const p = this.keys.parse(key);
    if (p === undefined) return;
    if (kv === undefined) this.known.delete(key);
    else this.known.set(key, kv.modRevision);
    try {
      this.applyParsed(p, key, kv);
    } catch (err) {
      this.emit('error', asDvsError(err));
    }
  }

  private applyParsed(p: ParsedKey, key: string, kv: KeyValue | undefined): void {
    switch (p.kind) {
      case 'incarnation':
        return;
      case 'node': {
        const prev = this.nodeMap.get(p.nodeId);
        const rec = kv === undefined ? undefined : parseNode(kv, p.nodeId);
        if (kv !== undefined && rec === undefined) this.malformed(key);
        if (rec === undefined) {
          if (prev !== undefined) {
            this.nodeMap.delete(p.nodeId);
            this.emit('node', { type: 'down', node: prev });
          }
          return;
        }
        this.nodeMap.set(p.nodeId, rec);
        if (prev !== undefined && prev.incarnation !== rec.incarnation) {
          this.emit('node', { type: 'down', node: prev });
          this.emit('node', { type: 'up', node: rec });
        } else {
          this.emit('node', { type: prev === undefined ? 'up' : 'changed', node: rec });
        }
        return;
      }
      case 'dc': {
        const s = this.dcState(p.dcid);
        const prev = s.record;
        const rec = kv === undefined ? undefined : parseDc(kv.value, p.dcid);
        if (kv !== undefined && rec === undefined) this.malformed(key);
        if (rec === undefined) {
          if (prev === undefined) return;
          // Whatever is still cached under the DC goes with it (normally already deleted, endpoints first).
          for (const ep of [...s.eps.values()]) this.emit('endpoint', { type: 'unbound', endpoint: ep });
          this.dcMap.delete(p.dcid);
          for (const k of [...this.known.keys()]) if (k.startsWith(this.keys.dcTree(p.dcid))) this.known.delete(k);
          this.emit('dc', { type: 'removed', dc: prev });
          return;
        }
        s.record = rec;
        s.modRevision = kv!.modRevision;
        s.space = new EndpointSpace(rec.limits);
        this.emit('dc', prev === undefined ? { type: 'created', dc: rec } : { type: 'changed', dc: rec, previous: prev });
        // Endpoints cached before their DC (not in a normal order of writes) are announced now.
        if (prev === undefined) for (const ep of s.eps.values()) this.emit('endpoint', { type: 'bound', endpoint: ep });
        return;
      }
      case 'gen': {
        const s = this.dcState(p.dcid);
        if (kv === undefined) s.gens.delete(p.slot);
        else if (typeof kv.value === 'number' && Number.isSafeInteger(kv.value)) s.gens.set(p.slot, { generation: kv.value, modRevision: kv.modRevision });
        else this.malformed(key);
        return;
      }
      case 'resv': {
        const s = this.dcState(p.dcid);
        // Any change to a reservation ends what this directory had in flight for the slot.
        this.inFlight.delete(`${p.dcid}/${p.slot}`);
        const r = kv === undefined ? undefined : parseReservation(kv);
        if (kv !== undefined && r === undefined) this.malformed(key);
        if (r === undefined) s.resv.delete(p.slot);
        else s.resv.set(p.slot, r);
        return;
      }
      case 'ep': {
        const s = this.dcState(p.dcid);
        const prev = s.eps.get(p.slot);
        const rec = kv === undefined ? undefined : parseEndpoint(kv, p.dcid, p.slot);
        if (kv !== undefined && rec === undefined) this.malformed(key);
        const known = s.record !== undefined;
        if (rec === undefined) {
          if (prev === undefined) return;
          s.eps.delete(p.slot);
          if (known) this.emit('endpoint', { type: 'unbound', endpoint: prev });
          return;
        }
        s.eps.set(p.slot, rec);
        if (!known) return;
        if (prev !== undefined && prev.endpoint !== rec.endpoint) {
          this.emit('endpoint', { type: 'unbound', endpoint: prev });
          this.emit('endpoint', { type: 'bound', endpoint: rec });
        } else {
          this.emit('endpoint', prev === undefined ? { type: 'bound', endpoint: rec } : { type: 'bound', endpoint: rec, previous: prev });
        }
        return;
      }
    }
  }

  private malformed(key: string): void {
    this.emit('error', new DvsError('EDVSBADVALUE', `malformed directory entry at ${key}: ignored`, { details: { key } }));
  }

  private onLeaseLost(nodeId: number, lease: LeaseId, error: DvsError): void {
    const reg = this.registrations.get(nodeId);
    if (reg === undefined || reg.record.lease !== lease) return;
    this.registrations.delete(nodeId);
    // If only our keepalives failed, make the store agree that the node is gone.
    this.store.revokeLease(lease).catch(noop);
    this.emit('leaseLost', { nodeId, error });
  }

  private checkOpen(): void {
    if (this.closed) fail('EDVSSHUTDOWN', 'directory closed');
  }

  /**
   * Runs a transaction, retrying while the store is unreachable (EDVSNOTCONN, EDVSTIMEDOUT: the
   * outcome of that attempt is unknown). Every transaction of the directory guards against its own
   * re-application with its compares, so a retry of an attempt that did land fails its compares;
   * `lost` tells the caller to read such a failure as its own earlier success.
   */
  private async txnRetry(req: TxnRequest): Promise<{ r: TxnResult; lost: boolean }> {
    let lost = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return { r: await this.store.txn(req), lost };
      } catch (err) {
        const e = asDvsError(err);
        if (!isTransient(e) || attempt + 1 >= this.maxRetries || this.closed) throw e;
        lost = true;
        await this.sleep(Math.min(1000, 25 * 2 ** attempt));
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }
}

/** Apply order of a fresh read: nodes, DCs, generations and reservations, endpoints. */
function rank(p: ParsedKey | undefined): number {
  switch (p?.kind) {
    case 'node':
    case 'incarnation':
      return 0;
    case 'dc':
      return 1;
    case 'gen':
    case 'resv':
      return 2;
    case 'ep':
      return 3;
    default:
      return 4;
  }
}

function isTransient(e: DvsError): boolean {
  return e.code === 'EDVSNOTCONN' || e.code === 'EDVSTIMEDOUT';
}

function asDvsError(err: unknown): DvsError {
  return err instanceof DvsError ? err : new DvsError('EDVSIO', err instanceof Error ? err.message : String(err), { cause: err });
}

function parseNode(kv: KeyValue, nodeId: number): NodeRecord | undefined {
  const v = kv.value;
  if (!isRecord(v) || v.nodeId !== nodeId || typeof v.host !== 'string' || !isInt(v.port, 0, 65535) || !isInt(v.incarnation, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  const rec: NodeRecord = { nodeId, host: v.host, port: v.port, incarnation: v.incarnation, lease: kv.lease ?? 0 };
  return isRecord(v.meta) ? { ...rec, meta: v.meta as Record<string, StoreValue> } : rec;
}

function parseDc(v: unknown, dcid: number): DcRecord | undefined {
  if (!isRecord(v) || v.dcid !== dcid || typeof v.name !== 'string' || !Array.isArray(v.nodes) || !isRecord(v.limits)) return undefined;
  let limits: DcLimits;
  try {
    limits = resolveDcLimits(v.limits as Partial<DcLimits>);
  } catch {
    return undefined;
  }
  const nodes = v.nodes.filter((n): n is number => isInt(n, 0, limits.nrNodes - 1));
  if (nodes.length !== v.nodes.length) return undefined;
  return { dcid, name: v.name, nodes: [...nodes].sort((a, b) => a - b), limits };
}

function parseEndpoint(kv: KeyValue, dcid: number, slot: number): EndpointRecord | undefined {
  const v = kv.value;
  if (!isRecord(v) || !isInt(v.endpoint, -0x10000, Number.MAX_SAFE_INTEGER) || !isInt(v.generation, 0, Number.MAX_SAFE_INTEGER) || !isInt(v.node, 0, 4095) || typeof v.name !== 'string') {
    return undefined;
  }
  return { dcid, slot, generation: v.generation, endpoint: v.endpoint, node: v.node, name: v.name, epoch: kv.modRevision };
}

function parseReservation(kv: KeyValue): Reservation | undefined {
  const v = kv.value;
  if (!isRecord(v) || !isInt(v.node, 0, 4095) || !isInt(v.generation, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  return { node: v.node, generation: v.generation, lease: kv.lease ?? 0, modRevision: kv.modRevision };
}
