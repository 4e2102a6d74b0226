import type { Builder } from "../core/builder.js";
import { configError } from "../core/errors.js";
import { mergeTargets, selectTargets, type DeployTarget } from "../core/deploy/target.js";
import { loadInventory, type LoadedInventory } from "../config/load.js";
import { resolveInventoryPath, resolveStateDir } from "../config/paths.js";
import { stdOutput, type Output } from "./output.js";

/** A source of builders beyond the inventory file (local pool, cloud workers), read from the state directory. */
export type BuilderSourceReader = (stateDir: string) => Promise<Builder[]>;

export interface GlobalFlags {
  inventory?: string;
  stateDir?: string;
}

/** What every command gets: resolved paths, the builders of the pool, and where to print. */
export class Context {
  readonly output: Output;
  readonly stateDir: string;
  readonly inventoryFlag: string | undefined;
  readonly builderSources: readonly BuilderSourceReader[];

  constructor(
    flags: GlobalFlags,
    builderSources: readonly BuilderSourceReader[],
    output: Output = stdOutput,
  ) {
    this.output = output;
    this.builderSources = builderSources;
    this.stateDir = resolveStateDir(flags.stateDir);
    this.inventoryFlag = flags.inventory;
  }

  inventoryLocation() {
    return resolveInventoryPath(this.inventoryFlag);
  }

  async loadInventory(): Promise<LoadedInventory> {
    return loadInventory(this.inventoryLocation());
  }

  /** Builders of the other sources only (local pool, workers), without reading the inventory. */
  async sourceBuilders(): Promise<Builder[]> {
    const all: Builder[] = [];
    for (const read of this.builderSources) all.push(...(await read(this.stateDir)));
    return all;
  }

  /** Every deploy target: the inventory's `[targets.NAME]`, then every builder not shadowed by one. */
  async targets(): Promise<DeployTarget[]> {
    const inv = await this.loadInventory();
    return mergeTargets(inv.targets, await this.builders());
  }

  /** The targets named on the command line (at least one); TARGET_UNKNOWN for a name that is none. */
  async selectTargets(names: readonly string[]): Promise<DeployTarget[]> {
    return selectTargets(await this.targets(), names);
  }

  /** Every builder: the inventory's, the local pool's and rented workers'; names must be unique. */
  async builders(): Promise<Builder[]> {
    const inv = await this.loadInventory();
    const all = [...inv.builders, ...(await this.sourceBuilders())];
    const seen = new Map<string, Builder>();
    for (const b of all) {
      const other = seen.get(b.name);
      if (other) {
        throw configError(
          "BUILDER_NAME_CLASH",
          `Builder name "${b.name}" is used twice (by the ${other.source} and by the ${b.source} builders).`,
          { hint: `Rename the builder in ${inv.path}.` },
        );
      }
      seen.set(b.name, b);
    }
    return all;
  }

  /** The builders named on the command line, or all when none are named. */
  async selectBuilders(names: readonly string[]): Promise<Builder[]> {
    const all = await this.builders();
    if (names.length === 0) return all;
    return names.map((n) => {
      const b = all.find((x) => x.name === n);
      if (!b)
        throw configError("BUILDER_UNKNOWN", `No builder is named "${n}".`, {
          hint: "List the builders with: nixpool builders",
        });
      return b;
    });
  }
}
