/**
 * What a machine adds to use the pool's binary cache: nix.conf lines (substituter and key), and
 * the netrc line that carries the cache's read-only token. Pure renderers: `nixpool cache
 * client-config` prints them today; `nixpool config client` and the NixOS snippet can call them.
 */

export interface CacheClientOptions {
  /** The cache's URL, e.g. http://pool.example:7420/cache (no trailing slash). */
  url: string;
  /** The `trusted-public-keys` entry (NAME:base64). */
  publicKey: string;
  /** The netrc file Nix reads the token from; none when the cache is open. */
  netrcFile?: string;
  /** Also `builders-use-substitutes = true`: the client's builders fetch inputs from substituters. */
  buildersUseSubstitutes?: boolean;
}

/**
 * What `builders-use-substitutes` does with the pool (said beside the line): Nix's build hook lets a
 * builder fetch a build's inputs from its own substituters instead of receiving them from this
 * machine; the pool's builders have this cache among them (docs/cache.md#builders-use-substitutes).
 */
const BUILDERS_USE_SUBSTITUTES_NOTE = [
  "builders-use-substitutes: a builder fetches a build's inputs from its own substituters instead of from here;",
  "the pool's builders substitute from this cache, and the gateway from every store of the pool.",
];

/**
 * Nix reads one netrc file: a `netrc-file` line replaces the one this machine may already use
 * (other private caches' credentials). Said before the line.
 */
function netrcNote(o: CacheClientOptions & { netrcFile: string }): string[] {
  return [
    `# the cache's token: Nix reads ONE netrc file. If this machine already sets netrc-file, drop the next`,
    `# line and append the pool's line to that file instead: nixpool cache netrc --url ${o.url} >> FILE`,
  ];
}

/**
 * The nix.conf lines (extra-… so they add to what the machine has). An open cache (`serve
 * --cache-public`, or loopback) needs exactly two lines; one that needs its token, a netrc file too.
 */
export function renderCacheNixConf(o: CacheClientOptions): string {
  const lines = [`extra-substituters = ${o.url}`, `extra-trusted-public-keys = ${o.publicKey}`];
  if (o.netrcFile) {
    lines.unshift("# nixpool's binary cache: the pool's trusted results, signed with its key");
    lines.push(...netrcNote({ ...o, netrcFile: o.netrcFile }), `netrc-file = ${o.netrcFile}`);
  }
  if (o.buildersUseSubstitutes) {
    lines.push(...BUILDERS_USE_SUBSTITUTES_NOTE.map((l) => `# ${l}`), "builders-use-substitutes = true");
  }
  return `${lines.join("\n")}\n`;
}

/** The NixOS module lines (nix.settings). */
export function renderCacheNixosSettings(o: CacheClientOptions): string {
  const lines = [
    `nix.settings.extra-substituters = [ "${o.url}" ];`,
    `nix.settings.extra-trusted-public-keys = [ "${o.publicKey}" ];`,
  ];
  if (o.netrcFile) {
    lines.unshift("# nixpool's binary cache");
    lines.push(...netrcNote({ ...o, netrcFile: o.netrcFile }), `nix.settings.netrc-file = "${o.netrcFile}";`);
  }
  if (o.buildersUseSubstitutes) {
    lines.push(
      ...BUILDERS_USE_SUBSTITUTES_NOTE.map((l) => `# ${l}`),
      "nix.settings.builders-use-substitutes = true;",
    );
  }
  return `${lines.join("\n")}\n`;
}

/** One netrc entry: curl (Nix's downloader) sends it as HTTP Basic to that host. */
export function renderCacheNetrc(host: string, token: string): string {
  return `machine ${host} login nixpool password ${token}\n`;
}

/** The host (no port) of a cache URL, as netrc's `machine` names it. */
export function cacheHostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
}

/** Reads a cache URL given on the command line: http(s), a host, no credentials; no trailing slash. */
export function parseCacheUrl(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return undefined;
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.hostname === "") return undefined;
  if (u.username !== "" || u.password !== "" || u.search !== "" || u.hash !== "") return undefined;
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}
