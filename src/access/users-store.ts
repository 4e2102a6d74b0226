import { chmod, mkdir, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { renderIndexEntry, renderSshdAnswers, type IndexEntry } from "../core/access/authorized-keys.js";
import { GATEWAY_ALL_FILE, SSHD_ANSWER_DIRS } from "../core/access/keys-command-script.js";
import { dedupeKeys, formatKey, parseKeyLine } from "../core/public-key.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { parseUsersFile, renderUsersFile, type UsersFile } from "../core/access/users.js";
import { readGithubCache, type GithubCache } from "./github-cache.js";
import { withLock } from "./lock.js";
import { gatewayCommandFor } from "./gateway-command.js";
import type { AccessPaths } from "./paths.js";
import { readStaticTarget, updateStaticFiles } from "./static-files.js";

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
      ...(u.gateway ? { gateway: true } : {}),
    };
  });
}

/** Where a member's files live: the index and the keys command's precompiled answers. */
type MemberDirs = Pick<AccessPaths, "indexDir" | "sshdDir" | "stateDir">;

/**
 * Creates STATE/access/index and STATE/access/sshd/{ssh-ng,ssh,principals}. Every directory is
 * 0711: the AuthorizedKeysCommandUser can open a member's file (0644) by name, but cannot list
 * the members or read anything else.
 */
export async function ensureIndexDir(dirs: MemberDirs): Promise<void> {
  const all = [dirs.indexDir, dirs.sshdDir, ...SSHD_ANSWER_DIRS.map((k) => join(dirs.sshdDir, k))];
  for (const d of all) await mkdir(d, { recursive: true, mode: 0o711 });
  for (const d of [dirname(dirs.indexDir), ...all]) await chmod(d, 0o711);
}

/** Removes a member's index file and precompiled answers. */
async function removeMember(dirs: MemberDirs, name: string): Promise<void> {
  // The index file last: `access sync` rebuilds from it, and fewer answers only fail closed.
  for (const k of SSHD_ANSWER_DIRS) await rm(join(dirs.sshdDir, k, name), { force: true });
  await rm(join(dirs.indexDir, name), { force: true });
}

/** Removes the files of members no longer listed (done before anything is added: fail closed). */
async function pruneIndex(dirs: MemberDirs, keep: ReadonlySet<string>): Promise<number> {
  const names = new Set(await readdir(dirs.indexDir).catch(() => [] as string[]));
  for (const k of SSHD_ANSWER_DIRS) {
    for (const n of await readdir(join(dirs.sshdDir, k)).catch(() => [] as string[])) names.add(n);
  }
  let removed = 0;
  for (const n of names) {
    if (USER_NAME_PATTERN.test(n) && !keep.has(n)) {
      await removeMember(dirs, n);
      removed++;
    }
  }
  return removed;
}

/** Runs fn over items with at most `limit` in flight (file writes overlap on libuv's pool). */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Writes every member's files (only those that changed) and removes the others. */
export async function writeIndex(
  dirs: MemberDirs,
  entries: readonly IndexEntry[],
  nowMs: number,
): Promise<{ written: number; removed: number }> {
  await ensureIndexDir(dirs);
  const removed = await pruneIndex(dirs, new Set(entries.map((e) => e.name)));
  return { written: await writeEntries(dirs, entries, nowMs), removed };
}

/**
 * Writes these members' index files and the keys command's answers precompiled from them,
 * atomically (only those that changed); returns how many index files changed.
 */
async function writeEntries(
  dirs: MemberDirs,
  entries: readonly IndexEntry[],
  nowMs: number,
): Promise<number> {
  let written = 0;
  // Only members with gateway rights need it (an install path it cannot quote fails their change only).
  const gatewayCommand = entries.some((e) => e.gateway) ? gatewayCommandFor(dirs.stateDir) : "";
  await forEachLimited(entries, 16, async (e) => {
    const answers = renderSshdAnswers(e, nowMs, gatewayCommand);
    for (const k of SSHD_ANSWER_DIRS) {
      await writeFileAtomic(join(dirs.sshdDir, k, e.name), answers[k], { mode: 0o644 });
    }
    const r = await writeFileAtomic(join(dirs.indexDir, e.name), renderIndexEntry(e), { mode: 0o644 });
    if (r.changed) written++;
  });
  await writeGatewayAll(dirs);
  return written;
}

/**
 * Gathers every member's gateway lines into sshd/gateway/.all, what the keys command prints for
 * the gateway's one account (`--protocol gateway`). Rebuilt from the members' files after every
 * change, so a removed or expired member's lines go with their own file.
 */
export async function writeGatewayAll(dirs: Pick<AccessPaths, "sshdDir">): Promise<void> {
  const dir = join(dirs.sshdDir, "gateway");
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => USER_NAME_PATTERN.test(n))
    .sort();
  const parts: string[] = [];
  for (const n of names) parts.push((await readFileIfExists(join(dir, n))) ?? "");
  await writeFileAtomic(join(dir, GATEWAY_ALL_FILE), parts.join(""), { mode: 0o644 });
}

/**
 * Changes the users file under the access lock: plan → remove index files of removed members →
 * write users.toml atomically → write the changed members' index files → update the static files
 * of `access sync --write`, if any. A crash in between can only leave fewer keys in the index
 * (fail closed); `access sync` rebuilds the whole index.
 */
export async function updateUsers(
  paths: AccessPaths,
  plan: (current: UsersFile) => UsersFile,
): Promise<UsersFile> {
  return withLock(paths.lockFile, async () => {
    const current = await loadUsers(paths.usersFile);
    const next = plan(current);
    const cache = await readGithubCache(paths.githubCache);
    // Only members whose entry changed are rewritten; `access sync` reconciles the whole index.
    const before = new Map(current.users.map((u) => [u.name, JSON.stringify(u)]));
    // A missing index or answers directory (first use, deleted, older nixpool) is rebuilt whole.
    const missing = async (d: string) => !(await stat(d).catch(() => undefined));
    const whole = (await missing(paths.indexDir)) || (await missing(paths.sshdDir));
    const changed = next.users.filter((u) => whole || before.get(u.name) !== JSON.stringify(u));
    const entries = buildIndexEntries({ users: changed }, cache);
    const keep = new Set(next.users.map((u) => u.name));
    const removed = current.users.map((u) => u.name).filter((n) => !keep.has(n));
    await ensureIndexDir(paths);
    for (const n of removed) await removeMember(paths, n);
    if (removed.length) await writeGatewayAll(paths);
    // Only nixpool reads users.toml; sshd's command user reads the index instead.
    await writeFileAtomic(paths.usersFile, renderUsersFile(next), { mode: 0o600 });
    await writeEntries(paths, entries, Date.now());
    // Static files from `access sync --write DIR` follow at once too (removal included).
    const target = await readStaticTarget(paths);
    if (target) await updateStaticFiles(target, entries, removed, Date.now());
    return next;
  });
}
