import { canBuild, describeNeeds } from "./capability.js";
import type { DrvNode } from "./graph.js";
import type { Scheduler, SchedulerBuilder } from "./scheduler.js";
import { describeTrustReason, trustNeeds, type TrustPolicy } from "./trust-policy.js";
import { ExitCode, NixpoolError } from "../errors.js";

/** A derivation the pool cannot settle under the trust policy, and what it lacks. */
export interface TrustShortfall {
  drv: string;
  name: string;
  kind: "trusted" | "distinct";
  /** Builders of that kind it needs, and the capable ones the pool has. */
  needed: number;
  capable: string[];
}

/**
 * The derivations that no placement could settle: too few trusted capable builders for a
 * trusted-only derivation (or for any derivation when untrusted results are not accepted), or
 * too few distinct capable builders for --verify N. Checked before anything starts: a
 * derivation never falls back to an untrusted builder.
 */
export function findTrustShortfalls(
  nodes: readonly DrvNode[],
  builders: readonly SchedulerBuilder[],
  policy: TrustPolicy,
): TrustShortfall[] {
  const out: TrustShortfall[] = [];
  for (const n of nodes) {
    const needs = trustNeeds(policy, n.name);
    const capable = builders.filter((b) => canBuild(b, n));
    const trusted = capable.filter((b) => b.trust !== "untrusted");
    if (trusted.length < needs.trusted)
      out.push({
        drv: n.drv,
        name: n.name,
        kind: "trusted",
        needed: needs.trusted,
        capable: trusted.map((b) => b.name),
      });
    else if (capable.length < needs.distinct)
      out.push({
        drv: n.drv,
        name: n.name,
        kind: "distinct",
        needed: needs.distinct,
        capable: capable.map((b) => b.name),
      });
  }
  return out;
}

/** NO_TRUSTED_BUILDER or VERIFY_TOO_FEW_BUILDERS for the first shortfall, naming the derivation and the builders. */
export function trustShortfallError(
  shortfalls: readonly TrustShortfall[],
  nodes: ReadonlyMap<string, DrvNode>,
  policy: TrustPolicy,
): NixpoolError {
  const first = shortfalls[0] as TrustShortfall;
  const node = nodes.get(first.drv);
  const more = shortfalls.length > 1 ? ` (and ${shortfalls.length - 1} more derivations)` : "";
  const have = first.capable.length ? first.capable.join(", ") : "none";
  const needs = node ? describeNeeds(node) : "its system";
  const details = { derivations: shortfalls.map((s) => s.drv), needed: first.needed, capable: first.capable };
  if (first.kind === "trusted") {
    return new NixpoolError(
      "NO_TRUSTED_BUILDER",
      `No trusted builder can build ${first.name} (${describeTrustReason(policy, first.name)}; it needs ${first.needed} trusted builder${first.needed > 1 ? "s" : ""} for ${needs}, trusted and capable: ${have})${more}; nothing was started.`,
      {
        hint: 'Add a trusted builder for that system (trust = "trusted" in nixpool.toml), or change [policy] (see docs/trust.md).',
        exitCode: ExitCode.failed,
        details,
      },
    );
  }
  return new NixpoolError(
    "VERIFY_TOO_FEW_BUILDERS",
    `--verify ${policy.verifyRounds} needs ${first.needed} distinct builders that can build ${first.name} (${needs}); the pool has ${first.capable.length} (${have})${more}.`,
    {
      hint: `Lower --verify, narrow it with --verify-only GLOB, or add builders (see nixpool builders).`,
      exitCode: ExitCode.usage,
      details,
    },
  );
}

/** Throws the trust shortfall of the first needed derivation the pool cannot settle, before anything starts. */
export function checkTrust(
  scheduler: Scheduler,
  builders: readonly SchedulerBuilder[],
  policy: TrustPolicy,
  /** Derivations a builder yet to join (a trusted cloud worker the autoscaler may rent) can settle. */
  settledLater?: (node: DrvNode) => boolean,
): void {
  const nodes = [...scheduler.nodes]
    .filter(([, s]) => s.status !== "idle" && s.status !== "done")
    .map(([drv]) => scheduler.node(drv))
    .filter((n) => !settledLater?.(n));
  const short = findTrustShortfalls(nodes, builders, policy);
  if (short.length) throw trustShortfallError(short, scheduler.graph.nodes, policy);
}
