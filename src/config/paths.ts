import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

export interface PathEnv {
  env: Record<string, string | undefined>;
  cwd: string;
  uid: number;
}

export function currentPathEnv(): PathEnv {
  return { env: process.env, cwd: process.cwd(), uid: process.getuid?.() ?? 1000 };
}

/** --state-dir, else NIXPOOL_STATE_DIR, else /var/lib/nixpool for root, else $XDG_STATE_HOME/nixpool. */
export function resolveStateDir(flag: string | undefined, p: PathEnv = currentPathEnv()): string {
  if (flag) return resolve(p.cwd, flag);
  const fromEnv = p.env["NIXPOOL_STATE_DIR"];
  if (fromEnv) return resolve(p.cwd, fromEnv);
  if (p.uid === 0) return "/var/lib/nixpool";
  const xdg = p.env["XDG_STATE_HOME"] || join(p.env["HOME"] ?? homedir(), ".local", "state");
  return join(xdg, "nixpool");
}

/** The user's config directory copy of the inventory. */
export function userInventoryPath(p: PathEnv = currentPathEnv()): string {
  const xdg = p.env["XDG_CONFIG_HOME"] || join(p.env["HOME"] ?? homedir(), ".config");
  return join(xdg, "nixpool", "nixpool.toml");
}

export interface InventoryLocation {
  path: string;
  /** Whether the file exists; an absent default inventory means "pool only". */
  exists: boolean;
  explicit: boolean;
}

/** --inventory PATH, else ./nixpool.toml, else the user's config directory. */
export function resolveInventoryPath(
  flag: string | undefined,
  p: PathEnv = currentPathEnv(),
): InventoryLocation {
  if (flag) {
    const path = resolve(p.cwd, flag);
    return { path, exists: existsSync(path), explicit: true };
  }
  const local = join(p.cwd, "nixpool.toml");
  if (existsSync(local)) return { path: local, exists: true, explicit: false };
  const user = userInventoryPath(p);
  return { path: user, exists: existsSync(user), explicit: false };
}
