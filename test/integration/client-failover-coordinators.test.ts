import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readlink } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { waitFor } from "../../src/adapters/wait-for.js";
import { CLI, makeTempDir } from "../helpers/cli.js";
import { graphArgs } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";

// Two real `nixpool serve` processes on one PostgreSQL and one pool (one state directory and
// store, each its own socket and port); a client names both (A,B). A is killed with -9 while
// it runs the client's build: B adopts the build (same id) once A is dead, and the client
// follows it there to its end.

interface Detail {
  id: string;
  status: string;
  outputs: string[];
  counts?: { running: number };
  report?: { records: { name: string; builder: string | null; status: string }[] };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

describe(
  "a client naming two coordinators that share a pool, the first killed mid-build",
  { timeout: 900_000 },
  () => {
    let postgres: TestPostgres;
    let pool: TestPool;
    let work: { dir: string; cleanup: () => Promise<void> };
    let a: ServeProcess;
    let b: ServeProcess;
    let token: string;

    before(async () => {
      [pool, postgres] = await Promise.all([startTestPool(2, 2), startTestPostgres()]);
      work = await makeTempDir("nixpool-failover-two-");
      const env = { NIXPOOL_DATABASE_URL: await postgres.createDatabase() };
      a = await startServe(pool.stateDir, ["--socket", join(work.dir, "a.sock")], [], env);
      b = await startServe(pool.stateDir, ["--socket", join(work.dir, "b.sock")], [], env);
      token = (await pool.cli(["serve", "token"])).stdout.trim();
    });
    after(async () => {
      await a?.stop("SIGKILL");
      await b?.stop("SIGKILL");
      await work?.cleanup();
      await pool?.cleanup();
      await postgres?.stop();
    });

    const onB = async <T>(path: string): Promise<T> => {
      const r = await fetch(`${b.url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200, path);
      return (await r.json()) as T;
    };

    test("the client follows its build on the second coordinator, which finishes it under the same id", async () => {
      const link = join(work.dir, "result");
      let err = "";
      const client = execa(
        "node",
        [
          CLI,
          "--state-dir",
          join(work.dir, "client-state"),
          "build",
          ...graphArgs(4, { sleep: 5 }),
          "-o",
          link,
        ],
        {
          reject: false,
          cwd: work.dir,
          stdin: "ignore",
          env: { NIXPOOL_COORDINATOR: `${a.url},${b.url}`, NIXPOOL_COORDINATOR_TOKEN: token },
        },
      );
      client.stderr?.on("data", (d: Buffer) => (err += d.toString()));
      const id = await waitFor(
        () => new RegExp(`build (\\S+) submitted to the coordinator at ${escape(a.url)}\\n`).exec(err)?.[1],
        { timeoutMs: 120_000 },
      );
      assert.ok(id, `the client named its build:\n${err}`);
      // B sees A's build running (from the shared database) before A dies.
      const running = await waitFor(
        async () => ((await onB<Detail>(`/api/builds/${id}`)).counts?.running ?? 0) > 0,
        {
          timeoutMs: 120_000,
        },
      );
      assert.ok(running, `build ${id} runs`);
      await a.stop("SIGKILL");
      const r = await client;
      assert.equal(r.exitCode, 0, err);
      assert.match(
        err,
        new RegExp(`coordinator ${escape(a.url)} lost; following build ${id} on ${escape(b.url)}\\n`),
      );
      assert.equal(err.match(/submitted to the coordinator/g)?.length, 1, "one submission");
      const detail = await onB<Detail>(`/api/builds/${id}`);
      assert.equal(detail.status, "succeeded");
      assert.equal(await readlink(link), detail.outputs[0]);
      assert.match(r.stdout, new RegExp(`\\(the coordinator at ${escape(b.url)}, build ${id}\\)`));
      assert.equal(detail.report?.records.length, 5);
    });
  },
);
