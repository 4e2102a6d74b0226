import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";

/** The repository's examples/ (graph.nix, chain.nix…). */
export const EXAMPLES = resolve(import.meta.dirname, "../../examples");

/** A fresh seed: an example evaluated with it has derivations no store has built yet. */
export const freshSeed = () => randomBytes(8).toString("hex");

/**
 * The file and arguments that evaluate examples/graph.nix with `n` leaves (and a root), a fresh
 * seed unless one is given, and each leaf sleeping `sleep` seconds when given.
 */
export function graphArgs(n: number, o: { seed?: string; sleep?: number } = {}): string[] {
  return [
    join(EXAMPLES, "graph.nix"),
    "--arg",
    "n",
    String(n),
    "--argstr",
    "seed",
    o.seed ?? freshSeed(),
    ...(o.sleep === undefined ? [] : ["--argstr", "sleep", String(o.sleep)]),
  ];
}
