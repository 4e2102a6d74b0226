import { run } from "../adapters/runner.js";
import type { Builder } from "../core/builder.js";
import type { BuildHost } from "../core/deploy/deploy-options.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import type { FlakeOptions, Installable } from "../core/installable.js";
import { dispatchBuild } from "../dispatch/dispatch-build.js";
import type { TrustPolicy } from "../core/dispatch/trust-policy.js";
import type { DispatchEvent } from "../dispatch/run-dispatch.js";
import { evaluateDerivations, type EvaluatedRoot } from "../dispatch/evaluate.js";

/** Where a built system is: this machine's store, or the builder that built it (it stays there). */
export type SystemPlace = { kind: "local" } | { kind: "builder"; builder: Builder };

export interface BuiltSystem {
  path: string;
  place: SystemPlace;
  buildMs: number;
}

export interface SystemBuildRequest {
  buildHost: BuildHost;
  /** The pool's builders (auto), or the one named by --build-host; unused for local. */
  builders: Builder[];
  stateDir: string;
  /** One installable per system (a flake's NixOS configuration, or a Nix file with -A). */
  systems: readonly Installable[];
  flake: FlakeOptions;
  signal?: AbortSignal | undefined;
  onEvent?: (e: DispatchEvent) => void;
  /** The inventory's `[policy]` (docs/trust.md); default: none. */
  trust?: TrustPolicy;
}

function oneSystem(roots: readonly EvaluatedRoot[], i: Installable): EvaluatedRoot {
  if (roots.length === 1 && roots[0] !== undefined) return roots[0];
  const shown = i.kind === "file" ? `${i.shown}${i.attrs.map((a) => ` -A ${a}`).join("")}` : i.shown;
  throw new NixpoolError(
    "USAGE",
    `${shown} gives ${roots.length} derivations; a deploy needs exactly one system.`,
    {
      hint:
        i.kind === "flake"
          ? "Name one NixOS configuration: nixpool deploy .#HOST"
          : "Name the system's attribute, e.g.: nixpool deploy default.nix -A nixosConfigurations.web.config.system.build.toplevel",
      exitCode: ExitCode.usage,
    },
  );
}

/** The nix-build argv of a build on this machine only (no remote builders, no substituters). */
export function localBuildArgv(roots: readonly EvaluatedRoot[]): string[] {
  return [
    "nix-build",
    ...roots.map((r) => `${r.drv}!${r.output}`),
    "--no-out-link",
    "--option",
    "substituters",
    "",
    "--option",
    "builders",
    "",
    "--max-jobs",
    "auto",
  ];
}

/**
 * Builds the systems, in one graph: on this machine (local), or with nixpool's dispatcher on the
 * pool (auto) or one builder, where each result stays (it is copied to its targets from there).
 * One BuiltSystem per installable, in order.
 */
export async function buildSystems(req: SystemBuildRequest): Promise<BuiltSystem[]> {
  const t0 = Date.now();
  const roots = await Promise.all(
    req.systems.map(async (i) =>
      oneSystem(await evaluateDerivations({ installables: [i], flake: req.flake, signal: req.signal }), i),
    ),
  );
  if (req.buildHost.kind === "local") {
    const r = await run(localBuildArgv(roots), {
      timeout: 0,
      reject: false,
      ...(req.signal ? { signal: req.signal } : {}),
    });
    if (r.exitCode !== 0) {
      throw new NixpoolError(
        "BUILD_FAILED",
        `nix-build of the system failed on this machine: ${r.stderr.trim().split("\n").at(-1) ?? ""}`,
        {
          hint: `See the whole error with: nix-build ${roots.map((x) => `${x.drv}!${x.output}`).join(" ")}`,
          details: { stderr: r.stderr.trim().split("\n").slice(-10).join("\n") },
        },
      );
    }
    const outputs = r.stdout.split("\n").filter((l) => l.startsWith("/nix/store/"));
    return roots.map((_, i) => ({
      path: outputs[i] ?? "",
      place: { kind: "local" } as const,
      buildMs: Date.now() - t0,
    }));
  }
  const result = await dispatchBuild({
    builders: req.builders,
    stateDir: req.stateDir,
    source: { roots },
    outLink: null,
    copyBack: "none",
    ...(req.trust ? { trust: req.trust } : {}),
    ...(req.signal ? { signal: req.signal } : {}),
    ...(req.onEvent ? { onEvent: req.onEvent } : {}),
  });
  return roots.map((_, i) => {
    const holders = result.holders[i] ?? [];
    const builder = req.builders.find((b) => holders.includes(b.name));
    // Already in this store (built before): copied from here; else from the builder that holds it.
    const place: SystemPlace =
      holders.includes("local") || !builder ? { kind: "local" } : { kind: "builder", builder };
    return { path: result.outputs[i] ?? "", place, buildMs: Date.now() - t0 };
  });
}
