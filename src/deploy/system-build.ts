import { resolve } from "node:path";
import type { NixArg } from "../adapters/nix-build.js";
import { run } from "../adapters/runner.js";
import type { Builder } from "../core/builder.js";
import type { BuildHost } from "../core/deploy/deploy-options.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { dispatchBuild } from "../dispatch/dispatch-build.js";
import type { TrustPolicy } from "../core/dispatch/trust-policy.js";
import type { DispatchEvent } from "../dispatch/run-dispatch.js";
import { instantiateArgv } from "../dispatch/evaluate.js";

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
  file: string;
  attr?: string | undefined;
  args: readonly NixArg[];
  signal?: AbortSignal | undefined;
  onEvent?: (e: DispatchEvent) => void;
  /** The inventory's `[policy]` (docs/trust.md); default: none. */
  trust?: TrustPolicy;
}

function oneSystem(outputs: readonly string[], req: SystemBuildRequest): string {
  if (outputs.length === 1 && outputs[0] !== undefined) return outputs[0];
  throw new NixpoolError(
    "USAGE",
    `${req.file}${req.attr ? ` -A ${req.attr}` : ""} gives ${outputs.length} outputs; a deploy needs exactly one system.`,
    {
      hint: "Name the system's attribute, e.g.: nixpool deploy default.nix -A nixosConfigurations.web.config.system.build.toplevel",
      exitCode: ExitCode.usage,
    },
  );
}

/** The nix-build argv of a build on this machine only (no remote builders, no substituters). */
export function localBuildArgv(req: Pick<SystemBuildRequest, "file" | "attr" | "args">): string[] {
  const [, ...rest] = instantiateArgv(req);
  return ["nix-build", ...rest, "--no-out-link", "--option", "builders", "", "--max-jobs", "auto"];
}

/**
 * Builds the system: on this machine (local), or with nixpool's dispatcher on the pool (auto) or
 * one builder, where the result stays (it is copied to the targets from there).
 */
export async function buildSystem(req: SystemBuildRequest): Promise<BuiltSystem> {
  const t0 = Date.now();
  if (req.buildHost.kind === "local") {
    const r = await run(localBuildArgv({ ...req, file: resolve(req.file) }), {
      timeout: 0,
      reject: false,
      ...(req.signal ? { signal: req.signal } : {}),
    });
    if (r.exitCode !== 0) {
      throw new NixpoolError(
        "BUILD_FAILED",
        `nix-build ${req.file} failed on this machine: ${r.stderr.trim().split("\n").at(-1) ?? ""}`,
        {
          hint: `See the whole error with: nix-build ${req.file}${req.attr ? ` -A ${req.attr}` : ""}`,
          details: { stderr: r.stderr.trim().split("\n").slice(-10).join("\n") },
        },
      );
    }
    const outputs = r.stdout.split("\n").filter((l) => l.startsWith("/nix/store/"));
    return { path: oneSystem(outputs, req), place: { kind: "local" }, buildMs: Date.now() - t0 };
  }
  const result = await dispatchBuild({
    builders: req.builders,
    stateDir: req.stateDir,
    file: req.file,
    attr: req.attr,
    args: req.args,
    outLink: null,
    copyBack: "none",
    ...(req.trust ? { trust: req.trust } : {}),
    ...(req.signal ? { signal: req.signal } : {}),
    ...(req.onEvent ? { onEvent: req.onEvent } : {}),
  });
  const path = oneSystem(result.outputs, req);
  const holders = result.holders[0] ?? [];
  const builder = req.builders.find((b) => holders.includes(b.name));
  // Already in this store (built before): copied from here; else from the builder that holds it.
  const place: SystemPlace =
    holders.includes("local") || !builder ? { kind: "local" } : { kind: "builder", builder };
  return { path, place, buildMs: Date.now() - t0 };
}
