import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { renderIndexEntry, type IndexEntry } from "../core/access/authorized-keys.js";
import { dedupeKeys, formatKey, parseKeyLine } from "../core/access/key-line.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { parseUsersFile, renderUsersFile, type UsersFile } from "../core/access/users.js";
import { readGithubCache, type GithubCache } from "./github-cache.js";
import { withLock } from "./lock.js";
import type { AccessPaths } from "./paths.js";

/** Reads and validates the users file; an absent file has no members. */
export async function loadUsers(path: string): Promise<UsersFile> {
  const text = await readFileIfExists(path);
  return text === undefined ? { users: [] } : parseUsersFile(text, path);
}

/** The index entries: explicit keys plus the cached GitHub keys of each member. */
export function buildIndexEntries(f: UsersFile, cache: GithubCache): IndexEntry[] {
  return f.users.map((u) => {
    const explicit = u.keys.map((k) => parseKeyLine(k));
    const fromGithub = u.github
      ? (cache[u.github.toLowerCase()]?.keys ?? []).map((k) => parseKeyLine(k))
      : [];
    return {
      name: u.name,
      expiresMs: u.expires === undefined ? undefined : Date.parse(u.expires),
      keys: dedupeKeys([...explicit, ...fromGithub]).map(formatKey),
    };
  });
}

/** Removes index files of members no longer listed (done before anything is added: fail closed). */
async function pruneIndex(indexDir: string, keep: ReadonlySet<string>): Promise<number> {
  const names = await readdir(indexDir).catch(() => [] as string[]);
  let removed = 0;
  for (const n of names) {
    if (USER_NAME_PATTERN.test(n) && !keep.has(n)) {
      await rm(join(indexDir, n), { force: true });
      removed++;
    }
  }
  return removed;
}

/** Writes every member's index file (only those that changed) and removes the others. */
export async function writeIndex(
  indexDir: string,
  entries: readonly IndexEntry[],
): Promise<{ written: number; removed: number }> {
  await mkdir(indexDir, { recursive: true, mode: 0o755 });
  const removed = await pruneIndex(indexDir, new Set(entries.map((e) => e.name)));
  let written = 0;
  for (const e of entries) {
    const r = await writeFileAtomic(join(indexDir, e.name), renderIndexEntry(e), { mode: 0o644 });
    if (r.changed) written++;
  }
  return { written, removed };
}

/**
 * Changes the users file under the access lock: plan → prune the index of removed members →
 * write users.toml atomically → write the index. A crash in between can only leave fewer keys.
 */
export async function updateUsers(
  paths: AccessPaths,
  plan: (current: UsersFile) => UsersFile,
): Promise<UsersFile> {
  return withLock(paths.lockFile, async () => {
    const current = await loadUsers(paths.usersFile);
    const next = plan(current);
    const cache = await readGithubCache(paths.githubCache);
    const entries = buildIndexEntries(next, cache);
    await mkdir(paths.indexDir, { recursive: true, mode: 0o755 });
    await pruneIndex(paths.indexDir, new Set(entries.map((e) => e.name)));
    await writeFileAtomic(paths.usersFile, renderUsersFile(next), { mode: 0o644 });
    await writeIndex(paths.indexDir, entries);
    return next;
  });
}
