import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { appendFile, readFile, stat } from "node:fs/promises";
import { request } from "node:http";
import { resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { localHostPaths } from "../../src/config/state-paths.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import { makeTempDir } from "../helpers/cli.js";
import { isValidOnClient, startCacheClient, type CacheClient } from "../helpers/cache-client.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";
import { isValidOnHost } from "../helpers/trust-pool.js";

// The pool's builders substitute from the pool's own cache (docs/cache.md#builders-use-substitutes):
// a client host (its own netns and store) builds with Nix's hook straight on a pool builder, with
// and without builders-use-substitutes; and an open cache (`serve --cache-public`) that any
// machine uses with exactly the two nix.conf lines `cache client-config --open` prints.

const FIXTURE = resolve(import.meta.dirname, "../fixtures/nix/cache-builders.nix");

interface Stats {
  narsServed: number;
  bytesServed: number;
  topPaths: { path: string; nars: number; bytes: number }[];
}

function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.once("error", reject);
    req.end();
  });
}

describe("pool builders substitute from the pool's cache", { timeout: 900_000, concurrency: false }, () => {
  let pool: TestPool;
  let work: { dir: string; cleanup: () => Promise<void> };
  let serve: ServeProcess | undefined;
  let client: CacheClient;
  let port: number;
  let publicKey: string;
  /** The input X of each case (built on local1, in the cache), and the derivation that needs it. */
  const cases: Record<"with" | "without" | "open", { seed: string; input: string }> = {
    with: { seed: randomBytes(8).toString("hex"), input: "" },
    without: { seed: randomBytes(8).toString("hex"), input: "" },
    open: { seed: randomBytes(8).toString("hex"), input: "" },
  };
  const B = "local2";
  const host = (name: string) => {
    const h = pool.pool.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no pool host ${name}`);
    return h;
  };
  const url = () => `http://${client.serverAddress}:${port}/cache`;
  const serveToken = async () => (await pool.cli(["serve", "token"])).stdout.trim();
  const stats = async () => {
    const r = await get(port, "/api/cache/stats", { Authorization: `Bearer ${await serveToken()}` });
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as Stats;
  };
  const narSize = async (path: string) =>
    Number((await run(["nix-store", "-q", "--size", path])).stdout.trim());
  const start = async (args: readonly string[]) => {
    serve = await startServe(pool.stateDir, ["--listen", "0.0.0.0:0", ...args]);
    port = Number(/:(\d+)$/.exec(serve.url)?.[1]);
    publicKey = /trusted-public-keys: (\S+)\)/.exec(serve.stdout())?.[1] ?? "";
    assert.match(publicKey, /^nixpool-[^:]+:[A-Za-z0-9+/]{43}=$/);
  };

  /** Nix's hook on the client, building `user` straight on builder B (never on the client). */
  const hookBuild = async (seed: string, extra: readonly string[]) => {
    const direct = await pool.cli(["config", "machines", "--direct"]);
    assert.equal(direct.exitCode, 0, direct.stderr);
    const line = direct.stdout.split("\n").find((l) => l.includes(`@${host(B).address} `));
    assert.ok(line, direct.stdout);
    const drv = await client.exec(["nix-instantiate", FIXTURE, "-A", "user", "--argstr", "seed", seed]);
    assert.equal(drv.exitCode, 0, drv.stderr);
    return client.exec([
      "nix-store",
      "-r",
      drv.stdout.trim(),
      "--max-jobs",
      "0",
      "--option",
      "builders",
      line,
      ...extra,
    ]);
  };

  before(async () => {
    pool = await startTestPool(2, 1);
    work = await makeTempDir("nixpool-cache-builders-");
    for (const c of Object.values(cases)) {
      const built = await pool.cli([
        "build",
        FIXTURE,
        "-A",
        "input",
        "--argstr",
        "seed",
        c.seed,
        "--no-out-link",
        "--json",
        "--builder",
        "local1",
      ]);
      assert.equal(built.exitCode, 0, built.stderr);
      c.input = ((JSON.parse(built.stdout) as { outputs: string[] }).outputs[0] ?? "").trim();
      assert.match(c.input, /-cb-input$/);
    }
    await start([]);
    client = await startCacheClient(work.dir);
  });
  after(async () => {
    await serve?.stop("SIGKILL");
    await client?.cleanup();
    await pool?.cleanup();
    await work?.cleanup();
  });

  test("serve writes each local host's cache lines: the URL on its link, the pool's key, a 0600 netrc", async () => {
    for (const h of pool.pool.hosts) {
      const hostUrl = `http://${h.hostAddress}:${port}/cache`;
      assert.ok(
        serve?.stdout().includes(`local builder ${h.name} substitutes from ${hostUrl}`),
        serve?.stdout(),
      );
      const files = localHostPaths(h.dir);
      const conf = await readFile(files.cacheConf, "utf8");
      assert.match(conf, new RegExp(`^extra-substituters = ${hostUrl.replace(/\./g, "\\.")}$`, "m"));
      assert.ok(conf.includes(`extra-trusted-public-keys = ${publicKey}`), conf);
      assert.match(conf, /^netrc-file = \/etc\/nix\/nixpool-cache\.netrc$/m);
      assert.equal((await stat(files.cacheNetrc)).mode & 0o777, 0o600);
      // What the host's Nix makes of it: the pool's cache is its only substituter.
      const shown = await run(
        hostExecArgv(h, ["nix", "--extra-experimental-features", "nix-command", "show-config"]),
      );
      assert.match(shown.stdout, new RegExp(`^substituters = ${hostUrl.replace(/\./g, "\\.")}$`, "m"));
      assert.match(shown.stdout, /^netrc-file = \/etc\/nix\/nixpool-cache\.netrc$/m);
    }
    // The token is never printed.
    const cacheToken = (await pool.cli(["cache", "token"])).stdout.trim();
    assert.ok(!serve?.stdout().includes(cacheToken) && !serve?.stderr().includes(cacheToken));
  });

  test("builders-use-substitutes: builder B fetches X from the pool's cache; the client sends none of it", async () => {
    const { seed, input } = cases.with;
    const netrc = `machine ${client.serverAddress} login nixpool password ${(await pool.cli(["cache", "token"])).stdout.trim()}\n`;
    const got = await client.exec([
      "nix-store",
      "-r",
      input,
      ...(await client.cacheOptions(url(), publicKey, netrc)),
    ]);
    assert.equal(got.exitCode, 0, got.stderr);
    assert.equal(await isValidOnHost(pool, B, input), false, "B lacks X");
    const before = await stats();
    const r = await hookBuild(seed, ["--option", "builders-use-substitutes", "true"]);
    assert.equal(r.exitCode, 0, r.stderr);
    // 1 MiB of zeros and the seed's line: the build read the whole of X on B.
    assert.equal(
      (await client.exec(["cat", r.stdout.trim()])).stdout.trim(),
      String(1048576 + seed.length + 1),
    );
    assert.equal(await isValidOnHost(pool, B, input), true, "B has X now");
    const after = await stats();
    const size = await narSize(input);
    // X's NAR left the cache once more, to B (the client had it already and asks the cache nothing).
    assert.equal(after.narsServed - before.narsServed, 1, JSON.stringify({ before, after }));
    assert.equal(after.bytesServed - before.bytesServed, size);
    const top = (s: Stats) => s.topPaths.find((p) => p.path === input)?.nars ?? 0;
    assert.equal(top(after) - top(before), 1);
    // B's copy carries the pool's signature: it came through the cache's narinfo.
    const sigs = await run(
      hostExecArgv(host(B), [
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "path-info",
        "--sigs",
        input,
      ]),
    );
    assert.ok(sigs.stdout.includes(publicKey.split(":")[0] ?? "?"), sigs.stdout);
  });

  test("without the setting, B receives X from the client: the cache serves nothing", async () => {
    const { seed, input } = cases.without;
    const netrc = `machine ${client.serverAddress} login nixpool password ${(await pool.cli(["cache", "token"])).stdout.trim()}\n`;
    const got = await client.exec([
      "nix-store",
      "-r",
      input,
      ...(await client.cacheOptions(url(), publicKey, netrc)),
    ]);
    assert.equal(got.exitCode, 0, got.stderr);
    assert.equal(await isValidOnHost(pool, B, input), false);
    const before = await stats();
    const r = await hookBuild(seed, ["--option", "builders-use-substitutes", "false"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(await isValidOnHost(pool, B, input), true, "B has X, from the client");
    const after = await stats();
    assert.equal(after.narsServed, before.narsServed, JSON.stringify({ before, after }));
    assert.equal(after.bytesServed, before.bytesServed);
  });

  // A host's substituters never turn the dispatcher's builds into downloads: `nix-store --serve`
  // runs a BuildDerivation with substitution off (Nix 2.8's opServe), so a rebuild for
  // verification stays a rebuild now that the hosts have the pool's cache. This pins it.
  test("the dispatcher's builds are builds: `nixpool verify` rebuilds X on B, never substituting it from the cache", async () => {
    const { input } = cases.open;
    assert.equal(await isValidOnHost(pool, B, input), false);
    const before = await stats();
    const r = await pool.cli(["verify", input, "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, new RegExp(B), r.stdout);
    assert.equal(await isValidOnHost(pool, B, input), true, "B built it");
    const after = await stats();
    assert.equal(after.narsServed, before.narsServed, JSON.stringify({ before, after }));
  });

  test("a stopped coordinator takes the cache out of the hosts' nix.conf", async () => {
    assert.equal(await serve?.stop("SIGTERM"), 0);
    serve = undefined;
    for (const h of pool.pool.hosts) {
      const files = localHostPaths(h.dir);
      await assert.rejects(stat(files.cacheConf), /ENOENT/);
      await assert.rejects(stat(files.cacheNetrc), /ENOENT/);
    }
  });

  test("a coordinator on loopback says its hosts cannot reach the cache, and writes nothing into them", async () => {
    const local = await startServe(pool.stateDir, []);
    try {
      const said = await waitFor(
        () =>
          /local builders local1, local2 do not use the cache: the cache listens on loopback/.test(
            local.stderr(),
          ) || undefined,
        { timeoutMs: 10_000 },
      );
      assert.ok(said, local.stderr());
      for (const h of pool.pool.hosts) await assert.rejects(stat(localHostPaths(h.dir).cacheConf), /ENOENT/);
    } finally {
      await local.stop("SIGTERM");
    }
  });

  test("--cache-open off loopback is still refused, and its hint names --cache-public", async () => {
    const r = await pool.cli(["serve", "--listen", "0.0.0.0:0", "--cache-open"]);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, /would give the binary cache to anyone who reaches 0\.0\.0\.0:0, without a token/);
    assert.match(r.stderr, /--cache-public/);
  });

  test("serve --cache-public: any machine substitutes with exactly the two printed nix.conf lines", async () => {
    await start(["--cache-public"]);
    assert.match(serve?.stdout() ?? "", /the binary cache is public \(--cache-public\)/);
    // Only the cache: the API still wants its token.
    assert.equal((await get(port, "/api/builds")).status, 401);
    assert.equal((await get(port, "/cache/nix-cache-info")).status, 200);
    // The hosts need no token either.
    const files = localHostPaths(host(B).dir);
    assert.doesNotMatch(await readFile(files.cacheConf, "utf8"), /netrc/);
    await assert.rejects(stat(files.cacheNetrc), /ENOENT/);
    const printed = await pool.cli(["cache", "client-config", "--open", "--url", url()]);
    assert.equal(printed.exitCode, 0, printed.stderr);
    assert.equal(printed.stdout, `extra-substituters = ${url()}\nextra-trusted-public-keys = ${publicKey}\n`);
    const { input } = cases.open;
    assert.equal(await isValidOnClient(client, input), false);
    // The client's nix.conf (its own /etc/nix) plus those two lines, and nothing on the command line.
    await appendFile(client.host.nixConfPath, `\n${printed.stdout}`);
    const r = await client.exec(["nix-store", "-r", input]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /copying path '.*-cb-input' from 'http:/);
    assert.equal(await isValidOnClient(client, input), true);
    // config client prints the same two lines for an open cache (and no netrc guidance).
    const hostKeyFile = `${work.dir}/gateway-host-key.pub`;
    await appendFile(hostKeyFile, `${host(B).hostKeyPub}\n`);
    const cfg = await pool.cli([
      "config",
      "client",
      "alice",
      "--host",
      "pool.example",
      "--host-key-file",
      hostKeyFile,
      "--cache-url",
      url(),
      "--cache-open",
      "--json",
    ]);
    assert.equal(cfg.exitCode, 0, cfg.stderr);
    const nixConf = (JSON.parse(cfg.stdout) as { cache: { nixConf: string } }).cache.nixConf;
    assert.ok(nixConf.startsWith(printed.stdout), nixConf);
    assert.doesNotMatch(nixConf, /netrc/);
  });
});
