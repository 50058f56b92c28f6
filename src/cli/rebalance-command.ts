/**
 * `dvs rebalance --dc D`: rounds of the rebalancer (src/services/rebalancer.ts) over a DC's movable
 * coroutine services. Each round samples every node's process table twice, `intervalMs` apart: a
 * service's load is the messages it received per second plus its queue depth, a node's load the sum
 * over all its endpoints. A round in which the DC's membership or its nodes' registrations changed
 * between the two samples moves nothing. The planned moves are made by `migrate`, one at a time.
 */
import { planMoves, type NodeLoad, type PlannedMove, type RebalancePolicy } from '../services/rebalancer.js';
import { clusterPs, withDirectory, type ReachOptions } from './admin.js';
import { listServices, migrateEndpoint } from './migrate-command.js';

export interface RebalanceOptions extends ReachOptions, Partial<RebalancePolicy> {
  readonly rounds?: number;
  readonly intervalMs?: number;
  /** Plan only. */
  readonly dryRun?: boolean;
  readonly onRound?: (r: RebalanceRound) => void;
}

export interface RebalanceRound {
  readonly round: number;
  /** Why nothing was planned, when the round was skipped. */
  readonly skipped?: string;
  readonly loads: readonly { readonly node: number; readonly load: number }[];
  readonly moves: readonly (PlannedMove & { readonly error?: string })[];
}

/** A queued message weighs as much as this many messages per second. */
const QUEUED_WEIGHT = 10;

interface Sample {
  readonly at: number;
  readonly membership: string;
  readonly received: Map<string, number>;
  readonly queued: Map<string, number>;
  readonly nodes: readonly number[];
}

async function sample(dir: string, dcid: number, opts: ReachOptions): Promise<Sample> {
  const membership = await withDirectory(dir, (d) => {
    const dc = d.dc(dcid);
    const live = (dc?.nodes ?? []).filter((n) => d.node(n) !== undefined);
    return Promise.resolve({ key: `${(dc?.nodes ?? []).join(',')}|${live.join(',')}`, nodes: live });
  }, opts);
  const received = new Map<string, number>();
  const queued = new Map<string, number>();
  for (const p of await clusterPs(dir, dcid, opts)) {
    received.set(`${p.node}/${p.endpoint}`, p.counters.received);
    queued.set(`${p.node}/${p.endpoint}`, p.queued);
  }
  return { at: Date.now(), membership: membership.key, received, queued, nodes: membership.nodes };
}

export async function rebalance(dir: string, dcid: number, opts: RebalanceOptions = {}): Promise<RebalanceRound[]> {
  const policy: RebalancePolicy = { high: opts.high ?? 1.25, low: opts.low ?? 0.75, maxMoves: opts.maxMoves ?? 1 };
  const rounds = opts.rounds ?? 5;
  const intervalMs = opts.intervalMs ?? 2000;
  const moved = new Set<number>();
  const out: RebalanceRound[] = [];
  for (let round = 1; round <= rounds; round++) {
    const a = await sample(dir, dcid, opts);
    await new Promise((r) => setTimeout(r, intervalMs));
    const b = await sample(dir, dcid, opts);
    const services = (await listServices(dir, opts)).filter((s) => s.dcid === dcid);
    const seconds = Math.max(0.001, (b.at - a.at) / 1000);
    const loadOf = (key: string): number | undefined => {
      const before = a.received.get(key);
      const after = b.received.get(key);
      return before === undefined || after === undefined ? undefined : Math.max(0, after - before) / seconds + QUEUED_WEIGHT * (b.queued.get(key) ?? 0);
    };
    const nodes: NodeLoad[] = b.nodes.map((node) => {
      let load = 0;
      for (const key of b.received.keys()) if (key.startsWith(`${node}/`)) load += loadOf(key) ?? 0;
      const mine = services.filter((s) => s.node === node).flatMap((s) => {
        const l = loadOf(`${node}/${s.endpoint}`);
        return l === undefined ? [] : [{ endpoint: s.endpoint, load: l }];
      });
      return { node, load, services: mine };
    });
    const loads = nodes.map((n) => ({ node: n.node, load: Math.round(n.load) }));
    if (a.membership !== b.membership) {
      const r: RebalanceRound = { round, skipped: 'the DC\'s membership changed during the round', loads, moves: [] };
      out.push(r);
      opts.onRound?.(r);
      continue;
    }
    const planned = planMoves(nodes, policy, moved);
    const moves: (PlannedMove & { error?: string })[] = [];
    for (const m of planned) {
      moved.add(m.endpoint);
      if (opts.dryRun === true) {
        moves.push(m);
        continue;
      }
      try {
        await migrateEndpoint(dir, dcid, m.endpoint, m.to, opts);
        moves.push(m);
      } catch (err) {
        moves.push({ ...m, error: err instanceof Error ? err.message : String(err) });
      }
    }
    const r: RebalanceRound = { round, loads, moves };
    out.push(r);
    opts.onRound?.(r);
  }
  return out;
}

export function formatRound(r: RebalanceRound): string {
  const loads = r.loads.map((l) => `node ${l.node} ${l.load}/s`).join(', ');
  if (r.skipped !== undefined) return `round ${r.round}: ${loads}; skipped: ${r.skipped}`;
  if (r.moves.length === 0) return `round ${r.round}: ${loads}; balanced`;
  return `round ${r.round}: ${loads}; ${r.moves.map((m) => `endpoint ${m.endpoint} ${m.from} → ${m.to} (${Math.round(m.load)}/s)${m.error === undefined ? '' : ` failed: ${m.error}`}`).join('; ')}`;
}
