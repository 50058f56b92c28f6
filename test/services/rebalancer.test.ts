/** The rebalancer's policy on made-up clusters: bounded, narrowing, never moving anything back, converging. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planMoves, type NodeLoad, type RebalancePolicy } from '../../src/services/rebalancer.js';

const POLICY: RebalancePolicy = { high: 1.25, low: 0.75, maxMoves: 2 };

/** A cluster: per node, the loads of its movable services plus what cannot move. */
const clusters = fc.array(fc.record({ fixed: fc.nat(50), services: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }) }), { minLength: 2, maxLength: 5 });

function build(spec: { fixed: number; services: number[] }[]): NodeLoad[] {
  let ep = 100;
  return spec.map((n, node) => {
    const services = n.services.map((load) => ({ endpoint: ep++, load }));
    return { node, load: n.fixed + services.reduce((s, x) => s + x.load, 0), services };
  });
}

function apply(nodes: NodeLoad[], moves: ReturnType<typeof planMoves>): NodeLoad[] {
  let out = nodes;
  for (const m of moves) {
    const svc = out.find((n) => n.node === m.from)!.services.find((s) => s.endpoint === m.endpoint)!;
    out = out.map((n) => (n.node === m.from ? { ...n, load: n.load - svc.load, services: n.services.filter((s) => s !== svc) } : n.node === m.to ? { ...n, load: n.load + svc.load, services: [...n.services, svc] } : n));
  }
  return out;
}

describe('the rebalancer policy', () => {
  it('a skewed cluster: services move off the hot node to the cold ones, then it stops', () => {
    let nodes: NodeLoad[] = [
      { node: 0, load: 0, services: [] },
      { node: 1, load: 400, services: [1, 2, 3, 4].map((endpoint) => ({ endpoint, load: 100 })) },
      { node: 2, load: 0, services: [] },
    ];
    const moved = new Set<number>();
    const rounds: number[] = [];
    for (let r = 0; r < 5; r++) {
      const moves = planMoves(nodes, { ...POLICY, maxMoves: 1 }, moved);
      rounds.push(moves.length);
      for (const m of moves) moved.add(m.endpoint);
      nodes = apply(nodes, moves);
    }
    expect(rounds).toEqual([1, 1, 0, 0, 0]);
    expect(nodes.map((n) => n.services.length)).toEqual([1, 2, 1]);
  });

  it('passes over a hot node that has nothing to give', () => {
    const nodes: NodeLoad[] = [
      { node: 0, load: 500, services: [] },
      { node: 1, load: 300, services: [{ endpoint: 7, load: 100 }, { endpoint: 8, load: 100 }] },
      { node: 2, load: 0, services: [] },
    ];
    expect(planMoves(nodes, { high: 1.1, low: 0.9, maxMoves: 1 })).toEqual([{ endpoint: 7, from: 1, to: 2, load: 100 }]);
  });

  it('refuses a high-water mark not above the low one', () => {
    expect(() => planMoves([], { high: 1, low: 1, maxMoves: 1 })).toThrow(RangeError);
  });

  it('property: bounded, every move narrows its gap, nothing moved twice, and rounds converge', () => {
    fc.assert(
      fc.property(clusters, fc.integer({ min: 1, max: 3 }), (spec, maxMoves) => {
        let nodes = build(spec);
        const moved = new Set<number>();
        let rounds = 0;
        for (; rounds < 50; rounds++) {
          const moves = planMoves(nodes, { ...POLICY, maxMoves }, moved);
          expect(moves.length).toBeLessThanOrEqual(maxMoves);
          if (moves.length === 0) break;
          for (const m of moves) {
            expect(moved.has(m.endpoint)).toBe(false);
            moved.add(m.endpoint);
            const before = new Map(nodes.map((n) => [n.node, n.load]));
            nodes = apply(nodes, [m]);
            const after = new Map(nodes.map((n) => [n.node, n.load]));
            // The target stays below where the source was, and the source does not drop below where the target was.
            expect(after.get(m.to)!).toBeLessThan(before.get(m.from)!);
            expect(after.get(m.from)!).toBeGreaterThan(before.get(m.to)!);
          }
        }
        expect(rounds).toBeLessThan(50);
      }),
      { numRuns: 300 },
    );
  });
});
