/**
 * The per-node, per-DC pools of user slots: free slots reserved ahead of time by one transaction per
 * range (each with its next generation already taken), so a client bind takes a slot from memory.
 * A slot handed out is "in flight" until the cache sees its reservation change (published or lost).
 * Claims that find the pool empty wait for one shared refill, which reserves for all of them (up to
 * what one transaction holds), and try again until they get a slot; only a DC found full by a fresh
 * read of the store fails them with EDVSNOSPC.
 */
import type { DvsError } from '../../ipc/errors.js';
import type { Compare, KeyValue, LeaseId, TxnOp } from '../store.js';
import type { DirectoryContext } from './context.js';
import type { Deadline } from './deadline.js';
import { asDvsError, fail, isTransient } from './failures.js';
import type { NodeRegistry } from './node-registry.js';
import { entriesOf, parseDc, parseReservation } from './parse.js';
import type { DcRecord, GenEntry, Reservation } from './records.js';

/** One refill transaction compares the DC record and three keys per slot: 1 + 3 × 42 = 127 of etcd's 128 compares. */
export const MAX_RESERVED_PER_TXN = 42;

/** A DC's state as read from the store (by a transaction that lost a race, or to confirm the DC is full). */
interface DcSnapshot {
  readonly record: DcRecord | undefined;
  readonly modRevision: number;
  readonly eps: ReadonlySet<number>;
  readonly gens: ReadonlyMap<number, GenEntry>;
  readonly resv: ReadonlyMap<number, Reservation>;
}

export class SlotPool {
  /** `dcid/slot` of reserved slots handed out whose publication has not shown in the cache yet. */
  private readonly inFlight = new Set<string>();
  private readonly refills = new Map<string, Promise<void>>();
  /** Claims waiting for a refill, by `dcid/node`: what the next refill reserves for. */
  private readonly waiting = new Map<string, number>();

  constructor(
    private readonly ctx: DirectoryContext,
    private readonly registry: NodeRegistry,
  ) {}

  /** User slots reserved for `node` in `dcid` and not yet handed out. */
  reservedSlots(dcid: number, node: number): number[] {
    const reg = this.registry.get(node);
    const s = this.ctx.cache.state(dcid);
    if (reg === undefined || s === undefined) return [];
    const out: number[] = [];
    for (const [slot, r] of s.resv) if (r.node === node && r.lease === reg.record.lease && !this.isInFlight(dcid, slot)) out.push(slot);
    return out.sort((a, b) => a - b);
  }

  isInFlight(dcid: number, slot: number): boolean {
    return this.inFlight.has(`${dcid}/${slot}`);
  }

  /** Marks a reserved slot as handed out. */
  mark(dcid: number, slot: number): void {
    this.inFlight.add(`${dcid}/${slot}`);
  }

  /** The slot is no longer in flight (its reservation changed, or its publication gave up). */
  forget(dcid: number, slot: number): void {
    this.inFlight.delete(`${dcid}/${slot}`);
  }

  /** Hands out the lowest reserved slot of `node`'s pool (marked in flight), if any. */
  take(dcid: number, node: number, lease: LeaseId): [number, Reservation] | undefined {
    const s = this.ctx.cache.state(dcid);
    if (s === undefined) return undefined;
    let best: [number, Reservation] | undefined;
    for (const [slot, r] of s.resv) {
      if (r.node !== node || r.lease !== lease || this.isInFlight(dcid, slot)) continue;
      if (best === undefined || slot < best[0]) best = [slot, r];
    }
    if (best !== undefined) this.mark(dcid, best[0]);
    return best;
  }

  /**
   * A slot of `node`'s pool (marked in flight), refilling it as often as needed: EDVSNOSPC once the
   * DC has no free user slot, EDVSNONODE once the registration of `lease` ended.
   */
  async acquire(dcid: number, node: number, lease: LeaseId, deadline: Deadline): Promise<[number, Reservation]> {
    const tag = `${dcid}/${node}`;
    // Every round either hands this claim a slot, or lets a refill reserve slots that the claims ahead
    // of it take (they resume first, in order), or fails, or waits out an unreachable store until the
    // deadline: it ends.
    for (let round = 0; ; round++) {
      const taken = this.take(dcid, node, lease);
      if (taken !== undefined) return taken;
      if (this.registry.get(node)?.record.lease !== lease) fail('EDVSNONODE', `node ${node} is not registered by this directory`, { node });
      deadline.check();
      let unreachable: DvsError | undefined;
      this.waiting.set(tag, (this.waiting.get(tag) ?? 0) + 1);
      try {
        await deadline.race(this.refill(dcid, node));
      } catch (err) {
        const e = asDvsError(err);
        if (e === deadline.expired || !isTransient(e) || !deadline.bounded) throw e;
        unreachable = e;
      } finally {
        const left = (this.waiting.get(tag) ?? 1) - 1;
        if (left > 0) this.waiting.set(tag, left);
        else this.waiting.delete(tag);
      }
      if (unreachable !== undefined) await deadline.sleep(Math.min(1000, 50 * 2 ** Math.min(round, 10)));
    }
  }

  /**
   * Tops up `node`'s pool in `dcid` to `rangeSize` reserved slots, or more while claims wait (at most
   * MAX_RESERVED_PER_TXN at a time); one refill per node and DC at a time.
   */
  refill(dcid: number, node: number): Promise<void> {
    const tag = `${dcid}/${node}`;
    let p = this.refills.get(tag);
    if (p === undefined) {
      p = this.doRefill(dcid, node).finally(() => this.refills.delete(tag));
      this.refills.set(tag, p);
    }
    return p;
  }

  private async doRefill(dcid: number, node: number): Promise<void> {
    const { keys, txns, cache, settings } = this.ctx;
    const lease = this.registry.require(node).record.lease;
    let snap = this.snapshotFromCache(dcid);
    // Whether `snap` was read from the store (the cache may not show a release yet).
    let fresh = false;
    for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
      if (snap.record === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
      if (!snap.record.nodes.includes(node)) fail('EDVSNODCNODE', `node ${node} is not a member of DC ${dcid}`, { dcid, node });
      const have = this.reservedSlots(dcid, node).length;
      const demand = this.waiting.get(`${dcid}/${node}`) ?? 0;
      const need = Math.min(MAX_RESERVED_PER_TXN, Math.max(settings.rangeSize, demand + settings.refillBelow) - have);
      if (need <= 0) return;
      const { nrProcs, nrSysProcs, nrTasks } = snap.record.limits;
      const firstUser = Math.max(0, nrSysProcs - nrTasks);
      const count = nrProcs - firstUser;
      const picked: number[] = [];
      // Each node starts its scan at its own offset, so concurrent refills rarely collide.
      const start = count > 0 ? (node * settings.rangeSize) % count : 0;
      for (let i = 0; i < count && picked.length < need; i++) {
        const slot = firstUser + ((start + i) % count);
        if (!snap.eps.has(slot) && !snap.resv.has(slot)) picked.push(slot);
      }
      if (picked.length === 0) {
        if (have > 0) return;
        if (fresh) fail('EDVSNOSPC', `DC ${dcid} has no free user slot`, { dcid });
        snap = await this.readSnapshot(dcid);
        fresh = true;
        continue;
      }
      const compare: Compare[] = [{ key: keys.dc(dcid), modRevision: snap.modRevision }];
      const success: TxnOp[] = [];
      for (const slot of picked) {
        const g = snap.gens.get(slot);
        const generation = (g?.generation ?? -1) + 1;
        compare.push(
          { key: keys.endpoint(dcid, slot), exists: false },
          { key: keys.reservation(dcid, slot), exists: false },
          { key: keys.generation(dcid, slot), modRevision: g?.modRevision ?? 0 },
        );
        success.push({ op: 'put', key: keys.generation(dcid, slot), value: generation }, { op: 'put', key: keys.reservation(dcid, slot), value: { node, generation }, lease });
      }
      const { r } = await txns.run({
        compare,
        success,
        failure: [
          { op: 'get', key: keys.dc(dcid) },
          { op: 'get', key: keys.dcTree(dcid), prefix: true },
        ],
      });
      if (r.succeeded) {
        await cache.catchUp(r.revision);
        return;
      }
      snap = this.snapshotFromEntries(dcid, entriesOf(r.results[0])[0], entriesOf(r.results[1]));
      fresh = true;
    }
    fail('EDVSBUSY', `could not reserve slots in DC ${dcid}: too much contention`);
  }

  private snapshotFromCache(dcid: number): DcSnapshot {
    const s = this.ctx.cache.state(dcid);
    if (s === undefined) return { record: undefined, modRevision: 0, eps: new Set(), gens: new Map(), resv: new Map() };
    return { record: s.record, modRevision: s.modRevision, eps: new Set(s.eps.keys()), gens: s.gens, resv: s.resv };
  }

  /** The DC's record and subtree, read from the store in one transaction. */
  private async readSnapshot(dcid: number): Promise<DcSnapshot> {
    const { keys, txns } = this.ctx;
    const { r } = await txns.run({
      compare: [],
      success: [
        { op: 'get', key: keys.dc(dcid) },
        { op: 'get', key: keys.dcTree(dcid), prefix: true },
      ],
    });
    return this.snapshotFromEntries(dcid, entriesOf(r.results[0])[0], entriesOf(r.results[1]));
  }

  private snapshotFromEntries(dcid: number, dcKv: KeyValue | undefined, entries: KeyValue[]): DcSnapshot {
    const eps = new Set<number>();
    const gens = new Map<number, GenEntry>();
    const resv = new Map<number, Reservation>();
    for (const kv of entries) {
      const p = this.ctx.keys.parse(kv.key);
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
}
