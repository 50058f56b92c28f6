/**
 * What the store says of a DC's replica groups (docs/replication.md): each group's record (its
 * endpoint, the primary's epoch, the synchronised members) and its election's candidates, the
 * lowest-created of which is the primary. Read by `dvs replicas`.
 */
import type { CoordinationStore } from '../../cluster/store.js';
import { electionName, groupRecordKey, parseGroupRecord, type ReplicaMode } from './replica-member.js';

export interface GroupView {
  readonly dcid: number;
  readonly slot: number;
  readonly endpoint: number;
  readonly mode: ReplicaMode;
  /** The epoch of the primary that last wrote the record. */
  readonly epoch: number;
  /** The node of the elected primary now (the oldest candidate); undefined while none stands. */
  readonly primary: number | undefined;
  /** The synchronised members, by the record. */
  readonly synced: readonly number[];
  /** Members standing in the election (synchronised and alive), oldest first. */
  readonly candidates: readonly number[];
}

export async function readGroups(store: CoordinationStore, dcid: number, root = '/dvs'): Promise<GroupView[]> {
  const prefix = `${groupRecordKey(root, dcid, 0).slice(0, -1)}`;
  const r = await store.getPrefix(prefix);
  const out: GroupView[] = [];
  for (const kv of r.entries) {
    const slot = Number(kv.key.slice(prefix.length));
    const rec = parseGroupRecord(kv.value);
    if (!Number.isInteger(slot) || rec === undefined) continue;
    const c = await store.getPrefix(`${root}/elections/${electionName(dcid, slot)}/`);
    const nodes = [...c.entries]
      .sort((a, b) => a.createRevision - b.createRevision)
      .map((e) => (typeof e.value === 'object' && e.value !== null && !Array.isArray(e.value) && !(e.value instanceof Uint8Array) ? (e.value as Record<string, unknown>).node : undefined))
      .filter((n): n is number => typeof n === 'number');
    out.push({ dcid, slot, endpoint: rec.endpoint, mode: rec.mode, epoch: rec.epoch, primary: nodes[0], synced: rec.synced, candidates: nodes });
  }
  return out.sort((a, b) => a.slot - b.slot);
}
