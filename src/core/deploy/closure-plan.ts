import type { PathInfo } from "../nix-serve/index.js";

/** What a closure copy must send: the paths the target lacks, references first. */
export interface ClosureCopyPlan {
  /** Paths in the closure. */
  closure: number;
  /** Paths the target lacks, each after every reference it has among them. */
  missing: string[];
  /** Sum of the missing paths' NAR sizes. */
  narBytes: number;
}

/**
 * Plans a closure copy from the source's path infos (the whole closure) and what the target
 * already holds. Throws when the infos are not a closure (a reference neither among them nor
 * on the target): sending it would fail half-way on the target.
 */
export function planClosureCopy(
  infos: readonly PathInfo[],
  validOnTarget: Iterable<string>,
): ClosureCopyPlan {
  const byPath = new Map(infos.map((i) => [i.path, i]));
  const valid = new Set(validOnTarget);
  const missing: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (path: string, from: string | undefined): void => {
    if (valid.has(path) || state.get(path) === "done") return;
    const info = byPath.get(path);
    if (!info) throw new Error(`${path} (a reference of ${from ?? "the roots"}) is not in the closure`);
    if (state.get(path) === "visiting") return; // a self-reference; Nix allows no other cycle
    state.set(path, "visiting");
    for (const r of [...info.references].sort()) if (r !== path) visit(r, path);
    state.set(path, "done");
    missing.push(path);
  };
  for (const i of [...infos].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)))
    visit(i.path, undefined);
  const narBytes = missing.reduce((sum, p) => sum + (byPath.get(p)?.narSize ?? 0), 0);
  return { closure: infos.length, missing, narBytes };
}
