import { z } from "zod";
import { isDerivationPath, isStorePath } from "./store-path.js";

// `nix path-info --json`: Nix before 2.19 prints an array of objects with a `path`; Nix 2.19 and
// later an object keyed by store path (null for a path that is not valid).

const entry = z.object({ deriver: z.string().nullish() }).passthrough();
const pathInfoJson = z.union([
  z.array(entry.extend({ path: z.string() })),
  z.record(z.string(), entry.nullable()),
]);

/** One valid path and its deriver (undefined: none recorded). */
export interface PathInfoEntry {
  path: string;
  deriver: string | undefined;
}

/** The entries of `nix path-info --json`'s output in either shape; undefined when it is neither. */
export function parsePathInfoJson(text: string): PathInfoEntry[] | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = pathInfoJson.safeParse(json);
  if (!parsed.success) return undefined;
  const d = parsed.data;
  if (Array.isArray(d)) return d.map((p) => ({ path: p.path, deriver: p.deriver ?? undefined }));
  return Object.entries(d).flatMap(([path, info]) =>
    info === null ? [] : [{ path, deriver: info.deriver ?? undefined }],
  );
}

/** The outputs of builds among them: store paths with a deriver, derivations excluded. */
export function builtOutputs(entries: readonly PathInfoEntry[]): string[] {
  return entries
    .filter((p) => p.deriver !== undefined && isStorePath(p.path) && !isDerivationPath(p.path))
    .map((p) => p.path);
}
