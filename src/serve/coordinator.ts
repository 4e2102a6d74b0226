import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { hostname } from "node:os";
import type { Builder } from "../core/builder.js";
import { noBuildersError } from "../core/builder-connection-error.js";
import { ExitCode, NixpoolError, configError, isNixpoolError } from "../core/errors.js";
import { statePaths } from "../config/state-paths.js";
import { waitFor as waitUntil } from "../adapters/wait-for.js";
import { BuildRun } from "../dispatch/build-run.js";
import type { TrustPolicy } from "../core/dispatch/trust-policy.js";
import { Dispatcher } from "../dispatch/dispatcher.js";
import { Fleet, type FleetEvent, type FleetSessions } from "../dispatch/fleet.js";
import { transferCounts, transfersSince } from "./transfer-counts.js";
import type { DispatchEvent } from "../dispatch/run-dispatch.js";
import { serviceSessions } from "../dispatch/serve-sessions.js";
import { ServeSession } from "../adapters/nix-serve-session.js";
import type { CacheSources } from "./cache/cache-stores.js";
import { coordinatorCacheSources } from "./cache/coordinator-cache-sources.js";
import { RentedWorkers } from "./rented-workers.js";
import type {
  BuildDetail,
  BuildId,
  BuildReport,
  BuildStatus,
  BuildSummary,
  BuilderView,
  ClientIdentity,
  CoordinatorApi,
  CoordinatorEvent,
  CoordinatorView,
  AutoscaleView,
  DerivationView,
  SubmitRequest,
  WorkerView,
} from "./coordinator-types.js";
import {
  isoAt,
  liveDetail,
  liveSummary,
  type LiveBuild,
  reportOf,
  storedLog,
  timelineOf,
  toBuilderView,
  toDerivationView,
} from "./coordinator-views.js";
import { HistoryStore } from "./history-store.js";
import { AutoscaleRecords } from "./history-autoscale.js";
import type { DatabaseTarget } from "../core/database-url.js";
import { PoolStore } from "./pool-store.js";
import {
  createAutoscaler,
  sharedQueue,
  type CoordinatorAutoscale,
} from "./autoscale/coordinator-autoscale.js";
import {
  givenDerivationsOf,
  mayCancel,
  notYours,
  submitSchema,
  submitterOf,
  unknownBuild,
} from "./submit-checks.js";
import { CoordinatorPeers, adoptableRequest, failOrphan, type OrphanBuild } from "./coordinator-peers.js";

export interface CoordinatorOptions {
  stateDir: string;
  /** The pool (builders without a pinned host key are left out). */
  builders: Builder[];
  /** Session factories (default: nixpool's ssh_config in the state directory, over ssh). */
  sessions?: FleetSessions;
  /** Base of the builder backoff (default 60 s). */
  backoffBaseMs?: number;
  /** The clock for the times shown and recorded (default Date.now). */
  clock?: () => number;
  /** How often rented workers and their cost are read again (default 30 s). */
  workersEveryMs?: number;
  /** The inventory's `[policy]` for every build (docs/trust.md); default: none. */
  trust?: TrustPolicy;
  /** Users (uids) whose gateway sessions may submit for a client (`serve --gateway-user`); root and this process's user always may. */
  gatewayUids?: readonly number[];
  /** The history's database (default: SQLite in STATE/serve/history.sqlite). */
  database?: DatabaseTarget;
  /** Where the coordinator reports what it cannot answer for (a history write that failed). */
  log?: (line: string) => void;
  /** `[autoscale.hetzner]`: the coordinator rents and deletes workers (docs/autoscale.md); the pool may then start empty. */
  autoscale?: CoordinatorAutoscale;
}

/**
 * The coordinator's engine (`nixpool serve`): one Dispatcher over one Fleet of warm builder
 * connections, kept alive; every submitted build runs on it at once, slots shared by fair share;
 * every change is written to the history (SQLite) as it happens and sent to subscribers. The HTTP
 * API and the dashboard sit on top of it (CoordinatorApi).
 */
export class Coordinator implements CoordinatorApi {
  readonly live = new Map<BuildId, LiveBuild>();
  /** The last builds to finish, as they ended: their streams' last event needs no database (nor one still open). */
  private readonly ended = new Map<BuildId, BuildDetail>();
  private readonly listeners = new Set<(e: CoordinatorEvent) => void>();
  private seq: number;
  private draining = false;
  private closed = false;
  private rented!: RentedWorkers;
  private autoscaler: ReturnType<typeof createAutoscaler> | undefined;
  /** The other coordinators on the same database (PostgreSQL), when there may be some. */
  private peers: CoordinatorPeers | undefined;
  private handingOver = false;
  private advertised: string | null = null;
  private readonly startedMs = Date.now();

  private constructor(
    private readonly opts: CoordinatorOptions,
    private readonly history: HistoryStore,
    private readonly fleet: Fleet,
    private readonly dispatcher: Dispatcher,
    private readonly muxDir: string | undefined,
    private readonly openReader: ((b: Builder, name: string) => Promise<ServeSession>) | undefined,
    seq: number,
  ) {
    this.seq = seq;
    fleet.subscribe((e) => this.onFleet(e));
  }

  /**
   * Opens the history (builds a stopped coordinator left unfinished are failed, with the reason),
   * then connects to every builder; builds can be submitted at once.
   */
  static async open(opts: CoordinatorOptions): Promise<Coordinator> {
    const usable = opts.builders.filter((b) => b.hostKey);
    if (usable.length === 0 && !opts.autoscale) throw noBuildersError(opts.builders.length);
    const clock = opts.clock ?? Date.now;
    const paths = statePaths(opts.stateDir);
    const log = opts.log ?? (() => undefined);
    const { history, seq } = await HistoryStore.openForCoordinator(
      opts.database ?? { engine: "sqlite", path: paths.serve.historyDb, display: paths.serve.historyDb },
      isoAt(clock()),
      (e) => log(e ? `history: ${e.message}` : "history: the database answers again; queued writes applied"),
      opts.database?.engine === "postgres",
    );
    let muxDir: string | undefined;
    let sessions = opts.sessions;
    let openReader: ((b: Builder, name: string) => Promise<ServeSession>) | undefined;
    if (!sessions) {
      const made = await serviceSessions(opts.stateDir, usable);
      [sessions, openReader, muxDir] = [made, made.openReader, made.muxDir];
    }
    const fleet = new Fleet(usable, sessions, {
      resultsFile: paths.trust.resultsFile,
      ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
    });
    const dispatcher = new Dispatcher(fleet, paths.dispatch.durationsFile);
    const c = new Coordinator(opts, history, fleet, dispatcher, muxDir, openReader, seq);
    fleet.start();
    if (opts.database?.engine === "postgres") {
      // Several coordinators may share the pool: heartbeats, claims, adoption (coordinator-peers.ts).
      c.peers = await CoordinatorPeers.join(history, c.instanceId, dispatcher, {
        adopt: (o) => c.adopt(o),
        emit: (e) => c.emit(e),
        runs: (id) => c.live.has(id),
        slotsChanged: (name) => c.emitBuilder(name),
        log,
        ...(opts.autoscale ? { queue: sharedQueue(opts.stateDir, () => c.live.values()) } : {}),
      });
    }
    if (opts.autoscale) {
      c.autoscaler = createAutoscaler(opts.autoscale, {
        lease: {
          take: (ms) => c.tryLease("autoscaler", ms),
          give: () => history.releaseLease("autoscaler", c.instanceId),
        },
        stateDir: opts.stateDir,
        writeSshFiles: !opts.sessions,
        fleet,
        history: new AutoscaleRecords(history),
        clock,
        builds: () => c.live.values(),
        ...(c.peers ? { peers: c.peers } : {}),
      });
      await c.autoscaler.start().catch(async (e: unknown) => {
        await c.close();
        throw e;
      });
    }
    c.rented = new RentedWorkers(opts.stateDir, history, clock, c.peers !== undefined);
    await c.rented.start(opts.workersEveryMs ?? 30_000);
    return c;
  }

  private now(): number {
    return (this.opts.clock ?? Date.now)();
  }

  /** Starts a build of derivations the client has evaluated (in this machine's store); returns its id. */
  submit(req: SubmitRequest, client: ClientIdentity): BuildId {
    if (this.draining || this.closed) {
      throw new NixpoolError(
        "COORDINATOR_DRAINING",
        "The coordinator is shutting down and takes no new builds.",
        {
          hint: "Submit again once it is back (systemctl status nixpool-serve), or build locally with nixpool build.",
        },
      );
    }
    // It could not record the build (or, with several coordinators, claim its work).
    const away = this.history.unavailable ?? this.peers?.unavailable;
    if (away) throw away;
    const parsed = submitSchema.safeParse(req);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      throw configError(
        "SUBMIT_INVALID",
        `The build request is invalid: ${first?.path.join(".") || "(root)"}: ${first?.message ?? "?"}.`,
        {
          hint: "Send derivations as [{drv: /nix/store/…drv, output}] and a label (docs/coordinator.md).",
        },
      );
    }
    // zod's optional fields may hold undefined; JSON never carries one.
    const data = parsed.data as SubmitRequest;
    client = submitterOf(client, data.onBehalfOf, this.gatewayUids());
    const given = givenDerivationsOf(data);
    const unknown = (data.builders ?? []).filter((n) => !this.fleet.builders.some((b) => b.name === n));
    if (unknown.length > 0) {
      throw configError("BUILDER_UNKNOWN", `No builder ${unknown.join(", ")} in this coordinator's pool.`, {
        hint: `Its builders: ${this.fleet.builders.map((b) => b.name).join(", ")}.`,
      });
    }
    const seq = ++this.seq;
    return this.start(`${seq.toString(36)}${randomBytes(3).toString("hex")}`, seq, data, client, given);
  }

  /** Runs a build: a new one, or (`adopted`) one another coordinator left, under its id. */
  private start(
    id: BuildId,
    seq: number,
    data: SubmitRequest,
    client: ClientIdentity,
    given: ReturnType<typeof givenDerivationsOf>,
    adopted?: { submittedMs: number },
  ): BuildId {
    const submittedMs = adopted?.submittedMs ?? this.now();
    let resolve!: (d: BuildDetail) => void;
    const done = new Promise<BuildDetail>((r) => (resolve = r));
    const b: LiveBuild = {
      id,
      seq,
      label: data.label,
      client,
      req: data,
      submittedMs,
      status: "queued",
      shown: new Map(),
      outputs: [],
      sentAtStart: transferCounts(this.fleet),
      done,
      resolve,
      run: undefined as unknown as BuildRun,
    };
    b.run = new BuildRun(this.dispatcher, {
      client: client.user,
      keepGoing: data.keepGoing ?? false,
      copyBack: data.copyBack ?? "needed",
      ...(data.builders ? { builders: data.builders } : {}),
      logDir: statePaths(this.opts.stateDir).logs.dir,
      startedAtMs: Date.now(),
      ...(this.opts.trust ? { trust: this.opts.trust } : {}),
      trustDir: statePaths(this.opts.stateDir).trust.dir,
      ...(given ? { given } : {}),
      onEvent: (e) => this.onDispatch(b, e),
    });
    this.live.set(id, b);
    if (adopted) this.history.updateBuild(liveDetail(b));
    else this.history.insertBuild(liveSummary(b), seq, data);
    this.emit({ type: "build", build: liveSummary(b) });
    void this.execute(b);
    return id;
  }

  /** A dead coordinator's build, now this one's: run here under its id, or BUILD_ORPHANED (coordinator-peers.ts). */
  private async adopt(o: OrphanBuild): Promise<void> {
    try {
      const data = await adoptableRequest(o, (p) => this.fleet.local.with((s) => s.queryValidPaths(p)));
      const client: ClientIdentity = { user: o.client, via: o.client === "token" ? "token" : "socket" };
      this.start(o.id, o.seq, data, client, givenDerivationsOf(data), {
        submittedMs: Date.parse(o.submittedAt),
      });
    } catch (e) {
      const ended = await failOrphan(this.history, o, e, isoAt(this.now()));
      if (ended) this.emit({ type: "build", build: ended });
    }
  }

  private async execute(b: LiveBuild): Promise<void> {
    try {
      const { outputs } = await b.run.run(b.req.derivations);
      b.outputs = outputs.map((o) => o.path);
      b.status = "succeeded";
    } catch (e) {
      b.status = b.cancelledBy !== undefined ? "cancelled" : "failed";
      b.error = isNixpoolError(e)
        ? { code: e.code, message: e.message }
        : { code: "INTERNAL", message: e instanceof Error ? e.message : String(e) };
    }
    await b.run.shutdown();
    if (this.handingOver) {
      // Several coordinators: a stopping one leaves its builds running in the database for
      // another to adopt; its clients' streams end without an end, so they follow it there.
      this.live.delete(b.id);
      b.resolve(liveDetail(b));
      return;
    }
    b.startedMs ??= this.now();
    b.finishedMs = this.now();
    this.syncDerivations(b);
    if (b.run.graph) b.report = this.report(b);
    const detail = liveDetail(b);
    this.history.updateBuild(detail);
    if (b.report) this.history.saveRecords(b.id, b.report);
    // Readers of the history see the build as it ended once it leaves the live set (while the
    // database is away its end stays queued: a drain or close must not wait for the database).
    await this.history.settled();
    this.ended.set(b.id, detail);
    if (this.ended.size > 256) this.ended.delete(this.ended.keys().next().value as BuildId);
    this.live.delete(b.id);
    this.emit({ type: "build", build: liveSummary(b) });
    b.resolve(detail);
  }

  private onDispatch(b: LiveBuild, e: DispatchEvent): void {
    this.emit({ type: "dispatch", buildId: b.id, event: e });
    switch (e.kind) {
      case "log":
        this.emit({ type: "log", buildId: b.id, drv: e.drv, line: e.line });
        return;
      case "start":
        if (b.status === "queued") {
          b.status = "running";
          b.startedMs = this.now();
          this.history.updateBuild(liveDetail(b));
          this.emit({ type: "build", build: liveSummary(b) });
        }
        this.syncDerivations(b, [e.drv]);
        this.emitBuilder(e.builder);
        return;
      case "done":
      case "retry":
        this.syncDerivations(b, [e.drv]);
        this.emitBuilder(e.builder);
        return;
      case "status":
        this.syncDerivations(b);
        this.history.updateBuild(liveDetail(b));
        this.emit({ type: "build", build: liveSummary(b) });
        return;
      case "builder-down":
        return;
    }
  }

  /** Writes and sends the derivations whose view changed (all of the build's when `drvs` is absent). */
  private syncDerivations(b: LiveBuild, drvs?: readonly string[]): void {
    const records = b.run.records;
    const ended = b.finishedMs !== undefined;
    const changed: DerivationView[] = [];
    for (const r of drvs
      ? drvs.map((d) => records.get(d)).filter((x) => x !== undefined)
      : records.values()) {
      const v = toDerivationView(r, b.run.t0, ended);
      const text = JSON.stringify(v);
      if (b.shown.get(r.drv) === text) continue;
      b.shown.set(r.drv, text);
      changed.push(v);
    }
    if (changed.length === 0) return;
    this.history.saveDerivations(b.id, changed);
    for (const d of changed) this.emit({ type: "derivation", buildId: b.id, derivation: d });
  }

  /** Accounts on the socket that may submit for a gateway client: root, this process's, `--gateway-user`'s. */
  gatewayUids(): Set<number> {
    const own = process.getuid?.();
    return new Set([0, ...(own !== undefined ? [own] : []), ...(this.opts.gatewayUids ?? [])]);
  }

  /** Only the submitter (or root, this process, the gateway for its clients) may cancel; a finished build is left as it is. */
  async cancel(id: BuildId, client: ClientIdentity): Promise<void> {
    const b = this.live.get(id);
    if (!b) {
      if (await this.history.build(id)) return;
      throw unknownBuild(id);
    }
    if (!mayCancel(b.client, client, this.gatewayUids())) throw notYours(id, b.client, client);
    if (b.cancelledBy !== undefined) return;
    b.cancelledBy = client.user;
    b.run.abort(
      new NixpoolError("BUILD_CANCELLED", `Build ${id} was cancelled by ${client.user}.`, {
        exitCode: ExitCode.interrupted,
      }),
    );
  }

  async waitFor(id: BuildId): Promise<BuildDetail> {
    const b = this.live.get(id);
    if (b) return b.done;
    const d = await this.history.build(id);
    if (!d) throw unknownBuild(id);
    return d;
  }

  builders(): BuilderView[] {
    return this.fleet.builders.map((b) => this.builderView(b.name));
  }

  private builderView(name: string): BuilderView {
    const b = this.fleet.builders.find((x) => x.name === name) as Builder;
    const state = this.fleet.board.builders.get(name);
    const link = this.fleet.links.get(name);
    const waiting = state !== undefined && !state.up && link?.lostReason !== undefined;
    const health = state?.up ? "up" : waiting && !this.fleet.isProbing(name) ? "backoff" : "down";
    const current: BuilderView["current"] = [];
    for (const lb of this.live.values()) {
      for (const r of lb.run.records.values()) {
        if (r.status === "running" && r.builder === name)
          current.push({ buildId: lb.id, drv: r.drv, name: r.name });
      }
    }
    const nextProbe =
      health === "backoff" && state
        ? isoAt(this.now() + Math.max(0, state.downUntilMs - this.fleet.now()))
        : undefined;
    const v = toBuilderView(b, state, health, current, nextProbe);
    return this.peers ? { ...v, inUseElsewhere: this.peers.slotsElsewhere(name) } : v;
  }

  private emitBuilder(name: string): void {
    if (this.listeners.size === 0 || !this.fleet.board.builders.has(name)) return;
    this.emit({ type: "builder", builder: this.builderView(name) });
  }

  private onFleet(e: FleetEvent): void {
    if (e.kind === "removed")
      return this.history.builderEvent(isoAt(this.now()), e.builder, "removed", e.reason);
    const v = this.builderView(e.builder);
    if (e.kind !== "up" || v.inUse === 0) {
      this.history.builderEvent(
        isoAt(this.now()),
        e.builder,
        e.kind === "probe" ? "probe" : v.health,
        e.kind === "down" ? e.reason : undefined,
      );
    }
    this.emit({ type: "builder", builder: v });
  }

  async builds(q: { limit?: number; status?: BuildStatus; client?: string } = {}): Promise<BuildSummary[]> {
    return (await this.history.builds(q)).map((s) => {
      const b = this.live.get(s.id);
      return b ? liveSummary(b) : s;
    });
  }

  async build(id: BuildId): Promise<BuildDetail | undefined> {
    const b = this.live.get(id);
    if (b) return liveDetail(b);
    // A finished build's detail carries its stored report (records, builders, stats), as it ended.
    return this.ended.get(id) ?? this.history.build(id);
  }

  /** A derivation's build log (the last attempt's, from whichever build built it). */
  derivationLog(id: BuildId, drv: string): Promise<string | undefined> {
    const b = this.live.get(id);
    return storedLog(this.opts.stateDir, drv, b ? b.run.records.has(drv) : undefined, this.history, id);
  }

  async timelineSvg(id: BuildId): Promise<string | undefined> {
    const b = this.live.get(id);
    const now = b?.run.graph
      ? { records: [...b.run.records.values()], wallMs: b.run.now(), builders: this.slotsOfBuilders() }
      : undefined;
    return timelineOf(id, b ? { label: b.label, now } : undefined, this.history);
  }

  /** What the client draws its report from, as a local build's result has it. */
  private report(b: LiveBuild): BuildReport {
    return reportOf(b.run, this.slotsOfBuilders(), transfersSince(this.fleet, b.sentAtStart));
  }

  private slotsOfBuilders(): { name: string; slots: number }[] {
    return this.fleet.builders.map((b) => ({ name: b.name, slots: b.maxJobs }));
  }

  autoscale(): AutoscaleView | undefined {
    return this.autoscaler?.view();
  }

  /** Rented cloud workers now, with their cost so far (read again every workersEveryMs). */
  workers(): WorkerView[] {
    return this.rented.list();
  }

  readonly instanceId = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;

  /** Where this coordinator's API answers (others list it: GET /api/coordinators). */
  advertise(url: string): void {
    this.advertised = url;
    this.peers?.advertise(url);
  }

  async coordinators(): Promise<CoordinatorView[]> {
    if (this.peers) return this.peers.views();
    const at = isoAt(this.startedMs);
    return [
      { id: this.instanceId, url: this.advertised, self: true, alive: true, startedAt: at, heartbeatAt: at },
    ];
  }

  /** True while this coordinator holds the lease `name` (each call renews it for ttlMs): see pool-lease.ts. */
  tryLease(name: string, ttlMs: number): Promise<boolean> {
    return this.history.tryLease(name, this.instanceId, ttlMs);
  }

  /** Where the binary cache reads paths: this machine's store and the builders (their trust, and whether up). */
  cacheSources(): CacheSources {
    return coordinatorCacheSources(this.fleet, this.openReader, () => this.closed, this.history);
  }

  /** The pool's stores as one, for the gateway (/api/pool/*): docs/gateway.md. */
  poolStore(): PoolStore {
    return new PoolStore(this.fleet, this.openReader);
  }

  subscribe(fn: (e: CoordinatorEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: CoordinatorEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {
        // A subscriber's failure is its own (a closed stream); the others still hear.
      }
    }
  }

  /**
   * Takes no new builds and lets the running ones finish for up to `graceMs`; those still running
   * then fail ("coordinator stopped"), and the coordinator closes.
   */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.peers?.stopAdopting();
    await waitUntil(() => this.live.size === 0, { timeoutMs: graceMs, intervalMs: 50 }).catch(
      () => undefined,
    );
    this.handingOver = this.peers !== undefined; // another coordinator adopts what is left
    await this.stopAll(`coordinator stopped (drained; the grace of ${Math.round(graceMs / 1000)} s ended)`);
    await this.close();
  }

  private async stopAll(reason: string): Promise<void> {
    const running = [...this.live.values()];
    for (const b of running) {
      b.run.abort(new NixpoolError("COORDINATOR_STOPPED", `Build ${b.id} did not finish: ${reason}.`));
    }
    await Promise.all(running.map((b) => b.done));
  }

  /** Stops every running build (failed: "coordinator stopped"), closes every connection and the history. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.draining = true;
    this.peers?.stopAdopting();
    this.rented?.stop();
    this.handingOver = this.peers !== undefined;
    await this.stopAll("coordinator stopped (closed)");
    await this.autoscaler?.close(); // deletes its workers, recording each decision and cost
    this.closed = true;
    await this.peers?.stop(true); // its slots and claims free at once, its row gone
    this.dispatcher.close();
    await this.fleet.shutdown(true);
    await this.history.close();
    if (this.muxDir) await rm(this.muxDir, { recursive: true, force: true });
  }
}
