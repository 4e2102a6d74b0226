import type { Trust } from "../builder.js";
import type { DrvNode } from "./graph.js";
import { isSettled, mayBuildOn, maySendFrom, needsTrustedBuilder, type TrustPolicy } from "./trust-policy.js";

/** A builder as placement rules see it. */
export interface PlacedBuilder {
  name: string;
  trust?: Trust | undefined;
}

/**
 * What the scheduler asks beyond Nix's capability rule: may this builder take the next build of
 * a derivation (given the builders that built it already), and do the builds so far settle it.
 * A derivation that is not settled after a build goes back to the queue for one more build.
 */
export interface PlacementRule {
  allows(node: DrvNode, builder: PlacedBuilder, builtOn: readonly PlacedBuilder[]): boolean;
  settled(node: DrvNode, builtOn: readonly PlacedBuilder[]): boolean;
  /** Whether a copy of the derivation's settled outputs on this builder may be a source for others (here, other builders). */
  counts(node: DrvNode, builder: PlacedBuilder): boolean;
}

/** Any capable builder, one build each: Nix's own behaviour. */
export const ANY_BUILDER: PlacementRule = {
  allows: (_node, builder, builtOn) => !builtOn.some((b) => b.name === builder.name),
  settled: (_node, builtOn) => builtOn.length >= 1,
  counts: () => true,
};

/** The placement of the trust policy: trusted-only derivations, untrusted results, --verify. */
export function trustPlacement(policy: TrustPolicy): PlacementRule {
  return {
    allows: (node, builder, builtOn) => mayBuildOn(policy, node.name, builder, builtOn),
    settled: (node, builtOn) => isSettled(policy, node.name, builtOn),
    // A trusted-only derivation's outputs come from a trusted builder, even when untrusted results
    // are accepted: a copy an untrusted builder holds (found there, or sent as an input) is no source.
    counts: (node, builder) =>
      maySendFrom(policy, builder, true) &&
      (builder.trust !== "untrusted" || !needsTrustedBuilder(policy, node.name)),
  };
}
