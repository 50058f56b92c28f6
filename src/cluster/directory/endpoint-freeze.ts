/**
 * Freezing and thawing an endpoint (DESIGN.md, "Moving endpoints"): a freeze is a marker key under a
 * lease of its own, put only while the endpoint's entry is unchanged and at the expected epoch; new
 * senders everywhere park while it exists. A thaw deletes it, and may move the entry to another
 * node at the next epoch, in the same transaction. A coordinator that dies leaves nothing frozen:
 * the marker's lease expires and every cache sees the endpoint thawed where it was.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Compare, KeyValue, LeaseId, TxnOp } from '../store.js';
import type { DirectoryContext } from './context.js';
import { dcSpace } from './dc-space.js';
import type { EndpointValue } from './endpoint-claims.js';
import { fail, noop } from './failures.js';
import { checkName, entriesOf, isInt, parseDc, parseEndpoint, parseFreeze, parseNode } from './parse.js';
import type { EndpointRecord } from './records.js';
import type { TxnOutcome } from './txn-runner.js';

export interface ThawOptions {
  /** Move the endpoint to this node (at the next epoch, under its registration lease) as it thaws. */
  readonly toNode?: number;
  /**
   * With `toNode`: the entry may be gone because its owner's registration lease ended while the
   * endpoint moved (the owner was cut off from the store). Then it is published at `toNode`, at the
   * next epoch and under this name, provided nothing newer holds the slot.
   */
  readonly adoptAs?: string;
}

/** The longest freeze: the store's longest lease. */
const MAX_FREEZE_MS = 24 * 60 * 60 * 1000;

export class EndpointFreezes {
  constructor(private readonly ctx: DirectoryContext) {}

  /**
   * Freezes `endpoint` at `epoch` for at most `freezeMs`. EDVSNOTBIND if it is not published,
   * EDVSENDPOINT if the slot holds another endpoint or the endpoint is at another epoch, EDVSBUSY if
   * it is frozen already.
   */
  async freeze(dcid: number, endpoint: Endpoint, epoch: number, freezeMs: number): Promise<EndpointRecord> {
    const { store, keys, txns, cache, settings } = this.ctx;
    checkEpoch(epoch);
    if (!isInt(freezeMs, 1, MAX_FREEZE_MS)) fail('EDVSINVAL', `freezeMs must be an integer in 1..${MAX_FREEZE_MS}, got ${String(freezeMs)}`);
    const space = await dcSpace(this.ctx, dcid);
    const slot = space.checkEndpoint(endpoint);
    const epKey = keys.endpoint(dcid, slot);
    const frzKey = keys.freeze(dcid, slot);
    const reads: TxnOp[] = [
      { op: 'get', key: epKey },
      { op: 'get', key: frzKey },
    ];
    // Granted once the entry is found freezable; revoked unless the marker lands under it.
    let lease: LeaseId | undefined;
    let frozen = false;
    try {
      let [epKv, frzKv] = await this.read(reads);
      let lostOnce = false;
      for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
        const rec = epKv === undefined ? undefined : parseEndpoint(epKv, dcid, slot);
        if (rec === undefined) fail('EDVSNOTBIND', `endpoint ${space.format(endpoint)} of DC ${dcid} is not published`, { dcid, endpoint });
        // After an attempt whose reply was lost, a marker under our lease is that attempt's.
        if (lostOnce && lease !== undefined && frzKv?.lease === lease && rec.endpoint === endpoint) {
          frozen = true;
          await cache.catchUp(frzKv.modRevision);
          return { ...rec, frozen: true, freezeMs };
        }
        checkRecord(rec, dcid, endpoint, epoch, space.format.bind(space));
        const marker = frzKv === undefined ? undefined : parseFreeze(frzKv);
        if (marker?.endpoint === endpoint) fail('EDVSBUSY', `endpoint ${space.format(endpoint)} of DC ${dcid} is frozen already`, { dcid, endpoint });
        lease ??= await store.grantLease(freezeMs);
        // A marker that names no live endpoint (an earlier generation's, or malformed) is replaced.
        const { r, lost } = await txns.run({
          compare: [
            { key: epKey, modRevision: rec.modRevision },
            { key: frzKey, modRevision: frzKv?.modRevision ?? 0 },
          ],
          success: [{ op: 'put', key: frzKey, value: { endpoint, epoch, recordRevision: rec.modRevision, ms: freezeMs }, lease }],
          failure: reads,
        });
        lostOnce ||= lost;
        if (r.succeeded) {
          frozen = true;
          await cache.catchUp(r.revision);
          return { ...rec, frozen: true, freezeMs };
        }
        [epKv, frzKv] = r.results.map((x) => entriesOf(x)[0]);
      }
      return fail('EDVSBUSY', `could not freeze endpoint ${space.format(endpoint)} of DC ${dcid}: too much contention`);
    } finally {
      if (!frozen && lease !== undefined) await store.revokeLease(lease).catch(noop);
    }
  }

  /**
   * Thaws `endpoint`, frozen at `epoch`: deletes the marker (and revokes its lease); with `toNode`
   * other than the owner, moves the entry there at `epoch + 1` in the same transaction. Requires the
   * entry unchanged since the freeze: EDVSNOTBIND (not published), EDVSENDPOINT (another endpoint or
   * epoch, or changed since the freeze), EDVSPROCSTS (not frozen: the freeze expired or never was),
   * EDVSNONODE (`toNode` not registered), EDVSNODCNODE (`toNode` not a member of the DC).
   */
  async thaw(dcid: number, endpoint: Endpoint, epoch: number, opts: ThawOptions): Promise<EndpointRecord> {
    const { store, keys, txns, cache, settings } = this.ctx;
    checkEpoch(epoch);
    const toNode = opts.toNode;
    if (toNode !== undefined && !isInt(toNode, 0, 4095)) fail('EDVSBADNODEID', `node id must be an integer in 0..4095, got ${String(toNode)}`);
    const space = await dcSpace(this.ctx, dcid);
    const format = space.format.bind(space);
    const slot = space.checkEndpoint(endpoint);
    const epKey = keys.endpoint(dcid, slot);
    const frzKey = keys.freeze(dcid, slot);
    const dcKey = keys.dc(dcid);
    const reads: TxnOp[] = [
      { op: 'get', key: epKey },
      { op: 'get', key: frzKey },
      { op: 'get', key: dcKey },
      ...(toNode === undefined ? [] : [{ op: 'get' as const, key: keys.node(toNode) }]),
    ];
    let [epKv, frzKv, dcKv, nodeKv] = await this.read(reads);
    let lostOnce = false;
    let plannedMove = false;
    for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
      const rec = epKv === undefined ? undefined : parseEndpoint(epKv, dcid, slot);
      const marker = frzKv === undefined ? undefined : parseFreeze(frzKv);
      // After an attempt whose reply was lost, the endpoint thawed where that attempt put it is its work.
      if (lostOnce && rec?.endpoint === endpoint && marker?.endpoint !== endpoint) {
        if (plannedMove ? rec.node === toNode && rec.epoch === epoch + 1 : rec.epoch === epoch) return rec;
      }
      // The same move made already (a thaw repeated after its answer was lost to its caller).
      if (toNode !== undefined && rec?.endpoint === endpoint && rec.node === toNode && rec.epoch === epoch + 1 && marker?.endpoint !== endpoint) return rec;
      if (rec === undefined && toNode !== undefined && opts.adoptAs !== undefined) return this.adopt(dcid, endpoint, epoch, toNode, opts.adoptAs);
      if (rec === undefined) fail('EDVSNOTBIND', `endpoint ${format(endpoint)} of DC ${dcid} is not published`, { dcid, endpoint });
      checkRecord(rec, dcid, endpoint, epoch, format);
      if (frzKv === undefined || marker?.endpoint !== endpoint) fail('EDVSPROCSTS', `endpoint ${format(endpoint)} of DC ${dcid} is not frozen (its freeze expired, or it never was)`, { dcid, endpoint });
      if (marker.epoch !== epoch || marker.recordRevision !== rec.modRevision) {
        fail('EDVSENDPOINT', `endpoint ${format(endpoint)} of DC ${dcid} changed since it was frozen`, { dcid, endpoint });
      }
      const compare: Compare[] = [
        { key: epKey, modRevision: rec.modRevision },
        { key: frzKey, modRevision: frzKv.modRevision },
      ];
      const success: TxnOp[] = [];
      let moved: EndpointRecord | undefined;
      const target = toNode !== undefined && toNode !== rec.node ? toNode : undefined;
      plannedMove = target !== undefined;
      if (target !== undefined) {
        const owner = this.newOwner(dcid, target, dcKv, nodeKv);
        compare.push(...owner.compare);
        const value: EndpointValue = { endpoint, generation: rec.generation, node: target, name: rec.name, epoch: epoch + 1 };
        // The entry moves first, then the marker goes: a follower sees it frozen at its new place, then thawed there.
        success.push({ op: 'put', key: epKey, value: { ...value }, lease: owner.lease });
        moved = { ...rec, node: target, epoch: epoch + 1 };
      }
      success.push({ op: 'delete', key: frzKey });
      let outcome: TxnOutcome;
      try {
        outcome = await txns.run({ compare, success, failure: reads });
      } catch (err) {
        // The new owner's lease ended between the read and the write.
        if (target !== undefined && err instanceof DvsError && err.code === 'EDVSNOENT') fail('EDVSNONODE', `node ${target} is not registered`, { node: target });
        throw err;
      }
      const { r, lost } = outcome;
      lostOnce ||= lost;
      if (r.succeeded) {
        if (marker.lease !== 0) await store.revokeLease(marker.lease).catch(noop);
        await cache.catchUp(r.revision);
        return moved === undefined ? rec : { ...moved, modRevision: r.revision };
      }
      [epKv, frzKv, dcKv, nodeKv] = r.results.map((x) => entriesOf(x)[0]);
    }
    return fail('EDVSBUSY', `could not thaw endpoint ${format(endpoint)} of DC ${dcid}: too much contention`);
  }

  /**
   * Publishes `endpoint`, whose entry vanished while it was frozen at `epoch`, at `toNode` at
   * `epoch + 1`: only while its slot is free, unreserved and its last generation is still this
   * endpoint's (as `restore` of a claim requires), and deletes the freeze marker in the same
   * transaction. EDVSSLOTUSED when something newer holds the slot.
   */
  private async adopt(dcid: number, endpoint: Endpoint, epoch: number, toNode: number, name: string): Promise<EndpointRecord> {
    const { store, keys, txns, cache, settings } = this.ctx;
    const space = await dcSpace(this.ctx, dcid);
    const slot = space.checkEndpoint(endpoint);
    const generation = space.generationOf(endpoint);
    const epKey = keys.endpoint(dcid, slot);
    const frzKey = keys.freeze(dcid, slot);
    const reads: TxnOp[] = [
      { op: 'get', key: epKey },
      { op: 'get', key: frzKey },
      { op: 'get', key: keys.dc(dcid) },
      { op: 'get', key: keys.node(toNode) },
    ];
    for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
      const [epKv, frzKv, dcKv, nodeKv] = await this.read(reads);
      const held = epKv === undefined ? undefined : parseEndpoint(epKv, dcid, slot);
      // An earlier attempt whose reply was lost, or a concurrent one of the same move.
      if (held?.endpoint === endpoint && held.node === toNode && held.epoch === epoch + 1) return held;
      if (held !== undefined) fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} moved on; endpoint ${space.format(endpoint)} cannot be adopted`, { dcid, slot, endpoint });
      const owner = this.newOwner(dcid, toNode, dcKv, nodeKv);
      const marker = frzKv === undefined ? undefined : parseFreeze(frzKv);
      const value: EndpointValue = { endpoint, generation, node: toNode, name: checkName(name, `ep${slot}`), epoch: epoch + 1 };
      const success: TxnOp[] = [{ op: 'put', key: epKey, value: { ...value }, lease: owner.lease }];
      if (marker?.endpoint === endpoint) success.push({ op: 'delete', key: frzKey });
      const { r } = await txns.run({
        compare: [
          ...owner.compare,
          { key: epKey, exists: false },
          { key: keys.reservation(dcid, slot), exists: false },
          { key: keys.generation(dcid, slot), value: generation },
          { key: frzKey, modRevision: frzKv?.modRevision ?? 0 },
        ],
        success,
        failure: [{ op: 'get', key: keys.generation(dcid, slot) }, { op: 'get', key: keys.reservation(dcid, slot) }],
      });
      if (r.succeeded) {
        if (marker?.endpoint === endpoint && marker.lease !== 0) await store.revokeLease(marker.lease).catch(noop);
        await cache.catchUp(r.revision);
        return { endpoint, generation, node: toNode, name: value.name, epoch: epoch + 1, slot, dcid, frozen: false, modRevision: r.revision };
      }
      const [genKv, resKv] = r.results.map((x) => entriesOf(x)[0]);
      if (resKv !== undefined || genKv?.value !== generation) fail('EDVSSLOTUSED', `slot ${slot} of DC ${dcid} moved on; endpoint ${space.format(endpoint)} cannot be adopted`, { dcid, slot, endpoint });
    }
    return fail('EDVSBUSY', `could not adopt endpoint ${space.format(endpoint)} of DC ${dcid}: too much contention`);
  }

  /** The lease an endpoint moved to `toNode` lives under, and the compares that keep it and the membership as read. */
  private newOwner(dcid: number, toNode: number, dcKv: KeyValue | undefined, nodeKv: KeyValue | undefined): { lease: number; compare: Compare[] } {
    const { keys } = this.ctx;
    const dc = dcKv === undefined ? undefined : parseDc(dcKv.value, dcid);
    if (dcKv === undefined || dc === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    if (!dc.nodes.includes(toNode)) fail('EDVSNODCNODE', `node ${toNode} is not a member of DC ${dcid}`, { dcid, node: toNode });
    const node = nodeKv === undefined ? undefined : parseNode(nodeKv, toNode);
    if (nodeKv?.lease === undefined || node === undefined) fail('EDVSNONODE', `node ${toNode} is not registered`, { node: toNode });
    return {
      lease: nodeKv.lease,
      compare: [
        { key: keys.dc(dcid), modRevision: dcKv.modRevision },
        { key: keys.node(toNode), modRevision: nodeKv.modRevision },
      ],
    };
  }

  /** One consistent read of several keys. */
  private async read(reads: readonly TxnOp[]): Promise<(KeyValue | undefined)[]> {
    const { r } = await this.ctx.txns.run({ compare: [], success: reads });
    return r.results.map((x) => entriesOf(x)[0]);
  }
}

function checkEpoch(epoch: number): void {
  if (!isInt(epoch, 0, Number.MAX_SAFE_INTEGER)) fail('EDVSINVAL', `epoch must be a non-negative integer, got ${String(epoch)}`);
}

/** EDVSENDPOINT unless the entry is `endpoint` at `epoch`. */
function checkRecord(rec: EndpointRecord, dcid: number, endpoint: Endpoint, epoch: number, format: (e: Endpoint) => string): void {
  if (rec.endpoint !== endpoint) fail('EDVSENDPOINT', `slot ${rec.slot} of DC ${dcid} holds ${format(rec.endpoint)}, not ${format(endpoint)}`, { dcid, endpoint });
  if (rec.epoch !== epoch) fail('EDVSENDPOINT', `endpoint ${format(endpoint)} of DC ${dcid} is at epoch ${rec.epoch}, not ${epoch}`, { dcid, endpoint, epoch: rec.epoch });
}
