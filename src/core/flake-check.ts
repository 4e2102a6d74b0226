// nixpool check: which of a flake's outputs to build or only evaluate, and the verdict on each,
// from the evaluation and the dispatcher's records. Pure.
import type { DerivationRecord } from "./build-record.js";
import { phaseTotals } from "./build-record.js";
import type { FlakeInstallable, FlakeSelect } from "./installable.js";

/** What `nix flake check` looks at: checks are built, packages and NixOS systems evaluated (built with --all). */
export type CheckKind = "check" | "package" | "nixos";

/** One part of the flake to evaluate: its installable and how its value becomes derivations. */
export interface CheckPart {
  kind: CheckKind;
  installable: FlakeInstallable;
  select: FlakeSelect;
}

/** The parts of `ref`'s outputs that `nixpool check` evaluates, for `system`. */
export function checkParts(flake: FlakeInstallable, system: string): CheckPart[] {
  const part = (kind: CheckKind, fragment: string, toplevel = false): CheckPart => ({
    kind,
    installable: { ...flake, fragment, shown: `${flake.shown.split("#")[0] ?? "."}#${fragment}` },
    select: { deep: false, toplevel },
  });
  return [
    part("check", `checks.${system}`),
    part("package", `packages.${system}`),
    part("nixos", "nixosConfigurations", true),
  ];
}

/** A check's verdict. `evaluated`: not built (a package or system without --all), its derivation exists. */
export type CheckStatus =
  "passed" | "failed" | "dependency failed" | "eval failed" | "evaluated" | "not built";

export interface CheckRow {
  /** The attribute path (`checks.x86_64-linux.unit`). */
  name: string;
  kind: CheckKind;
  status: CheckStatus;
  drv: string | null;
  builder: string | null;
  /** Time building, summed over attempts; null when it did not build here (cached, failed early). */
  buildMs: number | null;
  cached: boolean;
  error: string | null;
}

/** An evaluated member: its attribute, kind and derivation (undefined when it failed to evaluate). */
export interface CheckMember {
  name: string;
  kind: CheckKind;
  drv?: string;
  error?: string;
  built: boolean;
}

/** The verdict on every member, from the records of the build (none when nothing was built). */
export function checkRows(members: readonly CheckMember[], records: readonly DerivationRecord[]): CheckRow[] {
  const byDrv = new Map(records.map((r) => [r.drv, r]));
  return members.map((m) => {
    const base = {
      name: m.name,
      kind: m.kind,
      drv: m.drv ?? null,
      builder: null,
      buildMs: null,
      cached: false,
    };
    if (m.drv === undefined) return { ...base, status: "eval failed", error: m.error ?? "evaluation failed" };
    if (!m.built) return { ...base, status: "evaluated", error: null };
    const r = byDrv.get(m.drv);
    if (!r) return { ...base, status: "not built", error: "the build ended before it" };
    const buildMs = phaseTotals(r).buildMs;
    const common = { ...base, builder: r.builder, buildMs: r.status === "built" ? buildMs : null };
    switch (r.status) {
      case "built":
        return { ...common, status: "passed", error: null };
      case "cached":
        return { ...common, status: "passed", cached: true, error: null };
      case "failed":
        return { ...common, status: "failed", error: r.error ?? "the build failed" };
      case "skipped":
        return { ...common, status: "dependency failed", error: r.error ?? "a dependency failed" };
      default:
        return { ...common, status: "not built", error: r.error ?? "the build ended before it" };
    }
  });
}

/** Failed, dependency failed, eval failed and not built all fail the check. */
export function isCheckFailure(row: CheckRow): boolean {
  return row.status !== "passed" && row.status !== "evaluated";
}
