import type { Builder } from "../core/builder.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { parseNumberFlag } from "../core/number-flag.js";
import type { LoadedInventory } from "../config/load.js";
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from "../core/dispatch/trust-policy.js";

/** The build flags that shape the trust policy. */
export interface TrustFlags {
  trustedOnly?: boolean;
  verify?: string;
  verifyOnly?: string[];
}

/** The build's trust policy: the inventory's `[policy]` plus --trusted-only, --verify N, --verify-only GLOB. */
export function buildTrustPolicy(policy: LoadedInventory["policy"], flags: TrustFlags): TrustPolicy {
  const verifyOnly = flags.verifyOnly ?? [];
  const verifyRounds =
    flags.verify === undefined
      ? verifyOnly.length > 0
        ? 2
        : 1
      : parseNumberFlag("--verify", flags.verify, {
          integer: true,
          min: 1,
          max: 16,
          example: "nixpool build FILE.nix --verify 2",
        });
  return {
    ...DEFAULT_TRUST_POLICY,
    trustedOnly: policy.trustedOnly,
    untrustedResults: policy.untrustedResults,
    allTrustedOnly: flags.trustedOnly === true,
    verifyRounds,
    verifyOnly,
  };
}

/**
 * Nix's build hook sends a derivation to any builder it lists and builds it once: it can apply no
 * trust policy. Refused whenever the policy would matter (an untrusted builder, or --verify),
 * rather than ignored.
 */
export function refuseTrustUnderHook(policy: TrustPolicy, builders: readonly Builder[]): void {
  const untrusted = builders.filter((b) => b.trust === "untrusted").map((b) => b.name);
  const restricts =
    policy.allTrustedOnly || policy.trustedOnly.length > 0 || policy.untrustedResults !== "accept";
  const why =
    policy.verifyRounds > 1
      ? "--verify"
      : restricts && untrusted.length > 0
        ? `the trust policy (untrusted builders: ${untrusted.join(", ")})`
        : undefined;
  if (why === undefined) return;
  throw new NixpoolError("FLAG_CONFLICT", `Nix's build hook cannot apply ${why}.`, {
    hint: "Build with nixpool's own dispatcher (as root or with a single-user store), or leave untrusted builders out with --builder/--tag (see docs/trust.md).",
    exitCode: ExitCode.usage,
  });
}
