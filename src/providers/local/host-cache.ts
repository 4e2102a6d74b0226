import { rm } from "node:fs/promises";
import { writeFileAtomic } from "../../adapters/fs.js";
import { localHostPaths } from "../../config/state-paths.js";
import {
  BUILDER_CACHE_NETRC,
  localHostCacheUrl,
  renderBuilderCacheConf,
} from "../../core/binary-cache/builder-config.js";
import { cacheHostOf, renderCacheNetrc } from "../../core/binary-cache/client-config.js";
import type { ListenAddress } from "../../core/listen-address.js";
import { readPool } from "./records.js";

export interface HostCacheOptions {
  /** The coordinator's TCP listener (as given) and the port it got. */
  listen: ListenAddress;
  port: number;
  publicKey: string;
  /** The cache token the hosts send; undefined when the cache is public (no netrc). */
  token: string | undefined;
}

/** What configuring the local pool's hosts did: who uses the cache now, who cannot reach it. */
export interface HostCacheResult {
  configured: { name: string; url: string }[];
  unreachable: { name: string; reason: string }[];
}

/**
 * Makes every host of the local pool in `stateDir` substitute from the coordinator's cache: the
 * file its nix.conf includes (substituter and key) and, with a token, the netrc (0600) it names.
 * A Nix started on the host from now on (each `nix-store --serve` the build hook opens) reads them.
 */
export async function configureHostCaches(stateDir: string, o: HostCacheOptions): Promise<HostCacheResult> {
  const pool = await readPool(stateDir);
  const result: HostCacheResult = { configured: [], unreachable: [] };
  for (const host of pool?.hosts ?? []) {
    const where = localHostCacheUrl(o.listen, o.port, host.hostAddress);
    if ("unreachable" in where) {
      result.unreachable.push({ name: host.name, reason: where.unreachable });
      continue;
    }
    const files = localHostPaths(host.dir);
    if (o.token !== undefined) {
      await writeFileAtomic(files.cacheNetrc, renderCacheNetrc(cacheHostOf(where.url), o.token), {
        mode: 0o600,
      });
    } else {
      await rm(files.cacheNetrc, { force: true });
    }
    const conf = renderBuilderCacheConf({
      url: where.url,
      publicKey: o.publicKey,
      ...(o.token !== undefined ? { netrcFile: BUILDER_CACHE_NETRC } : {}),
    });
    await writeFileAtomic(files.cacheConf, conf, { mode: 0o644 });
    result.configured.push({ name: host.name, url: where.url });
  }
  return result;
}

/** Takes the cache out of every local host's configuration (the coordinator stops serving it). */
export async function clearHostCaches(stateDir: string): Promise<void> {
  const pool = await readPool(stateDir);
  for (const host of pool?.hosts ?? []) {
    const files = localHostPaths(host.dir);
    await rm(files.cacheConf, { force: true });
    await rm(files.cacheNetrc, { force: true });
  }
}
