import { NixpoolError } from "../errors.js";

/** What the dispatcher needs to know of one derivation (parsed from its .drv file). */
export interface GraphInput {
  drv: string;
  name: string;
  system: string;
  /** requiredSystemFeatures of the derivation. */
  features: readonly string[];
  /** Output name → store path. */
  outputs: Readonly<Record<string, string>>;
  /** Input derivation → the output names this derivation uses. */
  inputDrvs: Readonly<Record<string, readonly string[]>>;
  inputSrcs: readonly string[];
}

/** One derivation of the build graph, with its edges both ways. */
export interface DrvNode extends GraphInput {
  /** Input derivations (edges towards the leaves). */
  deps: string[];
  /** Derivations that use this one (edges towards the roots). */
  dependents: string[];
  /** Store paths the builder must hold before building: sources plus the used outputs of deps. */
  inputPaths: string[];
}

/** The derivation closure of what the user asked for. */
export interface BuildGraph {
  nodes: Map<string, DrvNode>;
  /** The derivations the user asked for, in evaluation order. */
  roots: string[];
  /** Every derivation, dependencies before dependents. */
  order: string[];
}

/**
 * Builds the graph from the parsed closure; refuses an input derivation missing from the
 * closure, an unknown output name and a cycle (a hostile or broken store), naming the derivation.
 */
export function buildGraph(inputs: Iterable<GraphInput>, roots: readonly string[]): BuildGraph {
  const nodes = new Map<string, DrvNode>();
  for (const i of inputs) nodes.set(i.drv, { ...i, deps: [], dependents: [], inputPaths: [] });
  for (const node of nodes.values()) {
    const paths = new Set(node.inputSrcs);
    for (const [dep, outs] of Object.entries(node.inputDrvs)) {
      const d = nodes.get(dep);
      if (!d) throw graphError(`${node.drv} needs ${dep}, which is not in the derivation closure`);
      for (const o of outs) {
        const p = d.outputs[o];
        if (p === undefined) throw graphError(`${node.drv} uses output "${o}" that ${dep} does not have`);
        paths.add(p);
      }
      node.deps.push(dep);
      d.dependents.push(node.drv);
    }
    node.inputPaths = [...paths].sort();
  }
  for (const r of roots) if (!nodes.has(r)) throw graphError(`the requested ${r} is not in the closure`);
  return { nodes, roots: [...roots], order: topologicalOrder(nodes) };
}

function graphError(what: string): NixpoolError {
  return new NixpoolError("DRV_GRAPH_INVALID", `The derivation graph is invalid: ${what}.`, {
    hint: "Check the store with: nix-store --verify --check-contents; then evaluate again.",
  });
}

/** Kahn's algorithm: dependencies first; throws on a cycle. */
function topologicalOrder(nodes: Map<string, DrvNode>): string[] {
  const pending = new Map<string, number>();
  const queue: string[] = [];
  for (const n of nodes.values()) {
    pending.set(n.drv, n.deps.length);
    if (n.deps.length === 0) queue.push(n.drv);
  }
  const order: string[] = [];
  for (let i = 0; i < queue.length; i++) {
    const drv = queue[i] as string;
    order.push(drv);
    for (const up of nodes.get(drv)?.dependents ?? []) {
      const left = (pending.get(up) ?? 0) - 1;
      pending.set(up, left);
      if (left === 0) queue.push(up);
    }
  }
  if (order.length !== nodes.size) {
    const stuck = [...pending.entries()].find(([, n]) => n > 0)?.[0] ?? "?";
    throw graphError(`${stuck} is part of a dependency cycle`);
  }
  return order;
}

/**
 * The remaining critical path of every derivation: its own estimated duration plus the longest
 * chain of dependents above it. Ready derivations with the longest remaining path go first.
 */
export function remainingPaths(
  graph: BuildGraph,
  estimateMs: (node: DrvNode) => number,
): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = graph.order.length - 1; i >= 0; i--) {
    const node = graph.nodes.get(graph.order[i] as string) as DrvNode;
    let above = 0;
    for (const up of node.dependents) above = Math.max(above, out.get(up) ?? 0);
    out.set(node.drv, above + estimateMs(node));
  }
  return out;
}
