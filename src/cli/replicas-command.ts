/** `dvs replicas --dc D`: a DC's replica groups, their primary, epoch and synchronised members (docs/replication.md). */
import { readGroups, type GroupView } from '../services/replica/group-view.js';
import { withDirectory, type ReachOptions } from './admin.js';

/** A group as the store says, and the node its directory entry names now (the serving primary). */
export type GroupStatus = GroupView & { readonly servedBy: number | undefined };

export function replicas(dir: string, dcid: number, opts: ReachOptions = {}): Promise<GroupStatus[]> {
  return withDirectory(dir, async (d, _c, store) => {
    const groups = await readGroups(store, dcid);
    // The entry says where the group is served now (the primary's node once it took the entry over).
    return groups.map((g) => ({ ...g, servedBy: d.lookup(dcid, g.endpoint)?.node }));
  }, opts);
}

export function formatReplicas(groups: readonly GroupStatus[]): string {
  if (groups.length === 0) return 'no replica groups';
  const dash = (v: number | undefined): string => (v === undefined ? '-' : String(v));
  return [
    'slot  endpoint  mode     primary  served-by  epoch       synced     candidates',
    ...groups.map((g) => `${String(g.slot).padEnd(5)} ${String(g.endpoint).padEnd(9)} ${g.mode.padEnd(8)} ${dash(g.primary).padEnd(8)} ${dash(g.servedBy).padEnd(10)} ${String(g.epoch).padEnd(11)} ${(g.synced.join(',') || '-').padEnd(10)} ${g.candidates.join(',') || '-'}`),
  ].join('\n');
}
