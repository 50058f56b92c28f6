/**
 * The rebalancer's policy (docs/migration.md, "Rebalancing"): from each node's load and the load of
 * the movable services on it, the moves of one round. Pure, so it is tested on made-up clusters.
 * - A node is **above** when its load exceeds `high` × the cluster's mean, **below** under `low` ×
 *   the mean (high > low: the gap between them is the hysteresis, so a node near the mean is left
 *   alone).
 * - A service moves from the most loaded node above (that has a movable service) to the least
 *   loaded node below only when that
 *   narrows the gap between the two (its load is less than their difference), so two nodes never
 *   trade a service back and forth.
 * - A service moved before (`moved`) never moves again in the same run: nothing is moved back.
 * - At most `maxMoves` moves per round.
 */

export interface ServiceLoad {
  readonly endpoint: number;
  readonly load: number;
}

export interface NodeLoad {
  readonly node: number;
  /** The node's load: its services' and anything else it carries. */
  readonly load: number;
  /** Its movable services. */
  readonly services: readonly ServiceLoad[];
}

export interface RebalancePolicy {
  /** Above this multiple of the mean load a node sheds services (e.g. 1.25). */
  readonly high: number;
  /** Below this multiple of the mean a node takes them (e.g. 0.75). */
  readonly low: number;
  readonly maxMoves: number;
}

export interface PlannedMove {
  readonly endpoint: number;
  readonly from: number;
  readonly to: number;
  readonly load: number;
}

export function planMoves(nodes: readonly NodeLoad[], policy: RebalancePolicy, moved: ReadonlySet<number> = new Set()): PlannedMove[] {
  if (!(policy.high > policy.low) || policy.low < 0) throw new RangeError(`the high-water mark (${policy.high}) must be above the low-water mark (${policy.low}), both non-negative`);
  if (nodes.length < 2) return [];
  const load = new Map(nodes.map((n) => [n.node, n.load]));
  const on = new Map(nodes.map((n) => [n.node, [...n.services]]));
  const mean = nodes.reduce((s, n) => s + n.load, 0) / nodes.length;
  if (mean <= 0) return [];
  const out: PlannedMove[] = [];
  const taken = new Set(moved);
  while (out.length < policy.maxMoves) {
    const sorted = [...load].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    const [dst, dstLoad] = sorted[sorted.length - 1]!;
    if (dstLoad >= policy.low * mean) break;
    let move: PlannedMove | undefined;
    // The most loaded node above the mark that has something to give (others may carry only what cannot move).
    for (const [src, srcLoad] of sorted) {
      if (srcLoad <= policy.high * mean) break;
      const gap = srcLoad - dstLoad;
      // The largest service that narrows the gap (moving it leaves the target below the source).
      const pick = (on.get(src) ?? [])
        .filter((s) => !taken.has(s.endpoint) && s.load > 0 && s.load < gap)
        .sort((a, b) => b.load - a.load || a.endpoint - b.endpoint)[0];
      if (pick !== undefined) {
        move = { endpoint: pick.endpoint, from: src, to: dst, load: pick.load };
        break;
      }
    }
    if (move === undefined) break;
    const m = move;
    out.push(m);
    taken.add(m.endpoint);
    const svc = (on.get(m.from) ?? []).find((s) => s.endpoint === m.endpoint)!;
    on.set(m.from, (on.get(m.from) ?? []).filter((s) => s !== svc));
    on.get(m.to)?.push(svc);
    load.set(m.from, (load.get(m.from) ?? 0) - m.load);
    load.set(m.to, dstLoad + m.load);
  }
  return out;
}
