/**
 * The coordinator's API under a dashboard-like load, while a build runs: a real `nixpool serve`
 * on a local pool of 2 builders × 2 jobs builds examples/graph.nix (40 leaves of 0.5 s, a fresh
 * seed) submitted by a `nixpool build` client through the socket, while N clients (default 100)
 * each hold an SSE stream (/api/events) and loop GET /api/builds then GET /api/builders over TCP
 * with the token. Reported: p50/p99/max latency per endpoint, against the same requests from one
 * client on the idle service (the baseline, same run), and the events each stream received.
 *
 *   npm run build && node --import tsx bench/coordinator-api.ts [--clients 100] [--leaves 40] [--engine sqlite|postgres]
 */
import { parseArgs } from "node:util";
import { Agent, request } from "node:http";
import { execa } from "execa";
import { CLI, makeTempDir } from "../test/helpers/cli.js";
import { graphArgs } from "../test/helpers/example-builds.js";
import { startTestPool } from "../test/helpers/pool.js";
import { startServe } from "../test/helpers/serve-process.js";
import { startTestPostgres } from "../test/helpers/postgres.js";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "100" },
    leaves: { type: "string", default: "40" },
    // The history's engine: SQLite under the state directory, or a PostgreSQL started here.
    engine: { type: "string", default: "sqlite" },
  },
});
const clients = Number(values.clients);
const leaves = Number(values.leaves);

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function summary(ms: readonly number[]) {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

const fmt = (x: number) => `${x.toFixed(1)} ms`;

async function main(): Promise<void> {
  const pool = await startTestPool(2, 2);
  const work = await makeTempDir("nixpool-bench-api-");
  const postgres = values.engine === "postgres" ? await startTestPostgres() : undefined;
  if (postgres) process.env["NIXPOOL_DATABASE_URL"] = await postgres.createDatabase();
  const serve = await startServe(pool.stateDir);
  try {
    const token = (await pool.cli(["serve", "token"])).stdout.trim();
    const url = new URL(serve.url);
    // One keep-alive connection per client, as a browser tab holds.
    const get = (agent: Agent, path: string) =>
      new Promise<number>((resolve, reject) => {
        const t0 = performance.now();
        const req = request(
          { host: url.hostname, port: url.port, path, agent, headers: { Authorization: `Bearer ${token}` } },
          (res) => {
            res.resume();
            res.on("end", () =>
              res.statusCode === 200
                ? resolve(performance.now() - t0)
                : reject(new Error(`${path}: HTTP ${res.statusCode}`)),
            );
          },
        );
        req.once("error", reject);
        req.end();
      });

    // Baseline: one client, the idle service.
    const idleAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const idle = { builds: [] as number[], builders: [] as number[] };
    for (let i = 0; i < 200; i++) {
      idle.builds.push(await get(idleAgent, "/api/builds"));
      idle.builders.push(await get(idleAgent, "/api/builders"));
    }
    idleAgent.destroy();

    // The build, through the socket of this state directory (as a user's `nixpool build`).
    const t0 = performance.now();
    const build = execa(
      "node",
      [
        CLI,
        "--state-dir",
        pool.stateDir,
        "build",
        ...graphArgs(leaves, { sleep: 0.5 }),
        "--no-out-link",
        "--quiet",
      ],
      {
        cwd: work.dir,
        reject: false,
      },
    );
    let running = true;
    void build.then(() => (running = false));

    // N dashboards: an SSE stream each, and GET /api/builds, /api/builders in a loop while the build runs.
    const events = new Array<number>(clients).fill(0);
    const streams = Array.from({ length: clients }, (_, i) => {
      const agent = new Agent({ keepAlive: false });
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: "/api/events",
          agent,
          headers: { Authorization: `Bearer ${token}` },
        },
        (res) => {
          res.setEncoding("utf8");
          res.on(
            "data",
            (d: string) => (events[i] = (events[i] ?? 0) + (d.match(/^event: /gm)?.length ?? 0)),
          );
          res.on("error", () => undefined);
        },
      );
      req.on("error", () => undefined);
      req.end();
      return req;
    });
    const loaded = { builds: [] as number[], builders: [] as number[] };
    const errors: string[] = [];
    const maxRounds = 10_000;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        const agent = new Agent({ keepAlive: true, maxSockets: 1 });
        for (let round = 0; running && round < maxRounds; round++) {
          try {
            loaded.builds.push(await get(agent, "/api/builds"));
            loaded.builders.push(await get(agent, "/api/builders"));
          } catch (e) {
            errors.push(e instanceof Error ? e.message : String(e));
            if (errors.length > 100) return;
          }
        }
        agent.destroy();
      }),
    );
    const built = await build;
    const wallS = (performance.now() - t0) / 1000;
    for (const s of streams) s.destroy();

    const rows = [
      ["GET /api/builds, idle (1 client)", summary(idle.builds)],
      ["GET /api/builders, idle (1 client)", summary(idle.builders)],
      [`GET /api/builds, ${clients} clients + build`, summary(loaded.builds)],
      [`GET /api/builders, ${clients} clients + build`, summary(loaded.builders)],
    ] as const;
    console.log(
      `build: exit ${built.exitCode}, ${wallS.toFixed(1)} s wall (${leaves} × 0.5 s on 4 slots, ideal ${((leaves * 0.5) / 4).toFixed(1)} s)`,
    );
    console.log("| requests | n | p50 | p99 | max |");
    console.log("| --- | --- | --- | --- | --- |");
    for (const [what, s] of rows)
      console.log(`| ${what} | ${s.n} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${fmt(s.max)} |`);
    const ev = summary(events);
    console.log(
      `SSE: ${clients} streams, events received per stream: min ${[...events].sort((a, b) => a - b)[0]}, median ${ev.p50}, max ${ev.max}`,
    );
    console.log(`errors: ${errors.length}${errors.length ? ` (first: ${errors[0]})` : ""}`);
    if (built.exitCode !== 0) console.log(built.stderr);
  } finally {
    await serve.stop("SIGTERM");
    await work.cleanup();
    await pool.cleanup();
    await postgres?.stop();
  }
}

await main();
