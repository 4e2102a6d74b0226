import { resolve } from "node:path";
import { run } from "../adapters/runner.js";

/** One GC root to create: a link name and the store path it points to. */
export interface OutLink {
  link: string;
  path: string;
}

/**
 * The out-links of a build's roots: the first root's output is LINK; the i-th (from 0) is LINK-(i+1)
 * as nix-build names it, or LINK-i as nix build does (for flakes); an output other than "out" gets
 * "-NAME" appended (result-dev).
 */
export function outLinkNames(
  base: string,
  roots: readonly { outputName: string; path: string }[],
  style: "nix-build" | "nix build" = "nix-build",
): OutLink[] {
  const nth = (i: number) => (i === 0 ? "" : `-${style === "nix build" ? i : i + 1}`);
  return roots.map((r, i) => ({
    link: `${base}${nth(i)}${r.outputName === "out" ? "" : `-${r.outputName}`}`,
    path: r.path,
  }));
}

/** Registers each link as an indirect GC root of its (already valid) store path. */
export async function createOutLinks(links: readonly OutLink[], signal?: AbortSignal): Promise<void> {
  for (const l of links) {
    await run(["nix-store", "--realise", l.path, "--add-root", resolve(l.link), "--indirect"], {
      timeout: 60_000,
      ...(signal ? { signal } : {}),
    });
  }
}
