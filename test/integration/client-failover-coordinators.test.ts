import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { run } from "../../src/adapters/runner.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { hostExecArgv, startHost, stopHost } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { CLI, makeTempDir } from "../helpers/cli.js";
import { graphArgs } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";
import { startTcpForwarder } from "../helpers/tcp-forwarder.js";

// Two real `nixpool serve` processes on one PostgreSQL and one pool (one state directory and
// store, each its own socket and port); a client names both (A,B). A is killed with -9 while
// it runs the client's build: B adopts the build (same id) once A is dead, and the client
// follows it there to its end. Then a second pair whose second coordinator runs on a local host
// with its own Nix store: it adopts the build without its derivations (BUILD_ORPHANED), and the
// client submits it again there, uploading them, and downloads the outputs from it.

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
    let host: HostRecord | undefined;
    const others: ServeProcess[] = [];
    const bridges: { kill: () => Promise<void> }[] = [];

    before(async () => {
      [pool, postgres] = await Promise.all([startTestPool(2, 2), startTestPostgres()]);
      work = await makeTempDir("nixpool-failover-two-");
      const env = { NIXPOOL_DATABASE_URL: await postgres.createDatabase() };
      a = await startServe(pool.stateDir, ["--socket", join(work.dir, "a.sock")], [], env);
      b = await startServe(pool.stateDir, ["--socket", join(work.dir, "b.sock")], [], env);
      token = (await pool.cli(["serve", "token"])).stdout.trim();
    });
    after(async () => {
      for (const s of others) await s.stop("SIGKILL");
      for (const f of bridges) await f.kill();
      if (host) await stopHost(host);
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

    /** `nixpool build` of 4 leaves of 5 s to `link`, naming `coordinators`, running. */
    const startClient = (link: string, coordinators: readonly string[]) => {
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
          env: { NIXPOOL_COORDINATOR: coordinators.join(","), NIXPOOL_COORDINATOR_TOKEN: token },
        },
      );
      client.stderr?.on("data", (d: Buffer) => (err += d.toString()));
      return { client, stderr: () => err };
    };

    test("the client follows its build on the second coordinator, which finishes it under the same id", async () => {
      const link = join(work.dir, "result");
      const { client, stderr } = startClient(link, [a.url, b.url]);
      const id = await waitFor(
        () =>
          new RegExp(`build (\\S+) submitted to the coordinator at ${escape(a.url)}\\n`).exec(stderr())?.[1],
        { timeoutMs: 120_000 },
      );
      assert.ok(id, `the client named its build:\n${stderr()}`);
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
      assert.equal(r.exitCode, 0, stderr());
      assert.match(
        stderr(),
        new RegExp(`coordinator ${escape(a.url)} lost; following build ${id} on ${escape(b.url)}\\n`),
      );
      assert.equal(stderr().match(/submitted to the coordinator/g)?.length, 1, "one submission");
      const detail = await onB<Detail>(`/api/builds/${id}`);
      assert.equal(detail.status, "succeeded");
      assert.equal(await readlink(link), detail.outputs[0]);
      assert.match(r.stdout, new RegExp(`\\(the coordinator at ${escape(b.url)}, build ${id}\\)`));
      assert.equal(detail.report?.records.length, 5);
    });

    test("the adopting coordinator lacks the derivations (its own store): BUILD_ORPHANED, submitted again there", async () => {
      host = await startHost({
        name: "coord-b",
        dir: join(work.dir, "coord-b-host"),
        jobs: 1,
        authorizedKeys: [],
      });
      // The host reaches PostgreSQL through a Unix socket (a network namespace has its own 127.0.0.1).
      const pgDir = join(work.dir, "pg-socket");
      await mkdir(pgDir);
      bridges.push(await startTcpForwarder(postgres.url(), join(pgDir, ".s.PGSQL.5432")));
      const database = await postgres.createDatabase();
      const name = new URL(database).pathname.slice(1);
      const a2 = await startServe(pool.stateDir, ["--socket", join(work.dir, "a2.sock")], [], {
        NIXPOOL_DATABASE_URL: database,
      });
      others.push(a2);
      const b2 = await startServe(
        pool.stateDir,
        ["--socket", join(work.dir, "b2.sock"), "--listen", `${host.address}:0`],
        [],
        { NIXPOOL_DATABASE_URL: `postgresql://postgres@localhost/${name}?host=${pgDir}` },
        hostExecArgv(host, []),
      );
      others.push(b2);
      const link = join(work.dir, "result-orphaned");
      const { client, stderr } = startClient(link, [a2.url, b2.url]);
      const on = async <T>(url: string, path: string): Promise<T> => {
        const r = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
        assert.equal(r.status, 200, path);
        return (await r.json()) as T;
      };
      const id = await waitFor(
        () =>
          new RegExp(`build (\\S+) submitted to the coordinator at ${escape(a2.url)}\\n`).exec(stderr())?.[1],
        { timeoutMs: 120_000 },
      );
      assert.ok(id, `the client named its build:\n${stderr()}`);
      const running = await waitFor(
        async () => ((await on<Detail>(a2.url, `/api/builds/${id}`)).counts?.running ?? 0) > 0,
        { timeoutMs: 120_000 },
      );
      assert.ok(running, `build ${id} runs`);
      await a2.stop("SIGKILL");
      const r = await client;
      assert.equal(r.exitCode, 0, stderr());
      assert.match(
        stderr(),
        new RegExp(`coordinator ${escape(a2.url)} lost; following build ${id} on ${escape(b2.url)}\\n`),
      );
      assert.match(
        stderr(),
        new RegExp(`build ${id} was orphaned .*; submitting it again to ${escape(b2.url)}\\n`),
      );
      assert.match(
        stderr(),
        new RegExp(`uploaded \\d+ paths \\([\\d.]+ MB\\) to the coordinator at ${escape(b2.url)}`),
      );
      const again = new RegExp(`build (\\S+) submitted to the coordinator at ${escape(b2.url)}\\n`).exec(
        stderr(),
      )?.[1];
      assert.ok(again && again !== id, "a second build, on the second coordinator");
      const orphaned = await on<Detail & { error?: { code: string } }>(b2.url, `/api/builds/${id}`);
      assert.equal(orphaned.status, "failed");
      assert.equal(orphaned.error?.code, "BUILD_ORPHANED");
      const detail = await on<Detail>(b2.url, `/api/builds/${again}`);
      assert.equal(detail.status, "succeeded");
      assert.match(r.stdout, new RegExp(`\\(the coordinator at ${escape(b2.url)}, build ${again}\\)`));
      // The outputs came from the second coordinator's store into this one.
      const out = await readlink(link);
      assert.equal(out, detail.outputs[0]);
      assert.equal((await run(["nix-store", "--check-validity", out], { reject: false })).exitCode, 0);
      assert.match(stderr(), /downloaded \d+ paths/);
    });
  },
);
