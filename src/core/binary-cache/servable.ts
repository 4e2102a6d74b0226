import type { Trust } from "../builder.js";

/**
 * Which of the pool's results its binary cache may offer, and from where: a result is served only
 * when a builder trusted at the time built it (that includes every result `untrustedResults =
 * "verify"` accepted: a trusted builder built it to the same NAR hash) and that builder is not
 * marked untrusted now. Its bytes come only from this machine's store or a trusted builder's.
 */

/** One line of STATE/trust/results.jsonl, as far as the cache reads it. */
export interface ResultFact {
  output: string;
  drv: string;
  builder: string;
  trust: Trust;
  narHash: string;
  builtAt: string;
}

/** A result the cache may serve. */
export interface ServableResult {
  path: string;
  drv: string;
  /** NAR hashes trusted builders reported for it: a holder's copy must have one of them. */
  narHashes: string[];
  /** Trusted builders that built it, the latest first: where to look for it first. */
  builtBy: string[];
}

export interface ServableIndex {
  /** By the store path's hash part (the 32 characters after /nix/store/). */
  byHash: Map<string, ServableResult>;
  /** Outputs that only untrusted builders built: never served, not even as a reference. */
  untrustedOnly: Set<string>;
}

/** The hash part of a store path: what a narinfo request names. */
export function storeHashOf(path: string): string {
  return path.slice("/nix/store/".length, "/nix/store/".length + 32);
}

/**
 * Indexes the results: `trustNow` says how far each builder is trusted today (undefined: no longer
 * in the pool, its records still count as recorded).
 */
export function indexServableResults(
  facts: readonly ResultFact[],
  trustNow: (builder: string) => Trust | undefined,
): ServableIndex {
  const byHash = new Map<string, ServableResult>();
  const seen = new Set<string>();
  const sorted = [...facts].sort((a, b) => (a.builtAt < b.builtAt ? 1 : a.builtAt > b.builtAt ? -1 : 0));
  for (const f of sorted) {
    seen.add(f.output);
    if (f.trust !== "trusted" || trustNow(f.builder) === "untrusted") continue;
    const h = storeHashOf(f.output);
    const r = byHash.get(h) ?? { path: f.output, drv: f.drv, narHashes: [], builtBy: [] };
    if (!r.narHashes.includes(f.narHash)) r.narHashes.push(f.narHash);
    if (!r.builtBy.includes(f.builder)) r.builtBy.push(f.builder);
    byHash.set(h, r);
  }
  const untrustedOnly = new Set([...seen].filter((p) => !byHash.has(storeHashOf(p))));
  return { byHash, untrustedOnly };
}

/**
 * Where to look for a path, in order: this machine's store (`local`), the trusted builders that
 * built it, then every other trusted builder that is up. Untrusted builders never serve bytes.
 */
export function holderOrder(
  builtBy: readonly string[],
  builders: readonly { name: string; trust: Trust; up: boolean }[],
  local: string,
): string[] {
  const trusted = builders.filter((b) => b.trust === "trusted" && b.up);
  const first = builtBy.filter((n) => trusted.some((b) => b.name === n));
  const rest = trusted.map((b) => b.name).filter((n) => !first.includes(n));
  return [local, ...first, ...rest];
}
