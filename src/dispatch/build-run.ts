import type { BuildCheck, DerivationRecord } from "../core/build-record.js";
import { describeNeeds, describeOffer } from "../core/dispatch/capability.js";
import { buildGraph, type BuildGraph, type DrvNode } from "../core/dispatch/graph.js";
import { LOCAL, Scheduler, type Assignment, type AttemptEnd } from "../core/dispatch/scheduler.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { isBuildSuccess } from "../core/nix-serve/build.js";
import { stripAnsi } from "../core/build-log.js";
import { trustPlacement } from "../core/dispatch/placement.js";
import { checkTrust } from "../core/dispatch/trust-check.js";
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from "../core/dispatch/trust-policy.js";
import type { BuilderLink } from "./builder-link.js";
import { allBuildersDown, buildFailedError, downloadFailed } from "./dispatch-errors.js";
import { DerivationLog } from "./derivation-log.js";
import type { DispatchedBuild, Dispatcher } from "./dispatcher.js";
import type { Durations } from "./durations.js";
import type { EvaluatedRoot } from "./evaluate.js";
import { Requeue, StoreTransfers } from "./store-transfers.js";
import { RecordBook } from "./dispatch-records.js";
import type { DispatchSession } from "./store-session.js";
import { fromDerivations, loadDerivations, type LoadedDerivations } from "./load-derivations.js";
import type { Derivation } from "../core/derivation.js";
import { BuildChecks } from "./build-checks.js";
import type { DispatchEvent } from "./run-dispatch.js";

export interface BuildRunOptions {
  /** Who submitted it (fair share); "local" for a CLI build. */
  client?: string;
  keepGoing?: boolean;
  /**
   * "needed": the requested outputs (and what other builders need); "all": every built output;
   * "none": the requested outputs stay where they were built (deploy copies them on from there).
   */
  copyBack?: "needed" | "all" | "none";
  /** Directory for per-derivation logs. */
  logDir: string;
  /** Trusted-only derivations, untrusted results, --verify (docs/trust.md); default: none. */
  trust?: TrustPolicy;
  /** STATE/trust: who built what (results.jsonl), and outputs of builds that differ. */
  trustDir?: string;
  /** Only these builders of the fleet (by name); all when absent. */
  builders?: readonly string[];
  /** nixpool verify: derivations to build again although their outputs exist, and the builders that may not. */
  rebuild?: ReadonlyMap<string, ReadonlySet<string>>;
  /** nixpool verify: the earlier build each rebuilt derivation is compared with. */
  references?: ReadonlyMap<string, BuildCheck>;
  onEvent?: (e: DispatchEvent) => void;
  /**
   * Roots given by value (the gateway's BuildDerivation: no .drv in this store, every input a
   * source); when set, the graph is these derivations and nothing is read from the store.
   */
  given?: ReadonlyMap<string, Derivation>;
  /** ms since the epoch the build counts from (default: now). */
  startedAtMs?: number;
}

/** A build's outcome once every derivation has settled: the roots' outputs, or the error. */
export interface BuildRunOutcome {
  outputs: { outputName: string; path: string }[];
  /** Per output, where it is valid: "local" and/or builder names. */
  holders: string[][];
  records: DerivationRecord[];
}

/**
 * One build on the dispatcher: its derivation graph, its Scheduler (on the dispatcher's shared
 * board of slots), its records and logs, and each attempt on a builder's slot. The dispatcher
 * decides which build's derivation takes a free slot; everything else about a build is here.
 */
export class BuildRun implements DispatchedBuild {
  readonly t0: number;
  readonly seq: number;
  readonly client: string;
  graph!: BuildGraph;
  scheduler!: Scheduler;
  private drvs!: LoadedDerivations;
  private durations!: Durations;
  private planned = false;
  readonly book = new RecordBook();
  private lastStatusMs = -Infinity;
  readonly logs = new Map<string, DerivationLog>();
  private readonly active = new Set<Promise<void>>();
  private readonly downloading = new Set<string>();
  /** The slot each running derivation holds, to stop it when the build is cancelled. */
  private readonly holding = new Map<string, { link: BuilderLink; index: number }>();
  private fatal: NixpoolError | undefined;
  private wakeUp: (() => void) | undefined;
  private rootOutputNames: string[] = [];
  private readonly checks: BuildChecks;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly opts: BuildRunOptions,
  ) {
    this.t0 = opts.startedAtMs ?? Date.now();
    this.seq = dispatcher.nextSeq();
    this.client = opts.client ?? "local";
    this.checks = new BuildChecks(opts.trustDir, opts.references);
  }

  private get fleet() {
    return this.dispatcher.fleet;
  }

  get records(): Map<string, DerivationRecord> {
    return this.book.records;
  }

  get running(): number {
    return this.planned ? this.scheduler.running : 0;
  }

  get topPriority(): number {
    return this.planned ? this.scheduler.topPriority() : 0;
  }

  /** The error that ended the build early (Ctrl-C, cancel, a failed copy, every builder down). */
  get error(): NixpoolError | undefined {
    return this.fatal;
  }

  now(): number {
    return Date.now() - this.t0;
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /** Ends the build early with `error` (interrupted by default); its running derivations stop. */
  abort(error?: NixpoolError): void {
    this.fatal ??=
      error ??
      new NixpoolError("INTERRUPTED", "The build was interrupted.", { exitCode: ExitCode.interrupted });
    this.stopAttempts();
    this.wake();
  }

  /** Kills the slot sessions running this build's derivations (a remote build stops with its session). */
  stopAttempts(): void {
    for (const { link, index } of this.holding.values()) link.killSlot(index);
  }

  /**
   * Runs the build to its end: reads the graph of `roots`, learns what every store holds, then
   * takes slots through the dispatcher until every needed derivation has settled. Rejects with
   * the build's error (a failed derivation: BUILD_FAILED with its log tail).
   */
  async run(roots: readonly EvaluatedRoot[]): Promise<BuildRunOutcome> {
    try {
      await this.prepare(roots);
      await this.loop();
      this.throwIfFailed();
      const failed = [...this.records.values()].filter((r) => r.status === "failed");
      if (failed.length) {
        // A build's last log lines travel on stderr and may trail its result on stdout.
        await new Promise((resolve) => setTimeout(resolve, 100));
        throw this.checks.errorFor(failed) ?? buildFailedError(failed, this.logs, [...this.records.values()]);
      }
      await this.durations.save().catch(() => undefined);
      return {
        outputs: this.rootOutputs(),
        holders: this.graph.roots.map((r) => [...this.scheduler.state(r).locations]),
        records: [...this.records.values()],
      };
    } finally {
      this.dispatcher.detach(this);
    }
  }

  private async prepare(roots: readonly EvaluatedRoot[]): Promise<void> {
    const drvRoots = roots.map((r) => r.drv);
    this.rootOutputNames = roots.map((r) => r.output);
    this.drvs = this.opts.given ? fromDerivations(this.opts.given) : await loadDerivations(drvRoots);
    this.graph = buildGraph(this.drvs.inputs, drvRoots);
    this.durations = await this.dispatcher.durations();
    this.scheduler = new Scheduler(this.graph, this.fleet.board, {
      keepGoing: this.opts.keepGoing ?? false,
      estimateMs: (n) => this.durations.estimate(n.name),
      placement: trustPlacement(this.trust),
      ...(this.opts.builders ? { only: new Set(this.opts.builders) } : {}),
      ...(this.opts.rebuild ? { rebuild: this.opts.rebuild } : {}),
    });
    this.dispatcher.attach(this);
    this.throwIfFailed();
    await this.learnLocalValidity();
    await this.learnBuilderValidity();
    this.throwIfFailed();
    this.scheduler.plan(this.now());
    this.checkCapable();
    checkTrust(this.scheduler, this.fleet.builders, this.trust, this.fleet.mayGrow);
    this.recordNeeded();
    this.planned = true;
    for (const r of this.graph.roots) this.maybeDownload(r);
  }

  private get trust(): TrustPolicy {
    return this.opts.trust ?? DEFAULT_TRUST_POLICY;
  }

  private throwIfFailed(): void {
    if (this.fatal) throw this.fatal;
  }

  /** Outputs already in this machine's store need no builder (and neither do their inputs). */
  private async learnLocalValidity(): Promise<void> {
    const all = [...this.graph.nodes.values()].flatMap((n) => Object.values(n.outputs));
    const valid = new Set(await this.fleet.local.with((s) => s.queryValidPaths(all)));
    for (const p of valid) this.fleet.localPlace.known.add(p);
    for (const n of this.graph.nodes.values()) {
      if (Object.values(n.outputs).every((p) => valid.has(p))) this.scheduler.addLocation(n.drv, LOCAL);
    }
  }

  /** Asks every connected builder, in one request each, which of the outputs it already holds. */
  private async learnBuilderValidity(): Promise<void> {
    await this.fleet.connected;
    const wanted = [...this.graph.nodes.values()].filter(
      (n) => !this.scheduler.state(n.drv).locations.has(LOCAL) || this.opts.rebuild?.has(n.drv),
    );
    const outPaths = wanted.flatMap((n) => Object.values(n.outputs));
    const links = [...this.fleet.links.values()];
    await Promise.all(
      links
        .filter((l) => !l.lostReason && l.transfer)
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
    const up = [...this.fleet.links.values()].filter((l) => !l.lostReason);
    if (up.length === 0 && this.fleet.opening() === 0 && !this.fleet.mayGrow) throw this.allDown();
  }

  /** The dispatcher heard that a builder is gone (the board has it down already). */
  builderLost(builder: string, reason: string): void {
    if (this.fatal) return;
    this.emit({ kind: "builder-down", builder, reason });
    if (!this.scheduler) return;
    const done = [...this.scheduler.nodes].filter(([, s]) => s.status === "done").map(([d]) => d);
    this.scheduler.lostOutputsOn(builder, this.now());
    // Built, but its outputs were only there: built again, and --json says why.
    for (const drv of done) {
      if (this.scheduler.state(drv).status === "done" || !this.records.has(drv)) continue;
      const rec = this.record(drv);
      const why = `its outputs were lost with builder ${builder} (${reason})`;
      rec.retries.push({ builder, reason: why });
      this.emit({ kind: "retry", drv, name: rec.name, builder, reason: why });
    }
    this.recordNeeded();
    this.syncRecords();
    this.wake();
  }

  unsettled(): { drv: string; outputs: string[] }[] {
    if (!this.scheduler) return [];
    return [...this.scheduler.nodes]
      .filter(([, st]) => st.status === "waiting" || st.status === "ready")
      .map(([drv]) => ({ drv, outputs: Object.values(this.graph.nodes.get(drv)?.outputs ?? {}) }));
  }

  builtElsewhere(drv: string, builder: string): void {
    if (!this.scheduler || !this.scheduler.nodes.has(drv)) return;
    this.scheduler.builtElsewhere(drv, builder, this.now());
    this.syncRecords([drv, ...this.scheduler.node(drv).dependents]);
    this.maybeDownload(drv);
    this.wake();
  }

  /** Every needed derivation has a builder of the right system and features, or none of it starts. */
  private checkCapable(): void {
    const grow = this.fleet.mayGrow;
    const bad = this.scheduler.incapable().filter((d) => !grow?.(this.scheduler.node(d)));
    if (bad.length === 0) return;
    const first = this.scheduler.node(bad[0] as string);
    throw new NixpoolError(
      "NO_CAPABLE_BUILDER",
      `No builder can build ${first.name}: it needs ${describeNeeds(first)}${bad.length > 1 ? ` (and ${bad.length - 1} more derivations cannot be placed)` : ""}; the pool offers ${this.fleet.builders.map(describeOffer).join(", ")}.`,
      {
        hint: "Add a builder with that system and those features to nixpool.toml (see nixpool builders --json).",
        exitCode: ExitCode.failed,
        details: { derivations: bad, needs: describeNeeds(first) },
      },
    );
  }

  /** Ready derivations that no slot has taken yet (what the coordinator's autoscaler counts). */
  waiting(): DrvNode[] {
    if (!this.planned || this.fatal || this.scheduler.stopping) return [];
    const out: DrvNode[] = [];
    for (const [drv, s] of this.scheduler.nodes) if (s.status === "ready") out.push(this.scheduler.node(drv));
    return out;
  }

  wantsSlots(): boolean {
    return this.planned && !this.fatal && !this.scheduler.stopping && this.scheduler.hasReady();
  }

  assignOne(skip: (drv: string) => boolean): Assignment | undefined {
    return this.scheduler.assign({ max: 1, skip })[0];
  }

  startAttempt(a: Assignment): void {
    this.track(this.attempt(a));
  }

  private async loop(): Promise<void> {
    for (;;) {
      if (this.fatal) return;
      if (this.scheduler.stopping) return;
      this.dispatcher.assign();
      this.emitStatus();
      const unfinished = this.scheduler.unfinished().length;
      if (unfinished === 0 && this.active.size === 0) return;
      if (this.active.size === 0 && this.fleet.opening() === 0 && unfinished > 0) {
        // Work a builder yet to join (an autoscaled worker) could take waits for it.
        const grow = this.fleet.mayGrow;
        if (this.scheduler.stuck().some((d) => !grow?.(this.scheduler.node(d)))) throw this.allDown();
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
    const link = this.fleet.links.get(a.builder) as BuilderLink;
    const node = this.scheduler.node(a.drv);
    const rec = this.record(a.drv);
    const log = this.log(a.drv);
    const slot = link.takeSlot((line) => {
      log.line(line);
      this.emit({ kind: "log", drv: a.drv, name: node.name, builder: link.name, line });
    });
    if (!slot) {
      this.finish(a.drv, { kind: "lost", message: `no open session on ${link.name}` });
      return;
    }
    // Several coordinators: the derivation and a slot are claimed in their database first.
    const shared = this.dispatcher.shared;
    const lease = await shared?.take(a.drv, link, () => this.fatal !== undefined || this.scheduler.stopping);
    if (shared && !lease) {
      link.releaseSlot(slot.index);
      this.scheduler.putBack(a.drv);
      this.dispatcher.attemptEnded(this, a.drv);
      return;
    }
    this.holding.set(a.drv, { link, index: slot.index });
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
    this.emit({ kind: "start", drv: a.drv, name: node.name, builder: link.name, attempt });
    let phase: "upload" | "build" = "upload";
    let t = this.now();
    try {
      if (this.fatal) throw new Requeue("the build is ending");
      await this.transfers().ensureInputs(node, link, slot.session);
      this.span(rec, "upload", link.name, slot.index + 1, t);
      phase = "build";
      t = this.now();
      const result = await slot.session.buildDerivation(a.drv, this.drvs.basic(a.drv));
      const builtOn = [...this.scheduler.state(a.drv).builtOn];
      const differs = isBuildSuccess(result)
        ? await this.checks.afterBuild(rec, node, link, slot.session, builtOn, this.fleet.links)
        : undefined;
      this.span(rec, "build", link.name, slot.index + 1, t);
      this.holding.delete(a.drv);
      link.releaseSlot(slot.index);
      lease?.release(isBuildSuccess(result) && !differs);
      if (differs) {
        this.finish(a.drv, { kind: "failed", transient: false, message: differs.message });
      } else if (isBuildSuccess(result)) {
        for (const p of Object.values(node.outputs)) link.place.known.add(p);
        this.durations.record(node.name, this.now() - t);
        this.finish(a.drv, { kind: "built" });
        this.emit({ kind: "done", drv: a.drv, name: node.name, builder: link.name, ms: this.now() - t });
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
      this.holding.delete(a.drv);
      // The session's connection ended: wait a moment for the builder's verdict (the transfer
      // session, whose ssh connection the slot shared, says why), else the slot alone died.
      const connectionLost = e instanceof NixpoolError && e.code === "SERVE_CONNECTION_LOST";
      if (connectionLost && !link.lostReason && !this.fatal) await link.lostWithin(2000);
      link.releaseSlot(slot.index);
      lease?.release(false);
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
    this.dispatcher.attemptEnded(this, drv, s.status === "done" && end.kind === "built" ? where : undefined);
    const rec = this.record(drv);
    // Tried again: ready, or waiting for inputs that must be built again first.
    if (end.kind !== "built" && (s.status === "ready" || s.status === "waiting")) {
      rec.retries.push({ builder: where, reason: end.message });
      this.emit({ kind: "retry", drv, name: rec.name, builder: where, reason: end.message });
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

  private transfers(): StoreTransfers {
    return new StoreTransfers(
      this.scheduler,
      this.fleet.links,
      this.fleet.local,
      this.fleet.localPlace,
      this.fleet.transfer,
      this.opts.given ? this.fleet.paths : undefined,
    );
  }

  /** Outputs the user asked for (or every output with --copy-back all) come home as soon as they exist. */
  private maybeDownload(drv: string): void {
    // The build is ending (Ctrl-C, a failed copy): a new try would fail at once, and again, for ever.
    if (this.fatal || this.opts.copyBack === "none") return;
    const s = this.scheduler.state(drv);
    const wanted = this.graph.roots.includes(drv) || (this.opts.copyBack === "all" && s.outcome === "built");
    if (!wanted || s.status !== "done" || s.locations.has(LOCAL) || this.downloading.has(drv)) return;
    const holder = [...s.locations].map((l) => this.fleet.links.get(l)).find((l) => l && !l.lostReason);
    if (!holder) return;
    this.downloading.add(drv);
    const rec = this.record(drv);
    const t = this.now();
    this.track(
      this.transfers()
        .fetchToLocal(drv, holder)
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
          if (!this.scheduler.state(drv).locations.has(LOCAL))
            for (const r of this.graph.roots) this.maybeDownload(r);
        }),
    );
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
      l = new DerivationLog(this.opts.logDir, drv);
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
    this.opts.onEvent?.(e);
  }

  private emitStatus(): void {
    if (!this.opts.onEvent) return;
    // Drawn at most ten times a second: building a snapshot walks every record.
    const now = this.now();
    if (now - this.lastStatusMs < 100) return;
    this.lastStatusMs = now;
    this.emit({
      kind: "status",
      snapshot: this.book.snapshot(now, [...this.fleet.links.values()], this.scheduler),
    });
  }

  private allDown(): NixpoolError {
    const names = this.scheduler.stuck().map((d) => this.scheduler.node(d).name);
    return allBuildersDown([...this.fleet.links.values()], names);
  }

  /** Whether the build ended in a way that leaves sessions worth closing hard (failure, stop). */
  get endedHard(): boolean {
    return this.fatal !== undefined || (this.planned && this.scheduler.stopping);
  }

  /** Waits for its attempts to unwind and closes its logs. */
  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.logs.values()].map((l) => l.end()));
    // Attempts still unwinding (killed sessions reject their requests) are waited for.
    await Promise.allSettled([...this.active]);
  }
}
