import { builderConnectionError } from "../core/builder-connection-error.js";
import type { DerivationRecord } from "../core/build-record.js";
import { NixpoolError } from "../core/errors.js";
import type { BuilderLink } from "./builder-link.js";
import type { DerivationLog } from "./derivation-log.js";

/** Every capable builder is gone; a single one that ssh could not use gets ssh's precise reason. */
export function allBuildersDown(links: readonly BuilderLink[], stuck: readonly string[] = []): NixpoolError {
  const only = links.length === 1 ? links[0] : undefined;
  if (only?.lostCause && only.lostCause.failure !== "unknown") {
    return builderConnectionError(only.builder, only.lostCause.failure, only.lostCause.stderr);
  }
  const lost = links.filter((l) => l.lostReason !== undefined);
  const up = links.filter((l) => l.lostReason === undefined);
  const down = lost.map((l) => `${l.name} (${l.lostReason ?? ""})`);
  // Builders still connected are named as such: what keeps them from the rest is the derivations'
  // requirements or the trust policy, not their connection.
  const connected = up.length
    ? `; ${up.map((l) => l.name).join(", ")} ${up.length === 1 ? "is" : "are"} connected but may not build ${stuck.length ? stuck.slice(0, 3).join(", ") + (stuck.length > 3 ? ", …" : "") : "what is left"} (features, system or [policy])`
    : "";
  return new NixpoolError(
    "ALL_BUILDERS_DOWN",
    `No capable builder is reachable: ${down.length ? down.join(", ") : "none was lost"}${connected}.`,
    {
      hint: up.length
        ? "Check the lost builders with: nixpool doctor; see docs/trust.md for what [policy] keeps from untrusted builders."
        : "Check them with: nixpool doctor",
      details: { builders: Object.fromEntries(links.map((l) => [l.name, l.lostReason ?? null])) },
    },
  );
}

/** The first failed derivation (by when it failed), with its log tail, log file and every record. */
export function buildFailedError(
  failed: readonly DerivationRecord[],
  logs: ReadonlyMap<string, DerivationLog>,
  records: readonly DerivationRecord[],
): NixpoolError {
  const first = [...failed].sort((a, b) => (a.finishedMs ?? 0) - (b.finishedMs ?? 0))[0] as DerivationRecord;
  const log = logs.get(first.drv);
  const more = failed.length > 1 ? ` (${failed.length - 1} more failed)` : "";
  return new NixpoolError(
    "BUILD_FAILED",
    `Derivation ${first.name} failed${first.builder ? ` on builder ${first.builder}` : ""}${more}.`,
    {
      hint: log
        ? `Its full log: ${log.path}; rebuild with -L to see logs as they come.`
        : "Rebuild with -L to see the build logs.",
      details: {
        derivation: first.drv,
        builder: first.builder,
        error: first.error,
        logTail: log?.tail ?? [],
        logFile: log?.path ?? null,
        failed: failed.map((f) => f.drv),
        records,
      },
    },
  );
}

/** nixpool's own CPU time (this process, not Nix or ssh) and peak memory. */
export function ownUsage(): { cpuMs: number; maxRssMb: number } {
  const u = process.resourceUsage();
  return {
    cpuMs: Math.round((u.userCPUTime + u.systemCPUTime) / 1000),
    maxRssMb: Math.round(u.maxRSS / 1024),
  };
}

export function downloadFailed(name: string, builder: string, e: unknown): NixpoolError {
  return new NixpoolError(
    "DOWNLOAD_FAILED",
    `Copying the outputs of ${name} from builder ${builder} into this machine's store failed.`,
    {
      hint: `Check the local store (nix-store --verify) and the builder: nixpool doctor ${builder}`,
      cause: e,
    },
  );
}
