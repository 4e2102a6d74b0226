import { configError } from "./errors.js";

/**
 * The coordinator's database: `[coordinator] database = "postgresql://…"` in the inventory or
 * NIXPOOL_DATABASE_URL; SQLite under the state directory when neither is set. The URL's password
 * is never shown: `display` is the URL with it replaced.
 */
export type DatabaseTarget =
  | { engine: "sqlite"; path: string; display: string }
  | { engine: "postgres"; url: string; display: string; password?: string };

/** A postgresql:// (or postgres://) URL, checked; its password kept apart for redaction. */
export function parseDatabaseUrl(text: string, from: string): DatabaseTarget {
  let u: URL | undefined;
  try {
    u = new URL(text);
  } catch {
    u = undefined;
  }
  if (
    !u ||
    (u.protocol !== "postgresql:" && u.protocol !== "postgres:") ||
    (!u.hostname && !u.searchParams.has("host"))
  ) {
    throw configError(
      "DATABASE_URL_INVALID",
      `The coordinator's database in ${from} is not a PostgreSQL URL.`,
      {
        hint: "Write it as postgresql://USER:PASSWORD@HOST:5432/DATABASE (or leave it out for SQLite under the state directory); see docs/coordinator.md.",
      },
    );
  }
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  return {
    engine: "postgres",
    url: text,
    display: redactDatabaseUrl(text),
    ...(password ? { password } : {}),
  };
}

/** The URL with its password replaced by "***" (what logs and errors show). */
export function redactDatabaseUrl(text: string): string {
  try {
    const u = new URL(text);
    if (u.password) u.password = "***";
    for (const k of [...u.searchParams.keys()]) if (/pass/i.test(k)) u.searchParams.set(k, "***");
    return u.toString();
  } catch {
    return "(an invalid database URL)";
  }
}

/**
 * Which database nixpool serve uses: NIXPOOL_DATABASE_URL, else the inventory's
 * `[coordinator] database`, else SQLite at `sqlitePath`.
 */
export function chooseDatabase(o: {
  envUrl: string | undefined;
  inventoryUrl: string | undefined;
  inventoryPath: string;
  sqlitePath: string;
}): DatabaseTarget {
  if (o.envUrl !== undefined && o.envUrl !== "") return parseDatabaseUrl(o.envUrl, "NIXPOOL_DATABASE_URL");
  if (o.inventoryUrl !== undefined)
    return parseDatabaseUrl(o.inventoryUrl, `${o.inventoryPath} ([coordinator] database)`);
  return { engine: "sqlite", path: o.sqlitePath, display: o.sqlitePath };
}
