/**
 * The nodes registered through one directory: each under a lease of its own, kept alive by a
 * `LeaseKeeper`, at the next incarnation of its id. A lost lease ends the registration (the cluster
 * has declared the node dead) and is reported as `leaseLost`.
 */
import { DvsError } from '../../ipc/errors.js';
import { LeaseKeeper } from '../lease-keeper.js';
import type { KeyValue, LeaseId, StoreValue } from '../store.js';
import type { DirectoryContext } from './context.js';
import { Deadline } from './deadline.js';
import { fail, noop } from './failures.js';
import type { RegisterOptions } from './options.js';
import { entriesOf, isInt, isRecord } from './parse.js';
import type { NodeInfo, NodeRecord } from './records.js';

export interface Registration {
  readonly record: NodeRecord;
  readonly ttlMs: number;
  readonly keeper: LeaseKeeper;
}

export class NodeRegistry {
  private readonly registrations = new Map<number, Registration>();
  /** Node ids whose registration is under way here. */
  private readonly registering = new Set<number>();
  /** Leases given up on (failed registrations, lost leases) that the store has not confirmed revoked yet, by node id. */
  private readonly abandoned = new Map<number, Set<LeaseId>>();

  constructor(private readonly ctx: DirectoryContext) {}

  get(nodeId: number): Registration | undefined {
    return this.registrations.get(nodeId);
  }

  has(nodeId: number): boolean {
    return this.registrations.has(nodeId);
  }

  records(): NodeRecord[] {
    return [...this.registrations.values()].map((r) => r.record);
  }

  /** The registration of `node`, or EDVSNONODE. */
  require(node: number): Registration {
    const reg = this.registrations.get(node);
    if (reg === undefined) fail('EDVSNONODE', `node ${node} is not registered by this directory`, { node });
    return reg;
  }

  /**
   * Registers a node under a new lease of `ttlMs`, kept alive here, at the next incarnation.
   * EDVSNODEBUSY if the node id is registered and alive (unless `replace`). A registration that
   * fails (the store unreachable, the timeout, an abort) leaves nothing behind: its lease is revoked,
   * now or, if the store cannot be reached, by the next registration of the node here.
   */
  async register(info: NodeInfo, ttlMs: number, opts: RegisterOptions): Promise<NodeRecord> {
    const nodeId = info.nodeId;
    if (!isInt(nodeId, 0, 4095)) fail('EDVSBADNODEID', `node id must be an integer in 0..4095, got ${String(nodeId)}`);
    if (typeof info.host !== 'string' || info.host.length === 0 || info.host.length > 255) fail('EDVSINVAL', 'host must be a non-empty string');
    if (!isInt(info.port, 0, 65535)) fail('EDVSINVAL', `port must be an integer in 0..65535, got ${String(info.port)}`);
    if (info.meta !== undefined && !isRecord(info.meta)) fail('EDVSINVAL', 'meta must be a plain object');
    Deadline.check(opts.timeoutMs, opts.signal);
    if (this.registrations.has(nodeId)) fail('EDVSNODEBUSY', `node ${nodeId} is already registered by this directory`);
    if (this.registering.has(nodeId)) fail('EDVSNODEBUSY', `a registration of node ${nodeId} is in progress in this directory`);
    const deadline = new Deadline(this.ctx.clock, opts.timeoutMs ?? this.ctx.settings.registerTimeoutMs, opts.signal, `registration of node ${nodeId}`);
    this.registering.add(nodeId);
    try {
      await deadline.race(this.ctx.cache.start());
      return await this.registerUnder(info, ttlMs, opts.replace ?? false, deadline);
    } finally {
      this.registering.delete(nodeId);
      deadline.dispose();
    }
  }

  private async registerUnder(info: NodeInfo, ttlMs: number, replace: boolean, deadline: Deadline): Promise<NodeRecord> {
    const { store, keys, clock, txns, cache, settings } = this.ctx;
    const nodeId = info.nodeId;
    // Leases of this node that earlier attempts here gave up on go first: one may still hold the node's key.
    await deadline.race(this.revokeAbandoned(nodeId));
    const since = clock.now();
    const granting = store.grantLease(ttlMs);
    let lease: LeaseId;
    try {
      lease = await deadline.race(granting);
    } catch (err) {
      // A grant that lands after the call gave up is revoked as soon as it does.
      if (err === deadline.expired) granting.then((l) => this.abandonLease(nodeId, l), noop);
      throw err;
    }
    const nodeKey = keys.node(nodeId);
    const incKey = keys.incarnation(nodeId);
    try {
      let inc: KeyValue | undefined = await deadline.race(store.get(incKey));
      for (let attempt = 0; ; attempt++) {
        if (attempt >= settings.maxRetries) fail('EDVSBUSY', `could not register node ${nodeId}: too much contention`);
        const last = typeof inc?.value === 'number' ? inc.value : 0;
        const incarnation = last + 1;
        const value: Record<string, StoreValue> = { nodeId, host: info.host, port: info.port, incarnation };
        if (info.meta !== undefined) value.meta = info.meta;
        const { r } = await txns.run(
          {
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
          },
          deadline,
        );
        const existing = entriesOf(r.results[0])[0];
        inc = entriesOf(r.results[1])[0];
        // Succeeded, or an attempt whose reply was lost did (the node key is under our new lease).
        if (r.succeeded || existing?.lease === lease) {
          const record: NodeRecord = { nodeId, host: info.host, port: info.port, ...(info.meta === undefined ? {} : { meta: info.meta }), incarnation, lease };
          const keeper = new LeaseKeeper({ store, lease, ttlMs, clock, since, onLost: (err) => this.onLeaseLost(nodeId, lease, err) });
          this.registrations.set(nodeId, { record, ttlMs, keeper });
          keeper.start();
          await cache.catchUp(r.revision);
          return record;
        }
        if (existing !== undefined) {
          if (!replace) fail('EDVSNODEBUSY', `node ${nodeId} is registered and alive`, { nodeId });
          if (existing.lease !== undefined) await deadline.race(store.revokeLease(existing.lease).catch(noop));
          else await deadline.race(store.delete(nodeKey));
        }
      }
    } catch (err) {
      // Whatever landed under the lease (the node's key, if a lost attempt did) goes with it.
      this.abandonLease(nodeId, lease);
      throw err;
    }
  }

  /**
   * Revokes a lease of `nodeId` this directory no longer wants; if the store cannot be reached, the
   * lease is kept to be revoked by the node's next registration here (until then it may hold the
   * node's key, which would refuse that registration as busy until the lease expired).
   */
  private abandonLease(nodeId: number, lease: LeaseId): void {
    let leases = this.abandoned.get(nodeId);
    if (leases === undefined) {
      leases = new Set();
      this.abandoned.set(nodeId, leases);
    }
    leases.add(lease);
    this.revoke(nodeId, lease).catch(noop);
  }

  /** Revokes every lease of `nodeId` abandoned here; fails (the store unreachable) with the first that cannot be. */
  private async revokeAbandoned(nodeId: number): Promise<void> {
    const leases = this.abandoned.get(nodeId);
    if (leases === undefined) return;
    for (const lease of [...leases]) await this.revoke(nodeId, lease);
  }

  /** Revokes an abandoned lease (one that no longer exists counts as revoked) and forgets it. */
  private async revoke(nodeId: number, lease: LeaseId): Promise<void> {
    try {
      await this.ctx.store.revokeLease(lease);
    } catch (err) {
      if (!(err instanceof DvsError && err.code === 'EDVSNOENT')) throw err;
    }
    const leases = this.abandoned.get(nodeId);
    leases?.delete(lease);
    if (leases?.size === 0) this.abandoned.delete(nodeId);
  }

  /** Leaves cleanly: stops the keepalive and revokes the node's lease (its keys disappear at once). */
  async unregister(nodeId: number): Promise<void> {
    const reg = this.registrations.get(nodeId);
    if (reg === undefined) fail('EDVSNONODE', `node ${nodeId} is not registered by this directory`);
    this.registrations.delete(nodeId);
    reg.keeper.stop();
    await this.ctx.store.revokeLease(reg.record.lease).catch((err: unknown) => {
      if (!(err instanceof DvsError && err.code === 'EDVSNOENT')) throw err;
    });
  }

  /**
   * Stops every keepalive and forgets the registrations; returns their leases and the abandoned ones
   * (for the caller to revoke, or to leave to expire).
   */
  detachAll(): LeaseId[] {
    const regs = [...this.registrations.values()];
    this.registrations.clear();
    for (const r of regs) r.keeper.stop();
    const abandoned = [...this.abandoned.values()].flatMap((leases) => [...leases]);
    this.abandoned.clear();
    return [...regs.map((r) => r.record.lease), ...abandoned];
  }

  private onLeaseLost(nodeId: number, lease: LeaseId, error: DvsError): void {
    const reg = this.registrations.get(nodeId);
    if (reg === undefined || reg.record.lease !== lease) return;
    this.registrations.delete(nodeId);
    // If only our keepalives failed, make the store agree that the node is gone.
    this.abandonLease(nodeId, lease);
    this.ctx.emit('leaseLost', { nodeId, error });
  }
}
