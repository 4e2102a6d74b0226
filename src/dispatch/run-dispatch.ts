import type { Builder } from "../core/builder.js";
import type { DerivationRecord, StatusSnapshot } from "../core/build-record.js";
import { noBuildersError } from "../core/builder-connection-error.js";
import type { TrustPolicy } from "../core/dispatch/trust-policy.js";
import { ownUsage } from "./dispatch-errors.js";
import { BuildRun, type BuildRunOptions } from "./build-run.js";
import { Dispatcher } from "./dispatcher.js";
import { evaluateDerivations, type EvaluateRequest, type EvaluatedRoot } from "./evaluate.js";
import { Fleet } from "./fleet.js";
import { createOutLinks, outLinkNames } from "./out-links.js";
import { outLinkStyle } from "../core/installable.js";
import type { DispatchSession, OpenSession, TransferPaths } from "./store-session.js";
import { trustPaths } from "../config/state-paths.js";

/** Installables to evaluate, or roots evaluated already (nixpool verify, nixpool check, deploy). */
export type BuildSource = Omit<EvaluateRequest, "signal"> | { roots: readonly EvaluatedRoot[] };

export interface DispatchRequest {
  builders: Builder[];
  /** What to build: installables to evaluate (with the flake options), or derivations already evaluated. */
  source: BuildSource;
  /** GC root for the result (default ./result); null for none (--no-out-link). */
  outLink?: string | null | undefined;
  signal?: AbortSignal;
  keepGoing?: boolean;
  /**
   * "needed": the requested outputs (and what other builders need); "all": every built output;
   * "none": the requested outputs stay where they were built (deploy copies them on from there).
   */
  copyBack?: "needed" | "all" | "none";
  /** Directory for per-derivation logs. */
  logDir: string;
  /** File of learned build times. */
  durationsFile: string;
  /** Base of the builder backoff (default 60 s). */
  backoffBaseMs?: number;
  /** Trusted-only derivations, untrusted results, --verify (docs/trust.md); default: none. */
  trust?: TrustPolicy;
  /** STATE/trust: who built what (results.jsonl), and outputs of builds that differ. */
  trustDir?: string;
  /** nixpool verify: derivations built again although their outputs exist, and the builders that may not. */
  rebuild?: BuildRunOptions["rebuild"];
  /** nixpool verify: the earlier build each rebuilt derivation is compared with. */
  references?: BuildRunOptions["references"];
  onEvent?: (e: DispatchEvent) => void;
  sessions: {
    openBuilder: OpenSession;
    openLocal: () => Promise<DispatchSession>;
    transfer: TransferPaths;
  };
}

/** What a running dispatch reports, for the live view, -L and plain progress lines. */
export type DispatchEvent =
  | { kind: "status"; snapshot: StatusSnapshot }
  | { kind: "start"; drv: string; name: string; builder: string; attempt: number }
  | { kind: "done"; drv: string; name: string; builder: string; ms: number }
  | { kind: "retry"; drv: string; name: string; builder: string; reason: string }
  | { kind: "builder-down"; builder: string; reason: string }
  | { kind: "log"; drv: string; name: string; builder: string; line: string };

export interface DispatchResult {
  outputs: string[];
  /** Per output, where it is valid: "local" and/or builder names. */
  holders: string[][];
  outLink: string | null;
  records: DerivationRecord[];
  startedAtMs: number;
  wallMs: number;
  builders: { name: string; slots: number }[];
  stats: {
    evalMs: number;
    connectMs: number;
    pathsUploaded: number;
    pathsDownloaded: number;
    /** Bytes of the export streams sent to the builders (inputs) and to this machine (outputs). */
    bytesUploaded: number;
    bytesDownloaded: number;
    derivationsInClosure: number;
    /** nixpool's own CPU time (this process, not Nix or ssh) and peak memory. */
    cpuMs: number;
    maxRssMb: number;
  };
}

/**
 * nixpool's own dispatcher for one build: the same Fleet and Dispatcher `nixpool serve` keeps
 * alive, living for one build. Sessions to every builder open while Nix evaluates; then the build
 * reads the derivation graph, asks every builder what it already holds, and runs the scheduler's
 * decisions over long-lived `nix-store --serve` sessions, surviving lost builders (and taking
 * them back once they answer again after their backoff).
 */
export async function runDispatch(req: DispatchRequest): Promise<DispatchResult> {
  const t0 = Date.now();
  const usable = req.builders.filter((b) => b.hostKey);
  if (usable.length === 0) throw noBuildersError(req.builders.length);
  const fleet = new Fleet(usable, req.sessions, {
    ...(req.trustDir ? { resultsFile: trustPaths(req.trustDir).resultsFile } : {}),
    ...(req.backoffBaseMs !== undefined ? { backoffBaseMs: req.backoffBaseMs } : {}),
  });
  const dispatcher = new Dispatcher(fleet, req.durationsFile);
  const build = new BuildRun(dispatcher, {
    keepGoing: req.keepGoing ?? false,
    copyBack: req.copyBack ?? "needed",
    logDir: req.logDir,
    startedAtMs: t0,
    ...(req.trust ? { trust: req.trust } : {}),
    ...(req.trustDir ? { trustDir: req.trustDir } : {}),
    ...(req.rebuild ? { rebuild: req.rebuild } : {}),
    ...(req.references ? { references: req.references } : {}),
    ...(req.onEvent ? { onEvent: req.onEvent } : {}),
  });
  const signal = req.signal;
  const onAbort = () => {
    fleet.kill();
    build.abort();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  fleet.start();
  try {
    const source = req.source;
    const roots =
      "roots" in source
        ? source.roots
        : await evaluateDerivations({ ...source, ...(signal ? { signal } : {}) });
    const evalMs = Date.now() - t0;
    if (signal?.aborted) onAbort();
    const { outputs, holders, records } = await build.run(roots);
    const base = req.outLink === undefined ? "result" : req.outLink;
    if (base !== null)
      await createOutLinks(
        outLinkNames(base, outputs, "roots" in source ? "nix-build" : outLinkStyle(source.installables)),
        signal,
      );
    const links = [...fleet.links.values()];
    return {
      outputs: outputs.map((o) => o.path),
      holders,
      outLink: base,
      records,
      startedAtMs: t0,
      wallMs: Date.now() - t0,
      builders: links.map((l) => ({ name: l.name, slots: l.builder.maxJobs })),
      stats: {
        evalMs,
        connectMs: fleet.connectMs,
        pathsUploaded: links.reduce((n, l) => n + l.place.sent, 0),
        pathsDownloaded: fleet.localPlace.sent,
        bytesUploaded: links.reduce((n, l) => n + l.place.sentBytes, 0),
        bytesDownloaded: fleet.localPlace.sentBytes,
        derivationsInClosure: build.graph.nodes.size,
        ...ownUsage(),
      },
    };
  } finally {
    signal?.removeEventListener("abort", onAbort);
    // Closes every session: cleanly after success, at once after a failure or Ctrl-C.
    const hard = build.endedHard || signal?.aborted === true;
    await fleet.shutdown(hard);
    await build.shutdown();
    dispatcher.close();
  }
}
