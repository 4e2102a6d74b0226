import { sql, type Kysely, type RawBuilder } from "kysely";
import type { HistoryEngine, HistoryTables } from "./history-schema.js";

/**
 * Named leases with expiry in the history's database: whoever holds `name` (a coordinator's id)
 * until `expires_at_ms`. One coordinator at a time runs what a lease guards (the autoscaler:
 * two coordinators must never rent for the same queue). Taking is one atomic upsert: free, expired
 * or already ours → ours until now + ttl; held by another → refused. On PostgreSQL the time is the
 * database's clock (coordinators' clocks may differ); SQLite has one coordinator and its clock.
 */
export async function tryLease(
  db: Kysely<HistoryTables>,
  engine: HistoryEngine,
  name: string,
  holder: string,
  ttlMs: number,
): Promise<boolean> {
  const now = nowMs(engine);
  const expires = sql<number>`${now} + ${Math.max(1, Math.round(ttlMs))}`;
  const row = await db
    .insertInto("leases")
    .values({ name, holder, expires_at_ms: expires })
    .onConflict((oc) =>
      oc
        .column("name")
        .doUpdateSet({ holder, expires_at_ms: expires })
        .where((eb) => eb.or([eb("leases.holder", "=", holder), eb("leases.expires_at_ms", "<", now)])),
    )
    .returning("holder")
    .executeTakeFirst();
  return row?.holder === holder;
}

/** Gives a lease up at once (only its holder can). */
export async function releaseLease(db: Kysely<HistoryTables>, name: string, holder: string): Promise<void> {
  await db.deleteFrom("leases").where("name", "=", name).where("holder", "=", holder).execute();
}

/** Who holds `name` now (undefined: nobody, or the lease expired). */
export async function leaseHolder(
  db: Kysely<HistoryTables>,
  engine: HistoryEngine,
  name: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom("leases")
    .select("holder")
    .where("name", "=", name)
    .where("expires_at_ms", ">=", nowMs(engine))
    .executeTakeFirst();
  return row?.holder;
}

/** Now, in ms since the epoch, by the database's clock on PostgreSQL (coordinators' clocks may differ). */
export function nowMs(engine: HistoryEngine): RawBuilder<number> {
  return engine === "postgres"
    ? sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`
    : sql<number>`${Date.now()}`;
}
