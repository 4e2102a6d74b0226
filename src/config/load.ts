import { readFile } from "node:fs/promises";
import { parseTomlDocument } from "../core/toml.js";
import type { z } from "zod";
import { configError } from "../core/errors.js";
import type { Builder } from "../core/builder.js";
import { inventorySchema, normaliseBuilders, type InventoryFile } from "./schema.js";
import type { InventoryLocation } from "./paths.js";

/** The Nix system string of this machine. */
export function localSystem(): string {
  const arch = process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : process.arch;
  return `${arch}-${process.platform === "darwin" ? "darwin" : "linux"}`;
}

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

export interface LoadedInventory {
  path: string;
  exists: boolean;
  builders: Builder[];
}

/** Reads the inventory at a resolved location; an absent default inventory is empty. */
export async function loadInventory(
  loc: InventoryLocation,
  system = localSystem(),
): Promise<LoadedInventory> {
  if (!loc.exists) {
    if (loc.explicit) {
      throw configError("INVENTORY_NOT_FOUND", `Inventory ${loc.path} does not exist.`, {
        hint: `Create it (see docs/configuration.md) or import a machines file: nixpool import /etc/nix/machines --inventory ${loc.path}`,
      });
    }
    return { path: loc.path, exists: false, builders: [] };
  }
  const text = await readFile(loc.path, "utf8");
  const file = parseInventory(text, loc.path);
  return { path: loc.path, exists: true, builders: normaliseBuilders(file, system) };
}
