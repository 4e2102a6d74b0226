import { sql } from "kysely";
import { waitFor } from "../adapters/wait-for.js";
import type { NixpoolError } from "../core/errors.js";
import type { Dispatcher } from "../dispatch/dispatcher.js";
import type { ClaimOutcome, SharedWork } from "../dispatch/shared-claims.js";
import { isNixpoolError } from "../core/errors.js";
import type { BuildSummary, CoordinatorEvent, CoordinatorView, SubmitRequest } from "./coordinator-types.js";
import { isoAt, summaryOf } from "./coordinator-views.js";
import { orphaned, submitSchema } from "./submit-checks.js";
import { databaseUnreachable } from "./history-db.js";
import type { HistoryStore } from "./history-store.js";
import {
  HEARTBEAT_MS,
  PEER_TTL_MS,
  beat,
  claimWork,
  heldSlots,
  leave,
  peers,
  releaseWork,
  releasedClaims,
  slotsHeldByOthers,
  waitingElsewhere,
  waitingJson,
  type PeerRow,
  type QueuedWork,
} from "./pool-claims.js";
import { nowMs } from "./pool-lease.js";

/** A build another coordinator left unfinished, as the database holds it. */
export interface OrphanBuild {
  id: string;
  seq: number;
  label: string;
  client: string;
  request: string;
  submittedAt: string;
  /** The coordinator that ran it (null: one from before several coordinators). */
  from: string | null;
}

export interface PeersHooks {
  /** Runs an adopted build here (this coordinator owns it in the database already). */
  adopt(b: OrphanBuild): Promise<void>;
  /** Sends an event to this coordinator's subscribers. */
  emit(e: CoordinatorEvent): void;
  /** The slots other coordinators hold on `builder` changed. */
  slotsChanged(builder: string): void;
  /** Whether this coordinator runs build `id` now. */
  runs(id: string): boolean;
  log(line: string): void;
  /**
   * Its waiting derivations, written with every heartbeat for the autoscaler's leader, and where
   * it can use rented workers (`state`: host and state directory); absent without autoscaling.
   */
  queue?: { state: string; waiting(): QueuedWork[] };
}

/** How far back others' finished builds are looked at (their end reaches this one's streams). */
const RECENT_MS = 60_000;

/**
 * This coordinator among others on one PostgreSQL database (docs/coordinator.md, "Several
 * coordinators"): its heartbeat, its claims of derivations and builder slots (pool-claims.ts),
 * the builds of coordinators that died (adopted here, under the same id), and the others' builds'
 * changes, polled every heartbeat and sent to this coordinator's streams.
 */
export class CoordinatorPeers implements SharedWork {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private adopting = true;
  private away: NixpoolError | undefined;
  private stopped = false;
  /** Since when (this clock) every heartbeat was taken: adoption waits until that spans PEER_TTL_MS. */
  private upSinceMs = Date.now();
  /** Slots of each builder the other coordinators hold, as last read. */
  private elsewhere = new Map<string, number>();
  /** Others' builds as last sent, to send only changes. */
  private readonly shown = new Map<string, string>();
  /** What the other coordinators of this state directory wait for, as last read. */
  private othersQueue: QueuedWork[] = [];

  constructor(
    private readonly history: HistoryStore,
    readonly id: string,
    private url: string | null,
    private readonly hooks: PeersHooks,
  ) {}

  private get db() {
    return this.history.kysely;
  }

  private get engine() {
    return this.history.target.engine;
  }

  /** This coordinator joins the others: its history's writes and its dispatcher's attempts go through the database. */
  static async join(
    history: HistoryStore,
    id: string,
    dispatcher: Dispatcher,
    hooks: PeersHooks,
  ): Promise<CoordinatorPeers> {
    history.owner = id;
    const peers = new CoordinatorPeers(history, id, null, hooks);
    dispatcher.share(peers);
    await peers.start();
    return peers;
  }

  /**
   * Writes the first heartbeat, then beats every HEARTBEAT_MS; adoption and polling run on their
   * own timer, so that slow ones never delay a heartbeat (a late heartbeat is a coordinator taken
   * for dead).
   */
  async start(): Promise<void> {
    await beat(this.db, this.engine, this.id, this.url, this.queueJson());
    this.beatTimer = setInterval(() => {
      this.beating ??= this.beatOnce().finally(() => (this.beating = undefined));
    }, HEARTBEAT_MS);
    this.beatTimer.unref();
    this.timer = setInterval(() => {
      this.ticking ??= this.tick().finally(() => (this.ticking = undefined));
    }, HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Takes no more builds of others (a coordinator that drains or closes). */
  stopAdopting(): void {
    this.adopting = false;
  }

  /** The database did not take the last heartbeat: new builds are refused (DATABASE_UNREACHABLE). */
  get unavailable(): NixpoolError | undefined {
    return this.away;
  }

  private async beatOnce(): Promise<void> {
    try {
      // A database cut off the network answers nothing: two heartbeats without an answer is away.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer to the heartbeat")), 2 * HEARTBEAT_MS);
      });
      await Promise.race([beat(this.db, this.engine, this.id, this.url, this.queueJson()), late]).finally(
        () => clearTimeout(timer),
      );
    } catch (e) {
      this.upSinceMs = Infinity;
      if (!this.away) {
        this.away = databaseUnreachable(this.history.target, e);
        this.hooks.log(`several coordinators: ${this.away.message} (no new builds until it answers)`);
      }
      return;
    }
    if (this.upSinceMs === Infinity) this.upSinceMs = Date.now();
    if (this.away) {
      this.away = undefined;
      this.hooks.log("several coordinators: the database answers again");
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.away) return;
    // After the database was away, every coordinator's heartbeat looks stale for a moment: a
    // coordinator adopts only once the others had PEER_TTL_MS to beat again too.
    if (this.adopting && Date.now() - this.upSinceMs >= PEER_TTL_MS)
      await this.adoptOrphans().catch((e: unknown) =>
        this.hooks.log(
          `several coordinators: adopting builds failed: ${e instanceof Error ? e.message : String(e)}`,
        ),
      );
    await this.pollOthers().catch(() => undefined);
    await this.pollSlots().catch(() => undefined);
    await this.pollQueue().catch(() => undefined);
  }

  private queueJson(): string | null {
    const q = this.hooks.queue;
    return q ? waitingJson(q.state, q.waiting()) : null;
  }

  private async pollQueue(): Promise<void> {
    const q = this.hooks.queue;
    if (q) this.othersQueue = await waitingElsewhere(this.db, this.engine, this.id, q.state);
  }

  /**
   * The derivations the other live coordinators of this state directory wait for (as of the last
   * heartbeat): the autoscaler's leader plans from them too.
   */
  queuedElsewhere(): QueuedWork[] {
    return this.othersQueue;
  }

  /** Slots of `builder` the other coordinators hold (as of the last heartbeat). */
  slotsElsewhere(builder: string): number {
    return this.elsewhere.get(builder) ?? 0;
  }

  private async pollSlots(): Promise<void> {
    const now = await slotsHeldByOthers(this.db, this.engine, this.id);
    const before = this.elsewhere;
    this.elsewhere = now;
    for (const b of new Set([...before.keys(), ...now.keys()]))
      if ((before.get(b) ?? 0) !== (now.get(b) ?? 0)) this.hooks.slotsChanged(b);
  }

  /** Where this coordinator's API answers, written with the next heartbeat. */
  advertise(url: string): void {
    this.url = url;
  }

  /** The coordinators sharing the database, alive or not (GET /api/coordinators). */
  async views(): Promise<CoordinatorView[]> {
    const rows: PeerRow[] = await this.history.read("the coordinators", (db) => peers(db, this.engine));
    return rows.map((p) => ({
      id: p.id,
      url: p.url,
      self: p.id === this.id,
      alive: p.alive,
      startedAt: isoAt(p.startedMs),
      heartbeatAt: isoAt(p.heartbeatMs),
    }));
  }

  /** Builds queued or running on a coordinator that is dead: each taken here (one taker wins) and run. */
  private async adoptOrphans(): Promise<void> {
    const rows = await this.db
      .selectFrom("builds")
      .select(["id", "seq", "label", "client", "request", "submitted_at", "coordinator"])
      .where("status", "in", ["queued", "running"])
      .where((eb) =>
        eb.or([
          eb("coordinator", "is", null),
          sql<boolean>`not exists (select 1 from coordinators where coordinators.id = builds.coordinator and coordinators.heartbeat_ms >= ${nowMs(this.engine)} - ${PEER_TTL_MS})`,
        ]),
      )
      .orderBy("seq")
      .execute();
    for (const r of rows) {
      if (this.stopped || !this.adopting || r.coordinator === this.id || this.hooks.runs(r.id)) continue;
      const taken = await this.db
        .updateTable("builds")
        .set({ coordinator: this.id })
        .where("id", "=", r.id)
        .where("status", "in", ["queued", "running"])
        .where((eb) =>
          r.coordinator === null ? eb("coordinator", "is", null) : eb("coordinator", "=", r.coordinator),
        )
        .executeTakeFirst();
      if (Number(taken.numUpdatedRows) !== 1) continue; // another coordinator was first
      this.hooks.log(
        `several coordinators: adopting build ${r.id} from ${r.coordinator ?? "a stopped coordinator"}`,
      );
      await this.hooks.adopt({
        id: r.id,
        seq: Number(r.seq),
        label: r.label,
        client: r.client,
        request: r.request,
        submittedAt: r.submitted_at,
        from: r.coordinator,
      });
    }
  }

  /** Others' builds that changed since the last look go to this coordinator's streams as `build` events. */
  private async pollOthers(): Promise<void> {
    const since = new Date(Date.now() - RECENT_MS).toISOString();
    const rows = await this.db
      .selectFrom("builds")
      .selectAll()
      .where((eb) => eb.or([eb("coordinator", "is", null), eb("coordinator", "!=", this.id)]))
      .where((eb) => eb.or([eb("status", "in", ["queued", "running"]), eb("finished_at", ">=", since)]))
      .execute();
    const seen = new Set<string>();
    for (const r of rows) {
      seen.add(r.id);
      if (this.hooks.runs(r.id)) continue;
      let build: BuildSummary;
      try {
        build = this.history.summary(r);
      } catch {
        continue; // a damaged row is the history's to report where it is read
      }
      const text = JSON.stringify(build);
      if (this.shown.get(r.id) === text) continue;
      this.shown.set(r.id, text);
      this.hooks.emit({ type: "build", build });
    }
    // One shown unfinished that left the window (it ended while this one did not look, or by
    // another clock): read by id, so that its end still reaches the streams that follow it.
    const vanished = [...this.shown.keys()].filter((id) => !seen.has(id));
    if (vanished.length > 0) {
      const last = await this.db.selectFrom("builds").selectAll().where("id", "in", vanished).execute();
      for (const r of last) {
        const build = this.history.summary(r);
        if (this.shown.get(r.id) !== JSON.stringify(build)) this.hooks.emit({ type: "build", build });
      }
    }
    for (const id of vanished) this.shown.delete(id);
  }

  claim(w: { drv: string; builder: string; slots: number; force: boolean }): Promise<ClaimOutcome> {
    return claimWork(this.db, this.engine, { ...w, holder: this.id, buildId: null });
  }

  release(w: { drv: string; builder: string; slot: number; built: boolean }): Promise<void> {
    return releaseWork(this.db, this.engine, { ...w, holder: this.id });
  }

  released(drvs: readonly string[]): Promise<Map<string, { builtOn: string | undefined }>> {
    return releasedClaims(this.db, this.engine, drvs);
  }

  heldSlots(builder: string): Promise<number> {
    return heldSlots(this.db, this.engine, builder);
  }

  /**
   * Stops beating. `handOver`: the row goes at once (with this coordinator's slots and claims), so
   * another coordinator adopts what is left without waiting for the heartbeat to expire.
   */
  async stop(handOver: boolean): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.beatTimer);
    await Promise.all([this.ticking, this.beating]);
    if (handOver)
      await waitFor(
        () =>
          leave(this.db, this.engine, this.id).then(
            () => true,
            () => false,
          ),
        { timeoutMs: 5_000, intervalMs: 500 },
      ).catch(() => undefined);
  }
}

/** An adopted build's request, when this machine's store holds its derivations; else BUILD_ORPHANED. */
export async function adoptableRequest(
  o: OrphanBuild,
  queryValid: (paths: string[]) => Promise<string[]>,
): Promise<SubmitRequest> {
  let data: SubmitRequest;
  try {
    data = submitSchema.parse(JSON.parse(o.request)) as SubmitRequest;
  } catch {
    throw orphaned(o, "its stored request is damaged");
  }
  const drvs = [...new Set(data.derivations.filter((d) => !d.given).map((d) => d.drv))];
  const valid = await queryValid(drvs);
  if (valid.length < drvs.length) throw orphaned(o, "its derivations are not in this machine's store");
  return data;
}

/**
 * Ends an adopted build that cannot go on (failed, with why), straight from its row: the end is
 * written even when its detail cannot be read; returns it as a summary to send.
 */
export async function failOrphan(
  history: HistoryStore,
  o: OrphanBuild,
  e: unknown,
  at: string,
): Promise<BuildSummary | undefined> {
  const error =
    isNixpoolError(e) && e.code === "BUILD_ORPHANED"
      ? e
      : orphaned(o, e instanceof Error ? e.message : String(e));
  const owner = history.owner;
  history.write(`build ${o.id}`, (db) => {
    const q = db
      .updateTable("builds")
      .set({ status: "failed", finished_at: at, error_code: error.code, error_message: error.message })
      .where("id", "=", o.id);
    return (owner === null ? q : q.where("coordinator", "=", owner)).execute();
  });
  await history.settled();
  const d = await history.build(o.id).catch(() => undefined);
  return d ? summaryOf(d) : undefined;
}
