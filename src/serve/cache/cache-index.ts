import { stat } from "node:fs/promises";
import type { Trust } from "../../core/builder.js";
import { narUrlOf } from "../../core/binary-cache/cache-request.js";
import { narInfoFingerprint, type NarInfo } from "../../core/binary-cache/narinfo.js";
import {
  holderOrder,
  indexServableResults,
  storeHashOf,
  type ResultFact,
  type ServableIndex,
} from "../../core/binary-cache/servable.js";
import { signFingerprint, type SecretSigningKey } from "../../core/binary-cache/signing-key.js";
import type { PathInfo } from "../../core/nix-serve/messages.js";
import { readResultRecords } from "../../dispatch/result-records.js";
import { CacheStores, LOCAL_HOLDER } from "./cache-stores.js";
import type { RecordedBuilds } from "./recorded-builds.js";

/** A path the cache offers: its signed narinfo, and the stores that hold it (the first answered). */
export interface ResolvedPath {
  info: NarInfo;
  /** Stores to stream it from, in order (each holds it with this NAR hash, or did when asked). */
  holders: string[];
}

export interface CacheIndexOptions {
  resultsFile: string;
  key: SecretSigningKey;
  stores: CacheStores;
  /** Where to report what the operator should know (a holder whose copy does not match). */
  log: (line: string) => void;
  /** The coordinator's history: the results it recorded are servable too (same trust rule). */
  recorded?: RecordedBuilds;
  /** How long a resolved narinfo is kept (default 60 s). */
  ttlMs?: number;
  clock?: () => number;
}

/** Resolved narinfos kept at most (a mass query of 5,000 paths fits). */
const MAX_RESOLVED = 20_000;
/** How long what a store said of a path is believed, and how many such answers are kept. */
const INFO_TTL_MS = 30_000;
const MAX_INFOS = 200_000;
/** The results file is looked at again at most this often. */
const RELOAD_EVERY_MS = 1000;
/**
 * A hash the index does not know (maybe a build recorded it just now) makes the index look again at
 * most this often; misses meanwhile wait for that look. So a path recorded at T is found by every
 * request from T + MISS_LOOK_EVERY_MS on, and a mass query of paths the pool does not have (the
 * cache's Priority ahead of cache.nixos.org) costs a few looks a second, not one per path.
 */
export const MISS_LOOK_EVERY_MS = 250;

/**
 * What the cache offers, and from where: the trusted results of STATE/trust/results.jsonl and of
 * the coordinator's history (core/binary-cache/servable.ts decides), plus the references of paths it served (they were
 * inputs a trusted builder used, or sources), except outputs only untrusted builders built. A
 * path's narinfo comes from the first store that holds it with a trusted NAR hash, signed with the
 * pool's key.
 */
export class CacheIndex {
  private index: ServableIndex = { byHash: new Map(), untrustedOnly: new Set() };
  private stamp = "";
  /** The results file's records as last read. */
  private fileRecords: ResultFact[] = [];
  private checkedAt = -Infinity;
  private loading: Promise<void> | undefined;
  /** References of served paths, by hash: servable as sources of a trusted result. */
  private readonly references = new Map<string, string>();
  private readonly resolved = new Map<string, { at: number; value: ResolvedPath }>();
  /** What each store said of each path lately (null: it does not hold it), kept for infoTtlMs. */
  private readonly infos = new Map<string, { at: number; info: PathInfo | null }>();
  /** Paths whose references were asked for already (exploreReferences). */
  private readonly explored = new Set<string>();
  private exploring: Promise<void> | undefined;
  /** The last look for an unknown hash, and when it began. */
  private missLook: { at: number; done: Promise<void> } | undefined;

  constructor(private readonly o: CacheIndexOptions) {}

  private now(): number {
    return (this.o.clock ?? Date.now)();
  }

  /** The builders' trust now, from the coordinator. */
  private trustNow(): Map<string, Trust> {
    return new Map(this.o.stores.sources.builders().map((b) => [b.name, b.trust]));
  }

  /**
   * Reads the results file again when it changed (size or mtime), at most once a second unless
   * `force` (a path asked for that is not known: maybe a build just recorded it).
   */
  private async refresh(force = false): Promise<void> {
    if (!force && this.now() - this.checkedAt < RELOAD_EVERY_MS) return;
    // A forced look may not ride on a read that began before the file changed.
    if (force && this.loading) await this.loading;
    this.loading ??= (async () => {
      try {
        const st = await stat(this.o.resultsFile).catch(() => undefined);
        const stamp = st ? `${st.size}:${st.mtimeMs}` : "none";
        const moreRecorded = (await this.o.recorded?.update()) === true;
        if (stamp !== this.stamp || moreRecorded) {
          if (stamp !== this.stamp) this.fileRecords = await readResultRecords(this.o.resultsFile);
          const trust = this.trustNow();
          this.index = indexServableResults([...this.fileRecords, ...(this.o.recorded?.all() ?? [])], (b) =>
            trust.get(b),
          );
          this.stamp = stamp;
          this.resolved.clear();
          // Learn where the new results are (one QueryPathInfos per store) before clients ask.
          void this.exploreReferences().catch(() => undefined);
        }
        this.checkedAt = this.now();
      } finally {
        this.loading = undefined;
      }
    })();
    await this.loading;
  }

  /** Number of results the cache may serve now (the dashboard's). */
  get servableCount(): number {
    return this.index.byHash.size;
  }

  /** The narinfo of the path whose hash part is `hash`, and where it is; undefined: not offered. */
  async resolve(hash: string): Promise<ResolvedPath | undefined> {
    await this.refresh();
    const kept = this.resolved.get(hash);
    if (kept && this.now() - kept.at < (this.o.ttlMs ?? 60_000) && this.anyHolderUp(kept.value)) {
      return kept.value;
    }
    // A source a client asks for before the path that refers to it (its narinfo cached on the
    // client, this coordinator restarted): learn the references of every servable result first.
    if (!this.index.byHash.has(hash) && !this.references.has(hash)) await this.lookForMisses();
    const value = await this.lookUp(hash);
    // Only what was found is kept: a miss may be a builder still connecting, or a build finishing now.
    if (!value) return undefined;
    if (this.resolved.size >= MAX_RESOLVED) this.resolved.delete(this.resolved.keys().next().value as string);
    this.resolved.set(hash, { at: this.now(), value });
    return value;
  }

  /**
   * Reads the results again and learns the references of new ones, or waits for such a look that
   * began less than MISS_LOOK_EVERY_MS ago (it began after anything recorded before then).
   */
  private async lookForMisses(): Promise<void> {
    if (!this.missLook || this.now() - this.missLook.at >= MISS_LOOK_EVERY_MS) {
      this.missLook = {
        at: this.now(),
        done: (async () => {
          await this.refresh(true);
          await this.exploreReferences();
        })(),
      };
    }
    await this.missLook.done;
  }

  /** A resolved path is kept while one of its stores can still send it. */
  private anyHolderUp(r: ResolvedPath): boolean {
    const up = new Set(
      this.o.stores.sources
        .builders()
        .filter((b) => b.up)
        .map((b) => b.name),
    );
    return r.holders.some((h) => h === LOCAL_HOLDER || up.has(h));
  }

  /**
   * Asks the stores for the references of every servable result (and of those references, until
   * none is new), once per result: one QueryPathInfos per store and round.
   */
  private async exploreReferences(): Promise<void> {
    this.exploring ??= (async () => {
      let todo = [...this.index.byHash.values()].map((r) => r.path).filter((p) => !this.explored.has(p));
      while (todo.length > 0) {
        for (const p of todo) this.explored.add(p);
        const holders = holderOrder([], this.o.stores.sources.builders(), LOCAL_HOLDER);
        const infos = await Promise.all(holders.flatMap((h) => todo.map((p) => this.infoOf(h, p))));
        const found = new Set<string>();
        for (const info of infos) {
          for (const r of info?.references ?? []) {
            if (this.index.untrustedOnly.has(r)) continue;
            this.references.set(storeHashOf(r), r);
            if (!this.explored.has(r)) found.add(r);
          }
        }
        todo = [...found];
      }
    })().finally(() => (this.exploring = undefined));
    await this.exploring;
  }

  /**
   * What `holder` says of `path`, asked at most once per infoTtlMs: a mass query of 5,000 narinfos
   * is answered from what one QueryPathInfos per store returned. A store that fails answers nothing.
   */
  private async infoOf(holder: string, path: string): Promise<PathInfo | undefined> {
    const key = `${holder}\0${path}`;
    const kept = this.infos.get(key);
    if (kept && this.now() - kept.at < INFO_TTL_MS) return kept.info ?? undefined;
    const info = await this.o.stores.pathInfo(holder, path).catch(() => "failed" as const);
    if (info === "failed") return undefined;
    if (this.infos.size >= MAX_INFOS) this.infos.clear();
    this.infos.set(key, { at: this.now(), info: info ?? null });
    return info;
  }

  /** Forgets what was resolved for `hash` (its holder lost it, or went down). */
  forget(hash: string): void {
    const path = this.resolved.get(hash)?.value.info.storePath;
    this.resolved.delete(hash);
    if (path === undefined) return;
    for (const key of this.infos.keys()) if (key.endsWith(`\0${path}`)) this.infos.delete(key);
  }

  private async lookUp(hash: string): Promise<ResolvedPath | undefined> {
    const result = this.index.byHash.get(hash);
    const path = result?.path ?? this.references.get(hash);
    if (path === undefined || this.index.untrustedOnly.has(path)) return undefined;
    const order = holderOrder(result?.builtBy ?? [], this.o.stores.sources.builders(), LOCAL_HOLDER);
    const answers = await Promise.all(order.map((h) => this.infoOf(h, path)));
    const holders: string[] = [];
    let chosen: (typeof answers)[number];
    for (const [i, info] of answers.entries()) {
      if (!info) continue;
      // A trusted result's bytes must be what a trusted builder built; a source has no record.
      if (result && !result.narHashes.includes(info.narHash)) {
        this.o.log(
          `cache: ${order[i] ?? "?"} holds ${path} with NAR hash ${info.narHash}, not the one trusted builders reported; not served from there`,
        );
        continue;
      }
      if (chosen && info.narHash !== chosen.narHash) continue;
      chosen ??= info;
      holders.push(order[i] as string);
    }
    if (!chosen) return undefined;
    for (const r of chosen.references) {
      if (r !== path && !this.index.untrustedOnly.has(r)) this.references.set(storeHashOf(r), r);
    }
    const info: NarInfo = {
      storePath: path,
      url: narUrlOf(hash, chosen.narHash),
      compression: "none",
      narHash: chosen.narHash,
      narSize: chosen.narSize,
      references: chosen.references,
      ...(chosen.deriver !== "" ? { deriver: chosen.deriver } : result ? { deriver: result.drv } : {}),
      sigs: [signFingerprint(this.o.key, narInfoFingerprint({ ...chosen, storePath: path }))],
      ...(chosen.ca !== "" ? { ca: chosen.ca } : {}),
    };
    return { info, holders };
  }
}
