import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { BuildCheck, DerivationRecord } from "../core/build-record.js";
import {
  findDifference,
  notReproducibleError,
  type BuildDifference,
  type KeptOutputs,
} from "../core/dispatch/build-compare.js";
import type { DrvNode } from "../core/dispatch/graph.js";
import type { NixpoolError } from "../core/errors.js";
import { dumpLocalPath, isOnPath, restoreNar, writeNarFile } from "../adapters/nar-files.js";
import type { BuilderLink } from "./builder-link.js";
import type { DispatchSession } from "./store-session.js";
import { trustPaths } from "../config/state-paths.js";
import { appendResultRecords } from "./result-records.js";

/**
 * What each successful build produced: the NAR hash of every output as its builder reports it,
 * compared with the earlier builds of the same derivation (--verify, untrusted results). Builds
 * that differ keep both outputs, unpacked, under `differDir(drv)`.
 */
export class BuildChecks {
  /** NOT_REPRODUCIBLE of each derivation whose builds differed. */
  readonly differences = new Map<string, NixpoolError>();

  private readonly differDir: ((drv: string) => string) | undefined;
  private readonly resultsFile: string | undefined;

  /**
   * `trustDir`: where records and differing outputs go (none: nothing kept). `references`: builds
   * made before this one that each derivation is compared with (nixpool verify).
   */
  constructor(
    trustDir: string | undefined,
    private readonly references: ReadonlyMap<string, BuildCheck> = new Map(),
  ) {
    this.differDir = trustDir ? trustPaths(trustDir).differDir : undefined;
    this.resultsFile = trustDir ? trustPaths(trustDir).resultsFile : undefined;
  }

  /**
   * Records the build `link` just finished (its session still open) in the derivation's record;
   * returns the NOT_REPRODUCIBLE error when it differs from an earlier build on `builtOn`.
   */
  async afterBuild(
    rec: DerivationRecord,
    node: DrvNode,
    link: BuilderLink,
    session: DispatchSession,
    builtOn: readonly string[],
    links: ReadonlyMap<string, BuilderLink>,
  ): Promise<NixpoolError | undefined> {
    const infos = await session.queryPathInfos(Object.values(node.outputs));
    const byPath = new Map(infos.map((i) => [i.path, i.narHash]));
    const narHashes: Record<string, string> = {};
    for (const [name, path] of Object.entries(node.outputs)) {
      const h = byPath.get(path);
      // A builder that says it built an output it does not hold: what it built is unknown.
      narHashes[name] = h ?? "(not valid there)";
    }
    const check: BuildCheck = { builder: link.name, trust: link.builder.trust, narHashes };
    await this.record(node, check);
    // Compared with the builds that count now (a derivation built again after its outputs were
    // lost starts afresh: without --verify, no comparison fails a build).
    const reference = this.references.get(node.drv);
    const earlier = [
      ...(reference ? [reference] : []),
      ...(rec.builds ?? []).filter((b) => builtOn.includes(b.builder)),
    ];
    rec.builds = [...(rec.builds ?? []), check];
    const diff = findDifference(earlier, check);
    rec.verified = diff === undefined && earlier.length > 0;
    if (!diff) return undefined;
    const kept = await this.keep(node, diff, links);
    const differ = (await isOnPath("diffoscope")) ? "diffoscope" : "diff -r";
    const e = notReproducibleError(node.name, node.drv, diff, kept, differ);
    this.differences.set(node.drv, e);
    return e;
  }

  /** Appends who built each output of `node`, with which NAR hash, to STATE/trust/results.jsonl. */
  private async record(node: DrvNode, check: BuildCheck): Promise<void> {
    if (!this.resultsFile) return;
    const builtAt = new Date().toISOString();
    await appendResultRecords(
      this.resultsFile,
      Object.entries(node.outputs)
        .filter(([name]) => /^sha256:[0-9a-z]{52}$/.test(check.narHashes[name] ?? ""))
        .map(([name, path]) => ({
          v: 1 as const,
          output: path,
          outputName: name,
          drv: node.drv,
          builder: check.builder,
          trust: check.trust,
          narHash: check.narHashes[name] as string,
          builtAt,
        })),
    );
  }

  /** The error of the first failed derivation whose builds differed, if any did. */
  errorFor(failed: readonly DerivationRecord[]): NixpoolError | undefined {
    for (const r of failed) {
      const e = this.differences.get(r.drv);
      if (e) return e;
    }
    return undefined;
  }

  /** Fetches the differing outputs from both builders as NARs and unpacks them side by side. */
  private async keep(
    node: DrvNode,
    diff: BuildDifference,
    links: ReadonlyMap<string, BuilderLink>,
  ): Promise<KeptOutputs> {
    if (!this.differDir) return { dir: "(nowhere: no state directory)", trees: {} };
    const dir = this.differDir(node.drv);
    await rm(dir, { recursive: true, force: true });
    const trees: KeptOutputs["trees"] = {};
    for (const b of [diff.first, diff.second]) {
      const link = links.get(b.builder);
      const from = link && !link.lostReason ? link.transfer : undefined;
      const bdir = join(dir, b.builder);
      await mkdir(bdir, { recursive: true, mode: 0o700 });
      for (const [out, path] of Object.entries(node.outputs)) {
        const nar = join(bdir, `${out}.nar`);
        try {
          // A builder gone (or this machine's copy, for nixpool verify): the copy here, if any.
          if (from) await writeNarFile(nar, (sink) => from.dumpStorePath(path, sink));
          else await dumpLocalPath(path, nar);
          await restoreNar(nar, join(bdir, out));
          (trees[b.builder] ??= {})[out] = join(bdir, out);
        } catch {
          // Lost, or no longer valid there: the message says what could be kept.
        }
      }
    }
    return { dir, trees };
  }
}
