import { mkdir, readFile, readdir, rm } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import {
  AUTHORIZED_KEYS_MARKER,
  renderAuthorizedKeysFile,
  type AccessProtocol,
  type IndexEntry,
} from "../core/access/authorized-keys.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { configError } from "../core/errors.js";
import type { AccessPaths } from "./paths.js";

/** Where `access sync --write DIR` writes; remembered so that add and remove update it at once. */
export interface StaticTarget {
  dir: string;
  protocol: AccessProtocol;
}

/** The remembered --write target, if `access sync --write` ever ran for this state directory. */
export async function readStaticTarget(paths: AccessPaths): Promise<StaticTarget | undefined> {
  const text = await readFileIfExists(paths.staticTarget);
  if (text === undefined) return undefined;
  let raw: Partial<StaticTarget> | undefined;
  try {
    raw = JSON.parse(text) as Partial<StaticTarget>;
  } catch {
    raw = undefined;
  }
  if (
    typeof raw?.dir !== "string" ||
    !isAbsolute(raw.dir) ||
    (raw.protocol !== "ssh-ng" && raw.protocol !== "ssh")
  ) {
    throw configError("ACCESS_STATE_DAMAGED", `${paths.staticTarget} is damaged.`, {
      hint: "Write the static files again: nixpool access sync --write DIR",
    });
  }
  return { dir: raw.dir, protocol: raw.protocol };
}

/** Removes DIR/NAME if nixpool wrote it (its first line says so); true when removed. */
async function removeStaticFile(dir: string, name: string): Promise<boolean> {
  const head = await readFile(join(dir, name), "utf8").catch(() => "");
  if (!head.startsWith(AUTHORIZED_KEYS_MARKER)) return false;
  await rm(join(dir, name), { force: true });
  return true;
}

/**
 * Writes these members' authorized_keys files into the target directory (each atomically: temp
 * file and rename, 0644 since sshd reads it as the member) and removes nixpool's files of the
 * `removed` members; returns how many files changed.
 */
export async function updateStaticFiles(
  target: StaticTarget,
  entries: readonly IndexEntry[],
  removed: readonly string[],
  nowMs: number,
): Promise<{ written: number; removed: number }> {
  await mkdir(target.dir, { recursive: true, mode: 0o755 });
  let gone = 0;
  for (const n of removed) if (USER_NAME_PATTERN.test(n) && (await removeStaticFile(target.dir, n))) gone++;
  let written = 0;
  for (const e of entries) {
    const text = renderAuthorizedKeysFile(e, { protocol: target.protocol, nowMs });
    if ((await writeFileAtomic(join(target.dir, e.name), text, { mode: 0o644 })).changed) written++;
  }
  return { written, removed: gone };
}

/** Brings the target directory in line with all members (stale nixpool files removed) and remembers it. */
export async function writeStaticFiles(
  paths: AccessPaths,
  target: StaticTarget,
  entries: readonly IndexEntry[],
  nowMs: number,
): Promise<{ written: number; removed: number }> {
  await writeFileAtomic(paths.staticTarget, `${JSON.stringify(target)}\n`, { mode: 0o600 });
  const keep = new Set(entries.map((e) => e.name));
  const stale = (await readdir(target.dir).catch(() => [] as string[])).filter((n) => !keep.has(n));
  return updateStaticFiles(target, entries, stale, nowMs);
}
