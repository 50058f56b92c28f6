/**
 * The nodes registered through one directory: each under a lease of its own, kept alive by a
 * `LeaseKeeper`, at the next incarnation of its id. A lost lease ends the registration (the cluster
 * has declared the node dead) and is reported as `leaseLost`.
 */
import { DvsError } from '../../ipc/errors.js';
import { LeaseKeeper } from '../lease-keeper.js';
import type { KeyValue, LeaseId, StoreValue } from '../store.js';
import type { DirectoryContext } from './context.js';
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
   * EDVSNODEBUSY if the node id is registered and alive (unless `replace`).
   */
  async register(info: NodeInfo, ttlMs: number, opts: RegisterOptions): Promise<NodeRecord> {
    const { store, keys, clock, txns, cache } = this.ctx;
    const nodeId = info.nodeId;
    if (!isInt(nodeId, 0, 4095)) fail('EDVSBADNODEID', `node id must be an integer in 0..4095, got ${String(nodeId)}`);
    if (typeof info.host !== 'string' || info.host.length === 0 || info.host.length > 255) fail('EDVSINVAL', 'host must be a non-empty string');
    if (!isInt(info.port, 0, 65535)) fail('EDVSINVAL', `port must be an integer in 0..65535, got ${String(info.port)}`);
    if (info.meta !== undefined && !isRecord(info.meta)) fail('EDVSINVAL', 'meta must be a plain object');
    if (this.registrations.has(nodeId)) fail('EDVSNODEBUSY', `node ${nodeId} is already registered by this directory`);
    const since = clock.now();
    const lease = await store.grantLease(ttlMs);
    const nodeKey = keys.node(nodeId);
    const incKey = keys.incarnation(nodeId);
    try {
      let inc: KeyValue | undefined = await store.get(incKey);
      for (let attempt = 0; ; attempt++) {
        if (attempt >= this.ctx.settings.maxRetries) fail('EDVSBUSY', `could not register node ${nodeId}: too much contention`);
        const last = typeof inc?.value === 'number' ? inc.value : 0;
        const incarnation = last + 1;
        const value: Record<string, StoreValue> = { nodeId, host: info.host, port: info.port, incarnation };
        if (info.meta !== undefined) value.meta = info.meta;
        const { r } = await txns.run({
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
          const record: NodeRecord = { nodeId, host: info.host, port: info.port, ...(info.meta === undefined ? {} : { meta: info.meta }), incarnation, lease };
          const keeper = new LeaseKeeper({ store, lease, ttlMs, clock, since, onLost: (err) => this.onLeaseLost(nodeId, lease, err) });
          this.registrations.set(nodeId, { record, ttlMs, keeper });
          keeper.start();
          await cache.catchUp(r.revision);
          return record;
        }
        if (existing !== undefined) {
          if (!(opts.replace ?? false)) fail('EDVSNODEBUSY', `node ${nodeId} is registered and alive`, { nodeId });
          if (existing.lease !== undefined) await store.revokeLease(existing.lease).catch(noop);
          else await store.delete(nodeKey);
        }
      }
    } catch (err) {
      await store.revokeLease(lease).catch(noop);
      throw err;
    }
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

  /** Stops every keepalive and forgets the registrations; returns their leases (for the caller to revoke, or to leave to expire). */
  detachAll(): LeaseId[] {
    const regs = [...this.registrations.values()];
    this.registrations.clear();
    for (const r of regs) r.keeper.stop();
    return regs.map((r) => r.record.lease);
  }

  private onLeaseLost(nodeId: number, lease: LeaseId, error: DvsError): void {
    const reg = this.registrations.get(nodeId);
    if (reg === undefined || reg.record.lease !== lease) return;
    this.registrations.delete(nodeId);
    // If only our keepalives failed, make the store agree that the node is gone.
    this.ctx.store.revokeLease(lease).catch(noop);
    this.ctx.emit('leaseLost', { nodeId, error });
  }
}
