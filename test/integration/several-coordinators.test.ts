import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "../../src/adapters/wait-for.js";
import { parseDatabaseUrl, type DatabaseTarget } from "../../src/core/database-url.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import type { BuildDetail, ClientIdentity, CoordinatorEvent } from "../../src/serve/coordinator-types.js";
import { graphRequest } from "../helpers/example-builds.js";
import { finishedBuild, maxConcurrent } from "../helpers/build-views.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { CLI, makeTempDir } from "../helpers/cli.js";
import { graphArgs, freshSeed } from "../helpers/example-builds.js";
import { socketRequest, startServe, type ServeProcess } from "../helpers/serve-process.js";
import { HistoryStore } from "../../src/serve/history-store.js";
import { WorkerCosts } from "../../src/serve/history-workers.js";
import { RentedWorkers } from "../../src/serve/rented-workers.js";
import {
  PEER_TTL_MS,
  WAITING_SHARED_MAX,
  beat,
  claimWork,
  releaseWork,
  releasedClaims,
  waitingElsewhere,
  waitingJson,
} from "../../src/serve/pool-claims.js";

// Two coordinators (engines in this process) on one PostgreSQL and one pool of 2 × 2 slots.

const alice: ClientIdentity = { user: "alice", uid: 1001, via: "socket" };
const bob: ClientIdentity = { user: "bob", uid: 1002, via: "socket" };

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

    test("claims: concurrent claims never exceed a builder's slots; a dead holder's slot and claim are free; a built claim says where", async () => {
      const h = await HistoryStore.open(parseDatabaseUrl(await postgres.createDatabase(), "test"));
      try {
        const db = h.kysely;
        for (const id of ["c1", "c2", "c3"]) await beat(db, "postgres", id, null);
        // Twelve claims of different derivations at once, three coordinators, one builder of 2 slots.
        const outcomes = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            claimWork(db, "postgres", {
              holder: `c${(i % 3) + 1}`,
              drv: `d${i}`,
              buildId: null,
              builder: "b",
              slots: 2,
            }),
          ),
        );
        const ok = outcomes.filter((o) => o.kind === "ok");
        assert.equal(ok.length, 2, JSON.stringify(outcomes));
        assert.deepEqual(ok.map((o) => (o.kind === "ok" ? o.slot : -1)).sort(), [0, 1]);
        // The same derivation from two coordinators at once: one builds it, the other is told who.
        const same = await Promise.all(
          ["c1", "c2"].map((holder) =>
            claimWork(db, "postgres", { holder, drv: "shared", buildId: null, builder: "other", slots: 4 }),
          ),
        );
        assert.deepEqual(same.map((o) => o.kind).sort(), ["held", "ok"]);
        const winner = same[0]?.kind === "ok" ? "c1" : "c2";
        await releaseWork(db, "postgres", {
          holder: winner,
          drv: "shared",
          builder: "other",
          slot: 0,
          built: true,
        });
        assert.deepEqual(
          await releasedClaims(db, "postgres", ["shared"]),
          new Map([["shared", { builtOn: "other" }]]),
        );
        assert.deepEqual(
          await claimWork(db, "postgres", {
            holder: "c3",
            drv: "shared",
            buildId: null,
            builder: "b",
            slots: 2,
          }),
          { kind: "built", builder: "other" },
        );
        // A holder whose heartbeat is older than PEER_TTL_MS is dead: its slots and claims are free.
        const okIdx = outcomes.flatMap((o, i) => (o.kind === "ok" ? [i] : []));
        const holders = okIdx.map((i) => `c${(i % 3) + 1}`);
        await db
          .updateTable("coordinators")
          .set({ heartbeat_ms: Date.now() - PEER_TTL_MS - 5_000 })
          .where("id", "in", holders)
          .execute();
        await beat(db, "postgres", "c4", null);
        const claim = (drv: string) =>
          claimWork(db, "postgres", { holder: "c4", drv, buildId: null, builder: "b", slots: 2 });
        assert.equal(
          (await claim(`d${okIdx[0]}`)).kind,
          "ok",
          "a dead holder's claim and slot are taken over",
        );
        assert.equal((await claim("fresh")).kind, "ok");
        assert.equal((await claim("one too many")).kind, "full");
      } finally {
        await h.close();
      }
    });

    test("waiting work in heartbeats: the others' of the same state directory, alive, valid, capped; not its own", async () => {
      const h = await HistoryStore.open(parseDatabaseUrl(await postgres.createDatabase(), "test"));
      try {
        const db = h.kysely;
        const drv = (i: number) => `/nix/store/${String(i).padStart(32, "a")}-d${i}.drv`;
        const work = (from: number, n: number) =>
          Array.from({ length: n }, (_, i) => ({ drv: drv(from + i), system: "x86_64-linux", features: [] }));
        await beat(db, "postgres", "me", null, waitingJson("host:/state", work(0, 1)));
        await beat(db, "postgres", "same", null, waitingJson("host:/state", work(10, 2)));
        await beat(db, "postgres", "elsewhere", null, waitingJson("other:/state", work(20, 1)));
        await beat(db, "postgres", "damaged", null, '{"state":"host:/state","work":[{"drv":"x"}]}');
        await beat(db, "postgres", "none", null);
        await beat(
          db,
          "postgres",
          "many",
          null,
          waitingJson("host:/state", work(100, WAITING_SHARED_MAX + 5)),
        );
        const seen = await waitingElsewhere(db, "postgres", "me", "host:/state");
        assert.equal(seen.length, 2 + WAITING_SHARED_MAX);
        const drvs = new Set(seen.map((w) => w.drv));
        assert.ok(drvs.has(drv(10)) && drvs.has(drv(11)), "another coordinator's of this state directory");
        assert.ok(!drvs.has(drv(0)), "not its own");
        assert.ok(!drvs.has(drv(20)), "not another state directory's");
        assert.ok(
          drvs.has(drv(100 + WAITING_SHARED_MAX - 1)) && !drvs.has(drv(100 + WAITING_SHARED_MAX)),
          "capped",
        );
        // A dead coordinator's queue no longer counts.
        await db
          .updateTable("coordinators")
          .set({ heartbeat_ms: Date.now() - PEER_TTL_MS - 5_000 })
          .where("id", "in", ["same", "many"])
          .execute();
        assert.deepEqual(await waitingElsewhere(db, "postgres", "me", "host:/state"), []);
      } finally {
        await h.close();
      }
    });

    test("workers another coordinator rents are listed while their cost is written; one it stopped writing is gone", async () => {
      const h = await HistoryStore.open(parseDatabaseUrl(await postgres.createDatabase(), "test"));
      const empty = await makeTempDir();
      try {
        const costs = new WorkerCosts(h);
        const at = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();
        const worker = (name: string) => ({
          name,
          serverType: "cx23",
          startedAt: at(3_600_000),
          costSoFar: 0.01,
          currency: "EUR",
        });
        costs.saveWorkerCost(worker("theirs"), at(1_000));
        costs.saveWorkerCost(worker("deleted-long-ago"), at(600_000));
        await h.flush();
        const listed = new RentedWorkers(empty.dir, h, Date.now, true);
        await listed.start(30_000);
        listed.stop();
        assert.deepEqual(
          listed.list().map((w) => w.name),
          ["theirs"],
        );
        const alone = new RentedWorkers(empty.dir, h, Date.now, false);
        await alone.start(30_000);
        alone.stop();
        assert.deepEqual(alone.list(), [], "one coordinator lists only its own records");
      } finally {
        await h.close();
        await empty.cleanup();
      }
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
            maxConcurrent(all, { builder: name, builtOnly: true }) <= 2,
            `${name} ran more than its 2 slots across both coordinators`,
          );
        assert.ok(maxConcurrent(all, { builtOnly: true }) <= 4);
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

    test("a coordinator that stops hands its running build over: another adopts it under the same id and finishes it", async () => {
      const [a, b] = await Promise.all([open(), open()]);
      try {
        const r = await graphRequest("handed over", 4, 3);
        const id = a.submit(r, alice);
        await waitFor(async () => ((await a.build(id))?.counts.running ?? 0) > 0, {
          timeoutMs: 60_000,
          intervalMs: 20,
        });
        const heard: CoordinatorEvent[] = [];
        b.subscribe((e) => heard.push(e));
        await a.drain(0);
        const done = await finishedBuild(() => b.build(id), 120_000);
        assert.ok(done, "the build was never finished by the other coordinator");
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        assert.equal(done.outputs.length, 1);
        assert.ok(
          heard.some((e) => e.type === "dispatch" && e.buildId === id && e.event.kind === "start"),
          "the adopting coordinator ran the build itself",
        );
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });
  },
);

/** A build as a coordinator's API shows it (GET /api/builds/ID on its socket). */
async function apiBuild(socket: string, id: string): Promise<BuildDetail | undefined> {
  const r = await socketRequest(socket, "GET", `/api/builds/${id}`).catch(() => undefined);
  return r?.status === 200 ? (JSON.parse(r.body) as BuildDetail) : undefined;
}

describe(
  "several nixpool serve processes on one PostgreSQL and one pool",
  { timeout: 900_000, concurrency: false },
  () => {
    let pool: TestPool;
    let postgres: TestPostgres;
    let url: string;
    let sockets: string;
    let work: { dir: string; cleanup: () => Promise<void> };
    const running: ServeProcess[] = [];
    before(async () => {
      [pool, postgres] = await Promise.all([startTestPool(2, 2), startTestPostgres()]);
      url = await postgres.createDatabase();
      sockets = await mkdtemp(join(tmpdir(), "nixpool-coordinators-"));
      work = await makeTempDir();
    });
    after(async () => {
      await Promise.all(running.map((s) => s.stop("SIGKILL")));
      await work?.cleanup();
      await rm(sockets, { recursive: true, force: true });
      await pool?.cleanup();
      await postgres?.stop();
    });
    /** Coordinator `name`: a nixpool serve of its own on the shared pool and database. */
    const coordinator = async (name: string) => {
      const s = await startServe(pool.stateDir, ["--socket", join(sockets, `${name}.sock`)], [], {
        NIXPOOL_DATABASE_URL: url,
      });
      running.push(s);
      return s;
    };
    const client = (socket: string, args: readonly string[]) => {
      let err = "";
      const proc = execa(
        "node",
        [
          CLI,
          "--state-dir",
          pool.stateDir,
          "build",
          ...args,
          "--no-out-link",
          "--coordinator",
          `unix:${socket}`,
        ],
        { reject: false, cwd: work.dir, stdin: "ignore" },
      );
      proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
      return { proc, stderr: () => err, id: () => /build (\S+) submitted to the coordinator/.exec(err)?.[1] };
    };

    test("three coordinators, four clients at once: each derivation built once, never more running than a builder's slots", async () => {
      const cs = await Promise.all(["c1", "c2", "c3"].map(coordinator));
      const seed = freshSeed();
      const clients = [
        client(cs[0]!.socket, graphArgs(6, { seed, sleep: 1 })),
        client(cs[1]!.socket, graphArgs(6, { seed, sleep: 1 })),
        client(cs[2]!.socket, graphArgs(6, { sleep: 1 })),
        client(cs[0]!.socket, graphArgs(6, { sleep: 1 })),
      ];
      const ends = await Promise.all(clients.map((c) => c.proc));
      ends.forEach((e, i) => assert.equal(e.exitCode, 0, clients[i]?.stderr()));
      // Read every build from one coordinator: it shows the others' too.
      const builds = await Promise.all(
        clients.map(async (c) => {
          const id = c.id();
          assert.ok(id, c.stderr());
          const d = await apiBuild(cs[1]!.socket, id);
          assert.ok(d, `coordinator c2 does not show build ${id}`);
          assert.equal(d.status, "succeeded");
          return d;
        }),
      );
      const builtBy = new Map<string, number>();
      for (const b of builds)
        for (const d of b.derivations)
          if (d.status === "built") builtBy.set(d.drv, (builtBy.get(d.drv) ?? 0) + 1);
      for (const [drv, n] of builtBy) assert.equal(n, 1, `${drv} was built ${n} times`);
      // The shared graph's 7 derivations, and each other graph's 7: 21 built in all.
      assert.equal(builtBy.size, 21);
      for (const name of ["local1", "local2"])
        assert.ok(
          maxConcurrent(builds, { builder: name, builtOnly: true }) <= 2,
          `${name} ran more than its 2 slots across the coordinators`,
        );
      // Each lists the three (GET /api/coordinators), and its overview page shows them.
      const listed = JSON.parse((await socketRequest(cs[2]!.socket, "GET", "/api/coordinators")).body) as {
        url: string | null;
        alive: boolean;
        self: boolean;
      }[];
      assert.deepEqual(listed.map((c) => c.url).sort(), cs.map((c) => c.url).sort());
      assert.ok(listed.every((c) => c.alive));
      assert.equal(listed.filter((c) => c.self).length, 1);
      const page = await socketRequest(cs[0]!.socket, "GET", "/");
      assert.match(page.body, /<h2>Coordinators <small>3 of 3 alive/);
      await Promise.all(cs.map((c) => c.stop()));
      running.length = 0;
    });

    test("kill -9 of the coordinator running the work: another adopts its builds and every one succeeds", async () => {
      const [victim, survivor] = await Promise.all([coordinator("k1"), coordinator("k2")]);
      // Let the survivor have beaten for a heartbeat lifetime: it adopts once the victim's expires.
      const submit = async (n: number) => {
        const { derivations } = await graphRequest("to survive", n, 3);
        const r = await socketRequest(
          victim.socket,
          "POST",
          "/api/builds",
          JSON.stringify({ derivations, label: "to survive" }),
        );
        assert.equal(r.status, 201, r.body);
        return (JSON.parse(r.body) as { id: string }).id;
      };
      const ids = await Promise.all([submit(6), submit(6)]);
      await waitFor(async () => ((await apiBuild(victim.socket, ids[0]))?.counts.running ?? 0) > 0, {
        timeoutMs: 60_000,
        intervalMs: 50,
      });
      const killedAt = Date.now();
      process.kill(victim.pid ?? 0, "SIGKILL");
      await victim.exited();
      const done = await waitFor(
        async () => {
          const ds = await Promise.all(ids.map((id) => apiBuild(survivor.socket, id)));
          return ds.every((d) => d?.status === "succeeded" || d?.status === "failed") ? ds : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 200 },
      );
      assert.ok(done, "the killed coordinator's builds never finished on the other one");
      for (const d of done) assert.equal(d?.status, "succeeded", JSON.stringify(d?.error));
      assert.match(survivor.stderr() + survivor.stdout(), /adopting build/);
      console.log(
        `# recovered ${ids.length} builds ${((Date.now() - killedAt) / 1000).toFixed(1)} s after kill -9`,
      );
      await survivor.stop();
      running.length = 0;
    });
  },
);
