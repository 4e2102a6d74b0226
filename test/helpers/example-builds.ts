import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { fileInstallable, NO_FLAKE_OPTIONS } from "../../src/core/installable.js";
import { evaluateDerivations } from "../../src/dispatch/evaluate.js";
import type { SubmitRequest } from "../../src/serve/coordinator-types.js";

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

/** test/fixtures/dispatch.nix: the dispatcher's and the coordinator's test graphs. */
export const DISPATCH_FIXTURE = resolve(import.meta.dirname, "../fixtures/dispatch.nix");

/**
 * A coordinator build request of the fixture's graph: `n` leaves sleeping `secs` each under one
 * root, with a fresh seed, evaluated here (as a client does).
 */
export async function graphRequest(label: string, n: number, secs = 0): Promise<SubmitRequest> {
  const derivations = await evaluateDerivations({
    flake: NO_FLAKE_OPTIONS,
    installables: [
      fileInstallable(
        DISPATCH_FIXTURE,
        ["graph"],
        [
          { kind: "arg", name: "n", value: String(n) },
          { kind: "argstr", name: "sleep", value: String(secs) },
          { kind: "argstr", name: "seed", value: freshSeed() },
        ],
      ),
    ],
  });
  return { derivations, label };
}
