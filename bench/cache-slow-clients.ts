/**
 * What slow clients cost the other clients of `nixpool serve`'s binary cache: the narinfo rate of
 * well-behaved clients (10 connections, Nix-like keep-alive GETs) alone, then while `--loris`
 * connections dribble their headers a byte a second and NAR_SESSIONS clients stop reading a NAR
 * of the builder's store (the service's default limits: they stay held throughout; measured once
 * they are all connected and the readers' downloads have stalled), then alone again. Reported as the ratio
 * of the loaded rate to the mean of the two others, in the same run, with the coordinator's RSS and the 5 slowest answers. The slow clients run in this
 * process, on the same cores as the service.
 *
 *   npm run build && node --import tsx bench/cache-slow-clients.ts [--requests 3000] [--loris 500] [--json]
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { resolve } from "node:path";
import { run } from "../src/adapters/runner.js";
import { spawnPiped } from "../src/adapters/piped-process.js";
import { waitFor } from "../src/adapters/wait-for.js";
import { parseNarInfo } from "../src/core/binary-cache/narinfo.js";
import { NAR_SESSIONS } from "../src/serve/cache/cache-stores.js";
import { startTestPool } from "../test/helpers/pool.js";
import { dribble, rawConnect, type RawConnection } from "../test/helpers/raw-http.js";
import { startServe, type ServeProcess } from "../test/helpers/serve-process.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "3000" },
    loris: { type: "string", default: "500" },
    json: { type: "boolean", default: false },
    // The child's part: hold the slow clients (PORT, the NAR's path, the Authorization header).
    hold: { type: "string" },
    nar: { type: "string" },
    auth: { type: "string" },
  },
});
const requests = Number(values.requests);
const lorisCount = Number(values.loris);
const FIXTURE = resolve(import.meta.dirname, "../test/fixtures/nix/cache.nix");
const log = (s: string) => {
  if (!values.json) console.error(s);
};
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function must(argv: string[]): Promise<string> {
  const r = await run(argv, { reject: false, timeout: 1_800_000 });
  if (r.exitCode !== 0) throw new Error(`${argv.slice(0, 4).join(" ")}… failed:\n${r.stderr.slice(-2000)}`);
  return r.stdout.trim();
}

/** Holds the slow clients in a process of their own (--hold), so that they cost the measuring client nothing. */
async function holdSlowClients(port: number, narUrl: string, authorization: string): Promise<never> {
  const conns: RawConnection[] = [];
  for (let i = 0; i < NAR_SESSIONS; i++) {
    const c = rawConnect(port);
    c.socket.write(`GET /cache/${narUrl} HTTP/1.1\r\nHost: x\r\nAuthorization: ${authorization}\r\n\r\n`);
    c.socket.pause();
    conns.push(c);
  }
  for (let i = 0; i < lorisCount; i++) {
    const c = rawConnect(port);
    dribble(c, "GET /cache/nix-cache-info HTTP/1.1\r\nHost: x\r\n", 1000);
    conns.push(c);
  }
  await Promise.all(
    conns.map(
      (c) => new Promise((ok) => (c.socket.readyState === "open" ? ok(null) : c.socket.once("connect", ok))),
    ),
  );
  process.stdout.write("connected\n");
  setInterval(() => process.stdout.write(`open ${conns.filter((c) => !c.isClosed()).length}\n`), 1000);
  return new Promise<never>(() => undefined);
}
if (values.hold !== undefined)
  await holdSlowClients(Number(values.hold), values.nar ?? "", values.auth ?? "");

const tp = await startTestPool(1, 2);
let serve: ServeProcess | undefined;
let stopHolder = (): void => undefined;
try {
  const seed = randomBytes(6).toString("hex");
  const massArgs = ["--argstr", "seed", seed, "--arg", "n", "200"];
  const bigArgs = ["--argstr", "seed", seed, "--arg", "bigMiB", "64"];
  log("building 200 small paths and a 64 MiB one on local1…");
  for (const args of [
    ["-A", "mass", ...massArgs],
    ["-A", "bigSize", ...bigArgs],
  ]) {
    const b = await tp.cli(["build", FIXTURE, ...args, "--no-out-link"], { timeout: 1_800_000 });
    if (b.exitCode !== 0) throw new Error(b.stderr);
  }
  const drvs = (await must(["nix-instantiate", FIXTURE, "-A", "mass", ...massArgs])).split("\n");
  const mass = (await must(["nix-store", "-q", "--outputs", ...drvs])).split("\n");
  const big = await must([
    "nix-store",
    "-q",
    "--outputs",
    await must(["nix-instantiate", FIXTURE, "-A", "big", ...bigArgs]),
  ]);
  serve = await startServe(tp.stateDir);
  const port = Number(/:(\d+)$/.exec(serve.url)?.[1]);
  const token = (await tp.cli(["cache", "token"])).stdout.trim();
  const basic = `Basic ${Buffer.from(`nixpool:${token}`).toString("base64")}`;
  const pid = serve.pid as number;
  const rss = async () =>
    Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;

  /** `requests` narinfo GETs over 10 kept-alive connections: per second, and the slowest answers. */
  const narinfoRate = async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 10 });
    const times: number[] = [];
    let failed = 0;
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < requests) {
          const p = mass[next++ % mass.length] as string;
          const t1 = process.hrtime.bigint();
          const status = await new Promise<number>((ok) => {
            const req = request(
              { host: "127.0.0.1", port, path: `/cache/${p.slice(11, 43)}.narinfo`, agent },
              (res) => {
                res.resume();
                res.on("end", () => ok(res.statusCode ?? 0));
              },
            );
            req.setHeader("Authorization", basic);
            req.on("error", () => ok(0));
            req.end();
          });
          times.push(ms(t1));
          if (status !== 200) failed++;
        }
      }),
    );
    const seconds = ms(t0) / 1000;
    agent.destroy();
    return { perSecond: requests / seconds, failed, slowestMs: times.sort((a, b) => b - a).slice(0, 5) };
  };

  log("warming up (every result's path info learned once)…");
  await narinfoRate();
  const rssBefore = await rss();
  log(`alone: ${requests} narinfos…`);
  const alone = await narinfoRate();
  log(`holding ${lorisCount} slowloris connections and ${NAR_SESSIONS} stalled NAR readers…`);
  const info = parseNarInfo(
    await new Promise<string>((ok, fail) => {
      const req = request(
        {
          host: "127.0.0.1",
          port,
          path: `/cache/${big.slice(11, 43)}.narinfo`,
          headers: { Authorization: basic },
        },
        (res) => {
          let text = "";
          res.on("data", (d: Buffer) => (text += d.toString()));
          res.on("end", () => ok(text));
        },
      );
      req.on("error", fail);
      req.end();
    }),
  );
  const holder = spawnPiped([
    "node",
    "--import",
    "tsx",
    import.meta.filename,
    "--hold",
    String(port),
    "--nar",
    info.url,
    "--auth",
    basic,
    "--loris",
    String(lorisCount),
  ]);
  stopHolder = () => holder.kill("SIGKILL");
  let holderOut = "";
  holder.stdout.on("data", (d: Buffer) => (holderOut += d.toString()));
  holder.stderr.resume();
  holder.stdin.end();
  // Measured once every slow client is connected and every stalled reader has started its NAR.
  const apiToken = (await tp.cli(["serve", "token"])).stdout.trim();
  const stats = async () => {
    const r = await fetch(`http://127.0.0.1:${port}/api/cache/stats`, {
      headers: { Authorization: `Bearer ${apiToken}` },
    });
    return (await r.json()) as { bytesServed: number; topPaths: { path: string; nars: number }[] };
  };
  // Stalled: the readers' downloads started and no byte has gone out for a second (buffers full).
  let lastBytes = -1;
  const stalled = await waitFor(
    async () => {
      const s = await stats();
      const started = s.topPaths.find((p) => p.path === big)?.nars === NAR_SESSIONS;
      const still = s.bytesServed === lastBytes;
      lastBytes = s.bytesServed;
      return holderOut.includes("connected\n") && started && still;
    },
    { timeoutMs: 120_000, intervalMs: 1000 },
  );
  if (!stalled) throw new Error("the slow clients did not all connect, or the readers did not stall");
  const loaded = await narinfoRate();
  const rssLoaded = await rss();
  const stillHeld = Number(/open (\d+)\n$/.exec(holderOut)?.[1] ?? NaN);
  stopHolder();
  log(`alone again: ${requests} narinfos…`);
  const aloneAgain = await narinfoRate();
  const result = {
    requests,
    alone,
    loaded: { ...loaded, slowClients: lorisCount + NAR_SESSIONS, stillHeldAtTheEnd: stillHeld },
    aloneAgain,
    // Against both runs without slow clients, one before and one after: the machine's load moves.
    ratio: loaded.perSecond / ((alone.perSecond + aloneAgain.perSecond) / 2),
    rssMiB: { before: rssBefore, loaded: rssLoaded },
  };
  console.log(JSON.stringify(result, null, values.json ? 0 : 2));
} finally {
  stopHolder();
  await serve?.stop("SIGKILL");
  await tp.cleanup();
}
