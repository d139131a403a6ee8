// Cycle finding and victim choice (src/core/deadlock.ts): Tarjan agrees with a brute-force
// reachability reference on random graphs; it survives 10,000 nodes in one chain; the plan breaks
// every cycle with the youngest transaction of each, and leaves nothing cyclic behind.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type NodeInfo,
  type WaitForGraph,
  addEdge,
  buildWaitForGraph,
  cycleIn,
  cyclicComponents,
  induced,
  planResolution,
  stronglyConnectedComponents,
  youngest,
} from '../../src/core/deadlock';
import type { LockItem } from '../../src/core/locks';

function graphOf(edges: [string, string][], nodes: string[] = []): WaitForGraph {
  const g: WaitForGraph = { adjacency: new Map(nodes.map((n) => [n, []])), resources: new Map() };
  for (const [a, b] of edges) addEdge(g, a, b, `r-${a}-${b}`);
  return g;
}

/** Brute force: v reaches w, by repeated expansion (no cleverness to share bugs with). */
function reachability(adjacency: Map<string, string[]>): Map<string, Set<string>> {
  const reach = new Map<string, Set<string>>();
  for (const v of adjacency.keys()) {
    const seen = new Set<string>();
    let frontier = [...(adjacency.get(v) ?? [])];
    while (frontier.length > 0) {
      const next: string[] = [];
      for (const w of frontier) {
        if (seen.has(w)) continue;
        seen.add(w);
        next.push(...(adjacency.get(w) ?? []));
      }
      frontier = next;
    }
    reach.set(v, seen);
  }
  return reach;
}

const randomGraph = fc
  .integer({ min: 1, max: 14 })
  .chain((n) =>
    fc.tuple(
      fc.constant(Array.from({ length: n }, (_, i) => `tx#t${i}`)),
      fc.array(fc.tuple(fc.integer({ min: 0, max: n - 1 }), fc.integer({ min: 0, max: n - 1 })), { maxLength: n * 3 }),
    ),
  )
  .map(([nodes, pairs]) => graphOf(pairs.filter(([a, b]) => a !== b).map(([a, b]) => [nodes[a]!, nodes[b]!]), nodes));

describe('Tarjan against brute force', () => {
  it('puts two nodes in one component exactly when each reaches the other', () => {
    fc.assert(
      fc.property(randomGraph, (g) => {
        const reach = reachability(g.adjacency);
        const componentOf = new Map<string, number>();
        stronglyConnectedComponents(g.adjacency).forEach((c, i) => c.forEach((v) => componentOf.set(v, i)));
        expect(componentOf.size).toBe(g.adjacency.size); // a partition of every node
        for (const v of g.adjacency.keys()) {
          for (const w of g.adjacency.keys()) {
            if (v === w) continue;
            const mutual = reach.get(v)!.has(w) && reach.get(w)!.has(v);
            expect(componentOf.get(v) === componentOf.get(w)).toBe(mutual);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('finds exactly the nodes that lie on some cycle, and a real cycle inside each component', () => {
    fc.assert(
      fc.property(randomGraph, (g) => {
        const reach = reachability(g.adjacency);
        const onCycle = [...g.adjacency.keys()].filter((v) => reach.get(v)!.has(v)).sort();
        const cyclic = cyclicComponents(g.adjacency);
        expect(cyclic.flat().sort()).toEqual(onCycle);
        for (const component of cyclic) {
          const cycle = cycleIn(induced(g.adjacency, component));
          expect(new Set(cycle).size).toBe(cycle.length);
          cycle.forEach((v, i) => expect(g.adjacency.get(v)).toContain(cycle[(i + 1) % cycle.length]));
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('scale', () => {
  it('handles 10,000 waiting transactions in one chain closed into a cycle without recursion', () => {
    const n = 10_000;
    const edges: [string, string][] = Array.from({ length: n }, (_, i) => [`tx#t${i}`, `tx#t${(i + 1) % n}`]);
    const g = graphOf(edges);
    const cyclic = cyclicComponents(g.adjacency);
    expect(cyclic).toHaveLength(1);
    expect(cyclic[0]).toHaveLength(n);
    const info = new Map<string, NodeInfo>(edges.map(([v], i) => [v, { createdAt: new Date(1_700_000_000_000 + i).toISOString(), abortable: true }]));
    const plan = planResolution(g, info);
    expect(plan.resolutions.map((r) => r.victim)).toEqual([`tx#t${n - 1}`]);
  });
});

describe('victims', () => {
  const info = (entries: [string, number, boolean?][]) =>
    new Map<string, NodeInfo>(entries.map(([v, t, abortable = true]) => [v, { createdAt: new Date(1_700_000_000_000 + t).toISOString(), abortable }]));

  it('breaks a two-way deadlock with the youngest, naming the resources of the cycle', () => {
    const g = graphOf([['tx#a', 'tx#b'], ['tx#b', 'tx#a']]);
    const plan = planResolution(g, info([['tx#a', 1], ['tx#b', 2]]));
    expect(plan.resolutions).toHaveLength(1);
    expect(plan.resolutions[0]!.victim).toBe('tx#b');
    expect(plan.resolutions[0]!.edges.map((e) => e.resource).sort()).toEqual(['r-tx#a-tx#b', 'r-tx#b-tx#a']);
  });

  it('breaks a three-way deadlock with one victim, and two disjoint cycles with one each', () => {
    const three = graphOf([['tx#a', 'tx#b'], ['tx#b', 'tx#c'], ['tx#c', 'tx#a']]);
    expect(planResolution(three, info([['tx#a', 3], ['tx#b', 1], ['tx#c', 2]])).resolutions.map((r) => r.victim)).toEqual(['tx#a']);
    const two = graphOf([['tx#a', 'tx#b'], ['tx#b', 'tx#a'], ['tx#c', 'tx#d'], ['tx#d', 'tx#c']]);
    expect(planResolution(two, info([['tx#a', 1], ['tx#b', 2], ['tx#c', 4], ['tx#d', 3]])).resolutions.map((r) => r.victim).sort()).toEqual(['tx#b', 'tx#c']);
  });

  it('needs one victim for two cycles that share their youngest node, two otherwise', () => {
    const eight = graphOf([['tx#a', 'tx#x'], ['tx#x', 'tx#a'], ['tx#b', 'tx#x'], ['tx#x', 'tx#b']]);
    expect(planResolution(eight, info([['tx#a', 1], ['tx#b', 2], ['tx#x', 9]])).resolutions.map((r) => r.victim)).toEqual(['tx#x']);
    expect(planResolution(eight, info([['tx#a', 5], ['tx#b', 6], ['tx#x', 1]])).resolutions.map((r) => r.victim).sort()).toEqual(['tx#a', 'tx#b']);
  });

  it('picks no second victim for a cycle already being broken, nor a standalone owner', () => {
    const g = graphOf([['tx#a', 'tx#b'], ['tx#b', 'tx#a']]);
    expect(planResolution(g, info([['tx#a', 1], ['tx#b', 2, false]])).resolutions).toEqual([]);
    const mixed = graphOf([['owner#w', 'tx#a'], ['tx#a', 'owner#w']]);
    expect(planResolution(mixed, info([['tx#a', 1]])).resolutions.map((r) => r.victim)).toEqual(['tx#a']);
    const none = graphOf([['owner#v', 'owner#w'], ['owner#w', 'owner#v']]);
    expect(planResolution(none, new Map())).toMatchObject({ resolutions: [], unresolvable: [expect.any(Array)] });
  });

  it('breaks ties on creation time by the greater id, so every detector agrees', () => {
    expect(youngest(['tx#a', 'tx#b'], info([['tx#a', 1], ['tx#b', 1]]))).toBe('tx#b');
  });

  it('property: removing the victims leaves no cycle, and each victim was on one', () => {
    fc.assert(
      fc.property(randomGraph, fc.array(fc.integer({ min: 0, max: 1_000 }), { minLength: 14, maxLength: 14 }), (g, ages) => {
        const nodes = [...g.adjacency.keys()];
        const plan = planResolution(g, info(nodes.map((v, i) => [v, ages[i]!] as [string, number])));
        const victims = new Set(plan.resolutions.map((r) => r.victim));
        expect(victims.size).toBe(plan.resolutions.length);
        const onCycle = new Set(cyclicComponents(g.adjacency).flat());
        for (const v of victims) expect(onCycle.has(v)).toBe(true);
        const rest = induced(g.adjacency, nodes.filter((v) => !victims.has(v)));
        expect(cyclicComponents(rest)).toEqual([]);
        for (const r of plan.resolutions) expect(r.cycle).toContain(r.victim);
      }),
      { numRuns: 500 },
    );
  });
});

describe('the graph from lock items', () => {
  const item = (resource: string, owners: Record<string, 'S' | 'X'>, waiters: Record<string, ['S' | 'X', number]>): LockItem => ({
    resource,
    version: 1,
    token: 1,
    owners: Object.fromEntries(Object.entries(owners).map(([k, mode]) => [k, { mode, token: 1, leaseUntilMs: 9e15, grantedAtMs: 0, scopes: ['s'] }])),
    waiters: Object.fromEntries(Object.entries(waiters).map(([k, [mode, untilMs]]) => [k, { mode, sinceMs: 0, untilMs }])),
  });

  it('draws waiter -> conflicting owner, skipping compatible, own and stale entries', () => {
    const g = buildWaitForGraph(
      [
        item('r1', { 'tx#a': 'S', 'tx#b': 'S' }, { 'tx#c': ['X', 100], 'tx#d': ['S', 100], 'tx#a': ['X', 100], 'tx#e': ['X', 5] }),
        item('r2', { 'tx#c': 'X' }, { 'tx#a': ['S', 100] }),
      ],
      10,
    );
    const edges = [...g.resources.entries()].map(([k, r]) => `${k.replace('\n', '->')}@${r}`).sort();
    expect(edges).toEqual(['tx#a->tx#b@r1', 'tx#a->tx#c@r2', 'tx#c->tx#a@r1', 'tx#c->tx#b@r1']);
    expect(cyclicComponents(g.adjacency).map((c) => c.sort())).toEqual([['tx#a', 'tx#c']]);
  });
});
