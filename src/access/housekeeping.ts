import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../adapters/runner.js";
import { planHousekeeping, type HousekeepingEntry } from "../core/access/housekeeping.js";

export interface HousekeepingOptions {
  /** Where Nix puts build directories (nix-build-*), default /tmp. */
  buildRoot: string;
  /** Parent of the builder users' home directories, default /home. */
  homeRoot: string;
  /** Members whose home directories are cleaned (listed members only: never anyone else's home). */
  users: readonly string[];
  maxAgeMs: number;
  nowMs: number;
  dryRun: boolean;
}

/** Files looked at per tree before giving up and treating it as recent (never remove what we did not see). */
const MAX_SCAN = 20_000;

/** Newest mtime anywhere in a tree, without following symlinks; undefined when too big to tell. */
async function newestMtime(path: string): Promise<number | undefined> {
  let seen = 0;
  const walk = async (p: string): Promise<number | undefined> => {
    if (++seen > MAX_SCAN) return undefined;
    const st = await lstat(p);
    let newest = st.mtimeMs;
    if (st.isDirectory()) {
      for (const child of await readdir(p).catch(() => [] as string[])) {
        const m = await walk(join(p, child));
        if (m === undefined) return undefined;
        newest = Math.max(newest, m);
      }
    }
    return newest;
  };
  return walk(path).catch(() => undefined);
}

async function scanBuildDirs(root: string): Promise<HousekeepingEntry[]> {
  const out: HousekeepingEntry[] = [];
  for (const n of await readdir(root).catch(() => [] as string[])) {
    if (!n.startsWith("nix-build-")) continue;
    const path = join(root, n);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const mtimeMs = await newestMtime(path);
    if (mtimeMs !== undefined) out.push({ path, kind: "build-dir", mtimeMs });
  }
  return out;
}

async function scanHomes(root: string, users: readonly string[]): Promise<HousekeepingEntry[]> {
  const out: HousekeepingEntry[] = [];
  for (const u of users) {
    const home = join(root, u);
    const st = await lstat(home).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    for (const n of await readdir(home).catch(() => [] as string[])) {
      // ~/.ssh may hold the member's own static keys; everything else in $HOME is fair game.
      if (n === ".ssh") continue;
      const mtimeMs = await newestMtime(join(home, n));
      if (mtimeMs !== undefined) out.push({ path: join(home, n), kind: "home-entry", mtimeMs });
    }
  }
  return out;
}

/** Finds old build directories and old entries in builder users' homes; removes them unless dryRun. */
export async function runHousekeeping(
  o: HousekeepingOptions,
): Promise<{ entries: HousekeepingEntry[]; removed: number }> {
  const found = [...(await scanBuildDirs(o.buildRoot)), ...(await scanHomes(o.homeRoot, o.users))];
  const entries = planHousekeeping(found, o.nowMs, o.maxAgeMs);
  let removed = 0;
  if (!o.dryRun) {
    for (const e of entries) {
      // GNU rm walks with openat/unlinkat and never follows a symlink a user swaps in mid-way;
      // --one-file-system keeps it off bind mounts.
      await run(["rm", "-rf", "--one-file-system", "--", e.path], { timeout: 600_000 });
      removed++;
    }
  }
  return { entries, removed };
}
