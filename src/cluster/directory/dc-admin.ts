/**
 * DC administration: creating and removing DCs, adding and removing member nodes. A node removed
 * from a DC loses its endpoints and reservations there first, so caches unbind them before the DC
 * record changes.
 */
import { DvsError } from '../../ipc/errors.js';
import type { KeyValue, StoreValue, TxnOp } from '../store.js';
import type { DirectoryContext } from './context.js';
import { fail } from './failures.js';
import { checkDc, entriesOf, isInt, isRecord, parseDc } from './parse.js';
import type { DcDefinition, DcRecord } from './records.js';

export class DcAdmin {
  constructor(private readonly ctx: DirectoryContext) {}

  /** Creates a DC; EDVSDCRUN if it exists. */
  async create(def: DcDefinition): Promise<DcRecord> {
    const { keys, txns, cache } = this.ctx;
    const record = checkDc(def);
    const key = keys.dc(record.dcid);
    const { r, lost } = await txns.run({ compare: [{ key, exists: false }], success: [{ op: 'put', key, value: record as unknown as StoreValue }], failure: [{ op: 'get', key }] });
    const found = entriesOf(r.results[0])[0];
    const ours = lost && found !== undefined && JSON.stringify(parseDc(found.value, record.dcid)) === JSON.stringify(record);
    if (!r.succeeded && !ours) fail('EDVSDCRUN', `DC ${record.dcid} already exists`, { dcid: record.dcid });
    await cache.catchUp(r.revision);
    return record;
  }

  /** Removes a DC with everything under it (endpoints, reservations, generations); EDVSBADDCID if none. */
  async remove(dcid: number): Promise<void> {
    const { keys, txns, cache } = this.ctx;
    const key = keys.dc(dcid);
    // Endpoints first, then the record: caches see the endpoints unbound before the DC goes.
    const { r, lost } = await txns.run({
      compare: [{ key, exists: true }],
      success: [
        { op: 'delete', key: keys.dcTree(dcid), prefix: true },
        { op: 'delete', key },
      ],
    });
    if (!r.succeeded && !lost) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
    await cache.catchUp(r.revision);
  }

  /** Adds a member node; EDVSDCNODE if it is one already. */
  addNode(dcid: number, node: number): Promise<DcRecord> {
    return this.updateMembers(dcid, (dc) => {
      if (!isInt(node, 0, dc.limits.nrNodes - 1)) fail('EDVSBADNODEID', `node ${String(node)} outside 0..${dc.limits.nrNodes - 1}`);
      if (dc.nodes.includes(node)) fail('EDVSDCNODE', `node ${node} is already a member of DC ${dcid}`, { dcid, node });
      return [...dc.nodes, node].sort((a, b) => a - b);
    });
  }

  /** Removes a member node, with its endpoints and reservations in the DC; EDVSNODCNODE if not a member. */
  async removeNode(dcid: number, node: number): Promise<DcRecord> {
    const { store, keys, txns, cache, settings } = this.ctx;
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
    for (let pass = 0; pass < settings.maxRetries; pass++) {
      const tree = await store.getPrefix(keys.dcTree(dcid));
      const leftovers = this.keysOfNode(dcid, tree.entries, node);
      if (leftovers.length === 0) break;
      const { r } = await txns.run({ compare: [], success: leftovers.map((key): TxnOp => ({ op: 'delete', key })) });
      await cache.catchUp(r.revision);
    }
    return record;
  }

  private async updateMembers(dcid: number, change: (dc: DcRecord) => number[], dropNode?: number): Promise<DcRecord> {
    const { store, keys, txns, cache, settings } = this.ctx;
    const key = keys.dc(dcid);
    let lostOnce = false;
    for (let attempt = 0; attempt < settings.maxRetries; attempt++) {
      const kv = await store.get(key);
      const dc = kv === undefined ? undefined : parseDc(kv.value, dcid);
      if (kv === undefined || dc === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
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
        const tree = await store.getPrefix(keys.dcTree(dcid));
        for (const k of this.keysOfNode(dcid, tree.entries, dropNode)) ops.push({ op: 'delete', key: k });
      }
      ops.push({ op: 'put', key, value: record as unknown as StoreValue });
      const { r, lost } = await txns.run({ compare: [{ key, modRevision: kv.modRevision }], success: ops });
      lostOnce ||= lost;
      if (r.succeeded) {
        await cache.catchUp(r.revision);
        return record;
      }
    }
    return fail('EDVSBUSY', `could not update DC ${dcid}: too much contention`);
  }

  /** The keys of `node`'s endpoints and reservations among `entries` of the DC's subtree. */
  private keysOfNode(dcid: number, entries: KeyValue[], node: number): string[] {
    const out: string[] = [];
    for (const kv of entries) {
      const p = this.ctx.keys.parse(kv.key);
      if (p === undefined || (p.kind !== 'ep' && p.kind !== 'resv') || p.dcid !== dcid) continue;
      if (isRecord(kv.value) && kv.value.node === node) out.push(kv.key);
    }
    return out;
  }
}
