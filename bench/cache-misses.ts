/**
 * The narinfo rate of `nixpool serve`'s binary cache for paths the pool does NOT have: the usual
 * case when the cache's Priority puts it ahead of cache.nixos.org, so that every path a client
 * wants is asked here first. One local pool (one builder, `local1`) with `--results` results the
 * cache serves; then, in one run:
 *
 * - `--requests` narinfo GETs of paths the cache has, on 25 kept-alive connections (Nix's
 *   http-connections): the baseline;
 * - as many GETs of random store hashes it does not have (404), on 25 connections;
 * - the baseline again;
 * - Nix's own query of as many unknown paths (`nix-store --store EMPTY -r --dry-run`, the cache
 *   its only substituter, its narinfo disk cache empty).
 *
 * Reported as narinfos per second and the ratio of the misses' rate to the mean of the two
 * baselines (the same run, the same machine's load).
 *
 *   npm run build && node --import tsx bench/cache-misses.ts [--results 500] [--requests 5000] [--json]
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { join, resolve } from "node:path";
import { run } from "../src/adapters/runner.js";
import { makeTempDir } from "../test/helpers/cli.js";
import { startTestPool } from "../test/helpers/pool.js";
import { startServe, type ServeProcess } from "../test/helpers/serve-process.js";

const { values } = parseArgs({
  options: {
    results: { type: "string", default: "500" },
    requests: { type: "string", default: "5000" },
    json: { type: "boolean", default: false },
  },
});
const results = Number(values.results);
const requests = Number(values.requests);
const FIXTURE = resolve(import.meta.dirname, "../test/fixtures/nix/cache.nix");
const log = (s: string) => {
  if (!values.json) console.error(s);
};
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
/** Nix's base-32 alphabet: random store hashes that name no path. */
const NIX32 = "0123456789abcdfghijklmnpqrsvwxyz";
const randomHash = () =>
  Array.from(randomBytes(32), (b) => NIX32[b % 32])
    .join("")
    .slice(0, 32);

async function must(argv: string[], env?: Record<string, string>): Promise<string> {
  const r = await run(argv, { reject: false, timeout: 1_800_000, ...(env ? { env } : {}) });
  if (r.exitCode !== 0) throw new Error(`${argv.slice(0, 4).join(" ")}… failed:\n${r.stderr.slice(-2000)}`);
  return r.stdout.trim();
}

const tp = await startTestPool(1, 2);
const work = await makeTempDir("nixpool-bench-cache-misses-");
let serve: ServeProcess | undefined;
try {
  const seed = randomBytes(6).toString("hex");
  const massArgs = ["-A", "mass", "--argstr", "seed", seed, "--arg", "n", String(results)];
  log(`building ${results} small paths on local1…`);
  const b = await tp.cli(["build", FIXTURE, ...massArgs, "--no-out-link"], { timeout: 1_800_000 });
  if (b.exitCode !== 0) throw new Error(b.stderr);
  const drvs = (await must(["nix-instantiate", FIXTURE, ...massArgs])).split("\n");
  const known = (await must(["nix-store", "-q", "--outputs", ...drvs])).split("\n");
  serve = await startServe(tp.stateDir);
  const token = (await tp.cli(["cache", "token"])).stdout.trim();
  const authorization = `Basic ${Buffer.from(`nixpool:${token}`).toString("base64")}`;

  /** `requests` narinfo GETs of `hashes` (in turn) on 25 kept-alive connections. */
  const rate = async (hashes: string[], want: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 25 });
    let next = 0;
    let unexpected = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: 25 }, async () => {
        while (next < requests) {
          const h = hashes[next++ % hashes.length] as string;
          const status = await new Promise<number>((ok, fail) => {
            const req = request(
              `${serve?.url}/cache/${h}.narinfo`,
              { agent, headers: { Authorization: authorization } },
              (res) => {
                res.resume();
                res.on("end", () => ok(res.statusCode ?? 0));
                res.on("error", fail);
              },
            );
            req.on("error", fail);
            req.end();
          });
          if (status !== want) unexpected++;
        }
      }),
    );
    agent.destroy();
    const seconds = ms(t0) / 1000;
    return { seconds, perSecond: requests / seconds, unexpected };
  };
  const knownHashes = known.map((p) => p.slice(11, 43));
  // The first narinfo makes the cache learn where every result is: not part of any rate.
  await rate(knownHashes.slice(0, 1), 200);
  log(`${requests} narinfos the cache has…`);
  const hits1 = await rate(knownHashes, 200);
  log(`${requests} narinfos it does not have…`);
  const misses = await rate(
    Array.from({ length: requests }, () => randomHash()),
    404,
  );
  log(`${requests} narinfos the cache has, again…`);
  const hits2 = await rate(knownHashes, 200);

  log(`nix-store -r --dry-run of ${requests} paths nobody has…`);
  const listFile = join(work.dir, "paths");
  await writeFile(
    listFile,
    Array.from({ length: requests }, (_, i) => `/nix/store/${randomHash()}-absent-${i}`).join("\n"),
  );
  const key = /trusted-public-keys: (\S+)\)/.exec(serve.stdout())?.[1] as string;
  const netrc = join(work.dir, "netrc");
  await writeFile(netrc, `machine 127.0.0.1 login nixpool password ${token}\n`, { mode: 0o600 });
  const t0 = process.hrtime.bigint();
  const dry = await run(
    [
      "sh",
      "-c",
      'xargs nix-store --store "$4" -r --dry-run --option substituters "$1" --option trusted-public-keys "$5" --option netrc-file "$2" < "$3"',
      "sh",
      `${serve.url}/cache`,
      netrc,
      listFile,
      join(work.dir, "dry-store"),
      key,
    ],
    { reject: false, timeout: 1_800_000, env: { XDG_CACHE_HOME: join(work.dir, "xdg") } },
  );
  const nixSeconds = ms(t0) / 1000;
  // Nix lists what it can neither fetch nor build: every path, when every narinfo was a 404.
  const unknownListed = (dry.stderr.match(/-absent-\d+/g) ?? []).length;

  const result = {
    results,
    requests,
    hits: hits1,
    misses,
    hitsAgain: hits2,
    missesVsHits: misses.perSecond / ((hits1.perSecond + hits2.perSecond) / 2),
    nixDryRun: {
      seconds: nixSeconds,
      narinfosPerSecond: requests / nixSeconds,
      exitCode: dry.exitCode,
      pathsListedAsUnknown: unknownListed,
    },
  };
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    const row = (name: string, r: typeof hits1) =>
      `${name}: ${r.seconds.toFixed(2)} s, ${r.perSecond.toFixed(0)} narinfos/s` +
      (r.unexpected > 0 ? ` (${r.unexpected} unexpected answers)` : "");
    console.log(row("present", hits1));
    console.log(row("absent", misses));
    console.log(row("present again", hits2));
    console.log(`absent ÷ mean(present): ${result.missesVsHits.toFixed(2)}`);
    console.log(
      `nix-store -r --dry-run of ${requests} absent paths: ${nixSeconds.toFixed(2)} s ` +
        `(${result.nixDryRun.narinfosPerSecond.toFixed(0)} narinfos/s), exit ${dry.exitCode}, ${unknownListed} listed as unknown`,
    );
  }
} finally {
  await serve?.stop("SIGKILL");
  await tp.cleanup();
  await work.cleanup();
}
