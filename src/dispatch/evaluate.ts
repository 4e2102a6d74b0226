import { readFile } from "node:fs/promises";
import { run } from "../adapters/runner.js";
import { outputPaths, parseDerivation } from "../core/derivation.js";
import { ExitCode, NixpoolError, isNixpoolError } from "../core/errors.js";
import { flakeEvalError } from "../core/flake-errors.js";
import {
  derivationWalkExpr,
  FLAKE_FEATURES,
  flakeOptionArgv,
  memberLabel,
  parseWalkOutput,
  SET_MEMBERS_EXPR,
  showAttrPath,
  type FileInstallable,
  type FlakeInstallable,
  type FlakeOptions,
  type FlakeSelect,
  type Installable,
} from "../core/installable.js";
import { evalFailure, splitNixMessages } from "../core/nix-eval-errors.js";
import { z } from "zod";

/** What to evaluate: the installables of one command and the flake options they share. */
export interface EvaluateRequest {
  installables: readonly Installable[];
  flake: FlakeOptions;
  signal?: AbortSignal | undefined;
  /** Nix's warnings while evaluating (a dirty git tree, a lock file not written), each once. */
  onWarning?: ((message: string) => void) | undefined;
}

/** A derivation to build and the output the user asked for (`-A pkg.dev` names "dev"). */
export interface EvaluatedRoot {
  drv: string;
  output: string;
  /** Where it came from (`.#checks.x86_64-linux.unit`), when that says more than the derivation's name. */
  label?: string;
  /** A flake output's attribute path, relative to the flake's outputs as given (`checks.x86_64-linux.unit`). */
  attr?: string;
}

/** A member of a flake set whose evaluation failed (nixpool check reports it; a build refuses). */
export interface FailedMember {
  label: string;
  attr: string;
  error: NixpoolError;
}

const STORE_DRV = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[^/]+\.drv(!.*)?$/;

/** The nix-instantiate argv: the same file, attributes and arguments nix-build would get. */
export function instantiateArgv(i: Pick<FileInstallable, "file" | "attrs" | "args">): string[] {
  const argv = ["nix-instantiate", i.file];
  for (const a of i.attrs) argv.push("-A", a);
  for (const a of i.args) argv.push(`--${a.kind}`, a.name, a.value);
  argv.push("--option", "substituters", "");
  return argv;
}

/** The `nix eval` argv listing a flake output's derivations (see derivationWalkExpr). */
export function flakeEvalArgv(i: FlakeInstallable, flake: FlakeOptions, select: FlakeSelect): string[] {
  return [
    "nix",
    ...FLAKE_FEATURES,
    "eval",
    "--json",
    i.fragment === "" ? i.ref : `${i.ref}#${i.fragment}`,
    "--apply",
    derivationWalkExpr(select),
    "--option",
    "substituters",
    "",
    // Values are forced anyway; a cached failure would hide a fixed flake.
    "--option",
    "eval-cache",
    "false",
    ...flakeOptionArgv(flake),
  ];
}

/**
 * Evaluates every installable into derivations (written to the local store), in parallel; one
 * root per derivation, in the installables' order. A set's member that fails to evaluate fails
 * the whole evaluation, with Nix's own message for that member.
 */
export async function evaluateDerivations(req: EvaluateRequest): Promise<EvaluatedRoot[]> {
  const warn = onceEach(req.onWarning);
  await lockFlakes(req.installables, req.flake, req.signal, warn);
  const parts = await Promise.all(
    req.installables.map(async (i) => {
      if (i.kind === "file") return instantiate(i, req.signal);
      const { roots, failed } = await evaluateFlake(i, req.flake, selectFor(i), req.signal, warn);
      const first = failed[0];
      if (first) throw first.error;
      return roots;
    }),
  );
  return parts.flat();
}

/**
 * Locks each flake that several evaluations are about to read, once, before they run in parallel:
 * each would otherwise create or update its lock file (and with --commit-lock-file commit it),
 * racing the others in git ("program 'git' failed"). `nix flake metadata` locks as an evaluation
 * does, with the same flags, and evaluates no output. An error it shows for sure (the flake is
 * missing, an input unreachable) is thrown; an evaluation error is left to the evaluation.
 */
export async function lockFlakes(
  installables: readonly Installable[],
  flake: FlakeOptions,
  signal?: AbortSignal,
  onWarning?: (message: string) => void,
): Promise<void> {
  const refs = installables.flatMap((i) => (i.kind === "flake" ? [i.ref] : []));
  if (refs.length < 2 || flake.noWriteLockFile) return;
  await Promise.all(
    [...new Set(refs)].map(async (ref) => {
      const r = await run(
        ["nix", ...FLAKE_FEATURES, "flake", "metadata", "--json", ref, ...flakeOptionArgv(flake)],
        { reject: false, timeout: 0, ...(signal ? { signal } : {}) },
      );
      if (onWarning) for (const m of splitNixMessages(r.stderr)) if (m.startsWith("warning:")) onWarning(m);
      if (r.exitCode === 0) return;
      const error = flakeEvalError(r.stderr, { kind: "flake", ref, fragment: "", shown: ref });
      if (error.code !== "NIX_EVAL_FAILED") throw error;
    }),
  );
}

/** A warning callback that passes each distinct message once (every evaluation repeats them). */
export function onceEach(f: ((m: string) => void) | undefined): ((m: string) => void) | undefined {
  if (!f) return undefined;
  const seen = new Set<string>();
  return (m) => {
    if (seen.has(m)) return;
    seen.add(m);
    f(m);
  };
}

/** The set walk a fragment gets: a `hydraJobs` tree is followed all the way down, as Hydra does. */
export function selectFor(i: FlakeInstallable, toplevel = false): FlakeSelect {
  return { deep: /^hydraJobs(\.|$)/.test(i.fragment), toplevel };
}

/**
 * One flake output's derivations, and the members of a set that failed to evaluate (each with
 * Nix's message, from evaluating it alone). The output itself failing is thrown.
 */
export async function evaluateFlake(
  i: FlakeInstallable,
  flake: FlakeOptions,
  select: FlakeSelect,
  signal?: AbortSignal,
  onWarning?: (message: string) => void,
): Promise<{ roots: EvaluatedRoot[]; failed: FailedMember[] }> {
  const r = await run(flakeEvalArgv(i, flake, select), {
    reject: false,
    timeout: 0,
    ...(signal ? { signal } : {}),
  });
  if (onWarning) for (const m of splitNixMessages(r.stderr)) if (m.startsWith("warning:")) onWarning(m);
  if (r.exitCode !== 0) {
    const error = await flakeFailure(r.stderr, i, flake);
    // One member's error (other than a throw, which the walk catches) failed the whole set: each
    // member is evaluated alone, so the others still build and the failing one is named.
    const names =
      error.code === "NIX_EVAL_FAILED" && select.member !== true
        ? await setMemberNames(i, flake, signal)
        : undefined;
    if (names === undefined) throw error;
    return evaluateMembers(i, names, flake, select, signal, onWarning);
  }
  const entries = parseWalkOutput(r.stdout, i.shown);
  if (entries.length === 0) {
    throw new NixpoolError("FLAKE_NO_DERIVATIONS", `${i.shown} holds no derivation to build.`, {
      hint: `See what it is with: nix --extra-experimental-features 'nix-command flakes' eval ${i.shown}`,
      exitCode: ExitCode.usage,
    });
  }
  const roots: EvaluatedRoot[] = [];
  const failed: Promise<FailedMember>[] = [];
  for (const e of entries) {
    const label = memberLabel(i, e.attr);
    const attr = [i.fragment, showAttrPath(e.attr)].filter((s) => s !== "").join(".");
    if ("failed" in e)
      failed.push(memberError(i, e.attr, flake, select, signal).then((error) => ({ label, attr, error })));
    else roots.push({ drv: e.drv, output: e.out, label, attr });
  }
  return { roots, failed: await Promise.all(failed) };
}

/** How many members of a set are evaluated at once when its walk is split. */
const MEMBER_EVALUATIONS = 4;

/** A set's members evaluated one by one (each a `nix eval`), at most MEMBER_EVALUATIONS at a time. */
async function evaluateMembers(
  i: FlakeInstallable,
  names: readonly string[],
  flake: FlakeOptions,
  select: FlakeSelect,
  signal?: AbortSignal,
  onWarning?: (message: string) => void,
): Promise<{ roots: EvaluatedRoot[]; failed: FailedMember[] }> {
  const results: { roots: EvaluatedRoot[]; failed: FailedMember[] }[] = [];
  let next = 0;
  const worker = async () => {
    for (let n = next++; n < names.length; n = next++) {
      const name = names[n] ?? "";
      const member: FlakeInstallable = {
        ...i,
        fragment: [i.fragment, showAttrPath([name])].filter((s) => s !== "").join("."),
        shown: memberLabel(i, [name]),
      };
      results[n] = await evaluateFlake(member, flake, { ...select, member: true }, signal, onWarning).catch(
        (e: unknown) => {
          if (isNixpoolError(e) && e.code === "FLAKE_NO_DERIVATIONS") return { roots: [], failed: [] };
          if (isNixpoolError(e))
            return { roots: [], failed: [{ label: member.shown, attr: member.fragment, error: e }] };
          throw e;
        },
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(MEMBER_EVALUATIONS, names.length) }, worker));
  return { roots: results.flatMap((r) => r.roots), failed: results.flatMap((r) => r.failed) };
}

/** The names of a set's members (SET_MEMBERS_EXPR); undefined for a derivation, a non-set, or a set that fails. */
async function setMemberNames(
  i: FlakeInstallable,
  flake: FlakeOptions,
  signal?: AbortSignal,
): Promise<string[] | undefined> {
  const r = await evalApply(
    i.fragment === "" ? i.ref : `${i.ref}#${i.fragment}`,
    SET_MEMBERS_EXPR,
    flake,
    signal,
  );
  if (r.exitCode !== 0) return undefined;
  const names = z.array(z.string()).safeParse(parseJson(r.stdout));
  return names.success ? names.data : undefined;
}

/** `nix eval --json INSTALLABLE --apply F`, without substituters. */
function evalApply(installable: string, apply: string, flake: FlakeOptions, signal?: AbortSignal) {
  return run(
    [
      "nix",
      ...FLAKE_FEATURES,
      "eval",
      "--json",
      installable,
      "--apply",
      apply,
      "--option",
      "substituters",
      "",
      ...flakeOptionArgv(flake),
    ],
    { reject: false, timeout: 0, ...(signal ? { signal } : {}) },
  );
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Nix's own message for one member of a set: the member evaluated alone. */
async function memberError(
  i: FlakeInstallable,
  attr: readonly string[],
  flake: FlakeOptions,
  select: FlakeSelect,
  signal?: AbortSignal,
): Promise<NixpoolError> {
  // A NixOS configuration's member is its toplevel; evaluate that alone.
  const path = select.toplevel ? [...attr, "config", "system", "build", "toplevel"] : attr;
  const member: FlakeInstallable = {
    ...i,
    fragment: [i.fragment, showAttrPath(path)].filter((s) => s !== "").join("."),
    shown: memberLabel(i, attr),
  };
  const r = await run(flakeEvalArgv(member, flake, { deep: false, toplevel: false }), {
    reject: false,
    timeout: 0,
    ...(signal ? { signal } : {}),
  });
  if (r.exitCode !== 0) return flakeFailure(r.stderr, member, flake);
  return new NixpoolError("NIX_EVAL_FAILED", `Nix could not evaluate ${member.shown}.`, {
    hint: `Check it with: nix --extra-experimental-features 'nix-command flakes' eval --show-trace ${member.shown}`,
  });
}

/**
 * The error of a failed flake evaluation. Only an evaluation error with a position in a store
 * copy asks Nix where the flake's checkout is (a second call, which must not fetch inputs again
 * when the failure was the network).
 */
async function flakeFailure(stderr: string, i: FlakeInstallable, flake: FlakeOptions): Promise<NixpoolError> {
  const error = flakeEvalError(stderr, i);
  const inStore = /^\s*at \/nix\/store\/[0-9a-df-np-sv-z]{32}-source\//m.test(stderr);
  if (error.code !== "NIX_EVAL_FAILED" || !inStore) return error;
  return flakeEvalError(stderr, i, await flakeSource(i, flake));
}

const metadataSchema = z.object({
  path: z.string(),
  locked: z.object({ type: z.string(), path: z.string().optional(), url: z.string().optional() }),
});

/** The flake's store copy and its checkout, to name an error's position in the checkout. */
async function flakeSource(
  i: FlakeInstallable,
  flake: FlakeOptions,
): Promise<{ storePath: string; dir: string } | undefined> {
  const r = await run(
    ["nix", ...FLAKE_FEATURES, "flake", "metadata", "--json", i.ref, ...flakeOptionArgv(flake)],
    {
      reject: false,
      timeout: 60_000,
    },
  );
  if (r.exitCode !== 0) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    return undefined;
  }
  const m = metadataSchema.safeParse(json);
  if (!m.success) return undefined;
  const { locked } = m.data;
  const dir =
    locked.type === "path"
      ? locked.path
      : locked.url?.startsWith("file://")
        ? locked.url.slice(7)
        : undefined;
  return dir ? { storePath: m.data.path, dir } : undefined;
}

/** Evaluates a Nix file with nix-instantiate (its -A attributes and arguments). */
async function instantiate(i: FileInstallable, signal?: AbortSignal): Promise<EvaluatedRoot[]> {
  const result = await run(instantiateArgv(i), {
    reject: false,
    timeout: 0,
    ...(signal ? { signal } : {}),
  });
  if (result.exitCode !== 0) throw evaluationError(result.stderr, i.file);
  const drvs = result.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const bad = drvs.find((d) => !STORE_DRV.test(d));
  if (bad !== undefined || drvs.length === 0) {
    const attr = i.attrs.join(" ");
    throw new NixpoolError(
      "NIX_EVAL_FAILED",
      `nix-instantiate ${i.shown} printed no derivation path${bad ? ` (got "${bad}")` : ""}.`,
      {
        hint: `Does ${attr ? `attribute ${attr}` : "the file"} evaluate to a derivation? Try: nix-instantiate ${i.shown}`,
      },
    );
  }
  // nix-instantiate prints DRV!OUTPUT when the attribute names an output other than "out".
  return drvs.map((d) => {
    const [drv = d, output = "out"] = d.split("!");
    return { drv, output };
  });
}

/** Nix's own error (never its warnings) for an evaluation that failed. */
function evaluationError(stderr: string, file: string): NixpoolError {
  const known = evalFailure(stderr, file);
  if (known) return known;
  const nixError = splitNixMessages(stderr)
    .filter((m) => !m.startsWith("warning:"))
    .join("\n")
    .trim();
  return new NixpoolError(
    "NIX_EVAL_FAILED",
    `nix-instantiate ${file} failed: ${nixError.split("\n")[0] ?? ""}`,
    {
      hint: `Check it with: nix-instantiate --show-trace ${file}`,
      details: { file, position: null, nixError },
    },
  );
}

/**
 * The names in a flake's attribute set (e.g. its `nixosConfigurations`), without evaluating
 * them; none when the flake has no such attribute.
 */
export async function flakeAttrNames(
  i: FlakeInstallable,
  attr: string,
  flake: FlakeOptions,
  signal?: AbortSignal,
): Promise<string[]> {
  const r = await evalApply(`${i.ref}#${attr}`, "builtins.attrNames", flake, signal);
  if (r.exitCode !== 0) {
    const error = flakeEvalError(r.stderr, { ...i, fragment: attr, shown: `${i.ref}#${attr}` });
    if (error.code === "FLAKE_ATTRIBUTE_MISSING") return [];
    throw error;
  }
  const names = z.array(z.string()).safeParse(parseJson(r.stdout));
  if (!names.success) throw new NixpoolError("NIX_EVAL_FAILED", `${i.ref}#${attr} is not an attribute set.`);
  return names.data;
}

/** The store path of an evaluated root's output, read from its `.drv` (the derivation need not be built). */
export async function rootOutputPath(root: EvaluatedRoot): Promise<string> {
  const drv = parseDerivation(await readFile(root.drv, "utf8"), root.drv);
  const path = outputPaths(drv).get(root.output);
  if (path === undefined)
    throw new NixpoolError("DRV_GRAPH_INVALID", `${root.drv} has no output ${root.output}.`, {
      hint: `See its outputs with: nix show-derivation ${root.drv}`,
    });
  return path;
}
