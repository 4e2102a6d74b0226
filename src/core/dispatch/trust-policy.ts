import type { Trust } from "../builder.js";

/** What happens to an output built on an untrusted builder (`[policy] untrustedResults`). */
export type UntrustedResults = "accept" | "verify" | "refuse";

/** The inventory's `[policy]` table, plus the build's own flags (--trusted-only, --verify). */
export interface TrustPolicy {
  /** Globs on derivation names that must never reach an untrusted builder. */
  trustedOnly: readonly string[];
  /** --trusted-only: no derivation of this build reaches an untrusted builder. */
  allTrustedOnly: boolean;
  untrustedResults: UntrustedResults;
  /** --verify N: distinct builders that must build each derivation (1: no verification). */
  verifyRounds: number;
  /** --verify-only GLOB: only matching derivations are verified (none given: every derivation). */
  verifyOnly: readonly string[];
}

export const DEFAULT_TRUST_POLICY: TrustPolicy = {
  trustedOnly: [],
  allTrustedOnly: false,
  untrustedResults: "accept",
  verifyRounds: 1,
  verifyOnly: [],
};

/** A builder as the trust rule sees it (a builder without a trust field is trusted). */
export interface TrustedBuilder {
  name: string;
  trust?: Trust | undefined;
}

const isTrusted = (b: TrustedBuilder) => b.trust !== "untrusted";

/**
 * Whether a derivation name matches a glob: `*` is any run of characters, `?` one character,
 * everything else itself (no character classes: names hold none of `[`, `]`). A leading `*-` also
 * matches at the start of the name, as on its store path (HASH-NAME): `*-bootstrap-tools*` is
 * nixpkgs' `bootstrap-tools` too.
 */
export function matchesGlob(name: string, glob: string): boolean {
  return matchesWholeName(name, glob) || (glob.startsWith("*-") && matchesWholeName(name, glob.slice(2)));
}

function matchesWholeName(name: string, glob: string): boolean {
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "s").test(name);
}

/** Whether the derivation must be built on trusted builders only (a trustedOnly glob or --trusted-only). */
export function needsTrustedBuilder(policy: TrustPolicy, name: string): boolean {
  return policy.allTrustedOnly || policy.trustedOnly.some((g) => matchesGlob(name, g));
}

/** Builds on distinct builders that --verify asks of this derivation (1: no comparison). */
export function verifyRoundsFor(policy: TrustPolicy, name: string): number {
  if (policy.verifyRounds <= 1) return 1;
  if (policy.verifyOnly.length > 0 && !policy.verifyOnly.some((g) => matchesGlob(name, g))) return 1;
  return policy.verifyRounds;
}

/** Whether an untrusted builder's output may stand without a trusted build (only when results are accepted). */
function untrustedMayStand(policy: TrustPolicy): boolean {
  return policy.untrustedResults === "accept";
}

/**
 * Whether the builds so far settle the derivation: as many distinct builders as --verify asks,
 * and, unless untrusted results are accepted, at least one of them trusted.
 */
export function isSettled(policy: TrustPolicy, name: string, builtOn: readonly TrustedBuilder[]): boolean {
  if (builtOn.length < verifyRoundsFor(policy, name)) return false;
  return untrustedMayStand(policy) || builtOn.some(isTrusted);
}

/**
 * Whether `builder` may take the next build of a derivation that `builtOn` already built: never a
 * builder that built it already (a check needs another builder); never an untrusted one for a
 * trusted-only derivation; with `refuse`, an untrusted builder only checks a trusted build; with
 * `verify`, the build that would settle the derivation goes to a trusted builder when none has
 * built it yet (an untrusted one there would only call for one more build).
 */
export function mayBuildOn(
  policy: TrustPolicy,
  name: string,
  builder: TrustedBuilder,
  builtOn: readonly TrustedBuilder[],
): boolean {
  if (builtOn.some((b) => b.name === builder.name)) return false;
  if (isTrusted(builder)) return true;
  if (needsTrustedBuilder(policy, name)) return false;
  const trustedBuilt = builtOn.some(isTrusted);
  switch (policy.untrustedResults) {
    case "accept":
      return true;
    case "refuse":
      return trustedBuilt;
    case "verify":
      return trustedBuilt || builtOn.length === 0 || builtOn.length + 1 < verifyRoundsFor(policy, name);
  }
}

/**
 * Whether an output held by `holder` may be copied to a store whose results count (this machine's
 * or a trusted builder's): an untrusted builder's copy only when untrusted results are accepted.
 * What it reports of its own outputs (NAR hashes) is only its word; the bytes come from a
 * trusted holder.
 */
export function maySendFrom(
  policy: TrustPolicy,
  holder: TrustedBuilder | undefined,
  toTrusted: boolean,
): boolean {
  if (!holder || isTrusted(holder) || !toTrusted) return true;
  return untrustedMayStand(policy);
}

/** What a derivation needs from the pool beyond Nix's capability rule, for the placement check. */
export interface TrustNeeds {
  /** Trusted capable builders it needs at least. */
  trusted: number;
  /** Distinct capable builders it needs at least. */
  distinct: number;
}

/**
 * The fewest builders of each kind a derivation needs to be settled under the policy: trusted
 * ones for a trusted-only derivation (all of its builds) or when untrusted results are not
 * accepted (one), and as many distinct ones as --verify asks.
 */
export function trustNeeds(policy: TrustPolicy, name: string): TrustNeeds {
  const rounds = verifyRoundsFor(policy, name);
  if (needsTrustedBuilder(policy, name)) return { trusted: rounds, distinct: rounds };
  return { trusted: untrustedMayStand(policy) ? 0 : 1, distinct: rounds };
}

/** "trusted-only (secret-*)", "trusted-only (--trusted-only)" — why a derivation needs trusted builders. */
export function describeTrustReason(policy: TrustPolicy, name: string): string {
  if (policy.allTrustedOnly) return "--trusted-only";
  const glob = policy.trustedOnly.find((g) => matchesGlob(name, g));
  if (glob !== undefined) return `[policy] trustedOnly "${glob}"`;
  return `[policy] untrustedResults = "${policy.untrustedResults}"`;
}
