import { readDerivationClosure } from "../adapters/derivation-closure.js";
import {
  derivationName,
  requiredSystemFeatures,
  toBasicDerivation,
  type Derivation,
} from "../core/derivation.js";
import type { GraphInput } from "../core/dispatch/graph.js";
import type { BasicDerivation } from "../core/nix-serve/build.js";

/** The parsed derivation closure, in the shapes the graph and the builders need. */
export interface LoadedDerivations {
  inputs: GraphInput[];
  /** The BasicDerivation that BuildDerivation sends for a derivation. */
  basic(drv: string): BasicDerivation;
  /** The output nix-build links as ./result: the first output the derivation declares. */
  firstOutput(drv: string): string;
}

/** Reads every .drv of the closure of `roots` (one file read each, no process per derivation). */
export async function loadDerivations(roots: readonly string[]): Promise<LoadedDerivations> {
  const drvs = await readDerivationClosure([...roots]);
  return fromDerivations(drvs);
}

/** Converts parsed derivations (a pure step, exported for tests). */
export function fromDerivations(drvs: ReadonlyMap<string, Derivation>): LoadedDerivations {
  const get = (p: string): Derivation => {
    const d = drvs.get(p);
    if (!d) throw new Error(`derivation ${p} is not in the loaded closure`);
    return d;
  };
  const inputs: GraphInput[] = [...drvs].map(([drv, d]) => ({
    drv,
    name: derivationName(drv),
    system: d.platform,
    features: requiredSystemFeatures(d),
    outputs: Object.fromEntries([...d.outputs].map(([n, o]) => [n, o.path])),
    inputDrvs: Object.fromEntries(d.inputDrvs),
    inputSrcs: d.inputSrcs,
  }));
  const outputOf = (p: string, name: string): string => {
    const o = get(p).outputs.get(name);
    if (!o) throw new Error(`derivation ${p} has no output ${name}`);
    return o.path;
  };
  return {
    inputs,
    basic: (p) => toBasicDerivation(get(p), outputOf),
    firstOutput: (p) => {
      const d = get(p);
      const declared = (d.env.get("outputs") ?? "").split(/\s+/).find((n) => d.outputs.has(n));
      return declared ?? (d.outputs.has("out") ? "out" : ([...d.outputs.keys()][0] ?? "out"));
    },
  };
}
