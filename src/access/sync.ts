import type { AccessProtocol } from "../core/access/authorized-keys.js";
import { listGithubHandles } from "../core/access/users.js";
import { fetchGithubKeys, type FetchKeysResult } from "./github-keys.js";
import { readGithubCache, writeGithubCache } from "./github-cache.js";
import { withLock } from "./lock.js";
import type { AccessPaths } from "./paths.js";
import { writeStaticFiles } from "./static-files.js";
import { buildIndexEntries, loadUsers, writeIndex } from "./users-store.js";

export interface SyncOptions {
  baseUrl: string;
  timeoutMs: number;
  maxBytes: number;
  maxKeys: number;
  concurrency: number;
  /** Total time for all fetches; handles not tried by then keep their cached keys. */
  deadlineMs: number;
  protocol: AccessProtocol;
  writeDir?: string | undefined;
  signal?: AbortSignal | undefined;
  now?: () => number;
}

/** What sync did for one GitHub handle. */
export interface HandleSyncResult {
  handle: string;
  users: string[];
  /** updated: fresh keys; gone: 404, keys dropped; kept: fetch failed, cached keys kept; skipped: not tried after a 429. */
  status: "updated" | "gone" | "kept" | "skipped";
  keys: number;
  lastSeen: string | undefined;
  error: string | undefined;
}

export interface SyncResult {
  handles: HandleSyncResult[];
  users: number;
  indexWritten: number;
  indexRemoved: number;
  filesWritten: number;
  filesRemoved: number;
}

/** Failed connections (timeouts, refusals) with no success at all after which GitHub counts as unreachable. */
const UNREACHABLE_AFTER = 3;

async function fetchAll(
  handles: readonly string[],
  o: SyncOptions,
): Promise<Map<string, FetchKeysResult | { skipped: string }>> {
  const results = new Map<string, FetchKeysResult | { skipped: string }>();
  const deadline = Date.now() + o.deadlineMs;
  let next = 0;
  let stop: string | undefined;
  let successes = 0;
  let connectFailures = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      const handle = handles[i];
      if (handle === undefined) return;
      if (stop === undefined && Date.now() > deadline)
        stop = `not tried: the sync deadline of ${o.deadlineMs} ms passed`;
      // Once GitHub rate-limits or is unreachable, stop asking: cached keys stay, and a sync of
      // thousands of members ends in about one timeout instead of thousands.
      if (stop !== undefined) {
        results.set(handle, { skipped: stop });
        continue;
      }
      const r = await fetchGithubKeys(handle, o);
      if (r.ok) successes++;
      else if (r.reason === "rate-limited") stop ??= "not tried after GitHub rate-limited an earlier request";
      else if (
        (r.reason === "timeout" || r.reason === "network") &&
        ++connectFailures >= UNREACHABLE_AFTER &&
        successes === 0
      ) {
        stop ??= `not tried: GitHub looks unreachable (${connectFailures} failed connections, none succeeded)`;
      }
      results.set(handle, r);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, handles.length)) }, worker));
  return results;
}

/**
 * Fetches every member's GitHub keys, merges them into the cache (a failed, slow or rate-limited
 * fetch keeps the cached keys), and rewrites the index (and --write DIR) under the access lock.
 */
export async function syncAccess(paths: AccessPaths, o: SyncOptions): Promise<SyncResult> {
  const now = o.now ?? Date.now;
  const before = await loadUsers(paths.usersFile);
  const handles = listGithubHandles(before);
  const fetched = await fetchAll(handles, o);
  return withLock(paths.lockFile, async () => {
    const users = await loadUsers(paths.usersFile);
    const cache = await readGithubCache(paths.githubCache);
    const at = new Date(now()).toISOString();
    const results: HandleSyncResult[] = [];
    for (const handle of handles) {
      const r = fetched.get(handle) ?? { skipped: "not tried" };
      const old = cache[handle];
      const owners = users.users.filter((u) => u.github?.toLowerCase() === handle).map((u) => u.name);
      if ("ok" in r && r.ok) {
        cache[handle] = {
          keys: r.keys,
          lastSeen: at,
          lastAttempt: at,
          lastError: r.gone ? "account not found (404)" : undefined,
        };
        results.push({
          handle,
          users: owners,
          status: r.gone ? "gone" : "updated",
          keys: r.keys.length,
          lastSeen: at,
          error: r.gone ? "account not found (404)" : undefined,
        });
      } else {
        const error = "skipped" in r ? r.skipped : r.message;
        cache[handle] = { keys: old?.keys ?? [], lastSeen: old?.lastSeen, lastAttempt: at, lastError: error };
        results.push({
          handle,
          users: owners,
          status: "skipped" in r ? "skipped" : "kept",
          keys: old?.keys.length ?? 0,
          lastSeen: old?.lastSeen,
          error,
        });
      }
    }
    // Handles no member uses any more are forgotten: a later member never inherits stale keys.
    const inUse = new Set(listGithubHandles(users));
    for (const h of Object.keys(cache)) if (!inUse.has(h)) delete cache[h];
    await writeGithubCache(paths.githubCache, cache);
    const entries = buildIndexEntries(users, cache);
    const index = await writeIndex(paths, entries, now());
    const files = o.writeDir
      ? await writeStaticFiles(paths, { dir: o.writeDir, protocol: o.protocol }, entries, now())
      : { written: 0, removed: 0 };
    return {
      handles: results,
      users: users.users.length,
      indexWritten: index.written,
      indexRemoved: index.removed,
      filesWritten: files.written,
      filesRemoved: files.removed,
    };
  });
}
