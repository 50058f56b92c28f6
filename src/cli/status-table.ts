/** The text form of `dvs status`: one row per node, the store's view beside the node's own. */
import type { ClusterStatus, NodeSelfView } from './admin.js';

const dash = (v: string | number | boolean | undefined): string => (v === undefined ? '-' : String(v));

/** The node's own columns: registration state and since as it reports them, '-' when it does not. */
function selfColumns(n: NodeSelfView): string {
  return `${dash(n.registration?.state).padEnd(13)} ${dash(n.registration?.since).padEnd(24)}`;
}

export function formatStatus(s: ClusterStatus): string {
  return [
    `store ${s.store}`,
    'node  pid      alive  registered  incarnation     link             registration  since                     dcs',
    ...s.nodes.map(
      (n) =>
        `${String(n.nodeId).padEnd(5)} ${String(n.pid).padEnd(8)} ${String(n.alive).padEnd(6)} ${String(n.registered).padEnd(11)} ${dash(n.incarnation).padEnd(15)} ${dash(n.link).padEnd(16)} ${selfColumns(n)} ${n.dcs.join(',')}`,
    ),
  ].join('\n');
}

/** Without the store: only what the nodes say of themselves. */
export function formatSelfViews(nodes: readonly NodeSelfView[]): string {
  return [
    'store unreachable: what each node reports',
    'node  pid      alive  registration  since                     attempts  last error',
    ...nodes.map((n) => `${String(n.nodeId).padEnd(5)} ${String(n.pid).padEnd(8)} ${String(n.alive).padEnd(6)} ${selfColumns(n)} ${dash(n.registration?.attempts).padEnd(9)} ${n.registration?.lastError ?? n.viewError ?? '-'}`),
  ].join('\n');
}
