import type { Hono } from "hono";
import { ensureCacheKey } from "../../adapters/cache-key.js";
import { statePaths } from "../../config/state-paths.js";
import { renderPublicSigningKey } from "../../core/binary-cache/signing-key.js";
import type { ApiEnv } from "../http/api-env.js";
import { ensureCacheToken } from "../serve-token.js";
import { createCacheApp } from "./cache-app.js";
import { CacheIndex } from "./cache-index.js";
import { CacheStats, type CacheStatsView } from "./cache-stats.js";
import { CacheStores, type CacheSources } from "./cache-stores.js";
import { RecordedBuilds } from "./recorded-builds.js";

export interface CacheServiceOptions {
  stateDir: string;
  sources: CacheSources;
  /** The API's token (it reads the cache too); undefined with `--no-token`. */
  apiToken: string | undefined;
  /** Remote clients' own tokens read the cache too. */
  clientOf?: (token: string) => string | undefined;
  /** `--cache-open`: TCP readers need no token (loopback only, checked by the command). */
  open: boolean;
  priority: number;
  log: (line: string) => void;
  idleMs?: number;
}

/** The binary cache `nixpool serve` runs beside its API (docs/cache.md). */
export interface CacheService {
  /** The cache's routes (under /cache), with their own gate. */
  app: Hono<ApiEnv>;
  /** The `trusted-public-keys` entry of the pool's key. */
  publicKey: string;
  stats(): CacheStatsView;
  /** Calls `fn` with the numbers after they changed (at most twice a second); returns the unsubscribe. */
  watch(fn: (view: CacheStatsView) => void): () => void;
  close(): Promise<void>;
}

/** Opens the cache: the pool's signing key and the cache token (each made on first use), the index, the sessions. */
export async function startCacheService(o: CacheServiceOptions): Promise<CacheService> {
  const paths = statePaths(o.stateDir);
  const { key } = await ensureCacheKey(paths.cache);
  const cacheToken = await ensureCacheToken(o.stateDir);
  const stores = new CacheStores(o.sources);
  const stats = new CacheStats();
  const index = new CacheIndex({
    resultsFile: paths.trust.resultsFile,
    key,
    stores,
    log: o.log,
    ...(o.sources.recorded ? { recorded: new RecordedBuilds(o.sources.recorded, o.log) } : {}),
  });
  const app = createCacheApp({
    index,
    stores,
    stats,
    auth: { apiToken: o.apiToken, cacheToken, open: o.open, ...(o.clientOf ? { clientOf: o.clientOf } : {}) },
    priority: o.priority,
    log: o.log,
    ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}),
  });
  return {
    app,
    publicKey: renderPublicSigningKey(key),
    stats: () => stats.view(index.servableCount),
    watch: (fn) => stats.watch(() => fn(stats.view(index.servableCount))),
    close: () => {
      stats.close();
      return stores.close();
    },
  };
}
