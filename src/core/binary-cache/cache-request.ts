/**
 * The names a binary cache client asks for, checked before anything is looked up: a narinfo is
 * `HASH.narinfo` (HASH the 32 characters of Nix's base32 that start a store path's name), a NAR is
 * `nar/HASH-NARHASH.nar` (NARHASH the base32 of its sha256). Anything else is refused, so a request
 * can only ever name a store path by its hash, never a file.
 */

const HASH = "[0-9abcdfghijklmnpqrsvwxyz]{32}";
const NAR_HASH = "[0-9abcdfghijklmnpqrsvwxyz]{52}";
const NARINFO_NAME = new RegExp(`^(${HASH})\\.narinfo$`);
const NAR_NAME = new RegExp(`^(${HASH})-(${NAR_HASH})\\.nar$`);

/** The store hash a narinfo name asks for; undefined when it is not `HASH.narinfo`. */
export function parseNarInfoName(name: string): string | undefined {
  return NARINFO_NAME.exec(name)?.[1];
}

/** The store hash and NAR hash (`sha256:…`) a NAR name asks for; undefined when it is not one. */
export function parseNarName(name: string): { hash: string; narHash: string } | undefined {
  const m = NAR_NAME.exec(name);
  return m ? { hash: m[1] as string, narHash: `sha256:${m[2] as string}` } : undefined;
}

/** The NAR's address in a narinfo (relative to the cache's root). */
export function narUrlOf(storeHash: string, narHash: string): string {
  return `nar/${storeHash}-${narHash.replace(/^sha256:/, "")}.nar`;
}

/** A byte range of a NAR of `size` bytes: first and last byte, inclusive. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Reads a `Range` header as Nix sends it when it resumes a cut download (`bytes=N-`), and the other
 * single-range forms (`bytes=N-M`, `bytes=-N`). Undefined: no Range, or one to ignore (several
 * ranges, another unit: the whole NAR is sent, as RFC 9110 allows); "unsatisfiable": 416.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | "unsatisfiable" | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!m) return undefined;
  const [a, b] = [m[1] as string, m[2] as string];
  if (a === "" && b === "") return undefined;
  if (a === "") {
    const n = Number(b);
    if (n === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}
