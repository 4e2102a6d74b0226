import type { z } from "zod";
import { parseTomlDocument } from "../core/toml.js";
import { configError } from "../core/errors.js";
import { inventorySchema, type InventoryFile } from "./schema.js";

// Parsing and validating inventory text. Loaded only when there is a file to read (load.ts):
// the schema brings zod and the TOML parser, which a command with no inventory does not need.

/** Formats one zod issue path the way users see it: builders.b1.maxJobs */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`))
    .join("");
}

export function formatZodIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const path = formatIssuePath(i.path);
    let message = i.message;
    if (i.code === "unrecognized_keys")
      message = `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.join(", ")}`;
    if (i.code === "invalid_type" && message.startsWith("Invalid input")) message = `must be ${i.expected}`;
    return path ? `${path}: ${message}` : message;
  });
}

/** Parses and validates inventory text; throws CONFIG_INVALID / CONFIG_SYNTAX naming file, path and line:col. */
export function parseInventory(text: string, file: string): InventoryFile {
  const raw = parseTomlDocument(text, file, "CONFIG_SYNTAX");
  const result = inventorySchema.safeParse(raw);
  if (!result.success) {
    const problems = formatZodIssues(result.error);
    throw configError(
      "CONFIG_INVALID",
      `${file}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join("\n  ")}`}`,
      { hint: `Edit ${file}; see docs/configuration.md for every field.`, details: { file, problems } },
    );
  }
  return result.data;
}
