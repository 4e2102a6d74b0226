import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseDatabase, parseDatabaseUrl, redactDatabaseUrl } from "../../src/core/database-url.js";
import { isNixpoolError } from "../../src/core/errors.js";
import { parseInventory } from "../../src/config/inventory-parse.js";

test("a PostgreSQL URL is taken with its password kept apart; what is shown never has it", () => {
  const t = parseDatabaseUrl(
    "postgresql://nixpool:p%40ss-word@db.example.org:5432/nixpool?sslmode=require",
    "x",
  );
  assert.equal(t.engine, "postgres");
  assert.ok(t.engine === "postgres" && t.password === "p@ss-word");
  assert.equal(t.display, "postgresql://nixpool:***@db.example.org:5432/nixpool?sslmode=require");
  assert.equal(
    redactDatabaseUrl("postgres://u@h/db?password=hunter22&host=/run/postgresql"),
    "postgres://u@h/db?password=***&host=%2Frun%2Fpostgresql",
  );
  assert.equal(redactDatabaseUrl("not a url"), "(an invalid database URL)");
  // A socket directory instead of a host name.
  assert.equal(parseDatabaseUrl("postgresql:///nixpool?host=/run/postgresql", "x").engine, "postgres");
});

test("anything but a postgresql:// URL is DATABASE_URL_INVALID (exit 2), naming where it came from, not the URL", () => {
  for (const bad of ["mysql://u:secret1@h/db", "postgresql://", "/var/lib/nixpool/db.sqlite", ""]) {
    assert.throws(
      () => parseDatabaseUrl(bad, "NIXPOOL_DATABASE_URL"),
      (e: unknown) =>
        isNixpoolError(e) &&
        e.code === "DATABASE_URL_INVALID" &&
        e.exitCode === 2 &&
        /NIXPOOL_DATABASE_URL/.test(e.message) &&
        !e.message.includes("secret1"),
    );
  }
});

test("which database: NIXPOOL_DATABASE_URL, else the inventory's [coordinator] database, else SQLite in STATE", () => {
  const base = {
    inventoryPath: "/etc/nixpool/nixpool.toml",
    sqlitePath: "/var/lib/nixpool/serve/history.sqlite",
  };
  assert.deepEqual(chooseDatabase({ ...base, envUrl: undefined, inventoryUrl: undefined }), {
    engine: "sqlite",
    path: base.sqlitePath,
    display: base.sqlitePath,
  });
  assert.equal(
    chooseDatabase({ ...base, envUrl: undefined, inventoryUrl: "postgresql://a@inv/db" }).display,
    "postgresql://a@inv/db",
  );
  assert.equal(
    chooseDatabase({ ...base, envUrl: "postgresql://a@env/db", inventoryUrl: "postgresql://a@inv/db" })
      .display,
    "postgresql://a@env/db",
  );
  assert.equal(chooseDatabase({ ...base, envUrl: "", inventoryUrl: undefined }).engine, "sqlite");
  assert.throws(
    () => chooseDatabase({ ...base, envUrl: undefined, inventoryUrl: "sqlite:x" }),
    /nixpool\.toml \(\[coordinator\] database\)/,
  );
});

test("[coordinator] database in the inventory: a PostgreSQL URL, or an error naming the field", () => {
  const file = parseInventory('[coordinator]\ndatabase = "postgresql://nixpool@db/nixpool"\n', "inv.toml");
  assert.equal(file.coordinator?.database, "postgresql://nixpool@db/nixpool");
  assert.throws(
    () => parseInventory('[coordinator]\ndatabase = "sqlite:///tmp/x"\n', "inv.toml"),
    /coordinator\.database: must be a PostgreSQL URL/,
  );
  assert.throws(() => parseInventory('[coordinator]\ndb = "x"\n', "inv.toml"), /coordinator/);
});
