import { parseMachinesFile, type IncludeRead } from "../../src/core/machines-parse.js";

/**
 * An include reader over an in-memory file system: `files` maps a path to its text, `errors` a
 * path to the error reading it gives; any other path is missing.
 */
export function memoryReader(
  files: Record<string, string> = {},
  errors: Record<string, string> = {},
): (path: string) => Promise<IncludeRead> {
  return (path) => {
    const err = errors[path];
    if (err !== undefined) return Promise.resolve({ kind: "error", message: err });
    const t = files[path];
    return Promise.resolve(t === undefined ? { kind: "missing" } : { kind: "text", text: t });
  };
}

/** Parses `text` as /etc/nix/machines, its includes read from `files` (and `errors`). */
export function parseInMemory(
  text: string,
  files: Record<string, string> = {},
  errors: Record<string, string> = {},
) {
  return parseMachinesFile("/etc/nix/machines", text, { read: memoryReader(files, errors) });
}
