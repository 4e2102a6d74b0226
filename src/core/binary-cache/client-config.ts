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
 * What `builders-use-substitutes` does and does not do with the pool (said beside the line): Nix's
 * build hook lets a builder fetch a build's inputs from its own substituters instead of receiving
 * them from this machine. The pool's gateway answers from the coordinator's store only, and the
 * pool's builders receive inputs from the coordinator's dispatcher, never from this cache.
 */
const BUILDERS_USE_SUBSTITUTES_NOTE = [
  "builders-use-substitutes: a builder of this machine's that uses this cache too fetches inputs from it;",
  "the pool's gateway answers from the coordinator's store, and pool builders get inputs from its dispatcher.",
];

/** The nix.conf lines (extra-… so they add to what the machine has). */
export function renderCacheNixConf(o: CacheClientOptions): string {
  const lines = [
    "# nixpool's binary cache: the pool's trusted results, signed with its key",
    `extra-substituters = ${o.url}`,
    `extra-trusted-public-keys = ${o.publicKey}`,
  ];
  if (o.netrcFile) lines.push(`netrc-file = ${o.netrcFile}`);
  if (o.buildersUseSubstitutes) {
    lines.push(...BUILDERS_USE_SUBSTITUTES_NOTE.map((l) => `# ${l}`), "builders-use-substitutes = true");
  }
  return `${lines.join("\n")}\n`;
}

/** The NixOS module lines (nix.settings). */
export function renderCacheNixosSettings(o: CacheClientOptions): string {
  const lines = [
    "# nixpool's binary cache",
    `nix.settings.extra-substituters = [ "${o.url}" ];`,
    `nix.settings.extra-trusted-public-keys = [ "${o.publicKey}" ];`,
  ];
  if (o.netrcFile) lines.push(`nix.settings.netrc-file = "${o.netrcFile}";`);
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
