import type { Builder } from "../builder.js";

/** What a derivation needs of a builder: its system and its requiredSystemFeatures. */
export interface BuildNeeds {
  system: string;
  features: readonly string[];
}

/**
 * Nix's own rule (build-remote, Nix 2.8): the builder lists the system (every builder takes
 * "builtin"), supports every required feature (supported or mandatory), and every mandatory
 * feature of the builder is required.
 */
export function canBuild(
  b: Pick<Builder, "systems" | "supportedFeatures" | "mandatoryFeatures" | "maxJobs">,
  needs: BuildNeeds,
): boolean {
  if (b.maxJobs < 1) return false;
  // Builtin builders (builtin:fetchurl, system "builtin") run on any machine, as in Nix.
  if (needs.system !== "builtin" && !b.systems.includes(needs.system)) return false;
  const offered = new Set([...b.supportedFeatures, ...b.mandatoryFeatures]);
  if (!needs.features.every((f) => offered.has(f))) return false;
  return b.mandatoryFeatures.every((f) => needs.features.includes(f));
}

/** "x86_64-linux with kvm, big-parallel" — what a derivation needs, for error messages. */
export function describeNeeds(needs: BuildNeeds): string {
  return needs.features.length ? `${needs.system} with ${needs.features.join(", ")}` : needs.system;
}

/** "local1 (x86_64-linux; kvm; mandatory: benchmark)" — what a builder offers, for error messages. */
export function describeOffer(
  b: Pick<Builder, "name" | "systems" | "supportedFeatures" | "mandatoryFeatures" | "maxJobs">,
): string {
  const parts = [b.systems.join(",") || "no systems"];
  if (b.supportedFeatures.length) parts.push(b.supportedFeatures.join(","));
  if (b.mandatoryFeatures.length) parts.push(`mandatory: ${b.mandatoryFeatures.join(",")}`);
  if (b.maxJobs < 1) parts.push("maxJobs 0");
  return `${b.name} (${parts.join("; ")})`;
}
