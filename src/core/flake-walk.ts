// How a flake attribute's value becomes derivations: the `--apply` function nixpool hands to
// `nix eval`, and the checked reading of its answer. Pure; apart from src/core/installable.ts so
// that the CLI's start-up (which parses installable flags) never loads zod.
import { z } from "zod";
import { NixpoolError } from "./errors.js";

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
  /**
   * Every member must be a derivation (a flake's checks, as `nix flake check` requires): one that
   * is not, and is no set to follow, is listed as `{attr, notDerivation: true}` instead of skipped.
   */
  strict?: boolean;
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
  // A member of the set named by the user: depth 1, or the value itself when evaluated alone.
  const topMember = select.member ? "p == []" : "builtins.length p == 1";
  const other = select.strict ? `if ${topMember} then [{ attr = p; notDerivation = true; }] else []` : "[]";
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
    `    else ${other};`,
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
    z.object({ attr: z.array(z.string()), notDerivation: z.literal(true) }),
  ]),
);

/** One entry of the walk: a derivation found at `attr` (relative to the fragment), or a member that failed. */
export type WalkEntry =
  | { attr: string[]; drv: string; out: string }
  | { attr: string[]; failed: true }
  | { attr: string[]; notDerivation: true };

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
