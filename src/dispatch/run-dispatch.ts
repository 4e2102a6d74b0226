import type { Builder } from "../core/builder.js";
import type { DerivationRecord, StatusSnapshot } from "../core/build-record.js";
import { describeNeeds, describeOffer } from "../core/dispatch/capability.js";
import { buildGraph, type BuildGraph, type DrvNode } from "../core/dispatch/graph.js";
import { LOCAL, Scheduler, type Assignment, type AttemptEnd } from "../core/dispatch/scheduler.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { isBuildSuccess } from "../core/nix-serve/build.js";
import { stripAnsi } from "../core/build-log.js";
import { noBuildersError } from "../core/builder-connection-error.js";
import type { NixArg } from "../adapters/nix-build.js";
import { BuilderLink } from "./builder-link.js";
import { allBuildersDown, buildFailedError, downloadFailed, ownUsage } from "./dispatch-errors.js";
import { DerivationLog } from "./derivation-log.js";
import { Durations } from "./durations.js";
import { evaluateDerivations } from "./evaluate.js";
import { createOutLinks, outLinkNames } from "./out-links.js";
import { SessionPool } from "./session-pool.js";
import { StorePlace } from "./store-place.js";
import { Requeue, StoreTransfers } from "./store-transfers.js";
import { RecordBook } from "./dispatch-records.js";
import type { DispatchSession, OpenSession, TransferPaths } from "./store-session.js";
import { loadDerivations, type LoadedDerivations } from "./load-derivations.js";
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from "../core/dispatch/trust-policy.js";
import { trustPlacement } from "../core/dispatch/placement.js";
import { checkTrust } from "../core/dispatch/trust-check.js";

export interface DispatchRequest {
  builders: Builder[];
  file: string;
  attr?: string | undefined;
  args?: readonly NixArg[];
  /** GC root for the result (default ./result); null for none (--no-out-link). */
  outLink?: string | null | undefined;
  signal?: AbortSignal;
  keepGoing?: boolean;
  /** "needed": the requested outputs (and what other builders need); "all": every built output. */
  copyBack?: "needed" | "all";
  /** Directory for per-derivation logs. */
  logDir: string;
  /** File of learned build times. */
  durationsFile: string;
  /** Base of the builder backoff (default 60 s). */
  backoffBaseMs?: number;
  /** Trusted-only derivations, untrusted results, --verify (docs/trust.md); default: none. */
  trust?: TrustPolicy;
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
  | { kind: "start"; name: string; builder: string; attempt: number }
  | { kind: "done"; name: string; builder: string; ms: number }
  | { kind: "retry"; name: string; builder: string; reason: string }
  | { kind: "builder-down"; builder: string; reason: string }
  | { kind: "log"; name: string; builder: string; line: string };

export interface DispatchResult {
  outputs: string[];
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
    derivationsInClosure: number;
    /** nixpool's own CPU time (this process, not Nix or ssh) and peak memory. */
    cpuMs: number;
    maxRssMb: number;
  };
}

/**
 * nixpool's own dispatcher for one build: evaluates, reads the derivation graph, asks every
 * builder what it already holds, and runs the scheduler's decisions over long-lived
 * `nix-store --serve` sessions, surviving lost builders.
 */
export async function runDispatch(req: DispatchRequest): Promise<DispatchResult> {
  const d = new Dispatch(req);
  try {
    return await d.run();
  } finally {
    await d.shutdown();
  }
}

class Dispatch {
  private readonly t0 = Date.now();
  private graph!: BuildGraph;
  private drvs!: LoadedDerivations;
  private scheduler!: Scheduler;
  /** The scheduler exists (the graph is known): link events go to it. */
  private planning = false;
  private durations!: Durations;
  private readonly book = new RecordBook();
  private get records(): Map<string, DerivationRecord> {
    return this.book.records;
  }
  private lastStatusMs = -Infinity;
  private readonly logs = new Map<string, DerivationLog>();
  private readonly links = new Map<string, BuilderLink>();
  private readonly local: SessionPool<DispatchSession>;
  private readonly localPlace = new StorePlace(LOCAL);
  private readonly active = new Set<Promise<void>>();
  private readonly downloading = new Set<string>();
  private fatal: NixpoolError | undefined;
  private wakeUp: (() => void) | undefined;
  private stats = { evalMs: 0, connectMs: 0 };
  /** The output each root was asked for, in the order of the roots. */
  private rootOutputNames: string[] = [];

  constructor(private readonly req: DispatchRequest) {
    this.local = new SessionPool(
      () => req.sessions.openLocal(),
      4,
      (s) => s.kill(),
    );
    req.signal?.addEventListener("abort", () => this.abort(), { once: true });
  }

  private now(): number {
    return Date.now() - this.t0;
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private abort(): void {
    this.fatal ??= new NixpoolError("INTERRUPTED", "The build was interrupted.", {
      exitCode: ExitCode.interrupted,
    });
    for (const l of this.links.values()) l.kill();
    this.wake();
  }

  async run(): Promise<DispatchResult> {
    const usable = this.req.builders.filter((b) => b.hostKey);
    if (usable.length === 0) throw noBuildersError(this.req.builders.length);
    const signal = this.req.signal;
    // Sessions to every builder (and one to this store) open while Nix evaluates.
    const opening = this.openLinks(usable);
    void this.local.with(() => Promise.resolve()).catch(() => undefined);
    const evaluated = await evaluateDerivations({
      file: this.req.file,
      attr: this.req.attr,
      args: this.req.args ?? [],
      ...(signal ? { signal } : {}),
    });
    this.stats.evalMs = this.now();
    const roots = evaluated.map((r) => r.drv);
    this.rootOutputNames = evaluated.map((r) => r.output);
    this.drvs = await loadDerivations(roots);
    this.graph = buildGraph(this.drvs.inputs, roots);
    this.durations = await Durations.load(this.req.durationsFile);
    this.scheduler = new Scheduler(this.graph, usable, {
      keepGoing: this.req.keepGoing ?? false,
      ...(this.req.backoffBaseMs !== undefined ? { backoffBaseMs: this.req.backoffBaseMs } : {}),
      estimateMs: (n) => this.durations.estimate(n.name),
      placement: trustPlacement(this.trust),
    });
    this.planning = true;
    for (const l of this.links.values()) {
      if (l.lostReason) this.scheduler.builderDown(l.name, l.lostReason, this.now());
      else if (l.openSlots > 0) this.scheduler.builderUp(l.name, l.openSlots);
    }
    this.throwIfAborted();
    await this.learnLocalValidity();
    await this.connectAll(opening);
    this.throwIfAborted();
    this.scheduler.plan(this.now());
    this.checkCapable(usable);
    checkTrust(this.scheduler, usable, this.trust);
    this.recordNeeded();
    for (const r of this.graph.roots) this.maybeDownload(r);
    await this.loop();
    this.throwIfAborted();
    if (this.fatal) throw this.fatal;
    const failed = [...this.records.values()].filter((r) => r.status === "failed");
    if (failed.length) {
      // A build's last log lines travel on stderr and may trail its result on stdout.
      await new Promise((resolve) => setTimeout(resolve, 100));
      throw this.buildFailed(failed);
    }
    const outputs = this.rootOutputs();
    const base = this.req.outLink === undefined ? "result" : this.req.outLink;
    if (base !== null) await createOutLinks(outLinkNames(base, outputs), signal);
    await this.durations.save().catch(() => undefined);
    return this.result(
      outputs.map((o) => o.path),
      base,
    );
  }

  private throwIfAborted(): void {
    if (this.req.signal?.aborted) this.abort();
    if (this.fatal) throw this.fatal;
  }

  /** Outputs already in this machine's store need no builder (and neither do their inputs). */
  private async learnLocalValidity(): Promise<void> {
    const all = [...this.graph.nodes.values()].flatMap((n) => Object.values(n.outputs));
    const valid = new Set(await this.local.with((s) => s.queryValidPaths(all)));
    for (const p of valid) this.localPlace.known.add(p);
    for (const n of this.graph.nodes.values()) {
      if (Object.values(n.outputs).every((p) => valid.has(p))) this.scheduler.addLocation(n.drv, LOCAL);
    }
  }

  /** Connects to every builder at once; resolves as each transfer session is up (or not). */
  private openLinks(builders: readonly Builder[]): Promise<void> {
    const t = this.now();
    const all = builders.map(async (b) => {
      const link = new BuilderLink(b, this.req.sessions.openBuilder, (l, why) => this.lost(l, why));
      this.links.set(b.name, link);
      try {
        await link.connect();
        // The slot sessions ride on the transfer session's ssh connection (see serve-sessions.ts).
        link.openSlotSessions((n) => {
          if (link.lostReason || !this.planning) return;
          this.scheduler.builderUp(b.name, n);
          this.wake();
        });
      } catch (e) {
        // Lost, not only killed: a link without a reason would count as still opening its slots.
        if (!link.lostReason) link.fail(e instanceof Error ? e.message : String(e));
      }
    });
    return Promise.all(all).then(() => {
      this.stats.connectMs = this.now() - t;
    });
  }

  /** Asks every connected builder, in one request each, which of the outputs it already holds. */
  private async connectAll(opening: Promise<void>): Promise<void> {
    await opening;
    const wanted = [...this.graph.nodes.values()].filter(
      (n) => !this.scheduler.state(n.drv).locations.has(LOCAL),
    );
    const outPaths = wanted.flatMap((n) => Object.values(n.outputs));
    await Promise.all(
      [...this.links.values()]
        .filter((l) => !l.lostReason)
        .map(async (link) => {
          try {
            const valid = new Set(
              outPaths.length ? await (link.transfer as DispatchSession).queryValidPaths(outPaths) : [],
            );
            for (const p of valid) link.place.known.add(p);
            for (const n of wanted) {
              if (Object.values(n.outputs).every((p) => valid.has(p)))
                this.scheduler.addLocation(n.drv, link.name);
            }
          } catch (e) {
            if (!link.lostReason) link.fail(e instanceof Error ? e.message : String(e));
          }
        }),
    );
    const up = [...this.links.values()].filter((l) => !l.lostReason);
    if (up.length === 0) throw this.allDown();
  }

  /** Builders still opening slot sessions: more slots may come. */
  private opening(): number {
    return [...this.links.values()].filter((l) => !l.lostReason && l.openSlots < l.builder.maxJobs).length;
  }

  private lost(link: BuilderLink, reason: string): void {
    if (this.fatal) return;
    this.emit({ kind: "builder-down", builder: link.name, reason });
    // Lost before the graph is known: the scheduler hears of it when it is made.
    if (!this.planning) return;
    const done = [...this.scheduler.nodes].filter(([, s]) => s.status === "done").map(([d]) => d);
    this.scheduler.builderDown(link.name, reason, this.now());
    // Built, but its outputs were only there: built again, and --json says why.
    for (const drv of done) {
      if (this.scheduler.state(drv).status === "done" || !this.records.has(drv)) continue;
      const rec = this.record(drv);
      const why = `its outputs were lost with builder ${link.name} (${reason})`;
      rec.retries.push({ builder: link.name, reason: why });
      this.emit({ kind: "retry", name: rec.name, builder: link.name, reason: why });
    }
    this.recordNeeded();
    this.syncRecords();
    this.wake();
  }

  /** Every needed derivation has a builder of the right system and features, or none of it starts. */
  private checkCapable(builders: readonly Builder[]): void {
    const bad = this.scheduler.incapable();
    if (bad.length === 0) return;
    const first = this.scheduler.node(bad[0] as string);
    throw new NixpoolError(
      "NO_CAPABLE_BUILDER",
      `No builder can build ${first.name}: it needs ${describeNeeds(first)}${bad.length > 1 ? ` (and ${bad.length - 1} more derivations cannot be placed)` : ""}; the pool offers ${builders.map(describeOffer).join(", ")}.`,
      {
        hint: "Add a builder with that system and those features to nixpool.toml (see nixpool builders --json).",
        exitCode: ExitCode.failed,
        details: { derivations: bad, needs: describeNeeds(first) },
      },
    );
  }

  private get trust(): TrustPolicy {
    return this.req.trust ?? DEFAULT_TRUST_POLICY;
  }

  private async loop(): Promise<void> {
    for (;;) {
      if (this.fatal) return;
      if (this.scheduler.stopping) return;
      for (const a of this.scheduler.assign()) this.track(this.attempt(a));
      this.emitStatus();
      const unfinished = this.scheduler.unfinished().length;
      if (unfinished === 0 && this.active.size === 0) return;
      if (this.active.size === 0 && this.opening() === 0 && unfinished > 0) {
        if (this.scheduler.stuck().length > 0) throw this.allDown();
      }
      await new Promise<void>((resolve) => {
        this.wakeUp = resolve;
      });
    }
  }

  private track(p: Promise<void>): void {
    this.active.add(p);
    void p.finally(() => {
      this.active.delete(p);
      this.wake();
    });
  }

  private async attempt(a: Assignment): Promise<void> {
    const link = this.links.get(a.builder) as BuilderLink;
    const node = this.scheduler.node(a.drv);
    const rec = this.record(a.drv);
    const log = this.log(a.drv);
    const slot = link.takeSlot((line) => {
      log.line(line);
      this.emit({ kind: "log", name: node.name, builder: link.name, line });
    });
    if (!slot) {
      this.finish(a.drv, { kind: "lost", message: `no open session on ${link.name}` });
      return;
    }
    const attempt = this.scheduler.state(a.drv).attempts;
    Object.assign(rec, {
      status: "running",
      builder: link.name,
      trust: link.builder.trust,
      slot: slot.index + 1,
      attempts: attempt,
    });
    rec.startedMs ??= this.now();
    await log.begin(attempt, link.name);
    this.emit({ kind: "start", name: node.name, builder: link.name, attempt });
    let phase: "upload" | "build" = "upload";
    let t = this.now();
    try {
      await this.ensureInputs(node, link, slot.session);
      this.span(rec, "upload", link.name, slot.index + 1, t);
      phase = "build";
      t = this.now();
      const result = await slot.session.buildDerivation(a.drv, this.drvs.basic(a.drv));
      this.span(rec, "build", link.name, slot.index + 1, t);
      link.releaseSlot(slot.index);
      if (isBuildSuccess(result)) {
        for (const p of Object.values(node.outputs)) link.place.known.add(p);
        this.durations.record(node.name, this.now() - t);
        this.finish(a.drv, { kind: "built" });
        this.emit({ kind: "done", name: node.name, builder: link.name, ms: this.now() - t });
        this.maybeDownload(a.drv);
      } else {
        const transient = result.statusName === "TransientFailure" || result.statusName === "MiscFailure";
        const msg =
          stripAnsi(result.errorMsg).trim().split("\n").filter(Boolean).slice(-1)[0] ?? result.statusName;
        this.finish(a.drv, {
          kind: "failed",
          transient,
          message: `${result.statusName} on ${link.name}: ${msg}`,
        });
      }
    } catch (e) {
      this.span(rec, phase, link.name, slot.index + 1, t);
      // The session's connection ended: wait a moment for the builder's verdict (the transfer
      // session, whose ssh connection the slot shared, says why), else the slot alone died.
      const connectionLost = e instanceof NixpoolError && e.code === "SERVE_CONNECTION_LOST";
      if (connectionLost && !link.lostReason) await link.lostWithin(2000);
      link.releaseSlot(slot.index);
      if (link.lostReason) {
        this.finish(a.drv, { kind: "lost", message: `builder ${link.name} was lost (${link.lostReason})` });
      } else if (e instanceof Requeue || this.fatal || connectionLost) {
        this.finish(a.drv, { kind: "lost", message: e instanceof Error ? e.message : String(e) }, false);
      } else {
        this.finish(a.drv, {
          kind: "failed",
          transient: false,
          message: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  private finish(drv: string, end: AttemptEnd, blame = true): void {
    const s = this.scheduler.state(drv);
    const where = s.runningOn ?? "?";
    if (!blame && end.kind === "lost") s.attempts = Math.max(0, s.attempts - 1);
    this.scheduler.finish(drv, end, this.now());
    const rec = this.record(drv);
    // Tried again: ready, or waiting for inputs that must be built again first.
    if (end.kind !== "built" && (s.status === "ready" || s.status === "waiting")) {
      rec.retries.push({ builder: where, reason: end.message });
      this.emit({ kind: "retry", name: rec.name, builder: where, reason: end.message });
    }
    if (end.kind === "built") {
      this.syncRecords([drv, ...this.scheduler.node(drv).dependents]);
      return;
    }
    // A failure can skip, or need again, much of the graph (rare: sync every record).
    this.recordNeeded();
    this.syncRecords();
  }

  /** Creates the records of derivations the scheduler needs and that have none yet. */
  private recordNeeded(): void {
    for (const [drv, st] of this.scheduler.nodes)
      if (st.status !== "idle" && !this.records.has(drv)) this.record(drv);
  }

  private ensureInputs(node: DrvNode, link: BuilderLink, session: DispatchSession): Promise<void> {
    return this.transfers().ensureInputs(node, link, session);
  }

  private fetchToLocal(drv: string, holder: BuilderLink): Promise<void> {
    return this.transfers().fetchToLocal(drv, holder);
  }

  private transfers(): StoreTransfers {
    return new StoreTransfers(
      this.scheduler,
      this.links,
      this.local,
      this.localPlace,
      this.req.sessions.transfer,
    );
  }

  /** Outputs the user asked for (or every output with --copy-back all) come home as soon as they exist. */
  private maybeDownload(drv: string): void {
    // The build is ending (Ctrl-C, a failed copy): a new try would fail at once, and again, for ever.
    if (this.fatal) return;
    const s = this.scheduler.state(drv);
    const wanted = this.graph.roots.includes(drv) || (this.req.copyBack === "all" && s.outcome === "built");
    if (!wanted || s.status !== "done" || s.locations.has(LOCAL) || this.downloading.has(drv)) return;
    const holder = [...s.locations].map((l) => this.links.get(l)).find((l) => l && !l.lostReason);
    if (!holder) return;
    this.downloading.add(drv);
    const rec = this.record(drv);
    const t = this.now();
    this.track(
      this.fetchToLocal(drv, holder)
        .then(
          // Drawn in the row of the slot that built it (0: found already built on that builder).
          () => this.span(rec, "download", holder.name, rec.builder === holder.name ? (rec.slot ?? 0) : 0, t),
          (e: unknown) => {
            // Lost on the way: the scheduler builds it again. Anything else ends the build.
            if (holder.lostReason || e instanceof Requeue) return;
            this.fatal ??= downloadFailed(rec.name, holder.name, e);
          },
        )
        .finally(() => {
          this.downloading.delete(drv);
          // Lost on the way: the scheduler builds it again; once it is done, it is fetched again.
          if (!this.scheduler.state(drv).locations.has(LOCAL)) this.retryDownloadsLater();
        }),
    );
  }

  private retryDownloadsLater(): void {
    for (const r of this.graph.roots) this.maybeDownload(r);
  }

  private rootOutputs(): { outputName: string; path: string }[] {
    return this.graph.roots.map((r, i) => {
      const outputName = this.rootOutputNames[i] ?? this.drvs.firstOutput(r);
      return { outputName, path: this.scheduler.node(r).outputs[outputName] as string };
    });
  }

  private record(drv: string): DerivationRecord {
    return this.book.get(drv, this.scheduler, this.now());
  }

  /** Brings the records of `drvs` (all when omitted) in line with the scheduler. */
  private syncRecords(drvs?: Iterable<string>): void {
    this.book.sync(this.scheduler, this.now(), drvs);
  }

  private log(drv: string): DerivationLog {
    let l = this.logs.get(drv);
    if (!l) {
      l = new DerivationLog(this.req.logDir, drv);
      this.logs.set(drv, l);
    }
    return l;
  }

  private span(
    rec: DerivationRecord,
    phase: "upload" | "build" | "download",
    builder: string,
    slot: number,
    startMs: number,
  ): void {
    rec.spans.push({ phase, builder, slot, startMs, endMs: this.now() });
  }

  private emit(e: DispatchEvent): void {
    this.req.onEvent?.(e);
  }

  private emitStatus(): void {
    if (!this.req.onEvent) return;
    // Drawn at most ten times a second: building a snapshot walks every record.
    const now = this.now();
    if (now - this.lastStatusMs < 100) return;
    this.lastStatusMs = now;
    this.emit({
      kind: "status",
      snapshot: this.book.snapshot(now, [...this.links.values()], this.scheduler),
    });
  }

  private allDown(): NixpoolError {
    return allBuildersDown([...this.links.values()]);
  }

  private buildFailed(failed: DerivationRecord[]): NixpoolError {
    return buildFailedError(failed, this.logs, [...this.records.values()]);
  }

  private result(outputs: string[], outLink: string | null): DispatchResult {
    return {
      outputs,
      outLink,
      records: [...this.records.values()],
      startedAtMs: this.t0,
      wallMs: this.now(),
      builders: [...this.links.values()].map((l) => ({ name: l.name, slots: l.builder.maxJobs })),
      stats: {
        ...this.stats,
        pathsUploaded: [...this.links.values()].reduce((n, l) => n + l.place.sent, 0),
        pathsDownloaded: this.localPlace.sent,
        derivationsInClosure: this.graph.nodes.size,
        ...ownUsage(),
      },
    };
  }

  /** Closes every session: cleanly after success, at once after a failure or Ctrl-C. */
  async shutdown(): Promise<void> {
    const hard = this.fatal !== undefined || (this.planning && this.scheduler.stopping);
    await Promise.allSettled(
      [...this.links.values()].map((l) => (hard ? Promise.resolve(l.kill()) : l.close())),
    );
    await Promise.allSettled(this.local.drain().map((s) => (hard ? Promise.resolve(s.kill()) : s.close())));
    await Promise.allSettled([...this.logs.values()].map((l) => l.end()));
    // Attempts still unwinding (killed sessions reject their requests) are waited for.
    await Promise.allSettled([...this.active]);
  }
}
