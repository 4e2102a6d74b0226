import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { execa } from "execa";
import { waitFor } from "../../src/adapters/wait-for.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { setLinkUp } from "../../src/providers/local/host.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import type { BuildDetail, ClientIdentity, CoordinatorEvent } from "../../src/serve/coordinator-types.js";
import { graphRequest } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";
import { parseDatabaseUrl, type DatabaseTarget } from "../../src/core/database-url.js";
import { commandLines, netnsPids } from "../helpers/processes.js";

// The coordinator's engine in this process (its HTTP API is tested on its own), on a real pool.

const alice: ClientIdentity = { user: "alice", uid: 1001, via: "socket" };
const bob: ClientIdentity = { user: "bob", uid: 1002, via: "socket" };

/** The most derivations running at once in `builds` (on `builder` only, when given), from their recorded times. */
function maxConcurrent(builds: readonly BuildDetail[], builder?: string): number {
  const edges: [number, number][] = [];
  for (const b of builds) {
    for (const d of b.derivations) {
      if (!d.startedAt || !d.finishedAt || (builder && d.builder !== builder)) continue;
      edges.push([Date.parse(d.startedAt), 1], [Date.parse(d.finishedAt), -1]);
    }
  }
  // An end and a start in the same millisecond: the end first (the slot was freed, then taken).
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, delta] of edges) max = Math.max(max, (now += delta));
  return max;
}

const leaves = (b: BuildDetail) => b.derivations.filter((d) => d.name.startsWith("leaf-"));
const startsOf = (b: BuildDetail) => leaves(b).map((d) => Date.parse(d.startedAt ?? ""));

// Every test runs on both engines of the history: SQLite under the state directory, and a real
// PostgreSQL (started here, one fresh database per engine run).
describe("the coordinator on a local pool", { timeout: 1_800_000, concurrency: false }, () => {
  let pool: TestPool;
  let postgres: TestPostgres;
  before(async () => {
    [pool, postgres] = await Promise.all([startTestPool(2, 2), startTestPostgres()]);
  });
  after(async () => {
    await pool?.cleanup();
    await postgres?.stop();
  });
  for (const engine of ["sqlite", "postgres"] as const)
    describe(`history in ${engine}`, () => engineTests(engine));

  function engineTests(engine: "sqlite" | "postgres") {
    let database: DatabaseTarget | undefined;
    before(async () => {
      database =
        engine === "postgres" ? parseDatabaseUrl(await postgres.createDatabase(), "test") : undefined;
    });
    const open = () =>
      Coordinator.open({
        stateDir: pool.stateDir,
        builders: poolBuilders(pool.pool),
        backoffBaseMs: 500,
        ...(database ? { database } : {}),
      });

    test("two clients at once never exceed a builder's slots; a small build after a big one is not starved; history survives a restart", async () => {
      const big = await graphRequest("big", 12, 1);
      const small = await graphRequest("small", 2, 1);
      const c = await open();
      const events: CoordinatorEvent[] = [];
      c.subscribe((e) => events.push(e));
      const bigId = c.submit(big, alice);
      // The small build arrives while the big one holds every slot.
      await waitFor(async () => ((await c.build(bigId))?.counts.running ?? 0) >= 4, {
        timeoutMs: 60_000,
        intervalMs: 20,
      });
      const smallId = c.submit(small, bob);
      const [b, s] = await Promise.all([c.waitFor(bigId), c.waitFor(smallId)]);
      assert.equal(b.status, "succeeded", JSON.stringify(b.error));
      assert.equal(s.status, "succeeded", JSON.stringify(s.error));
      assert.equal(leaves(b).length, 12);
      for (const name of ["local1", "local2"]) {
        assert.ok(maxConcurrent([b, s], name) <= 2, `${name} ran more than its 2 slots`);
      }
      assert.equal(maxConcurrent([b, s]), 4, "both builds together kept the 4 slots busy, never more");
      // Fair share: bob's leaves took the first slots that freed, before most of alice's started.
      const smallFirst = Math.max(...startsOf(s));
      assert.ok(
        startsOf(b).filter((t) => t > smallFirst).length >= 4,
        "the small build's leaves started before the big one's later waves",
      );
      assert.ok(
        Date.parse(s.finishedAt ?? "") < Date.parse(b.finishedAt ?? ""),
        "the small build finished first",
      );
      // What subscribers heard: every status of both builds, derivations, and the dispatcher's own events.
      const statuses = events.flatMap((e) =>
        e.type === "build" && e.build.id === smallId ? [e.build.status] : [],
      );
      assert.deepEqual([...new Set(statuses)], ["queued", "running", "succeeded"]);
      assert.ok(events.some((e) => e.type === "dispatch" && e.buildId === bigId && e.event.kind === "start"));
      assert.ok(
        events.some(
          (e) => e.type === "derivation" && e.buildId === smallId && e.derivation.status === "built",
        ),
      );
      assert.match((await c.timelineSvg(bigId)) ?? "", /^<svg/);
      // The records behind a remote client's report, as a local build's result has them.
      assert.equal(b.report?.records.length, b.derivations.length);
      assert.equal(b.report?.stats.derivationsInClosure, 13);
      assert.match((await c.derivationLog(bigId, leaves(b)[0]?.drv ?? "")) ?? "", /attempt 1 on local/);
      await c.close();

      const again = await open();
      try {
        const listed = await again.builds();
        assert.deepEqual(
          listed.filter((x) => x.id === bigId || x.id === smallId).map((x) => [x.label, x.status, x.client]),
          [
            ["small", "succeeded", "bob"],
            ["big", "succeeded", "alice"],
          ],
        );
        const stored = await again.build(bigId);
        assert.equal(stored?.derivations.length, b.derivations.length);
        const row = (d: BuildDetail["derivations"][number]) => [
          d.drv,
          d.builder,
          d.status,
          d.startedAt,
          d.finishedAt,
        ];
        assert.deepEqual(stored?.derivations.map(row).sort(), b.derivations.map(row).sort());
        assert.deepEqual(stored?.outputs, b.outputs);
        assert.match(
          (await again.timelineSvg(bigId)) ?? "",
          /^<svg/,
          "the timeline of a finished build, from the history",
        );
        assert.deepEqual(
          stored?.report,
          JSON.parse(JSON.stringify(b.report)),
          "its report, from the history",
        );
        assert.equal((await again.waitFor(smallId)).status, "succeeded");
      } finally {
        await again.close();
      }
    });

    test("a cancelled build stops only its own derivations; only its submitter may cancel it", async () => {
      const mine = await graphRequest("to cancel", 8, 4);
      const theirs = await graphRequest("to keep", 4, 1);
      const c = await open();
      try {
        const mineId = c.submit(mine, alice);
        const theirsId = c.submit(theirs, bob);
        await waitFor(async () => ((await c.build(mineId))?.counts.running ?? 0) > 0, {
          timeoutMs: 60_000,
          intervalMs: 20,
        });
        await assert.rejects(c.cancel(mineId, bob), /submitted by alice, not by bob/);
        const cancelledAt = Date.now();
        await c.cancel(mineId, alice);
        const [m, t] = await Promise.all([c.waitFor(mineId), c.waitFor(theirsId)]);
        assert.equal(m.status, "cancelled");
        assert.equal(m.error?.code, "BUILD_CANCELLED");
        assert.equal(t.status, "succeeded", JSON.stringify(t.error));
        assert.ok(
          m.derivations.some((d) => d.status === "cancelled"),
          "its unfinished derivations are cancelled",
        );
        for (const d of m.derivations) {
          if (d.startedAt)
            assert.ok(Date.parse(d.startedAt) <= cancelledAt + 50, `${d.name} started after the cancel`);
        }
        // Nothing of the cancelled build runs on the builders any more (its sleeps were 4 s each).
        for (const h of pool.pool.hosts) {
          const sleeps = (await commandLines(await netnsPids(h.netns))).filter((l) =>
            l.startsWith("/bin/sleep 4"),
          );
          assert.deepEqual(sleeps, [], `${h.name} still runs the cancelled build`);
        }
        assert.equal(
          c.builders().reduce((n, b) => n + b.inUse, 0),
          0,
          "every slot is free again",
        );
      } finally {
        await c.close();
      }
    });

    test("drain: no new builds, the running ones get the grace, then fail as stopped", async () => {
      const long = await graphRequest("too long", 2, 30);
      const c = await open();
      const id = c.submit(long, alice);
      const ended = c.waitFor(id);
      await waitFor(async () => ((await c.build(id))?.counts.running ?? 0) > 0, {
        timeoutMs: 60_000,
        intervalMs: 20,
      });
      const draining = c.drain(300);
      assert.throws(
        () => c.submit(long, bob),
        (e: Error & { code?: string }) => e.code === "COORDINATOR_DRAINING",
      );
      await draining;
      const d = await ended;
      assert.equal(d.status, "failed");
      assert.equal(d.error?.code, "COORDINATOR_STOPPED");
      assert.match(d.error?.message ?? "", /coordinator stopped \(drained/);
    });

    test(`kill -9 of the coordinator: the finished build is kept, the running one is ${engine === "postgres" ? "adopted and finished by the next coordinator" : "failed when it starts again"}`, async () => {
      const first = await graphRequest("finishes", 2, 0);
      const second = await graphRequest("interrupted", 4, 30);
      const child = execa(
        "node",
        [
          "--import",
          "tsx",
          resolve(import.meta.dirname, "../helpers/coordinator-child.ts"),
          pool.stateDir,
          JSON.stringify([first, second]),
          ...(database?.engine === "postgres" ? [database.url] : []),
        ],
        { reject: false, buffer: false, timeout: 300_000 },
      );
      const lines: string[] = [];
      child.stdout?.on("data", (d: Buffer) => lines.push(...d.toString().split("\n").filter(Boolean)));
      const running = await waitFor(() => lines.find((l) => l.includes('"running"')), { timeoutMs: 120_000 });
      assert.ok(running, `the child never started its second build: ${lines.join("\n")}`);
      child.kill("SIGKILL");
      await child;
      const { finished } = JSON.parse(lines[0] ?? "{}") as { finished: string };
      const { running: runningId } = JSON.parse(running) as { running: string };
      const c = await open();
      try {
        const done = await c.build(finished);
        assert.equal(done?.status, "succeeded");
        assert.equal(done?.derivations.filter((d) => d.status === "built").length, 3);
        if (engine === "postgres") {
          // Several coordinators may share PostgreSQL: the next one adopts the build once the
          // killed one's heartbeat expired, and finishes it (what was built is not built again).
          const adopted = await waitFor(
            async () => {
              const d = await c.build(runningId);
              return d !== undefined && d.status !== "queued" && d.status !== "running" ? d : undefined;
            },
            { timeoutMs: 180_000, intervalMs: 200 },
          );
          assert.ok(adopted, "the build was never adopted and finished");
          assert.equal(adopted.status, "succeeded", JSON.stringify(adopted.error));
          assert.equal(leaves(adopted).length, 4);
          return;
        }
        const stopped = await c.build(runningId);
        assert.equal(stopped?.status, "failed");
        assert.equal(stopped?.error?.code, "COORDINATOR_STOPPED");
        assert.match(stopped?.error?.message ?? "", /^coordinator stopped \(/);
        assert.ok(stopped?.finishedAt);
        assert.ok(!stopped?.derivations.some((d) => d.status === "running" || d.status === "queued"));
      } finally {
        await c.close();
      }
      // The killed coordinator's builds end with their sessions; the hosts are left idle.
      for (const h of pool.pool.hosts) {
        await waitFor(
          async () =>
            !(await commandLines(await netnsPids(h.netns))).some((l) => l.startsWith("/bin/sleep 30")),
          {
            timeoutMs: 60_000,
            intervalMs: 200,
          },
        );
      }
    });

    test("a builder that went away is probed with backoff and takes work again once it is back", async () => {
      const c = await open();
      try {
        await waitFor(() => c.builders().every((b) => b.health === "up" && b.slots === 2), {
          timeoutMs: 60_000,
        });
        const h1 = pool.pool.hosts[0]!;
        await setLinkUp(h1, false);
        // Its connection ends at once (sshd's session processes killed, not its listener); probes find no route.
        for (const pid of await netnsPids(h1.netns)) {
          const [cmd] = await commandLines([pid]);
          if (cmd?.startsWith("sshd: ") && !cmd.includes("[listener]")) process.kill(pid, "SIGKILL");
        }
        await waitFor(() => c.builders().find((b) => b.name === "local1")?.health !== "up", {
          timeoutMs: 30_000,
        });
        const down = c.builders().find((b) => b.name === "local1");
        assert.ok(down?.lastError, "the reason it went down is shown");
        await setLinkUp(h1, true);
        const back = await waitFor(() => c.builders().find((b) => b.name === "local1" && b.health === "up"), {
          timeoutMs: 60_000,
          intervalMs: 100,
        });
        assert.ok(back, `local1 never came back: ${JSON.stringify(c.builders())}`);
        const r = await graphRequest("after reconnect", 8, 1);
        const d = await c.waitFor(c.submit(r, alice));
        assert.equal(d.status, "succeeded", JSON.stringify(d.error));
        assert.ok(
          leaves(d).some((x) => x.builder === "local1"),
          "the builder that came back built some of the leaves",
        );
      } finally {
        await c.close();
        await setLinkUp(pool.pool.hosts[0]!, true);
      }
    });

    if (engine === "postgres") {
      test("PostgreSQL stopped and started during a build: new builds are refused while it is away, the running one finishes and its history is whole", async () => {
        const r = await graphRequest("across a database restart", 6, 2);
        const logged: string[] = [];
        const c = await Coordinator.open({
          stateDir: pool.stateDir,
          builders: poolBuilders(pool.pool),
          ...(database ? { database } : {}),
          log: (line) => logged.push(line),
        });
        try {
          const id = c.submit(r, alice);
          await waitFor(async () => ((await c.build(id))?.counts.running ?? 0) > 0, {
            timeoutMs: 60_000,
            intervalMs: 20,
          });
          await postgres.stopServer();
          // The next write finds it away (a derivation starts or ends every second or so).
          await waitFor(() => logged.some((l) => /DATABASE_UNREACHABLE|cannot be reached/.test(l)), {
            timeoutMs: 60_000,
            intervalMs: 50,
          });
          assert.throws(
            () => c.submit(r, bob),
            (e: Error & { code?: string; hint?: string }) =>
              e.code === "DATABASE_UNREACHABLE" && /pg_isready/.test(e.hint ?? ""),
          );
          await assert.rejects(
            c.builds(),
            (e: Error & { code?: string }) => e.code === "DATABASE_UNREACHABLE",
          );
          await postgres.startServer();
          const d = await c.waitFor(id);
          assert.equal(d.status, "succeeded", JSON.stringify(d.error));
          assert.ok(
            logged.some((l) => /answers again/.test(l)),
            logged.join("\n"),
          );
          // Read back once the queued writes are in (the build may have ended while it was away).
          const stored = await waitFor(
            async () => {
              const b = await c.build(id).catch(() => undefined);
              return b?.status === "succeeded" ? b : undefined;
            },
            { timeoutMs: 60_000, intervalMs: 100 },
          );
          assert.ok(stored, "the build's end reached the database");
          assert.deepEqual(
            stored?.derivations.map((x) => [x.drv, x.status, x.startedAt, x.finishedAt]).sort(),
            d.derivations.map((x) => [x.drv, x.status, x.startedAt, x.finishedAt]).sort(),
            "every change made while it was away reached the database",
          );
          // New work is taken again.
          const after = await c.waitFor(c.submit(await graphRequest("after the restart", 2, 0), bob));
          assert.equal(after.status, "succeeded", JSON.stringify(after.error));
          // Away again with a build running: the coordinator still closes (what is queued is lost,
          // and said so); its next start finds the build unfinished and marks it stopped.
          const long = c.submit(await graphRequest("closed while away", 2, 30), alice);
          await waitFor(async () => ((await c.build(long))?.counts.running ?? 0) > 0, {
            timeoutMs: 60_000,
            intervalMs: 20,
          });
          const seen = logged.length;
          await postgres.stopServer();
          await waitFor(() => logged.slice(seen).some((l) => /cannot be reached/.test(l)), {
            timeoutMs: 60_000,
            intervalMs: 50,
          });
          await c.close();
          await postgres.startServer();
          const again = await open();
          try {
            const stopped = await again.build(long);
            assert.equal(stopped?.status, "failed");
            assert.equal(stopped?.error?.code, "COORDINATOR_STOPPED");
            assert.ok(!stopped?.derivations.some((d) => d.status === "running" || d.status === "queued"));
          } finally {
            await again.close();
          }
        } finally {
          await postgres.startServer().catch(() => undefined);
          await c.close();
        }
      });
    }
  }
});
