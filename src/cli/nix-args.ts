import type { NixArg } from "../adapters/nix-build.js";
import { ExitCode, NixpoolError } from "../core/errors.js";

/**
 * Rewrites nix-build style pairs (`--arg NAME VALUE`, `--argstr NAME VALUE`) into the single
 * `--arg=NAME=VALUE` form commander parses.
 */
export function joinNixArgPairs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if ((a === "--arg" || a === "--argstr") && i + 2 < argv.length && !(argv[i + 1] ?? "").includes("=")) {
      out.push(`${a}=${argv[i + 1] ?? ""}=${argv[i + 2] ?? ""}`);
      i += 2;
    } else out.push(a);
  }
  return out;
}

/** Commander's collector of --arg/--argstr NAME=VALUE into NixArg values (refuses a missing name). */
export function collectArg(kind: NixArg["kind"]) {
  return (raw: string, acc: NixArg[] = []): NixArg[] => {
    const eq = raw.indexOf("=");
    const name = eq > 0 ? raw.slice(0, eq) : "";
    if (!/^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name)) {
      throw new NixpoolError("USAGE", `--${kind} needs a name and a value (got "${raw}").`, {
        hint: `For example: nixpool build examples/graph.nix --${kind} ${kind === "arg" ? "n 40" : "seed abc"}`,
        exitCode: ExitCode.usage,
      });
    }
    return [...acc, { kind, name, value: raw.slice(eq + 1) }];
  };
}
