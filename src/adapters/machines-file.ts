import { readFileIfExists } from "./fs.js";
import { parseMachinesFile, type IncludeRead, type ParseMachinesResult } from "../core/machines-parse.js";

/** Reads a file for the machines parser: ENOENT is "missing" (Nix ignores it), anything else an error. */
export async function readMachinesInclude(path: string): Promise<IncludeRead> {
  try {
    const text = await readFileIfExists(path);
    return text === undefined ? { kind: "missing" } : { kind: "text", text };
  } catch (e) {
    return { kind: "error", message: (e as NodeJS.ErrnoException).code ?? String(e) };
  }
}

/** One file the machines parser asked for, and whether it was there. */
export interface MachinesFileRead {
  path: string;
  exists: boolean;
}

/**
 * Parses a machines file's text (or a `builders` value, named by `label`) and its `@include`s
 * from disk, exactly as Nix 2.8's build hook does; also lists every include it looked for.
 */
export async function loadMachines(
  label: string,
  text: string,
): Promise<ParseMachinesResult & { includes: MachinesFileRead[] }> {
  const includes: MachinesFileRead[] = [];
  const parsed = await parseMachinesFile(label, text, {
    read: async (path) => {
      const r = await readMachinesInclude(path);
      includes.push({ path, exists: r.kind !== "missing" });
      return r;
    },
  });
  return { ...parsed, includes };
}
