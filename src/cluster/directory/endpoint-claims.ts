/**
 * Endpoint claims: fixed slots (servers, tasks) claimed by one transaction at the slot's next
 * generation; user slots taken from the node's pool and published in the background; releases;
 * and re-publication of an endpoint whose entry a lost lease removed.
 */
import { EndpointSpace, KERNEL, type Endpoint } from '../../ipc/endpoint.js';
import type { KeyValue, LeaseId } from '../store.js';
import { isKnown, type KnownDc } from './cache.js';
import type { DirectoryContext } from './context.js';
import { dcSpace } from './dc-space.js';
import { Deadline } from './deadline.js';
import { asDvsError, fail, isTransient, noop } from './failures.js';
import type { NodeRegistry, Registration } from './node-registry.js';
import type { ClaimOptions, ReleaseOptions, RestoreOptions } from './options.js';
import { checkName, entriesOf, isInt, isRecord, parseDc, parseEndpoint, parseReservation } from './parse.js';
import type { Reservation } from './records.js';
import type { SlotPool } from './slot-pool.js';
import { TxnTrail } from './txn-runner.js';

/** Rounds of an abandoned claim's clean-up while the store is unreachable (each up to a second apart). */
const ABANDON_ATTEMPTS = 120;

/** The value of an `eps/<slot>` key. */
export interface EndpointValue {
  readonly endpoint: number;
  readonly generation: number;
  readonly node: number;
  readonly name: string;
  readonly epoch: number;
}

export class EndpointClaims {
  private readonly publishing = new Map<string, Promise<void>>();
  /** Releases in progress by `dcid/slot`: a claim of the same slot waits for them (a server restarting at once). */
  private readonly releasing = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: DirectoryContext,
    private readonly registry: NodeRegistry,
    private readonly pool: SlotPool,
  ) {}

  /** Waits until every endpoint publication started so far has landed (or failed). */
  async flush(): Promise<void> {
    while (this.publishing.size > 0) await Promise.allSettled([...this.publishing.values()]);
  }

  /**
   * Claims an endpoint for a process of `node` in `dcid`: a fixed slot, or a user slot from the pool,
   * within the claim's timeout and abort signal (EDVSTIMEDOUT, EDVSINTR).
   */
  async claim(dcid: number, node: number, opts: ClaimOptions): Promise<Endpoint> {
    const { cache, clock, settings } = this.ctx;
    Deadline.check(opts.timeoutMs, opts.signal);
    if (opts.generation !== undefined) {
      if (opts.slot === undefined) fail('EDVSINVAL', 'a generation can only be claimed with a slot');
      if (!isInt(opts.generation, 0, Number.MAX_SAFE_INTEGER)) fail('EDVSINVAL', `generation must be a non-negative integer, got ${String(opts.generation)}`);
    }
    if (opts.name !== undefined) checkName(opts.name, '');
    const deadline = new Deadline(clock, opts.timeoutMs ?? settings.claimTimeoutMs, opts.signal, `claim in DC ${dcid}`);
    try {
      deadline.check();
      await deadline.race(cache.start());
      const reg = this.registry.require(node);
      if (opts.slot !== undefined) return await this.claimFixed(dcid, node, reg, opts.slot, opts, deadline);
      return await this.claimFromPool(dcid, node, reg, opts.name, deadline);
    } finally {
      deadline.dispose();
    }
  }

  private async claimFromPool(dcid: number, node: number, reg: Registration, name: string | undefined, deadline: Deadline): Promise<Endpoint> {
    const s = await deadline.race(this.dcForClaim(dcid, node));
    const lease = reg.record.lease;
    const [slot, res] = await this.pool.acquire(dcid, node, lease, deadline);
    const endpoint = s.space.make(res.generation, slot);
    void this.publish(dcid, slot, res, { endpoint, generation: res.generation, node, name: checkName(name, `ep${slot}`), epoch: 0 }, lease);
    if (this.pool.reservedSlots(dcid, node).length < this.ctx.settings.refillBelow) {
      this.pool.refill(dcid, node).catch((err: unknown) => {
        const e = asDvsError(err);
        if (e.code !== 'EDVSNOSPC' && e.code !== 'EDVSNONODE') this.ctx.emit('error', e);
      });
    }
    return endpoint;
  }

  /** Reserves a range of user slots for `node` in `dcid` now, so later binds find them ready. */
  async reserveRange(dcid: number, node: number): Promise<number[]> {
    this.registry.require(node);
    await this.pool.refill(dcid, node);
    return this.pool.reservedSlots(dcid, node);
  }

  /**
   * Publishes again an endpoint `node` still runs after its registration was lost (lease expiry
   * removed the entry): only while the slot is free, unreserved, and its last generation is still
   * this endpoint's, so nothing newer is ever overwritten. EDVSSLOTUSED when another holds the slot.
   * The entry keeps `epoch`, the one the endpoint had.
   */
  async restore(dcid: number, endpoint: Endpoint, node: number, name: string, epoch: number, opts: RestoreOptions = {}): Promise<void> {
    const { keys, txns, cache } = this.ctx;
    const reg = this.registry.require(node);
    if (!isInt(epoch, 0, Number.MAX_SAFE_INTEGER)) fail('EDVSINVAL', `epoch must be a non-negative integer, got ${String(epoch)}`);
    const record = cache.dc(dcid);
    if (record === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    const space = new EndpointSpace(record.limits);
    const slot = space.checkEndpoint(endpoint);
    const generation = space.generationOf(endpoint);
    const epKey = keys.endpoint(dcid, slot);
    const { r } = await txns.run({
      compare: [
        { key: epKey, exists: false },
        { key: keys.reservation(dcid, slot), exists: false },
        { key: keys.generation(dcid, slot), value: generation },
        ...(opts.fence ?? []),
      ],
      success: [{ op: 'put', key: epKey, value: { endpoint, generation, node, name: checkName(name, `ep${slot}`), epoch, ...(opts.failoverMs === undefined ? {} : { failoverMs: opts.failoverMs }) }, lease: reg.record.lease }],
      failure: [{ op: 'get', key: epKey }],
    });
    if (r.succeeded) {
      await cache.catchUp(r.revision);
      return;
    }
    const holder = entriesOf(r.results[0])[0];
    if (holder !== undefined && isRecord(holder.value) && holder.value.endpoint === endpoint) {
      if (holder.value.node === node && !opts.replace) return;
      // A replica group's new primary takes the entry over from the one its fence deposed.
      if (opts.replace === true) {
        const again = await txns.run({
          compare: [{ key: epKey, modRevision: holder.modRevision }, { key: keys.generation(dcid, slot), value: generation }, ...(opts.fence ?? [])],
          success: [{ op: 'put', key: epKey, value: { endpoint, generation, node, name: checkName(name, `ep${slot}`), epoch, ...(opts.failoverMs === undefined ? {} : { failoverMs: opts.failoverMs }) }, lease: reg.record.lease }],
        });
        if (again.r.succeeded) {
          await cache.catchUp(again.r.revision);
          return;
        }
        fail('EDVSBUSY', `the entry of endpoint ${endpoint} changed while it was being taken over`, { dcid, slot, endpoint });
      }
    }
    fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} moved on; endpoint ${endpoint} cannot be restored`, { dcid, slot, endpoint });
  }

  /**
   * Unpublishes an endpoint (after its process unbound). EDVSNOTBIND if not published, EDVSENDPOINT
   * if the slot holds another generation, EDVSRMTPROC if `opts.node` is given and the entry is owned
   * by another node (it moved there).
   */
  release(dcid: number, endpoint: Endpoint, opts: ReleaseOptions): Promise<void> {
    const p = this.doRelease(dcid, endpoint, opts.node);
    const space = this.ctx.cache.state(dcid)?.space;
    if (space !== undefined && Number.isSafeInteger(endpoint)) {
      const tag = `${dcid}/${space.slotOf(endpoint)}`;
      const tracked = p.then(noop, noop).finally(() => {
        if (this.releasing.get(tag) === tracked) this.releasing.delete(tag);
      });
      this.releasing.set(tag, tracked);
    }
    return p;
  }

  private async doRelease(dcid: number, endpoint: Endpoint, owner: number | undefined): Promise<void> {
    const { store, keys, txns, cache, settings } = this.ctx;
    cache.checkOpen();
    await cache.start();
    await this.publishing.get(`${dcid}/${endpoint}`)?.catch(noop);
    const space = await dcSpace(this.ctx, dcid);
    const slot = space.checkEndpoint(endpoint);
    const key = keys.endpoint(dcid, slot);
    let current: KeyValue | undefined = await store.get(key);
    let lostOnce = false;
    for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
      const rec = current === undefined ? undefined : parseEndpoint(current, dcid, slot);
      // After an attempt whose reply was lost, a slot that no longer holds the endpoint means it landed.
      if (lostOnce && rec?.endpoint !== endpoint) return;
      if (rec === undefined) fail('EDVSNOTBIND', `endpoint ${space.format(endpoint)} of DC ${dcid} is not published`, { dcid, endpoint });
      if (rec.endpoint !== endpoint) fail('EDVSENDPOINT', `slot ${slot} of DC ${dcid} holds ${space.format(rec.endpoint)}, not ${space.format(endpoint)}`, { dcid, endpoint });
      if (owner !== undefined && rec.node !== owner) fail('EDVSRMTPROC', `endpoint ${space.format(endpoint)} of DC ${dcid} is owned by node ${rec.node}, not ${owner}`, { dcid, endpoint, node: rec.node });
      const { r, lost } = await txns.run({ compare: [{ key, modRevision: rec.modRevision }], success: [{ op: 'delete', key }], failure: [{ op: 'get', key }] });
      lostOnce ||= lost;
      if (r.succeeded) {
        await cache.catchUp(r.revision);
        return;
      }
      current = entriesOf(r.results[0])[0];
    }
    fail('EDVSBUSY', `could not release endpoint ${endpoint} of DC ${dcid}: too much contention`);
  }

  private async claimFixed(dcid: number, node: number, reg: Registration, slot: number, opts: ClaimOptions, deadline: Deadline): Promise<Endpoint> {
    const { keys, txns, cache, settings } = this.ctx;
    const tag = `${dcid}/${slot}`;
    const releasing = this.releasing.get(tag);
    if (releasing !== undefined) await deadline.race(releasing);
    const s = await deadline.race(this.dcForClaim(dcid, node));
    const space = s.space;
    space.checkSlot(slot);
    if (slot === KERNEL) fail('EDVSBADPROC', 'the KERNEL/HARDWARE slot cannot be claimed');
    const epName = checkName(opts.name, `ep${slot}`);
    const lease = reg.record.lease;
    const wanted = opts.generation;
    const checkGeneration = (next: number): void => {
      if (wanted !== undefined && wanted !== next) fail('EDVSENDPOINT', `the next generation of slot ${slot} in DC ${dcid} is ${next}, not ${wanted}`, { dcid, slot, generation: next });
    };
    // A slot of our own pool: publish the reservation.
    const mine = s.resv.get(slot);
    if (mine !== undefined && mine.node === node && mine.lease === lease && !this.pool.isInFlight(dcid, slot)) {
      checkGeneration(mine.generation);
      this.pool.mark(dcid, slot);
      const endpoint = space.make(mine.generation, slot);
      const published = this.publish(dcid, slot, mine, { endpoint, generation: mine.generation, node, name: epName, epoch: 0 }, lease, true);
      try {
        await deadline.race(published);
      } catch (err) {
        if (err === deadline.expired) this.abandon(dcid, slot, node, lease, new Set([endpoint]), published);
        throw err;
      }
      return endpoint;
    }
    const dcKey = keys.dc(dcid);
    const epKey = keys.endpoint(dcid, slot);
    const resvKey = keys.reservation(dcid, slot);
    const genKey = keys.generation(dcid, slot);
    let dcRev = s.modRevision;
    let record = s.record;
    let gen = s.gens.get(slot) ?? { generation: -1, modRevision: 0 };
    const trail = new TxnTrail();
    const attempted = new Set<Endpoint>();
    try {
      for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
        if (!record.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
        const generation = gen.generation + 1;
        checkGeneration(generation);
        const spaceNow = new EndpointSpace(record.limits);
        spaceNow.checkSlot(slot);
        const endpoint = spaceNow.make(generation, slot);
        attempted.add(endpoint);
        const { r, lost } = await txns.run(
          {
            compare: [
              { key: dcKey, modRevision: dcRev },
              { key: epKey, exists: false },
              { key: resvKey, exists: false },
              { key: genKey, modRevision: gen.modRevision },
            ],
            success: [
              { op: 'put', key: genKey, value: generation },
              { op: 'put', key: epKey, value: { endpoint, generation, node, name: epName, epoch: 0 }, lease },
            ],
            failure: [
              { op: 'get', key: dcKey },
              { op: 'get', key: epKey },
              { op: 'get', key: resvKey },
              { op: 'get', key: genKey },
            ],
          },
          deadline,
          trail,
        );
        if (r.succeeded) {
          await cache.catchUp(r.revision);
          return endpoint;
        }
        const [dcKv, epKv, resvKv, genKv] = r.results.map((x) => entriesOf(x)[0]);
        const fresh = dcKv === undefined ? undefined : parseDc(dcKv.value, dcid);
        if (dcKv === undefined || fresh === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
        if (epKv !== undefined) {
          const holder = parseEndpoint(epKv, dcid, slot);
          // Our own attempt whose reply was lost: same lease, a generation we asked for.
          if (lost && epKv.lease === lease && holder !== undefined && attempted.has(holder.endpoint) && holder.node === node) {
            await cache.catchUp(epKv.modRevision);
            return holder.endpoint;
          }
          fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} is bound by node ${holder?.node ?? '?'}`, { dcid, slot, node: holder?.node });
        }
        if (resvKv !== undefined) {
          const res = parseReservation(resvKv);
          fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} is reserved by node ${res?.node ?? '?'}`, { dcid, slot, node: res?.node });
        }
        record = fresh;
        dcRev = dcKv.modRevision;
        gen = genKv === undefined ? { generation: -1, modRevision: 0 } : { generation: typeof genKv.value === 'number' ? genKv.value : -1, modRevision: genKv.modRevision };
      }
      return fail('EDVSBUSY', `could not claim slot ${slot} of DC ${dcid}: too much contention`);
    } catch (err) {
      // A claim that fails must not leave an endpoint published behind it.
      if (trail.maybeLanded) this.abandon(dcid, slot, node, lease, attempted, trail.settled());
      throw err;
    }
  }

  /**
   * A claim of `slot` gave up while a write of one of `endpoints` under `lease` may still land: once
   * it has settled, unpublish what landed, and give a reservation that was not published back to the
   * pool. The slot's next claim here waits for this. Retried while the store is unreachable, for as
   * long as the registration of `lease` lasts.
   */
  private abandon(dcid: number, slot: number, node: number, lease: LeaseId, endpoints: ReadonlySet<Endpoint>, settled: Promise<unknown>): void {
    const { store, keys, cache, txns } = this.ctx;
    const tag = `${dcid}/${slot}`;
    const epKey = keys.endpoint(dcid, slot);
    const run = async (): Promise<void> => {
      await settled.catch(noop);
      for (let attempt = 0; attempt < ABANDON_ATTEMPTS && !cache.closed && this.registry.get(node)?.record.lease === lease; attempt++) {
        try {
          const kv = await store.get(epKey);
          const rec = kv === undefined ? undefined : parseEndpoint(kv, dcid, slot);
          if (kv !== undefined && rec !== undefined && kv.lease === lease && endpoints.has(rec.endpoint)) {
            const r = await store.txn({ compare: [{ key: epKey, modRevision: kv.modRevision }], success: [{ op: 'delete', key: epKey }] });
            if (!r.succeeded) continue;
            await cache.catchUp(r.revision);
          }
          this.pool.forget(dcid, slot);
          return;
        } catch (err) {
          const e = asDvsError(err);
          if (!isTransient(e)) throw e;
          await txns.sleep(Math.min(1000, 50 * 2 ** attempt));
        }
      }
    };
    const p: Promise<void> = run()
      .catch((err: unknown) => this.ctx.emit('error', asDvsError(err)))
      .finally(() => {
        if (this.releasing.get(tag) === p) this.releasing.delete(tag);
      });
    this.releasing.set(tag, p);
  }

  /** The cached DC, checked for a claim by `node` (read from the store if the cache has not seen it yet). */
  private async dcForClaim(dcid: number, node: number): Promise<KnownDc> {
    const { store, keys, cache } = this.ctx;
    let s = cache.state(dcid);
    if (!isKnown(s)) {
      const kv = await store.get(keys.dc(dcid));
      if (kv === undefined || parseDc(kv.value, dcid) === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      await cache.catchUp(kv.modRevision);
      s = cache.state(dcid);
      if (!isKnown(s)) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    }
    if (!s.record.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
    return s;
  }

  /**
   * Turns a reservation into a published endpoint (delete the reservation, put the endpoint, in one
   * transaction that requires the reservation unchanged). Retried while the store is unreachable; a
   * reservation lost meanwhile (lease expired, node removed) is reported as an `error` event, or
   * thrown when `wait`.
   */
  private publish(dcid: number, slot: number, res: Reservation, value: EndpointValue, lease: LeaseId, wait = false): Promise<void> {
    const { store, keys, txns, cache, settings } = this.ctx;
    const resvKey = keys.reservation(dcid, slot);
    const epKey = keys.endpoint(dcid, slot);
    const tag = `${dcid}/${value.endpoint}`;
    const run = async (): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await store.txn({
            compare: [{ key: resvKey, modRevision: res.modRevision }],
            success: [
              { op: 'delete', key: resvKey },
              { op: 'put', key: epKey, value: { ...value }, lease },
            ],
            failure: [{ op: 'get', key: epKey }],
          });
          if (r.succeeded) {
            await cache.catchUp(r.revision);
            return;
          }
          // Lost reply of an earlier attempt that did land?
          const ep = entriesOf(r.results[0])[0];
          if (ep !== undefined && isRecord(ep.value) && ep.value.endpoint === value.endpoint && ep.value.node === value.node) return;
          this.pool.forget(dcid, slot);
          fail('EDVSSLOTUSED', `reservation of slot ${slot} in DC ${dcid} was lost before endpoint ${value.endpoint} was published`, { dcid, slot, endpoint: value.endpoint });
        } catch (err) {
          const e = asDvsError(err);
          if (!isTransient(e) || attempt + 1 >= settings.maxRetries || cache.closed) throw e;
          await txns.sleep(Math.min(2000, 50 * 2 ** attempt));
        }
      }
    };
    const p = run().finally(() => {
      if (this.publishing.get(tag) === p) this.publishing.delete(tag);
    });
    this.publishing.set(tag, p);
    if (wait) return p;
    p.catch((err: unknown) => this.ctx.emit('error', asDvsError(err)));
    return p.catch(noop);
  }
}
