import { readFile } from "node:fs/promises";
import { configError } from "../core/errors.js";
import type { Builder } from "../core/builder.js";
import type { DeployTarget } from "../core/deploy/target.js";
import type { AutoscaleConfig } from "../core/autoscale/config.js";
import type { InventoryLocation } from "./paths.js";

/** The Nix system string of this machine. */
export function localSystem(): string {
  const arch = process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : process.arch;
  return `${arch}-${process.platform === "darwin" ? "darwin" : "linux"}`;
}

export interface LoadedInventory {
  path: string;
  exists: boolean;
  builders: Builder[];
  /** The `[targets.NAME]` entries (builders are targets too: see mergeTargets). */
  targets: DeployTarget[];
  /** The `[policy]` table (defaults when absent). */
  policy: { trustedOnly: string[]; untrustedResults: "accept" | "verify" | "refuse" };
  /** `[autoscale.hetzner]`, when the inventory has one (`nixpool serve` runs the autoscaler). */
  autoscale?: AutoscaleConfig;
  /** `[coordinator] database` (a PostgreSQL URL), when set. */
  database?: string;
  /** The `[hetzner]` table: snapshots of suspended workers (defaults when absent). */
  hetzner: HetznerSettings;
}

/** `[hetzner]`: how many snapshots of the pool to keep, and when any owner's gc may delete one. */
export interface HetznerSettings {
  keepSnapshots: number;
  snapshotTtlMs: number;
}

const NO_POLICY = { trustedOnly: [], untrustedResults: "accept" as const };
export const DEFAULT_HETZNER: HetznerSettings = { keepSnapshots: 2, snapshotTtlMs: 30 * 86_400_000 };

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
    return {
      path: loc.path,
      exists: false,
      builders: [],
      targets: [],
      policy: NO_POLICY,
      hetzner: DEFAULT_HETZNER,
    };
  }
  const text = await readFile(loc.path, "utf8");
  // The schema (zod, the TOML parser) loads only now that there is a file: start-up without one stays fast.
  const [{ parseInventory }, { normaliseBuilders, normaliseTargets }, { toAutoscaleConfig }] =
    await Promise.all([
      import("./inventory-parse.js"),
      import("./schema.js"),
      import("./autoscale-schema.js"),
    ]);
  const file = parseInventory(text, loc.path);
  const autoscale = file.autoscale?.hetzner;
  return {
    path: loc.path,
    exists: true,
    builders: normaliseBuilders(file, system),
    targets: normaliseTargets(file),
    policy: file.policy ?? NO_POLICY,
    ...(file.coordinator?.database !== undefined ? { database: file.coordinator.database } : {}),
    hetzner: {
      keepSnapshots: file.hetzner?.keepSnapshots ?? DEFAULT_HETZNER.keepSnapshots,
      snapshotTtlMs: file.hetzner?.snapshotTtl ?? DEFAULT_HETZNER.snapshotTtlMs,
    },
    ...(autoscale ? { autoscale: toAutoscaleConfig(autoscale) } : {}),
  };
}
