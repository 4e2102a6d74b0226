import { z } from "zod";
import { writeFileAtomic, readFileIfExists } from "../adapters/fs.js";

/** What sync last learnt about one GitHub handle. */
export interface GithubCacheEntry {
  /** "TYPE BASE64" lines from the last successful fetch. */
  keys: string[];
  /** When those keys were last fetched successfully (ISO). */
  lastSeen: string | undefined;
  /** When a fetch was last tried (ISO). */
  lastAttempt: string | undefined;
  /** Why the last fetch failed, if it did. */
  lastError: string | undefined;
}
export type GithubCache = Record<string, GithubCacheEntry>;

const schema = z.object({
  version: z.literal(1),
  handles: z.record(
    z.string(),
    z.object({
      keys: z.array(z.string()),
      lastSeen: z.string().optional(),
      lastAttempt: z.string().optional(),
      lastError: z.string().optional(),
    }),
  ),
});

/** Reads the GitHub key cache; a missing or damaged cache is empty (sync rebuilds it). */
export async function readGithubCache(path: string): Promise<GithubCache> {
  const text = await readFileIfExists(path);
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return {};
  }
  const r = schema.safeParse(raw);
  if (!r.success) return {};
  const out: GithubCache = {};
  for (const [h, e] of Object.entries(r.data.handles)) {
    out[h] = { keys: e.keys, lastSeen: e.lastSeen, lastAttempt: e.lastAttempt, lastError: e.lastError };
  }
  return out;
}

/** Writes the cache atomically. Handles are stored lower-case (GitHub handles are case-insensitive). */
export async function writeGithubCache(path: string, cache: GithubCache): Promise<void> {
  const handles: Record<string, unknown> = {};
  for (const h of Object.keys(cache).sort()) handles[h] = cache[h];
  await writeFileAtomic(path, `${JSON.stringify({ version: 1, handles }, null, 2)}\n`, { mode: 0o600 });
}
