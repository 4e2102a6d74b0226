// What a user names to build: a flake reference with an attribute (`.#hello`), a bare flake
// (`.`), or a Nix file with -A/--arg/--argstr, as `nix build` and `nix-build` take them. Pure:
// the file-system facts a decision needs are gathered by the caller (src/dispatch/installables.ts).
import { z } from "zod";
import { ExitCode, NixpoolError } from "./errors.js";

/** A `--arg NAME EXPR` or `--argstr NAME VALUE` for a Nix file. */
export interface NixArg {
  kind: "arg" | "argstr";
  name: string;
  value: string;
}

/** A Nix file (nix-build's installable): its attributes (-A) and arguments. */
export interface FileInstallable {
  kind: "file";
  /** Absolute path of the file (or of a directory holding default.nix). */
  file: string;
  /** As the user typed it, for messages and labels. */
  shown: string;
  attrs: readonly string[];
  args: readonly NixArg[];
}

/** A flake output (nix build's installable): `REF#FRAGMENT`, or a bare `REF` for its default package. */
export interface FlakeInstallable {
  kind: "flake";
  /** The flake reference as Nix gets it; a local path is made absolute. */
  ref: string;
  /** The attribute after `#`; "" for the default package. */
  fragment: string;
  shown: string;
}

export type Installable = FileInstallable | FlakeInstallable;

/** What the file system says of a local path, gathered by the caller before parsing. */
export type PathFacts =
  { exists: false } | { exists: true; isDirectory: boolean; hasFlakeNix: boolean; hasDefaultNix: boolean };

/** The flake options passed through to Nix (those Nix 2.8 has), and the system to resolve for. */
export interface FlakeOptions {
  /** `--system`: the system whose packages a fragment resolves to (default: this machine's). */
  system?: string | undefined;
  overrideInputs: readonly { input: string; ref: string }[];
  updateInputs: readonly string[];
  noWriteLockFile: boolean;
  noUpdateLockFile: boolean;
  recreateLockFile: boolean;
  commitLockFile: boolean;
  refresh: boolean;
  impure: boolean;
}

export const NO_FLAKE_OPTIONS: FlakeOptions = {
  overrideInputs: [],
  updateInputs: [],
  noWriteLockFile: false,
  noUpdateLockFile: false,
  recreateLockFile: false,
  commitLockFile: false,
  refresh: false,
  impure: false,
};

/** A URL-like flake reference: `path:`, `git+file:`, `github:`, `flake:` … */
const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/;

/** The local path a flake reference names (`.`, `./dir`, `/abs`, `~/x`), or undefined for a URL or registry name. */
export function localFlakePath(ref: string): string | undefined {
  if (SCHEME.test(ref)) return undefined;
  if (ref === "" || ref === "." || ref === ".." || /^(\.{1,2}\/|\/|~\/)/.test(ref)) return ref || ".";
  return undefined;
}

/**
 * The installable a command-line word names. A word with `#`, or a URL (`path:…`), is a flake
 * reference; a directory with a flake.nix (or with neither flake.nix nor default.nix: Nix looks for
 * a flake.nix above it) is a flake; a file, or a directory with only a default.nix, is a Nix file
 * (as nix-build takes it); a word that names nothing on disk is a
 * Nix file when it looks like a path (`x.nix`, `a/b`), else a flake registry name (`nixpkgs#hello`).
 * `abs` is the word's path made absolute; `facts` what the file system says of it.
 */
export function parseInstallable(
  text: string,
  abs: string,
  facts: PathFacts,
  file: { attrs: readonly string[]; args: readonly NixArg[] },
): Installable {
  if (text.trim() === "") {
    throw new NixpoolError("USAGE", "An installable is empty.", {
      hint: "Name a flake output (.#hello), a flake (.), or a Nix file (default.nix -A pkg).",
      exitCode: ExitCode.usage,
    });
  }
  const hash = text.indexOf("#");
  const local = hash < 0 && !SCHEME.test(text);
  if (local && facts.exists) {
    // Without a default.nix, a directory is a flake reference as nix build reads it: Nix searches
    // the parent directories for the flake.nix (`nixpool build .` in a flake's src/), or says none.
    if (facts.isDirectory && (facts.hasFlakeNix || !facts.hasDefaultNix)) return flake(abs, "", text);
    if (!facts.isDirectory && /(^|\/)flake\.nix$/.test(text)) {
      const dir = text.replace(/(^|\/)flake\.nix$/, "") || ".";
      throw new NixpoolError("USAGE", `${text} is a flake, not a Nix file to build.`, {
        hint: `Build one of its outputs: nixpool build ${dir}#PACKAGE (or ${dir} for its default package)`,
        exitCode: ExitCode.usage,
      });
    }
    return { kind: "file", file: abs, shown: text, attrs: file.attrs, args: file.args };
  }
  if (local && (/\.nix$/.test(text) || text.includes("/"))) {
    // Missing: nix-instantiate names it (NIX_FILE_NOT_FOUND), as before flakes.
    return { kind: "file", file: abs, shown: text, attrs: file.attrs, args: file.args };
  }
  const ref = hash < 0 ? text : text.slice(0, hash);
  const fragment = hash < 0 ? "" : text.slice(hash + 1);
  const path = localFlakePath(ref);
  return flake(path === undefined ? ref : abs, fragment, text);
}

function flake(ref: string, fragment: string, shown: string): FlakeInstallable {
  return { kind: "flake", ref, fragment, shown };
}

/** -A and --arg belong to Nix files: refused when every installable is a flake (Nix refuses them too). */
export function checkFileOptions(
  installables: readonly Installable[],
  file: { attrs: readonly string[]; args: readonly NixArg[] },
): void {
  if (installables.some((i) => i.kind === "file")) return;
  const flag = file.attrs.length ? "-A" : file.args.length ? `--${file.args[0]?.kind ?? "arg"}` : undefined;
  if (flag === undefined) return;
  const first = installables[0];
  throw new NixpoolError(
    "FLAG_CONFLICT",
    `${flag} is for Nix files; ${first?.shown ?? "a flake"} is a flake.`,
    {
      hint:
        flag === "-A"
          ? `Name the attribute after '#': nixpool build ${first?.kind === "flake" ? (first.shown.split("#")[0] ?? ".") : "."}#${file.attrs[0] ?? "ATTR"}`
          : "A flake takes no arguments: put the value in flake.nix, or pass an input with --override-input.",
      exitCode: ExitCode.usage,
    },
  );
}

/** Flake options make no sense without a flake: refused, as Nix ignores them for a Nix file. */
export function checkFlakeOptions(installables: readonly Installable[], o: FlakeOptions): void {
  if (installables.some((i) => i.kind === "flake")) return;
  const used = [
    o.overrideInputs.length ? "--override-input" : undefined,
    o.updateInputs.length ? "--update-input" : undefined,
    o.noWriteLockFile ? "--no-write-lock-file" : undefined,
    o.noUpdateLockFile ? "--no-update-lock-file" : undefined,
    o.recreateLockFile ? "--recreate-lock-file" : undefined,
    o.commitLockFile ? "--commit-lock-file" : undefined,
  ].find((f) => f !== undefined);
  if (used === undefined) return;
  throw new NixpoolError("FLAG_CONFLICT", `${used} is for flakes, and no installable is a flake.`, {
    hint: "Name a flake output, e.g.: nixpool build .#hello --override-input dep path:/src/dep",
    exitCode: ExitCode.usage,
  });
}

/** A system double as Nix spells it (`x86_64-linux`); it is put into a Nix expression, so it is checked. */
export function parseSystem(v: string): string {
  if (/^[a-z0-9_]+-[a-z0-9_]+$/.test(v)) return v;
  throw new NixpoolError("USAGE", `--system must be a system such as x86_64-linux (got "${v}").`, {
    hint: "For example: nixpool build .#hello --system aarch64-linux",
    exitCode: ExitCode.usage,
  });
}

/** The attribute paths Nix tries for a fragment, in its order (Nix 2.8, installables.cc). */
export function flakeAttrCandidates(fragment: string, system: string): string[] {
  if (fragment === "") return [`packages.${system}.default`, `defaultPackage.${system}`];
  return [`packages.${system}.${fragment}`, `legacyPackages.${system}.${fragment}`, fragment];
}

/** The `--extra-experimental-features` every flake call carries, so nix.conf needs no edit. */
export const FLAKE_FEATURES = ["--extra-experimental-features", "nix-command flakes"] as const;

/** The lock-file and input flags, as `nix` takes them. */
export function flakeOptionArgv(o: FlakeOptions): string[] {
  const argv: string[] = [];
  for (const { input, ref } of o.overrideInputs) argv.push("--override-input", input, ref);
  for (const input of o.updateInputs) argv.push("--update-input", input);
  if (o.noWriteLockFile) argv.push("--no-write-lock-file");
  if (o.noUpdateLockFile) argv.push("--no-update-lock-file");
  if (o.recreateLockFile) argv.push("--recreate-lock-file");
  if (o.commitLockFile) argv.push("--commit-lock-file");
  if (o.refresh) argv.push("--refresh");
  if (o.impure) argv.push("--impure");
  if (o.system !== undefined) argv.push("--option", "system", o.system);
  return argv;
}

/**
 * How a flake attribute's value becomes derivations. `toplevel` maps a set of NixOS
 * configurations to their `config.system.build.toplevel`; `deep` follows every nested set (a
 * `hydraJobs` tree), otherwise nested sets are followed only with `recurseForDerivations`, as
 * nix-build does.
 */
export interface FlakeSelect {
  deep: boolean;
  toplevel: boolean;
  /**
   * The value is one member of a set, evaluated alone (after the set's walk failed): its nested
   * sets are followed as the set's walk follows them, and a NixOS configuration is its toplevel.
   */
  member?: boolean;
}

/**
 * The `--apply` function naming a set's members, or null for a derivation or a non-set: what a
 * failed walk is split into. Evaluating it forces neither the members nor a derivation's fields.
 */
export const SET_MEMBERS_EXPR =
  'v: if builtins.isAttrs v && (v.type or null) != "derivation" then builtins.attrNames v else null';

/**
 * The `--apply` function that lists a value's derivations as `{attr, drv, out}` (its `.drv` is
 * written to the store as Nix evaluates drvPath). A member of a set whose evaluation throws is
 * listed as `{attr, failed: true}` so the others still build; the value itself fails with Nix's
 * own message. (Nix 2.8's tryEval catches only `throw` and `assert`: any other error in a member
 * fails the whole walk, which the caller then splits into its members, SET_MEMBERS_EXPR.)
 */
export function derivationWalkExpr(select: FlakeSelect): string {
  const pre = !select.toplevel
    ? "v"
    : select.member
      ? "v.config.system.build.toplevel"
      : "builtins.mapAttrs (n: c: c.config.system.build.toplevel) v";
  // A set named by the user is always entered; a member evaluated alone is a nested set.
  const entered = select.member ? "false" : "p == []";
  return [
    "v: let",
    '  isDrv = x: builtins.isAttrs x && (x.type or null) == "derivation";',
    '  one = p: x: [{ attr = p; drv = x.drvPath; out = x.outputName or "out"; }];',
    "  guarded = p: x: let t = builtins.tryEval (let l = walk p x; in builtins.deepSeq l l); in",
    "    if t.success then t.value else [{ attr = p; failed = true; }];",
    "  walk = p: x:",
    "    if isDrv x then one p x",
    `    else if builtins.isAttrs x && (${entered} || ${select.deep ? "true" : "false"} || (x.recurseForDerivations or false))`,
    "    then builtins.concatMap (n: guarded (p ++ [n]) x.${n}) (builtins.attrNames x)",
    "    else [];",
    `in walk [] (${pre})`,
  ].join("\n");
}

const STORE_DRV = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[^/]+\.drv$/;

const walkSchema = z.array(
  z.union([
    z.object({
      attr: z.array(z.string()),
      drv: z.string().regex(STORE_DRV),
      out: z.string().regex(/^[a-zA-Z0-9+._?=-]+$/),
    }),
    z.object({ attr: z.array(z.string()), failed: z.literal(true) }),
  ]),
);

/** One entry of the walk: a derivation found at `attr` (relative to the fragment), or a member that failed. */
export type WalkEntry = { attr: string[]; drv: string; out: string } | { attr: string[]; failed: true };

/** Parses what `nix eval --json --apply WALK` printed; NIX_EVAL_FAILED (with what came) when it is not that. */
export function parseWalkOutput(stdout: string, what: string): WalkEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  const parsed = walkSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  throw new NixpoolError("NIX_EVAL_FAILED", `nix eval ${what} printed something other than derivations.`, {
    hint: `See what it gives with: nix eval --json ${what}`,
    details: { stdout: stdout.slice(0, 500) },
  });
}

/** An attribute path as Nix prints it: names that are not identifiers are quoted. */
export function showAttrPath(path: readonly string[]): string {
  return path.map((n) => (/^[a-zA-Z_][a-zA-Z0-9_'-]*$/.test(n) ? n : JSON.stringify(n))).join(".");
}

/** `REF#FRAGMENT.SUB` for a member of a set (as typed when the member is the installable itself). */
export function memberLabel(i: FlakeInstallable, attr: readonly string[]): string {
  if (attr.length === 0) return i.shown;
  const base = i.shown.includes("#") ? i.shown : `${i.shown}#`;
  const sep = base.endsWith("#") ? "" : ".";
  return `${base}${sep}${showAttrPath(attr)}`;
}

/** nix build names out-links result, result-1, …; nix-build result, result-2, …: flakes follow nix build. */
export function outLinkStyle(installables: readonly Installable[]): "nix build" | "nix-build" {
  return installables.some((i) => i.kind === "flake") ? "nix build" : "nix-build";
}

/** A short label for a whole build (history, dashboard, timeline title). */
export function installablesLabel(installables: readonly Installable[]): string {
  return installables
    .map((i) => (i.kind === "flake" ? flakeLabel(i) : `${i.file}${i.attrs.map((a) => ` -A ${a}`).join("")}`))
    .join(" ");
}

/** The flake output as another machine could name it: an absolute reference and the fragment. */
export function flakeLabel(i: FlakeInstallable): string {
  return i.fragment === "" ? i.ref : `${i.ref}#${i.fragment}`;
}

/** A Nix file as an installable (absolute `file`), for callers that name one directly. */
export function fileInstallable(
  file: string,
  attrs: readonly string[] = [],
  args: readonly NixArg[] = [],
): FileInstallable {
  return { kind: "file", file, shown: file, attrs, args };
}
