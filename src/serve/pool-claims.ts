import { sql, type Kysely } from "kysely";
import { z } from "zod";
import type { ClaimOutcome } from "../dispatch/shared-claims.js";
import type { HistoryEngine, HistoryTables } from "./history-schema.js";
import { nowMs } from "./pool-lease.js";

/**
 * Several coordinators, one pool: the database says who is alive (a heartbeat every
 * HEARTBEAT_MS; dead PEER_TTL_MS after the last), who builds which derivation (claims) and who
 * holds which slot of a builder (slot leases, unique per builder and slot). A derivation attempt
 * takes its claim and a slot in one transaction, so each derivation runs once and a builder's
 * slots are never exceeded across coordinators; what a dead coordinator held is free at once.
 * On PostgreSQL every time is the database's clock.
 */
export const HEARTBEAT_MS = 2_000;
export const PEER_TTL_MS = 10_000;
/** How long a finished claim tells others where the derivation was built. */
const BUILT_MEMORY_MS = 10 * 60_000;

type Db = Kysely<HistoryTables>;

export interface PeerRow {
  id: string;
  url: string | null;
  startedMs: number;
  heartbeatMs: number;
  alive: boolean;
}

/** Writes this coordinator's heartbeat (first: its row), with its waiting work (waitingJson) when given. */
export async function beat(
  db: Db,
  engine: HistoryEngine,
  id: string,
  url: string | null,
  waitingJson: string | null = null,
): Promise<void> {
  const now = nowMs(engine);
  await db
    .insertInto("coordinators")
    .values({ id, url, started_ms: now, heartbeat_ms: now, waiting: waitingJson })
    .onConflict((oc) => oc.column("id").doUpdateSet({ heartbeat_ms: now, url, waiting: waitingJson }))
    .execute();
}

/** A derivation waiting for a slot in a coordinator's builds (what the autoscaler plans from). */
export interface QueuedWork {
  drv: string;
  system: string;
  features: readonly string[];
}

/** How many waiting derivations a heartbeat carries at most (the plan needs counts, not every one). */
export const WAITING_SHARED_MAX = 1000;

const waitingShape = z.object({
  /** Where its worker records live (host and state directory): only there can it use a rented worker. */
  state: z.string().max(4096),
  work: z
    .array(
      z.object({
        drv: z.string().regex(/^\/nix\/store\/[0-9a-z]{32}-[^/]+\.drv$/),
        system: z.string().min(1).max(200),
        features: z.array(z.string().min(1).max(200)).max(50),
      }),
    )
    .max(WAITING_SHARED_MAX),
});

/** The `waiting` column of a heartbeat: the first WAITING_SHARED_MAX of `work`, and where they wait. */
export function waitingJson(state: string, work: readonly QueuedWork[]): string {
  return JSON.stringify({ state, work: work.slice(0, WAITING_SHARED_MAX) });
}

/**
 * The derivations the other live coordinators of the same state directory (`state`) wait for, as
 * their last heartbeat wrote them; a row that does not parse counts as none.
 */
export async function waitingElsewhere(
  db: Db,
  engine: HistoryEngine,
  id: string,
  state: string,
): Promise<QueuedWork[]> {
  const rows = await db
    .selectFrom("coordinators")
    .select("waiting")
    .where("id", "!=", id)
    .where("waiting", "is not", null)
    .where("heartbeat_ms", ">=", sql<number>`${nowMs(engine)} - ${PEER_TTL_MS}`)
    .execute();
  const out: QueuedWork[] = [];
  for (const r of rows) {
    let parsed;
    try {
      parsed = waitingShape.safeParse(JSON.parse(r.waiting ?? "null"));
    } catch {
      continue;
    }
    if (parsed.success && parsed.data.state === state) out.push(...parsed.data.work);
  }
  return out;
}

/** The coordinators that shared the database lately, alive or not. */
export async function peers(db: Db, engine: HistoryEngine): Promise<PeerRow[]> {
  const rows = await db
    .selectFrom("coordinators")
    .select(["id", "url", "started_ms", "heartbeat_ms", sql<number>`${nowMs(engine)}`.as("now")])
    .orderBy("started_ms")
    .execute();
  return rows.map((r) => ({
    id: r.id,
    url: r.url,
    startedMs: Number(r.started_ms),
    heartbeatMs: Number(r.heartbeat_ms),
    alive: Number(r.heartbeat_ms) >= Number(r.now) - PEER_TTL_MS,
  }));
}

/** A clean stop: slots and claims given back, and the row gone (others adopt at once). */
export async function leave(db: Db, engine: HistoryEngine, id: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.deleteFrom("slot_leases").where("holder", "=", id).execute();
    await tx
      .updateTable("claims")
      .set({ state: "failed", updated_ms: nowMs(engine) })
      .where("holder", "=", id)
      .where("state", "=", "building")
      .execute();
    await tx.deleteFrom("coordinators").where("id", "=", id).execute();
  });
}

/** True where `holderRef`'s coordinator has a heartbeat younger than PEER_TTL_MS. */
function holderAlive(engine: HistoryEngine, holderRef: "claims.holder" | "slot_leases.holder") {
  return sql<boolean>`exists (select 1 from coordinators where coordinators.id = ${sql.ref(holderRef)} and coordinators.heartbeat_ms >= ${nowMs(engine)} - ${PEER_TTL_MS})`;
}

class Full extends Error {}

/**
 * Claims `drv` for `holder` and one of the `slots` slots of `builder`, in one transaction. A claim
 * is taken when nobody has it, it is ours, its build failed, its holder is dead, or a build of it
 * is old news (or `force`: the builder that built it is gone).
 */
export async function claimWork(
  db: Db,
  engine: HistoryEngine,
  w: { holder: string; drv: string; buildId: string | null; builder: string; slots: number; force?: boolean },
): Promise<ClaimOutcome> {
  // A slot another coordinator took at the same moment: look again (each loss means one slot fewer).
  for (let tries = 0; ; tries++) {
    const r = await claimOnce(db, engine, w);
    if (r !== "raced" || tries >= w.slots) return r === "raced" ? { kind: "full" } : r;
  }
}

async function claimOnce(
  db: Db,
  engine: HistoryEngine,
  w: { holder: string; drv: string; buildId: string | null; builder: string; slots: number; force?: boolean },
): Promise<ClaimOutcome | "raced"> {
  const now = nowMs(engine);
  try {
    return await db.transaction().execute(async (tx) => {
      // Only a coordinator the others count as alive claims (its heartbeat renewed here too): one
      // taken for dead waits until its heartbeat is back, its builds perhaps adopted meanwhile.
      const alive = await tx
        .updateTable("coordinators")
        .set({ heartbeat_ms: now })
        .where("id", "=", w.holder)
        .where("heartbeat_ms", ">=", sql<number>`${now} - ${PEER_TTL_MS}`)
        .executeTakeFirst();
      if (Number(alive.numUpdatedRows) !== 1) throw new Full();
      // A claim of this derivation here whose answer was lost (a commit the client did not hear).
      await tx
        .deleteFrom("slot_leases")
        .where("holder", "=", w.holder)
        .where("drv", "=", w.drv)
        .where("builder", "=", w.builder)
        .execute();
      const values = { holder: w.holder, build_id: w.buildId, builder: w.builder, state: "building" };
      const won = await tx
        .insertInto("claims")
        .values({ drv: w.drv, ...values, updated_ms: now })
        .onConflict((oc) =>
          oc
            .column("drv")
            .doUpdateSet({ ...values, updated_ms: now })
            .where((eb) =>
              eb.or([
                eb("claims.holder", "=", w.holder),
                eb("claims.state", "=", "failed"),
                eb.and([
                  eb("claims.state", "=", "building"),
                  sql<boolean>`not ${holderAlive(engine, "claims.holder")}`,
                ]),
                eb.and([
                  eb("claims.state", "=", "built"),
                  w.force
                    ? sql<boolean>`true`
                    : eb("claims.updated_ms", "<", sql<number>`${now} - ${BUILT_MEMORY_MS}`),
                ]),
              ]),
            ),
        )
        .returning("holder")
        .executeTakeFirst();
      if (won?.holder !== w.holder) {
        const row = await tx
          .selectFrom("claims")
          .select(["holder", "state", "builder"])
          .where("drv", "=", w.drv)
          .executeTakeFirstOrThrow();
        return row.state === "built"
          ? { kind: "built" as const, builder: row.builder }
          : { kind: "held" as const, by: row.holder };
      }
      const used = await tx
        .selectFrom("slot_leases")
        .select("slot")
        .where("builder", "=", w.builder)
        .where(holderAlive(engine, "slot_leases.holder"))
        .execute();
      const taken = new Set(used.map((r) => Number(r.slot)));
      let slot = 0;
      while (slot < w.slots && taken.has(slot)) slot++;
      if (slot >= w.slots) throw new Full();
      // A dead holder's lease of that slot goes; a live one (taken meanwhile) stays and the insert fails.
      await tx
        .deleteFrom("slot_leases")
        .where("builder", "=", w.builder)
        .where("slot", "=", slot)
        .where(sql<boolean>`not ${holderAlive(engine, "slot_leases.holder")}`)
        .execute();
      await tx
        .insertInto("slot_leases")
        .values({ builder: w.builder, slot, holder: w.holder, drv: w.drv, since_ms: now })
        .execute();
      return { kind: "ok" as const, slot };
    });
  } catch (e) {
    if (e instanceof Full) return { kind: "full" };
    if (isUniqueViolation(e)) return "raced";
    throw e;
  }
}

function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE";
}

/** Ends an attempt: the claim says built (and where) or failed, and the slot is free. */
export async function releaseWork(
  db: Db,
  engine: HistoryEngine,
  w: { holder: string; drv: string; builder: string; slot: number; built: boolean },
): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx
      .updateTable("claims")
      .set({ state: w.built ? "built" : "failed", builder: w.builder, updated_ms: nowMs(engine) })
      .where("drv", "=", w.drv)
      .where("holder", "=", w.holder)
      .execute();
    await tx
      .deleteFrom("slot_leases")
      .where("builder", "=", w.builder)
      .where("slot", "=", w.slot)
      .where("holder", "=", w.holder)
      .execute();
  });
}

/**
 * Of derivations another coordinator was building: those no longer being built (finished,
 * failed, or their holder died), each with the builder that built it when it was built.
 */
export async function releasedClaims(
  db: Db,
  engine: HistoryEngine,
  drvs: readonly string[],
): Promise<Map<string, { builtOn: string | undefined }>> {
  const out = new Map<string, { builtOn: string | undefined }>();
  if (drvs.length === 0) return out;
  const rows = await db
    .selectFrom("claims")
    .select(["drv", "state", "builder", holderAlive(engine, "claims.holder").as("alive")])
    .where("drv", "in", drvs)
    .execute();
  const seen = new Set<string>();
  for (const r of rows) {
    seen.add(r.drv);
    const alive = r.alive === true || Number(r.alive) === 1;
    if (r.state === "built") out.set(r.drv, { builtOn: r.builder });
    else if (r.state !== "building" || !alive) out.set(r.drv, { builtOn: undefined });
  }
  for (const d of drvs) if (!seen.has(d)) out.set(d, { builtOn: undefined });
  return out;
}

/** Slots each builder's other live coordinators (not `holder`) hold now. */
export async function slotsHeldByOthers(
  db: Db,
  engine: HistoryEngine,
  holder: string,
): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom("slot_leases")
    .select((eb) => ["builder", eb.fn.countAll().as("n")])
    .where("holder", "!=", holder)
    .where(holderAlive(engine, "slot_leases.holder"))
    .groupBy("builder")
    .execute();
  return new Map(rows.map((r) => [r.builder, Number(r.n)]));
}

/** How many slots of `builder` live coordinators hold now. */
export async function heldSlots(db: Db, engine: HistoryEngine, builder: string): Promise<number> {
  const row = await db
    .selectFrom("slot_leases")
    .select((eb) => eb.fn.countAll().as("n"))
    .where("builder", "=", builder)
    .where(holderAlive(engine, "slot_leases.holder"))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}
