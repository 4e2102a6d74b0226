import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "../../src/adapters/wait-for.js";
import { parseDatabaseUrl, type DatabaseTarget } from "../../src/core/database-url.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import type { BuildDetail, ClientIdentity, CoordinatorEvent } from "../../src/serve/coordinator-types.js";
import { graphRequest } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";

// Two coordinators (engines in this process) on one PostgreSQL and one pool of 2 × 2 slots.

const alice: ClientIdentity = { user: "alice", uid: 1001, via: "socket" };
const bob: ClientIdentity = { user: "bob", uid: 1002, via: "socket" };

/** The most derivations built at once (on `builder` only, when given), from the recorded times of builds that built them. */
function maxConcurrent(builds: readonly BuildDetail[], builder?: string): number {
  const edges: [number, number][] = [];
  for (const b of builds) {
    for (const d of b.derivations) {
      if (d.status !== "built" || !d.startedAt || !d.finishedAt || (builder && d.builder !== builder))
        continue;
      edges.push([Date.parse(d.startedAt), 1], [Date.parse(d.finishedAt), -1]);
    }
  }
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, delta] of edges) max = Math.max(max, (now += delta));
  return max;
}

describe(
  "several coordinators on one PostgreSQL and one pool",
  { timeout: 900_000, concurrency: false },
  () => {
    let pool: TestPool;
    let postgres: TestPostgres;
    let database: DatabaseTarget;
    before(async () => {
      [pool, postgres] = await Promise.all([startTestPool(2, 2), startTestPostgres()]);
      database = parseDatabaseUrl(await postgres.createDatabase(), "test");
    });
    after(async () => {
      await pool?.cleanup();
      await postgres?.stop();
    });
    const open = () =>
      Coordinator.open({
        stateDir: pool.stateDir,
        builders: poolBuilders(pool.pool),
        backoffBaseMs: 500,
        database,
      });

    test("each derivation is built once, a builder's slots are never exceeded, and each coordinator shows the other's builds", async () => {
      const [a, b] = await Promise.all([open(), open()]);
      try {
        const shared = await graphRequest("shared", 6, 1);
        const [onlyA, onlyB] = await Promise.all([graphRequest("a", 6, 1), graphRequest("b", 6, 1)]);
        const heardOnA: CoordinatorEvent[] = [];
        a.subscribe((e) => heardOnA.push(e));
        const ids = [
          a.submit(shared, alice),
          b.submit(shared, bob),
          a.submit(onlyA, alice),
          b.submit(onlyB, bob),
        ];
        const [sa, sb, da, db] = await Promise.all([
          a.waitFor(ids[0] as string),
          b.waitFor(ids[1] as string),
          a.waitFor(ids[2] as string),
          b.waitFor(ids[3] as string),
        ]);
        const all = [sa, sb, da, db];
        for (const d of all) assert.equal(d.status, "succeeded", JSON.stringify(d.error));
        // The shared graph's derivations: built by one coordinator, found built by the other.
        for (const d of sa.derivations) {
          const other = sb.derivations.find((x) => x.drv === d.drv);
          const built = [d, other].filter((x) => x?.status === "built").length;
          assert.equal(built, 1, `${d.name} was built ${built} times (${d.status} / ${other?.status})`);
        }
        for (const name of ["local1", "local2"])
          assert.ok(
            maxConcurrent(all, name) <= 2,
            `${name} ran more than its 2 slots across both coordinators`,
          );
        assert.ok(maxConcurrent(all) <= 4);
        // The whole pool's view: each coordinator lists and streams the other's builds.
        const listed = (await a.builds()).map((x) => x.id);
        for (const id of ids) assert.ok(listed.includes(id), `coordinator a does not list build ${id}`);
        assert.equal((await a.build(ids[3] as string))?.status, "succeeded");
        await waitFor(
          () =>
            heardOnA.some(
              (e) => e.type === "build" && e.build.id === ids[3] && e.build.status === "succeeded",
            ),
          { timeoutMs: 30_000, intervalMs: 100 },
        );
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  },
);
