/**
 * The pool's binary cache against the ways a machine gets the same paths today, in one run on one
 * local pool (one builder, `local1`):
 *
 * - a ~200 MiB closure (a root, `small` tiny paths, `large` paths of `largeMiB` MiB of random
 *   bytes; test/fixtures/nix/closure.nix) copied into a fresh store with `nix copy --from`:
 *   from the cache streaming from the builder's store, from `ssh://local1` (Nix's own protocol),
 *   and from the cache streaming from this machine's store (what nix-serve does);
 *   each with the time to the first byte of the largest NAR;
 * - the narinfo rate of a 5,000-path query (`nix-store -r --dry-run` of 5,000 paths into an empty
 *   store: Nix's own query of what it will fetch; and 5,000 GETs on 25 connections, Nix's
 *   http-connections);
 * - the coordinator's memory while it streams a 1 GiB NAR from the builder;
 * - what zstd and xz would cost on one core (the reason the cache sends NARs uncompressed).
 *
 *   npm run build && node --import tsx bench/cache.ts [--rounds 3] [--large 4] [--large-mib 50] [--mass 5000] [--gib 1] [--json]
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { join, resolve } from "node:path";
import { run } from "../src/adapters/runner.js";
import { statePaths } from "../src/config/state-paths.js";
import { parseNarInfo } from "../src/core/binary-cache/narinfo.js";
import { makeTempDir } from "../test/helpers/cli.js";
import { startTestPool } from "../test/helpers/pool.js";
import { startServe, type ServeProcess } from "../test/helpers/serve-process.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    small: { type: "string", default: "20" },
    large: { type: "string", default: "4" },
    "large-mib": { type: "string", default: "50" },
    mass: { type: "string", default: "5000" },
    gib: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const mass = Number(values.mass);
const CLOSURE = resolve(import.meta.dirname, "../test/fixtures/nix/closure.nix");
const CACHE_FIXTURE = resolve(import.meta.dirname, "../test/fixtures/nix/cache.nix");
const NIX = ["nix", "--extra-experimental-features", "nix-command"];
const log = (s: string) => {
  if (!values.json) console.error(s);
};
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function must(argv: string[], env?: Record<string, string>): Promise<string> {
  const r = await run(argv, { reject: false, timeout: 1_800_000, ...(env ? { env } : {}) });
  if (r.exitCode !== 0) throw new Error(`${argv.slice(0, 4).join(" ")}… failed:\n${r.stderr.slice(-2000)}`);
  return r.stdout.trim();
}

/** GET with the first-byte time, the total time and the bytes (the body is counted, not kept). */
function timedGet(url: string, headers: Record<string, string>) {
  return new Promise<{ status: number; firstByteMs: number; totalMs: number; bytes: number }>((ok, fail) => {
    const t0 = process.hrtime.bigint();
    let first = NaN;
    let bytes = 0;
    const req = request(url, { headers }, (res) => {
      res.on("data", (d: Buffer) => {
        if (Number.isNaN(first)) first = ms(t0);
        bytes += d.length;
      });
      res.on("end", () => ok({ status: res.statusCode ?? 0, firstByteMs: first, totalMs: ms(t0), bytes }));
      res.on("error", fail);
    });
    req.on("error", fail);
    req.end();
  });
}

const tp = await startTestPool(1, 2);
const work = await makeTempDir("nixpool-bench-cache-");
let serve: ServeProcess | undefined;
const result: Record<string, unknown> = {};
/** Each section is printed (stderr) once measured, so a later failure keeps what was measured. */
const done = (name: string) => console.error(JSON.stringify({ [name]: result[name] }));
try {
  const salt = randomBytes(6).toString("hex");
  const closureArgs = [
    "--argstr",
    "salt",
    salt,
    "--arg",
    "small",
    String(values.small),
    "--arg",
    "large",
    String(values.large),
    "--arg",
    "largeMiB",
    String(values["large-mib"]),
  ];
  log("building the closure on local1…");
  const built = await tp.cli(["build", CLOSURE, "-A", "root", ...closureArgs, "--no-out-link", "--json"]);
  if (built.exitCode !== 0) throw new Error(built.stderr);
  const root = (JSON.parse(built.stdout) as { outputs: string[] }).outputs[0] as string;
  const paths = (await must(["nix-store", "-qR", root])).split("\n");
  const narBytes = (await Promise.all(paths.map((p) => must(["nix-store", "-q", "--size", p])))).reduce(
    (n, s) => n + Number(s),
    0,
  );
  const largest = (
    await Promise.all(
      paths.map(async (p) => ({ p, n: Number(await must(["nix-store", "-q", "--size", p])) })),
    )
  ).sort((a, b) => b.n - a.n)[0]?.p as string;
  log(`closure: ${paths.length} paths, ${(narBytes / 2 ** 20).toFixed(1)} MiB of NAR`);
  // Only the builder holds it now (the build copied it here; nothing roots it).
  await must(["nix-store", "--delete", ...paths]);

  const token = (await tp.cli(["cache", "token"])).stdout.trim();
  const netrc = join(work.dir, "netrc");
  await writeFile(netrc, `machine 127.0.0.1 login nixpool password ${token}\n`, { mode: 0o600 });
  const auth = { Authorization: `Basic ${Buffer.from(`nixpool:${token}`).toString("base64")}` };
  const startCache = async () => {
    await serve?.stop();
    serve = await startServe(tp.stateDir);
    const key = /trusted-public-keys: (\S+)\)/.exec(serve.stdout())?.[1] as string;
    return { url: `${serve.url}/cache`, key };
  };
  const sshConfig = statePaths(tp.stateDir).client.sshConfig;
  let n = 0;
  /** `nix copy --from SOURCE` of the closure into a fresh store; seconds. */
  const copyFrom = async (source: string, extra: string[]) => {
    const dest = join(work.dir, `store-${n++}`);
    const env = { NIX_SSHOPTS: `-F ${sshConfig}`, XDG_CACHE_HOME: join(work.dir, `xdg-${n}`) };
    const t0 = process.hrtime.bigint();
    await must([...NIX, "copy", "--from", source, "--to", dest, root, ...extra], env).catch(
      async (e: unknown) => {
        const probe = await fetch(`${source}/${root.slice(11, 43)}.narinfo`, { headers: auth }).catch(
          () => undefined,
        );
        throw new Error(`${String(e)}\nnarinfo: ${probe?.status}\nserve: ${serve?.stderr() ?? ""}`);
      },
    );
    const s = ms(t0) / 1000;
    await rm(dest, { recursive: true, force: true });
    return s;
  };
  const mbps = (s: number) => narBytes / 2 ** 20 / s;
  const readNarInfo = async (url: string, path: string) =>
    (await fetch(`${url}/${path.slice(11, 43)}.narinfo`, { headers: auth })).text();
  const narUrl = async (url: string, path: string) =>
    `${url}/${parseNarInfo(await readNarInfo(url, path)).url}`;

  const rows: { source: string; seconds: number[]; firstByteMs: number[] }[] = [
    { source: "pool cache, from the builder's store", seconds: [], firstByteMs: [] },
    { source: "nix copy --from ssh://local1", seconds: [], firstByteMs: [] },
    { source: "pool cache, from this machine's store (nix-serve-style)", seconds: [], firstByteMs: [] },
  ];
  const [fromBuilder, fromSsh, fromLocal] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
  let cache = await startCache();
  const cacheOpts = (key: string) => [
    "--option",
    "trusted-public-keys",
    key,
    "--option",
    "netrc-file",
    netrc,
  ];
  for (let r = 0; r < rounds; r++) {
    log(`round ${r + 1}: from the builder through the cache, then over ssh…`);
    fromBuilder.seconds.push(await copyFrom(cache.url, cacheOpts(cache.key)));
    fromBuilder.firstByteMs.push((await timedGet(await narUrl(cache.url, largest), auth)).firstByteMs);
    fromSsh.seconds.push(await copyFrom("ssh://nixpool-local1", ["--no-check-sigs"]));
  }
  // Now this machine holds it too (and the cache asks this store first).
  await must([...NIX, "copy", "--from", "ssh://nixpool-local1", "--no-check-sigs", root], {
    NIX_SSHOPTS: `-F ${sshConfig}`,
  });
  cache = await startCache();
  for (let r = 0; r < rounds; r++) {
    log(`round ${r + 1}: from this machine's store through the cache…`);
    fromLocal.seconds.push(await copyFrom(cache.url, cacheOpts(cache.key)));
    fromLocal.firstByteMs.push((await timedGet(await narUrl(cache.url, largest), auth)).firstByteMs);
  }
  const baseline = median(fromSsh.seconds);
  result.closure = { paths: paths.length, narMiB: narBytes / 2 ** 20 };
  done("closure");
  result.copies = rows.map((row) => ({
    source: row.source,
    medianSeconds: median(row.seconds),
    MiBps: mbps(median(row.seconds)),
    vsSsh: median(row.seconds) / baseline,
    firstByteMs: row.firstByteMs.length > 0 ? median(row.firstByteMs) : undefined,
    seconds: row.seconds,
  }));
  done("copies");

  // Compression, on one core: what zstd -1 and xz -0 would cost per download (nothing stores a compressed copy).
  // The sample: 256 MiB of the NAR of this machine's /usr/lib (programs and libraries, as store
  // paths mostly hold); the closure's random bytes would not compress at all.
  const narFile = join(work.dir, "sample.nar");
  await must(["sh", "-c", 'nix-store --dump /usr/lib | head -c 268435456 > "$1"', "sh", narFile]);
  const narSize = Number(await must(["stat", "-c", "%s", narFile]));
  const compress: { tool: string; MiBps: number; ratio: number }[] = [];
  for (const tool of [
    ["zstd", "-1", "-T1", "-c"],
    ["xz", "-0", "-T1", "-c"],
  ]) {
    const t0 = process.hrtime.bigint();
    const out = await must(["sh", "-c", `${tool.join(" ")} < "$1" | wc -c`, "sh", narFile]);
    compress.push({
      tool: tool.join(" "),
      MiBps: narSize / 2 ** 20 / (ms(t0) / 1000),
      ratio: narSize / Number(out),
    });
  }
  result.compression = {
    sample: "256 MiB of the NAR of /usr/lib",
    narMiB: narSize / 2 ** 20,
    tools: compress,
  };
  done("compression");

  // The narinfo rate of a mass query.
  if (mass > 0) {
    log(`building ${mass} paths for the mass query…`);
    const massArgs = ["-A", "mass", "--argstr", "seed", salt, "--arg", "n", String(mass)];
    const g = await tp.cli(["build", CACHE_FIXTURE, ...massArgs, "--no-out-link", "--json"], {
      timeout: 1_800_000,
    });
    if (g.exitCode !== 0) throw new Error(g.stderr);
    const records = (await readFile(statePaths(tp.stateDir).trust.resultsFile, "utf8"))
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { output: string }).output)
      .filter((p) => /-mass-\d+$/.test(p));
    const wanted = [...new Set(records)].slice(-mass);
    cache = await startCache();
    const listFile = join(work.dir, "paths");
    await writeFile(listFile, wanted.join("\n"));
    // What Nix does before substituting: query every wanted path at once (queryMissing), into an empty store.
    const t0 = process.hrtime.bigint();
    await must(
      [
        "sh",
        "-c",
        'xargs nix-store --store "$4" -r --dry-run --option substituters "$1" --option trusted-public-keys "$5" --option netrc-file "$2" < "$3" 2> /dev/null',
        "sh",
        cache.url,
        netrc,
        listFile,
        join(work.dir, "mass-store"),
        cache.key,
      ],
      { XDG_CACHE_HOME: join(work.dir, "xdg-mass") },
    );
    const nixSeconds = ms(t0) / 1000;
    // 25 connections, as Nix's http-connections.
    const t1 = process.hrtime.bigint();
    let next = 0;
    let misses = 0;
    await Promise.all(
      Array.from({ length: 25 }, async () => {
        while (next < wanted.length) {
          const p = wanted[next++] as string;
          const r = await timedGet(`${cache.url}/${p.slice(11, 43)}.narinfo`, auth);
          if (r.status !== 200) misses++;
        }
      }),
    );
    const httpSeconds = ms(t1) / 1000;
    result.massQuery = {
      paths: wanted.length,
      nixDryRunSeconds: nixSeconds,
      nixDryRunNarinfosPerSecond: wanted.length / nixSeconds,
      http25Seconds: httpSeconds,
      http25NarinfosPerSecond: wanted.length / httpSeconds,
      misses,
    };
    done("massQuery");
  }

  // Memory while a 1 GiB NAR streams from the builder.
  const gib = Number(values.gib);
  if (gib > 0) {
    log(`building a ${gib} GiB path on local1…`);
    const bigArgs = ["--argstr", "seed", salt, "--arg", "bigMiB", String(gib * 1024)];
    const b = await tp.cli(["build", CACHE_FIXTURE, "-A", "bigSize", ...bigArgs, "--no-out-link"]);
    if (b.exitCode !== 0) throw new Error(b.stderr);
    const big = await must([
      "nix-store",
      "-q",
      "--outputs",
      await must(["nix-instantiate", CACHE_FIXTURE, "-A", "big", ...bigArgs]),
    ]);
    cache = await startCache();
    const pid = serve?.pid as number;
    const rss = async () =>
      Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;
    const url = await narUrl(cache.url, big);
    const before = await rss();
    let peak = before;
    const timer = setInterval(() => void rss().then((m) => (peak = Math.max(peak, m))), 50);
    const got = await timedGet(url, auth);
    clearInterval(timer);
    result.bigNar = {
      GiB: got.bytes / 2 ** 30,
      seconds: got.totalMs / 1000,
      MiBps: got.bytes / 2 ** 20 / (got.totalMs / 1000),
      firstByteMs: got.firstByteMs,
      rssBeforeMiB: before,
      rssPeakMiB: peak,
    };
    done("bigNar");
  }

  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(`closure: ${JSON.stringify(result.closure)}`);
    for (const c of result.copies as {
      source: string;
      medianSeconds: number;
      MiBps: number;
      vsSsh: number;
      firstByteMs?: number;
    }[]) {
      console.log(
        `${c.source}: ${c.medianSeconds.toFixed(2)} s, ${c.MiBps.toFixed(0)} MiB/s, ${c.vsSsh.toFixed(2)}× ssh` +
          (c.firstByteMs !== undefined ? `, first byte ${c.firstByteMs.toFixed(0)} ms` : ""),
      );
    }
    console.log(
      JSON.stringify(
        { compression: result.compression, massQuery: result.massQuery, bigNar: result.bigNar },
        null,
        2,
      ),
    );
  }
} finally {
  await serve?.stop("SIGKILL");
  await tp.cleanup();
  await work.cleanup();
}
