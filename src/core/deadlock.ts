// Deadlock detection over the wait-for graph, as pure functions. Nodes are owner keys (`tx#<txId>`,
// `owner#<name>`); an edge a -> b means "a waits for a lock that b holds". Cycles are found with
// Tarjan's strongly connected components, written with an explicit stack so that 10,000 waiting
// transactions in one chain do not overflow the call stack; each cycle loses its youngest
// transaction (the one that has done the least work and is least likely to be retried at once).
import { mutated } from './mutations';
import { type LockItem, parseOwnerKey } from './locks';

export interface WaitEdge {
  waiter: string;
  holder: string;
  resource: string;
}

export interface WaitForGraph {
  /** Node -> the nodes it waits for (deduplicated, in insertion order). */
  adjacency: Map<string, string[]>;
  /** `${waiter}\n${holder}` -> one resource behind that edge (for the record). */
  resources: Map<string, string>;
}

const edgeKey = (a: string, b: string): string => `${a}\n${b}`;

/** Edges from the lock items' waiters to the conflicting owners; stale waiter entries are skipped. */
export function buildWaitForGraph(items: Iterable<Pick<LockItem, 'resource' | 'owners' | 'waiters'>>, nowMs: number): WaitForGraph {
  const graph: WaitForGraph = { adjacency: new Map(), resources: new Map() };
  for (const item of items) {
    for (const [waiter, w] of Object.entries(item.waiters)) {
      if (w.untilMs <= nowMs) continue;
      for (const [holder, h] of Object.entries(item.owners)) {
        if (holder === waiter) continue; // an upgrade waits for the *other* owners only
        if (w.mode === 'S' && h.mode === 'S') continue;
        addEdge(graph, waiter, holder, item.resource);
      }
    }
  }
  return graph;
}

/** Every edge of the graph with the resource behind it, in the order they were added. */
export function waitEdges(graph: WaitForGraph): WaitEdge[] {
  return [...graph.resources].map(([key, resource]) => {
    const [waiter, holder] = key.split('\n') as [string, string];
    return { waiter, holder, resource };
  });
}

export function addEdge(graph: WaitForGraph, from: string, to: string, resource: string): void {
  const key = edgeKey(from, to);
  if (graph.resources.has(key)) return;
  graph.resources.set(key, resource);
  const out = graph.adjacency.get(from);
  if (out) out.push(to);
  else graph.adjacency.set(from, [to]);
  if (!graph.adjacency.has(to)) graph.adjacency.set(to, []);
}

/**
 * Tarjan's algorithm, iterative: O(V + E) time, O(V) extra space. Returns every strongly connected
 * component; a component of one node is a cycle only if the node waits for itself (never built
 * from locks, but kept for generality).
 */
export function stronglyConnectedComponents(adjacency: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  // Each frame is a node and how far through its successors the walk has got.
  const frames: { node: string; next: number }[] = [];
  for (const root of adjacency.keys()) {
    if (index.has(root)) continue;
    frames.push({ node: root, next: 0 });
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!;
      const successors = adjacency.get(frame.node) ?? [];
      if (frame.next < successors.length) {
        const w = successors[frame.next++]!;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          frames.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(w)!));
        }
        continue;
      }
      frames.pop();
      const v = frame.node;
      const parent = frames[frames.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(v)!));
      if (low.get(v) === index.get(v)) {
        const component: string[] = [];
        for (;;) {
          const w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
          if (w === v) break;
        }
        components.push(component);
      }
    }
  }
  return components;
}

/** Components that contain a cycle: two or more nodes, or one node with an edge to itself. */
export function cyclicComponents(adjacency: ReadonlyMap<string, readonly string[]>): string[][] {
  return stronglyConnectedComponents(adjacency).filter(
    (c) => c.length > 1 || (adjacency.get(c[0]!) ?? []).includes(c[0]!),
  );
}

/** The subgraph on `nodes` (edges leaving it dropped). */
export function induced(adjacency: ReadonlyMap<string, readonly string[]>, nodes: Iterable<string>): Map<string, string[]> {
  const keep = new Set(nodes);
  const sub = new Map<string, string[]>();
  for (const v of keep) sub.set(v, (adjacency.get(v) ?? []).filter((w) => keep.has(w)));
  return sub;
}

/**
 * One simple cycle inside a strongly connected component (every node of it lies on one): walk
 * successors inside the component until a node repeats. O(size of the component).
 */
export function cycleIn(component: ReadonlyMap<string, readonly string[]>): string[] {
  const start = component.keys().next().value as string | undefined;
  if (start === undefined) return [];
  const position = new Map<string, number>();
  const path: string[] = [];
  let v = start;
  while (!position.has(v)) {
    position.set(v, path.length);
    path.push(v);
    const next = component.get(v)?.[0];
    if (next === undefined) throw new Error(`node ${v} has no successor inside its component: not strongly connected`);
    v = next;
  }
  return path.slice(position.get(v)!);
}

/** What the detector knows about a node's transaction (standalone owners have no entry). */
export interface NodeInfo {
  /** ISO-8601, from the log record: the youngest transaction is the victim. */
  createdAt: string;
  /** Only a PREPARING transaction can still be aborted; others are already on their way out. */
  abortable: boolean;
}

export interface Resolution {
  /** The cycle, in wait order: cycle[i] waits for cycle[i + 1], the last for the first. */
  cycle: string[];
  edges: WaitEdge[];
  victim: string;
}

export interface Plan {
  resolutions: Resolution[];
  /** Cycles with no abortable transaction (standalone owners only): their wait timeouts end them. */
  unresolvable: string[][];
}

/**
 * Choose victims until no cycle is left: for each cyclic component, take one cycle, abort its
 * youngest abortable transaction, remove it, and look again inside what remains of the component.
 * Nodes whose transaction is no longer abortable are removed first: their cycle is already being
 * broken (they are aborting or finished), so it needs no second victim.
 * Each round is linear in the component, and each removes a node: O(V * (V + E)) in the worst case,
 * O(V + E) when cycles are disjoint (the usual case).
 */
export function planResolution(graph: WaitForGraph, info: ReadonlyMap<string, NodeInfo>): Plan {
  const leaving = (v: string) => parseOwnerKey(v).kind === 'tx' && info.get(v)?.abortable === false;
  const alive = [...graph.adjacency.keys()].filter((v) => !leaving(v));
  const work = cyclicComponents(induced(graph.adjacency, alive));
  const plan: Plan = { resolutions: [], unresolvable: [] };
  const maxRounds = graph.adjacency.size + 1;
  for (let round = 0; work.length > 0; round++) {
    if (round > maxRounds) throw new Error('deadlock planning did not converge: a node was not removed');
    const component = work.pop()!;
    const sub = induced(graph.adjacency, component);
    const cycle = cycleIn(sub);
    const candidates = cycle.filter((v) => info.get(v)?.abortable === true);
    const edges = cycle.map((v, i) => {
      const next = cycle[(i + 1) % cycle.length]!;
      return { waiter: v, holder: next, resource: graph.resources.get(edgeKey(v, next)) ?? '' };
    });
    let removed: string;
    if (candidates.length === 0) {
      plan.unresolvable.push(cycle);
      // Nothing here can be aborted: cut the cycle at its first node so the rest is still examined.
      removed = cycle[0]!;
    } else {
      removed = youngest(candidates, info);
      plan.resolutions.push({ cycle, edges, victim: mutated('victimOutsideCycle') ? outsider(graph, cycle, info) ?? removed : removed });
    }
    work.push(...cyclicComponents(induced(sub, component.filter((v) => v !== removed))));
  }
  return plan;
}

/** The latest createdAt; ties (same millisecond) go to the greater key, so every detector agrees. */
export function youngest(candidates: readonly string[], info: ReadonlyMap<string, NodeInfo>): string {
  return candidates.reduce((best, v) => {
    const a = info.get(v)!.createdAt;
    const b = info.get(best)!.createdAt;
    return a > b || (a === b && v > best) ? v : best;
  });
}

/** The planted bug `victimOutsideCycle`: a transaction of the wait-for graph outside the cycle (in no cycle at all, as a rule), unless known not to be abortable. */
function outsider(graph: WaitForGraph, cycle: readonly string[], info: ReadonlyMap<string, NodeInfo>): string | undefined {
  return [...graph.adjacency.keys()].find((v) => !cycle.includes(v) && parseOwnerKey(v).kind === 'tx' && info.get(v)?.abortable !== false);
}
