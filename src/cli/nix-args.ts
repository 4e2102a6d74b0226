import type { Command } from "commander";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { parseSystem, type FlakeOptions, type NixArg } from "../core/installable.js";

/** Options that take two values on Nix's command line (`--arg NAME VALUE`, `--override-input INPUT REF`). */
const PAIRED = new Set(["--arg", "--argstr", "--override-input"]);

/**
 * Rewrites Nix style pairs (`--arg NAME VALUE`, `--argstr NAME VALUE`, `--override-input INPUT
 * REF`) into the single `--arg=NAME=VALUE` form commander parses.
 */
export function joinNixArgPairs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (PAIRED.has(a) && i + 2 < argv.length && !(argv[i + 1] ?? "").includes("=")) {
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

function collectOverride(raw: string, acc: { input: string; ref: string }[] = []) {
  const eq = raw.indexOf("=");
  const input = eq > 0 ? raw.slice(0, eq) : "";
  if (!/^[A-Za-z0-9_'-]+(\/[A-Za-z0-9_'-]+)*$/.test(input) || eq === raw.length - 1) {
    throw new NixpoolError("USAGE", `--override-input needs an input and a flake reference (got "${raw}").`, {
      hint: "For example: nixpool build .#hello --override-input nixpkgs path:/src/nixpkgs",
      exitCode: ExitCode.usage,
    });
  }
  return [...acc, { input, ref: raw.slice(eq + 1) }];
}

function collectString(value: string, acc: string[] = []): string[] {
  return [...acc, value];
}

/** The flags of commands that take installables: Nix files (-A, --arg, --argstr) and flakes. */
export interface InstallableFlags {
  attr?: string[];
  arg?: NixArg[];
  argstr?: NixArg[];
  system?: string;
  overrideInput?: { input: string; ref: string }[];
  updateInput?: string[];
  writeLockFile?: boolean;
  updateLockFile?: boolean;
  recreateLockFile?: boolean;
  commitLockFile?: boolean;
  refresh?: boolean;
  impure?: boolean;
}

/** Adds -A/--arg/--argstr and the flake options Nix 2.8 has to a command that takes installables. */
export function addInstallableOptions(cmd: Command, example: string): Command {
  cmd
    .option("-A, --attr <attr>", "attribute of a Nix file to build (repeatable)", collectString)
    .option("--arg <name=expr>", "pass a Nix expression argument (also: --arg NAME EXPR)", collectArg("arg"))
    .option(
      "--argstr <name=value>",
      "pass a string argument (also: --argstr NAME VALUE)",
      collectArg("argstr"),
    );
  return addFlakeOptions(cmd, example);
}

/** Adds the flake options Nix 2.8 has (--system, --override-input, the lock-file flags). */
export function addFlakeOptions(cmd: Command, example: string): Command {
  return cmd
    .option("--system <system>", `resolve flake outputs for this system, e.g. ${example}`)
    .option(
      "--override-input <input=ref>",
      "use this flake for an input (also: --override-input INPUT REF)",
      collectOverride,
    )
    .option("--update-input <input>", "update this input of the lock file (repeatable)", collectString)
    .option("--no-write-lock-file", "do not write the flake's lock file")
    .option("--no-update-lock-file", "refuse any change to the flake's lock file")
    .option("--recreate-lock-file", "recreate the flake's lock file from scratch")
    .option("--commit-lock-file", "commit changes to the flake's lock file")
    .option("--refresh", "fetch the latest version of inputs instead of cached ones")
    .option("--impure", "allow access to the environment and unlocked paths while evaluating");
}

/** -A and the arguments, for the Nix files among the installables. */
export function fileOptionsOf(flags: InstallableFlags): { attrs: string[]; args: NixArg[] } {
  return { attrs: flags.attr ?? [], args: [...(flags.arg ?? []), ...(flags.argstr ?? [])] };
}

/** The flake options of the command line. */
export function flakeOptionsOf(flags: InstallableFlags): FlakeOptions {
  return {
    ...(flags.system !== undefined ? { system: parseSystem(flags.system) } : {}),
    overrideInputs: flags.overrideInput ?? [],
    updateInputs: flags.updateInput ?? [],
    noWriteLockFile: flags.writeLockFile === false,
    noUpdateLockFile: flags.updateLockFile === false,
    recreateLockFile: flags.recreateLockFile === true,
    commitLockFile: flags.commitLockFile === true,
    refresh: flags.refresh === true,
    impure: flags.impure === true,
  };
}
