/**
 * What a pool builder's Nix needs to substitute from the pool's binary cache, so that a client's
 * `builders-use-substitutes = true` makes the builder fetch a build's inputs from the cache instead
 * of receiving them from the client (docs/cache.md#builders-use-substitutes). Pure: the paths are
 * as the builder sees them; `nixpool serve` writes the files into each local pool host.
 */
import { isLoopbackHost, listenUrl, type ListenAddress } from "../listen-address.js";

/** The file a local host's nix.conf includes (`!include`: absent means no cache). */
export const BUILDER_CACHE_CONF = "/etc/nix/nixpool-cache.conf";
/** The netrc file it names: the cache token, 0600, readable by root only. */
export const BUILDER_CACHE_NETRC = "/etc/nix/nixpool-cache.netrc";

export interface BuilderCacheOptions {
  /** The cache's URL as the builder reaches it. */
  url: string;
  /** The pool's `trusted-public-keys` entry. */
  publicKey: string;
  /** The netrc file the builder's Nix reads the token from; none when the cache is public. */
  netrcFile?: string;
}

/**
 * The included nix.conf lines. `extra-…`, so they add to what the builder has: a local host's own
 * `substituters =` is empty, so the pool's cache is its only substituter (no retries of a
 * cache.nixos.org it cannot reach).
 */
export function renderBuilderCacheConf(o: BuilderCacheOptions): string {
  return [
    "# Written by nixpool serve: the pool's binary cache, for builds whose client sets builders-use-substitutes.",
    `extra-substituters = ${o.url}`,
    `extra-trusted-public-keys = ${o.publicKey}`,
    ...(o.netrcFile !== undefined ? [`netrc-file = ${o.netrcFile}`] : []),
    "",
  ].join("\n");
}

/** Why a local host cannot reach the cache, or its URL for that host. */
export type BuilderCacheUrl = { url: string } | { unreachable: string };

/**
 * The cache's URL as a local pool host reaches it: the host's only route off its namespace is its
 * veth to this machine (`hostAddress`), so a listener on every address (0.0.0.0, ::) or on that
 * very address is reached there; loopback and other addresses are not reachable from the host.
 */
export function localHostCacheUrl(listen: ListenAddress, port: number, hostAddress: string): BuilderCacheUrl {
  const everywhere = listen.host === "0.0.0.0" || listen.host === "::";
  if (everywhere || listen.host === hostAddress) {
    return { url: `${listenUrl({ host: hostAddress, port })}/cache` };
  }
  return {
    unreachable: isLoopbackHost(listen.host)
      ? `the cache listens on loopback (${listen.host})`
      : `the cache listens on ${listen.host}, not on the host's link`,
  };
}
