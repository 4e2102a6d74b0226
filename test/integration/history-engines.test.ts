import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { parseDatabaseUrl, type DatabaseTarget } from "../../src/core/database-url.js";
import type { BuildSummary, DerivationView } from "../../src/serve/coordinator-types.js";
import { historyMigrations } from "../../src/serve/history-schema.js";
import { AutoscaleRecords } from "../../src/serve/history-autoscale.js";
import { HistoryStore } from "../../src/serve/history-store.js";
import { WorkerCosts } from "../../src/serve/history-workers.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { makeRecord } from "../helpers/build-records.js";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";
import { expectCode } from "../helpers/serve.js";
import { waitFor } from "../../src/adapters/wait-for.js";

// The history's two engines on real databases: a SQLite file of the schema before migrations
// existed, PostgreSQL 15 started here; migrations, refusals, and serve --migrate-from.

/** The SQLite history's schema as nixpool wrote it before versioned migrations. */
const SCHEMA_BEFORE_MIGRATIONS = `
CREATE TABLE builds (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, label TEXT NOT NULL, client TEXT NOT NULL,
  status TEXT NOT NULL, submitted_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, counts TEXT NOT NULL,
  outputs TEXT NOT NULL DEFAULT '[]', error_code TEXT, error_message TEXT, request TEXT NOT NULL);
CREATE INDEX builds_seq ON builds (seq);
CREATE TABLE derivations (build_id TEXT NOT NULL, drv TEXT NOT NULL, name TEXT NOT NULL, builder TEXT, trust TEXT,
  status TEXT NOT NULL, started_at TEXT, finished_at TEXT, attempts INTEGER NOT NULL, error TEXT,
  PRIMARY KEY (build_id, drv));
CREATE TABLE build_records (build_id TEXT PRIMARY KEY, started_at_ms INTEGER NOT NULL, wall_ms INTEGER NOT NULL,
  builders TEXT NOT NULL, stats TEXT NOT NULL, records TEXT NOT NULL);
CREATE TABLE builder_events (at TEXT NOT NULL, builder TEXT NOT NULL, health TEXT NOT NULL, reason TEXT);
CREATE TABLE worker_costs (name TEXT PRIMARY KEY, server_type TEXT NOT NULL, started_at TEXT NOT NULL,
  cost REAL NOT NULL, currency TEXT NOT NULL, updated_at TEXT NOT NULL);
`;

const counts = { total: 2, done: 2, failed: 0, running: 0, queued: 0 };
const STATS = {
  evalMs: 0,
  connectMs: 0,
  pathsUploaded: 1,
  pathsDownloaded: 2,
  bytesUploaded: 0,
  bytesDownloaded: 0,
  derivationsInClosure: 2,
  cpuMs: 3,
  maxRssMb: 4,
};

/** An old-schema history with two finished builds (derivations written in a known order). */
function writeOldHistory(path: string): void {
  const db = new Database(path);
  db.exec(SCHEMA_BEFORE_MIGRATIONS);
  const build = db.prepare(
    "INSERT INTO builds (id, seq, label, client, status, submitted_at, started_at, finished_at, counts, outputs, request) VALUES (?, ?, ?, ?, 'succeeded', ?, ?, ?, ?, ?, '{}')",
  );
  const drv = db.prepare(
    "INSERT INTO derivations (build_id, drv, name, builder, status, started_at, finished_at, attempts) VALUES (?, ?, ?, 'local1', 'built', ?, ?, 1)",
  );
  for (const [i, id] of ["1aaaaaa", "2bbbbbb"].entries()) {
    const t = `2026-01-0${i + 1}T00:00:00.000Z`;
    build.run(
      id,
      i + 1,
      `old ${i}`,
      "alice",
      t,
      t,
      t,
      JSON.stringify(counts),
      JSON.stringify([`/nix/store/out-${i}`]),
    );
    // Not in name order: the order they were written in is kept.
    drv.run(id, "/nix/store/zzz-root.drv", "root", t, t);
    drv.run(id, "/nix/store/aaa-leaf.drv", "leaf", t, t);
  }
  db.prepare(
    "INSERT INTO build_records (build_id, started_at_ms, wall_ms, builders, stats, records) VALUES (?, ?, ?, ?, ?, '[]')",
  ).run(
    "2bbbbbb",
    1_767_225_600_000,
    1234,
    JSON.stringify([{ name: "local1", slots: 2 }]),
    JSON.stringify(STATS),
  );
  db.prepare("INSERT INTO builder_events (at, builder, health, reason) VALUES (?, ?, ?, ?)").run(
    "2026-01-01T00:00:00.000Z",
    "local1",
    "down",
    "no route to host",
  );
  db.prepare(
    "INSERT INTO worker_costs (name, server_type, started_at, cost, currency, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
  ).run("w1", "cx22", "2026-01-01T00:00:00.000Z", 0.0123456789, "EUR", "2026-01-01T01:00:00.000Z");
  db.close();
}

const sqlite = (path: string): DatabaseTarget => ({ engine: "sqlite", path, display: path });

async function expectOldHistory(h: HistoryStore): Promise<void> {
  const builds = await h.builds();
  assert.deepEqual(
    builds.map((b: BuildSummary) => [b.id, b.label, b.status, b.client]),
    [
      ["2bbbbbb", "old 1", "succeeded", "alice"],
      ["1aaaaaa", "old 0", "succeeded", "alice"],
    ],
  );
  const b = await h.build("2bbbbbb");
  assert.deepEqual(
    b?.derivations.map((d: DerivationView) => d.name),
    ["root", "leaf"],
  );
  assert.deepEqual(b?.outputs, ["/nix/store/out-1"]);
  assert.equal(b?.report?.wallMs, 1234);
  assert.equal(b?.report?.startedAtMs, 1_767_225_600_000);
  assert.deepEqual(b?.report?.stats, STATS);
  assert.equal(await h.lastSeq(), 2);
  assert.deepEqual(await h.builderEvents("local1"), [
    { at: "2026-01-01T00:00:00.000Z", health: "down", reason: "no route to host" },
  ]);
  assert.deepEqual(await new WorkerCosts(h).workerCosts(), [
    {
      name: "w1",
      serverType: "cx22",
      startedAt: "2026-01-01T00:00:00.000Z",
      costSoFar: 0.0123456789,
      currency: "EUR",
    },
  ]);
}

describe("the history on SQLite and PostgreSQL", { timeout: 300_000 }, () => {
  let postgres: TestPostgres;
  let tmp: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    [postgres, tmp] = await Promise.all([startTestPostgres(), makeTempDir()]);
  });
  after(async () => {
    await postgres?.stop();
    await tmp?.cleanup();
  });

  test("a SQLite history from before migrations opens as it is, keeps its rows and their order, and takes new ones", async () => {
    const path = join(tmp.dir, "old.sqlite");
    writeOldHistory(path);
    const h = await HistoryStore.open(sqlite(path));
    try {
      await expectOldHistory(h);
      h.saveDerivations("2bbbbbb", [
        { drv: "/nix/store/mmm-new.drv", name: "new", status: "built", attempts: 2 },
      ]);
      h.saveDerivations("2bbbbbb", [
        { drv: "/nix/store/zzz-root.drv", name: "root", status: "failed", attempts: 3 },
      ]);
      const b = await h.build("2bbbbbb");
      assert.deepEqual(
        b?.derivations.map((d) => [d.name, d.status, d.attempts]),
        [
          ["root", "failed", 3],
          ["leaf", "built", 1],
          ["new", "built", 2],
        ],
        "an update keeps a row's place; a new row comes last",
      );
    } finally {
      await h.close();
    }
    const db = new Database(path, { readonly: true });
    const applied = db.prepare("SELECT name FROM kysely_migration ORDER BY name").pluck().all();
    db.close();
    assert.deepEqual(
      applied,
      Object.keys(historyMigrations("sqlite")).sort(),
      "every migration of this binary",
    );
    assert.deepEqual(applied.slice(0, 3), ["0001_initial", "0002_order", "0003_leases"]);
  });

  test("a database migrated by a newer nixpool is refused on both engines (HISTORY_TOO_NEW), untouched", async () => {
    const path = join(tmp.dir, "newer.sqlite");
    await (await HistoryStore.open(sqlite(path))).close();
    const file = new Database(path);
    file.prepare("INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_future', '2099-01-01')").run();
    file.close();
    await expectCode(HistoryStore.open(sqlite(path)), "HISTORY_TOO_NEW", /9999_future/);

    const url = await postgres.createDatabase();
    await (await HistoryStore.open(parseDatabaseUrl(url, "test"))).close();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(
        "INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_future', '2099-01-01')",
      );
      await expectCode(HistoryStore.open(parseDatabaseUrl(url, "test")), "HISTORY_TOO_NEW", /newer nixpool/);
      const { rows } = await client.query<{ n: string }>("SELECT count(*) AS n FROM kysely_migration");
      const ours = Object.keys(historyMigrations("postgres")).length;
      assert.equal(Number(rows[0]?.n), ours + 1, "nothing was applied or removed");
    } finally {
      await client.end();
    }
  });

  test("a lease is held by one holder at a time, renewed by it, free once it expires or is released (both engines)", async () => {
    for (const target of [
      sqlite(join(tmp.dir, "lease.sqlite")),
      parseDatabaseUrl(await postgres.createDatabase(), "test"),
    ]) {
      const [a, b] = [await HistoryStore.open(target), await HistoryStore.open(target)];
      try {
        assert.equal(await a.tryLease("autoscaler", "A", 60_000), true, target.engine);
        assert.equal(await b.tryLease("autoscaler", "B", 60_000), false, "another holder's lease runs");
        assert.equal(await a.tryLease("autoscaler", "A", 1), true, "its holder renews it (here: 1 ms)");
        assert.equal(await b.tryLease("other", "B", 60_000), true, "leases are by name");
        await waitFor(async () => (await a.leaseHolder("autoscaler")) === undefined, {
          timeoutMs: 5_000,
          intervalMs: 5,
        });
        assert.equal(await b.tryLease("autoscaler", "B", 60_000), true, "expired: another may take it");
        assert.equal(await a.tryLease("autoscaler", "A", 60_000), false);
        await b.releaseLease("autoscaler", "B");
        assert.equal(await a.leaseHolder("autoscaler"), undefined);
        assert.equal(await a.tryLease("autoscaler", "A", 60_000), true, "released: free at once");
        assert.equal(await b.leaseHolder("autoscaler"), "A");
      } finally {
        await a.close();
        await b.close();
      }
    }
  });

  test("what the binary cache and the autoscaler read back is the same on both engines (records in write order, decisions newest first, rentals for the budget)", async () => {
    const drv = "/nix/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x.drv";
    const hash = `sha256:${"1".repeat(52)}`;
    const records = (builder: string) => ({
      startedAtMs: 0,
      wallMs: 1,
      builders: [{ name: builder, slots: 1 }],
      stats: STATS,
      records: [
        makeRecord({
          drv,
          name: "x",
          builder,
          trust: "trusted",
          builds: [{ builder, trust: "trusted", narHashes: { out: hash } }],
        }),
      ],
    });
    for (const target of [
      sqlite(join(tmp.dir, "readback.sqlite")),
      parseDatabaseUrl(await postgres.createDatabase(), "test"),
    ]) {
      const h = await HistoryStore.open(target);
      try {
        h.saveRecords("b1", records("t1"));
        h.saveRecords("b2", records("t2"));
        const all = await h.builtResults();
        assert.deepEqual(
          all.map((r) => r.records[0]?.builds?.[0]?.builder),
          ["t1", "t2"],
          `${target.engine}: in write order`,
        );
        const after = all[0]?.row ?? 0;
        h.saveRecords("b1", records("t3"));
        assert.deepEqual(
          (await h.builtResults(after)).map((r) => r.records[0]?.builds?.[0]?.builder),
          ["t2", "t3"],
          `${target.engine}: records written again come after the cursor`,
        );

        const a = new AutoscaleRecords(h);
        a.recordAutoscaleDecision({
          at: "2026-12-07T10:00:00.000Z",
          action: "rent",
          worker: "w1",
          serverType: "cx23",
          reason: "first",
        });
        a.recordAutoscaleDecision({
          at: "2026-12-07T10:00:01.000Z",
          action: "blocked",
          worker: null,
          serverType: null,
          reason: "second",
        });
        assert.deepEqual(
          (await a.autoscaleDecisions(10)).map((d) => d.reason),
          ["second", "first"],
          `${target.engine}: newest first`,
        );
        const rental = {
          rental: "r1",
          worker: "w1",
          serverType: "cx23",
          startedMs: 1_000,
          endedMs: null,
          hourly: 0.0119,
        };
        a.saveAutoscaleWorker(rental);
        a.saveAutoscaleWorker({ ...rental, rental: "r0", startedMs: 10, endedMs: 20 });
        assert.deepEqual(
          await a.autoscaleWorkers(500),
          [rental],
          `${target.engine}: running, or ended since`,
        );
        assert.equal(await a.closeAutoscaleWorkers(5_000), 1);
        assert.deepEqual(await a.autoscaleWorkers(500), [{ ...rental, endedMs: 5_000 }]);
      } finally {
        await h.close();
      }
    }
  });

  test("PostgreSQL that does not answer is DATABASE_UNREACHABLE; the URL's password is never shown", async () => {
    const url = `postgresql://nixpool:s3cret-pass-word@127.0.0.1:1/nixpool`;
    const e = await expectCode(HistoryStore.open(parseDatabaseUrl(url, "test")), "DATABASE_UNREACHABLE");
    assert.doesNotMatch(`${e.message} ${e.hint ?? ""}`, /s3cret/);
    assert.match(e.message, /postgresql:\/\/nixpool:\*\*\*@127\.0\.0\.1:1\/nixpool/);
    assert.throws(() => parseDatabaseUrl("mysql://x@y/z", "NIXPOOL_DATABASE_URL"), /not a PostgreSQL URL/);
  });

  test("serve --migrate-from copies a SQLite history into PostgreSQL, once; the copy reads as the original", async () => {
    const path = join(tmp.dir, "to-copy.sqlite");
    writeOldHistory(path);
    const url = await postgres.createDatabase();
    const state = join(tmp.dir, "state");
    const noDb = await runCli(state, ["serve", "--migrate-from", path], {
      env: { ...process.env, NIXPOOL_DATABASE_URL: undefined },
    });
    assert.equal(noDb.exitCode, 2, noDb.stderr);
    assert.match(noDb.stderr, /copies into PostgreSQL, and no database is set/);
    const env = { ...process.env, NIXPOOL_DATABASE_URL: url };
    const r = await runCli(state, ["serve", "--migrate-from", path], { env });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /copied 2 builds, 4 derivations, 1 timelines, 1 builder events and 1 workers/);
    const h = await HistoryStore.open(parseDatabaseUrl(url, "test"));
    try {
      await expectOldHistory(h);
    } finally {
      await h.close();
    }
    const again = await runCli(state, ["serve", "--migrate-from", path], { env });
    assert.equal(again.exitCode, 2, again.stderr);
    assert.match(again.stderr, /already holds builds: nothing was copied/);
  });
});
