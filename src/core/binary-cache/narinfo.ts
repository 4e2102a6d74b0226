import { STORE_DIR } from "../store-path.js";

/**
 * The two text files of a Nix binary cache (what Nix 2.8's `http://` substituter reads):
 * `/nix-cache-info` and `/HASH.narinfo`, and the fingerprint a narinfo's signature covers.
 */

/** What the cache states about one store path. */
export interface NarInfo {
  /** The full store path. */
  storePath: string;
  /** The NAR's address, relative to the cache's root (e.g. `nar/HASH-NARHASH.nar`). */
  url: string;
  /** How the NAR at `url` is compressed (always written: Nix assumes bzip2 when it is missing). */
  compression: "none" | "xz" | "zstd" | "br";
  /** `sha256:` + Nix's base32. */
  narHash: string;
  narSize: number;
  /** Full store paths. */
  references: readonly string[];
  /** The full .drv store path, when known. */
  deriver?: string;
  /** `NAME:base64` each. */
  sigs: readonly string[];
  /** Content address, when the path has one. */
  ca?: string;
}

/** The cache's own description: its store directory, mass queries welcome, its priority. */
export function renderCacheInfo(priority: number): string {
  return `StoreDir: ${STORE_DIR}\nWantMassQuery: 1\nPriority: ${priority}\n`;
}

const baseName = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/**
 * What Nix signs and checks (ValidPathInfo::fingerprint): `1;PATH;NARHASH;NARSIZE;REFS`, REFS the
 * references' full store paths, sorted, joined by `,`.
 */
export function narInfoFingerprint(
  info: Pick<NarInfo, "storePath" | "narHash" | "narSize" | "references">,
): string {
  const refs = [...info.references].sort().join(",");
  return `1;${info.storePath};${info.narHash};${info.narSize};${refs}`;
}

/** The narinfo text: references and deriver as base names, one Sig line per signature. */
export function renderNarInfo(info: NarInfo): string {
  const lines = [
    `StorePath: ${info.storePath}`,
    `URL: ${info.url}`,
    `Compression: ${info.compression}`,
    `NarHash: ${info.narHash}`,
    `NarSize: ${info.narSize}`,
    `References: ${[...info.references].sort().map(baseName).join(" ")}`,
  ];
  if (info.deriver) lines.push(`Deriver: ${baseName(info.deriver)}`);
  for (const s of info.sigs) lines.push(`Sig: ${s}`);
  if (info.ca) lines.push(`CA: ${info.ca}`);
  return `${lines.join("\n")}\n`;
}

/** Reads a narinfo back (tests, the benchmark): each field once; unknown fields are kept out. */
export function parseNarInfo(text: string): NarInfo {
  const fields = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const colon = line.indexOf(": ");
    if (colon < 0) throw new Error(`narinfo line without "Key: value": ${line}`);
    const k = line.slice(0, colon);
    fields.set(k, [...(fields.get(k) ?? []), line.slice(colon + 2)]);
  }
  const one = (k: string) => {
    const v = fields.get(k)?.[0];
    if (v === undefined) throw new Error(`narinfo without ${k}`);
    return v;
  };
  const refs = (fields.get("References")?.[0] ?? "").split(" ").filter((r) => r !== "");
  const deriver = fields.get("Deriver")?.[0];
  const ca = fields.get("CA")?.[0];
  return {
    storePath: one("StorePath"),
    url: one("URL"),
    compression: one("Compression") as NarInfo["compression"],
    narHash: one("NarHash"),
    narSize: Number(one("NarSize")),
    references: refs.map((r) => `${STORE_DIR}/${r}`),
    ...(deriver !== undefined && deriver !== "unknown-deriver" ? { deriver: `${STORE_DIR}/${deriver}` } : {}),
    sigs: fields.get("Sig") ?? [],
    ...(ca !== undefined ? { ca } : {}),
  };
}
