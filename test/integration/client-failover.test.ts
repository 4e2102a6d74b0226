import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readlink } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { waitFor } from "../../src/adapters/wait-for.js";
import { CLI, makeTempDir, runCli } from "../helpers/cli.js";
import { graphArgs } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";
import { deadUrl, startBlackHole, startTcpForwarder } from "../helpers/tcp-forwarder.js";

// A client that names several coordinators (--coordinator URL1,URL2). Its first URL is a TCP
// forwarder in front of a real `nixpool serve` on a local pool, its second the same coordinator
// directly: killing the forwarder mid-build (every connection reset) is, for the client, losing
// its coordinator; it follows the same build on the second URL (GET /api/events?build=ID).

interface BuildJson {
  buildId: string;
  outputs: string[];
  wallMs: number;
  stats: Record<string, number>;
  derivations: { name: string; builder: string | null; status: string; attempts: number }[];
}

interface Detail {
  id: string;
  status: string;
  outputs: string[];
  report?: {
    wallMs: number;
    stats: Record<string, number>;
    records: { name: string; builder: string | null; status: string; attempts: number }[];
  };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

describe("a client naming several coordinators", { timeout: 900_000, concurrency: false }, () => {
  let pool: TestPool;
  let serve: ServeProcess;
  let token: string;
  let work: { dir: string; cleanup: () => Promise<void> };

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-failover-client-");
    serve = await startServe(pool.stateDir);
    token = (await pool.cli(["serve", "token"])).stdout.trim();
  });
  after(async () => {
    await serve?.stop("SIGKILL");
    await work?.cleanup();
    await pool?.cleanup();
  });

  const api = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${serve.url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, path);
    return (await r.json()) as T;
  };
  /** `nixpool build ARGS` from its own state directory (the token from the environment), running. */
  const startClient = (args: readonly string[]) => {
    let err = "";
    const proc = execa("node", [CLI, "--state-dir", join(work.dir, "client-state"), "build", ...args], {
      reject: false,
      cwd: work.dir,
      stdin: "ignore",
      env: { NIXPOOL_COORDINATOR_TOKEN: token },
    });
    proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    return { proc, stderr: () => err };
  };
  /**
   * The id the client printed when `url` named its build, once the pool runs one of its
   * derivations: losing `url` from then on is losing it mid-build, after the client knew the id.
   */
  const runningVia = async (client: ReturnType<typeof startClient>, url: string) => {
    const id = await waitFor(
      () =>
        new RegExp(`build (\\S+) submitted to the coordinator at ${escape(url)}\\n`).exec(
          client.stderr(),
        )?.[1],
      { timeoutMs: 120_000 },
    );
    assert.ok(id, `the client named its build:\n${client.stderr()}`);
    const running = await waitFor(
      async () => (await api<{ counts: { running: number } }>(`/api/builds/${id}`)).counts.running > 0,
      { timeoutMs: 120_000 },
    );
    assert.ok(running, `build ${id} runs on the pool`);
    return id;
  };

  test("its first coordinator lost mid-build: it follows the build on the second and ends with the same outputs and report", async () => {
    const forwarder = await startTcpForwarder(serve.url);
    const link = join(work.dir, "failover-result");
    const client = startClient([
      ...graphArgs(4, { sleep: 4 }),
      "-o",
      link,
      "--coordinator",
      `${forwarder.url},${serve.url}`,
    ]);
    const id = await runningVia(client, forwarder.url);
    await forwarder.kill();
    const r = await client.proc;
    assert.equal(r.exitCode, 0, client.stderr());
    assert.match(
      client.stderr(),
      new RegExp(
        `coordinator ${escape(forwarder.url)} lost; following build ${id} on ${escape(serve.url)}\\n`,
      ),
    );
    assert.doesNotMatch(client.stderr(), /does not answer/, "the submission went to the first");
    assert.equal(
      client.stderr().match(/submitted to the coordinator/g)?.length,
      1,
      "one build, not a second one",
    );
    const detail = await api<Detail>(`/api/builds/${id}`);
    assert.equal(detail.status, "succeeded");
    assert.equal(detail.outputs.length, 1);
    assert.equal(await readlink(link), detail.outputs[0]);
    assert.match(
      r.stdout,
      new RegExp(`Outputs \\(GC root ${escape(link)}\\):\\n {2}${escape(detail.outputs[0] ?? "")}$`),
    );
    // The report is the coordinator's, from the one that sent the end: each derivation built once.
    const report = detail.report;
    assert.ok(report);
    assert.equal(report.records.length, 5);
    for (const rec of report.records) {
      assert.equal(rec.status, "built", `${rec.name} built`);
      assert.equal(rec.attempts, 1, `${rec.name} built once`);
      assert.match(
        r.stdout,
        new RegExp(`^${escape(rec.name)}\\s+${escape(rec.builder ?? "-")}\\s+1\\s`, "m"),
      );
    }
    assert.match(
      r.stdout,
      new RegExp(
        `5 built, 0 cached, 0 retried in .* \\(the coordinator at ${escape(serve.url)}, build ${id}\\)`,
      ),
    );
  });

  test("a first coordinator that does not answer is skipped, with a line: the build goes to the second", async () => {
    const dead = await deadUrl();
    const r = await runCli(
      join(work.dir, "client-state"),
      ["build", ...graphArgs(2), "--no-out-link", "--json", "--coordinator", `${dead},${serve.url}`],
      { env: { NIXPOOL_COORDINATOR_TOKEN: token }, cwd: work.dir },
    );
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `coordinator ${escape(dead)} does not answer \\(ECONNREFUSED\\); trying ${escape(serve.url)}\\n`,
      ),
    );
    const j = JSON.parse(r.stdout) as BuildJson;
    const detail = await api<Detail>(`/api/builds/${j.buildId}`);
    assert.equal(detail.status, "succeeded");
    assert.deepEqual(j.outputs, detail.outputs);
  });

  test("a first coordinator that accepts connections and never answers is given up after 30 s: the build goes to the second", async () => {
    const hole = await startBlackHole();
    try {
      const r = await runCli(
        join(work.dir, "client-state"),
        ["build", ...graphArgs(1), "--no-out-link", "--json", "--coordinator", `${hole.url},${serve.url}`],
        { env: { NIXPOOL_COORDINATOR_TOKEN: token }, cwd: work.dir },
      );
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `coordinator ${escape(hole.url)} does not answer \\(ETIMEDOUT\\); trying ${escape(serve.url)}\\n`,
        ),
      );
      const j = JSON.parse(r.stdout) as BuildJson;
      assert.equal((await api<Detail>(`/api/builds/${j.buildId}`)).status, "succeeded");
    } finally {
      await hole.close();
    }
  });

  test("one coordinator, as before: its stream lost mid-build ends the client (the build goes on)", async () => {
    const forwarder = await startTcpForwarder(serve.url);
    const client = startClient([
      ...graphArgs(2, { sleep: 4 }),
      "--no-out-link",
      "--coordinator",
      forwarder.url,
    ]);
    const id = await runningVia(client, forwarder.url);
    await forwarder.kill();
    const r = await client.proc;
    assert.equal(r.exitCode, 1, client.stderr());
    assert.match(client.stderr(), new RegExp(`coordinator at ${escape(forwarder.url)} does not answer`));
    assert.doesNotMatch(client.stderr(), /following build/);
    const ended = await waitFor(
      async () => {
        const d = await api<Detail>(`/api/builds/${id}`);
        return d.status === "running" || d.status === "queued" ? undefined : d.status;
      },
      { timeoutMs: 120_000 },
    );
    assert.equal(ended, "succeeded", "the build ran to its end without its client");
  });

  test("none answers: one error naming them all; a bad entry is named before anything is tried", async () => {
    const [a, b] = [await deadUrl(), await deadUrl()];
    const none = await runCli(join(work.dir, "client-state"), [
      "build",
      ...graphArgs(1),
      "--no-out-link",
      "--coordinator",
      `${a},${b}`,
    ]);
    assert.equal(none.exitCode, 1, none.stderr);
    assert.match(
      none.stderr,
      new RegExp(`coordinator ${escape(a)} does not answer \\(ECONNREFUSED\\); trying ${escape(b)}`),
    );
    assert.match(none.stderr, new RegExp(`None of the coordinators ${escape(a)}, ${escape(b)} answers`));
    assert.match(none.stderr, /hint: /);
    const bad = await runCli(join(work.dir, "client-state"), ["build", ...graphArgs(1), "--no-out-link"], {
      env: { NIXPOOL_COORDINATOR: `${serve.url},localhost:7420` },
    });
    assert.equal(bad.exitCode, 2, bad.stderr);
    assert.match(bad.stderr, /NIXPOOL_COORDINATOR entry 2 "localhost:7420"/);
  });

  test("Ctrl-C after the client lost its first coordinator cancels the build on the one it follows", async () => {
    const forwarder = await startTcpForwarder(serve.url);
    const client = startClient([
      ...graphArgs(4, { sleep: 30 }),
      "--no-out-link",
      "--coordinator",
      `${forwarder.url},${serve.url}`,
    ]);
    const id = await runningVia(client, forwarder.url);
    await forwarder.kill();
    const following = await waitFor(() => client.stderr().includes(`following build ${id} on ${serve.url}`), {
      timeoutMs: 120_000,
    });
    assert.ok(following, client.stderr());
    client.proc.kill("SIGINT");
    const r = await client.proc;
    assert.equal(r.exitCode, 130, client.stderr());
    assert.equal((await api<Detail>(`/api/builds/${id}`)).status, "cancelled");
  });
});
