import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile, chmod } from "node:fs/promises";
import { request } from "node:http";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { spawnPiped } from "../../src/adapters/piped-process.js";
import { narInfoFingerprint, parseNarInfo } from "../../src/core/binary-cache/narinfo.js";
import { parsePublicSigningKey, verifyFingerprint } from "../../src/core/binary-cache/signing-key.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { makeTempDir } from "../helpers/cli.js";
import { killNetns } from "../helpers/processes.js";
import { openBrowser, waitForText } from "../helpers/browser.js";
import { dribble, rawConnect, rawExchange, statusOf } from "../helpers/raw-http.js";
import { NAR_SESSIONS } from "../../src/serve/cache/cache-stores.js";
import { isValidOnClient, startCacheClient, type CacheClient } from "../helpers/cache-client.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";
import { isValidOnHost, writeTrustInventory } from "../helpers/trust-pool.js";

// `nixpool serve`'s binary cache on a real local pool, read by the real Nix 2.8 of a client host
// whose store starts empty, over real HTTP: signatures, trust, NAR streaming, bad input.

const FIXTURE = resolve(import.meta.dirname, "../fixtures/nix/cache.nix");
const TRUST_FIXTURE = resolve(import.meta.dirname, "../fixtures/trust.nix");
const seed = () => randomBytes(8).toString("hex");
const hashOf = (path: string) => path.slice(11, 43);

interface BuildJson {
  outputs: string[];
}

/** A raw HTTP request (path sent as given, no normalisation), with optional headers. */
function raw(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolvePromise, reject) => {
    // A connection per request: a kept-alive one may be closed by the server (its keep-alive
    // timeout) just as it is reused, which fails the request whatever the cache does.
    const req = request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () =>
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", reject);
    });
    req.once("error", reject);
    req.end();
  });
}

describe("nixpool serve's binary cache, read by a real Nix", { timeout: 900_000, concurrency: false }, () => {
  let pool: TestPool;
  let work: { dir: string; cleanup: () => Promise<void> };
  let serve: ServeProcess;
  let client: CacheClient;
  let port: number;
  let publicKey: string;
  let cacheToken: string;
  let inventory: string;
  let root: string;
  const s = seed();

  const auth = () => ({ Authorization: `Basic ${Buffer.from(`nixpool:${cacheToken}`).toString("base64")}` });
  const get = (path: string, headers: Record<string, string> = {}) =>
    raw(port, "GET", path, { ...auth(), ...headers });
  const clientUrl = () => `http://${client.serverAddress}:${port}/cache`;
  const netrc = () => `machine ${client.serverAddress} login nixpool password ${cacheToken}\n`;
  const outputOf = async (drv: string) => (await run(["nix-store", "-q", "--outputs", drv])).stdout.trim();
  const instantiate = async (attr: string, file = FIXTURE) =>
    (await run(["nix-instantiate", file, "-A", attr, "--argstr", "seed", s])).stdout.trim();

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-cache-");
    inventory = await writeTrustInventory(
      pool,
      work.dir,
      [{ host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 }],
      'untrustedResults = "accept"',
    );
    const built = await pool.cli([
      "--inventory",
      inventory,
      "build",
      FIXTURE,
      "-A",
      "root",
      "--argstr",
      "seed",
      s,
      "--no-out-link",
      "--json",
      "--builder",
      "local1",
      "--builder",
      "local2",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    root = ((JSON.parse(built.stdout) as BuildJson).outputs[0] ?? "").trim();
    assert.match(root, /-cache-root$/);
    serve = await startServe(pool.stateDir, ["--listen", "0.0.0.0:0"], ["--inventory", inventory]);
    port = Number(/:(\d+)$/.exec(serve.url)?.[1]);
    publicKey = /trusted-public-keys: (\S+)\)/.exec(serve.stdout())?.[1] ?? "";
    assert.match(publicKey, /^nixpool-[^:]+:[A-Za-z0-9+/]{43}=$/);
    cacheToken = (await pool.cli(["cache", "token"])).stdout.trim();
    client = await startCacheClient(work.dir);
  });
  after(async () => {
    await serve?.stop("SIGKILL");
    await client?.cleanup();
    await pool?.cleanup();
    await work?.cleanup();
  });

  test("`nixpool cache key` prints the key serve signs with; the secret is 0600 and never printed", async () => {
    const r = await pool.cli(["cache", "key", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { publicKey: string; secretKeyFile: string; created: boolean };
    assert.equal(j.publicKey, publicKey);
    assert.equal(j.created, false);
    const secret = (await readFile(j.secretKeyFile, "utf8")).trim();
    assert.ok(!r.stdout.includes(secret.split(":")[1] ?? "?"), "the secret is not in --json");
    assert.ok(!serve.stdout().includes(secret.split(":")[1] ?? "?") && !serve.stderr().includes(secret));
    const mode = (await run(["stat", "-c", "%a", j.secretKeyFile])).stdout.trim();
    assert.equal(mode, "600");
    // The real Nix signs with the same key to the same bytes (ed25519 is deterministic).
    const nixSig = await run([
      "nix",
      "--extra-experimental-features",
      "nix-command",
      "store",
      "sign",
      "--key-file",
      j.secretKeyFile,
      root,
    ]);
    assert.equal(nixSig.exitCode, 0, nixSig.stderr);
    const info = parseNarInfo((await get(`/cache/${hashOf(root)}.narinfo`)).body.toString());
    const sigs = (
      await run(["nix", "--extra-experimental-features", "nix-command", "path-info", "--sigs", root])
    ).stdout;
    assert.ok(
      sigs.includes(info.sigs[0] ?? "?"),
      `Nix's own signature is the cache's:\n${sigs}\n${info.sigs.join("\n")}`,
    );
  });

  test("a client with an empty store substitutes the closure from the cache, checking the pool's signatures", async () => {
    assert.equal(await isValidOnClient(client, root), false);
    const opts = await client.cacheOptions(clientUrl(), publicKey, netrc());
    const r = await client.exec(["nix-store", "-r", root, ...opts]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /copying path '.*-cache-root' from 'http:/);
    const refs = (await client.exec(["nix-store", "-qR", root])).stdout.trim().split("\n").sort();
    const here = (await run(["nix-store", "-qR", root])).stdout.trim().split("\n").sort();
    assert.deepEqual(refs, here, "the whole closure came");
    const verify = await client.exec(["nix-store", "--verify-path", ...refs]);
    assert.equal(verify.exitCode, 0, verify.stderr);
    const stats = (await get("/api/cache/stats", { Authorization: `Bearer ${await serveToken()}` })).body;
    const j = JSON.parse(stats.toString()) as {
      narsServed: number;
      bytesServed: number;
      narinfoHits: number;
    };
    assert.ok(
      j.narsServed >= refs.length && j.bytesServed > 0 && j.narinfoHits >= refs.length,
      stats.toString(),
    );
    const overview = (
      await raw(port, "GET", "/", { Authorization: `Bearer ${await serveToken()}` })
    ).body.toString();
    assert.match(overview, new RegExp(`<span data-count="cache-nars">${j.narsServed}</span> NARs served`));
  });

  const serveToken = async () => (await pool.cli(["serve", "token"])).stdout.trim();
  const cacheStats = async () =>
    JSON.parse(
      (await get("/api/cache/stats", { Authorization: `Bearer ${await serveToken()}` })).body.toString(),
    ) as { topPaths: { path: string; nars: number }[] };

  test("another key, or no token, and the client substitutes nothing", async () => {
    const other = await run([
      "nix-store",
      "--generate-binary-cache-key",
      "other-1",
      join(work.dir, "o.sec"),
      join(work.dir, "o.pub"),
    ]);
    assert.equal(other.exitCode, 0, other.stderr);
    const otherPub = (await readFile(join(work.dir, "o.pub"), "utf8")).trim();
    const hidden = await outputOf(await instantiate("hidden"));
    const wrongKey = await client.exec([
      "nix-store",
      "-r",
      hidden,
      ...(await client.cacheOptions(clientUrl(), otherPub, netrc())),
    ]);
    assert.notEqual(wrongKey.exitCode, 0);
    assert.equal(await isValidOnClient(client, hidden), false);
    const noToken = await client.exec([
      "nix-store",
      "-r",
      hidden,
      ...(await client.cacheOptions(clientUrl(), publicKey)),
    ]);
    assert.notEqual(noToken.exitCode, 0);
    assert.equal(await isValidOnClient(client, hidden), false);
    const bad = await get(`/cache/${hashOf(hidden)}.narinfo`, {
      Authorization: "Basic bm9waXBvb2w6d3Jvbmc=",
    });
    assert.equal(bad.status, 401);
    assert.match(String(bad.headers["www-authenticate"]), /^Basic /);
  });

  test("what `cache client-config`, `config client --cache-url` and `cache netrc` print is what the real Nix reads", async () => {
    const netrcFile = join(work.dir, "netrc-from-cli");
    const conf = await pool.cli([
      "cache",
      "client-config",
      "--url",
      `${clientUrl()}/`,
      "--netrc-file",
      netrcFile,
    ]);
    assert.equal(conf.exitCode, 0, conf.stderr);
    assert.ok(!conf.stdout.includes(cacheToken), "no secret in the nix.conf lines");
    const confDir = join(work.dir, "nix-conf-dir");
    await run(["mkdir", "-p", confDir]);
    await writeFile(join(confDir, "nix.conf"), `substituters =\ntrusted-public-keys =\n${conf.stdout}\n`);
    const shown = await run([...["nix", "--extra-experimental-features", "nix-command"], "show-config"], {
      env: { NIX_CONF_DIR: confDir },
    });
    assert.match(shown.stdout, new RegExp(`^substituters = ${clientUrl().replace(/\./g, "\\.")}$`, "m"));
    assert.ok(shown.stdout.includes(`trusted-public-keys = ${publicKey}`), shown.stdout);
    assert.match(shown.stdout, new RegExp(`^netrc-file = ${netrcFile}$`, "m"));
    // nixpool config client (the gateway's client files) adds the same lines with --cache-url.
    const hostKeyFile = join(work.dir, "gateway-host-key.pub");
    await writeFile(hostKeyFile, `${pool.pool.hosts[0]?.hostKeyPub ?? ""}\n`);
    const client1 = await pool.cli([
      "config",
      "client",
      "alice",
      "--host",
      "pool.example",
      "--host-key-file",
      hostKeyFile,
      "--cache-url",
      clientUrl(),
      "--cache-netrc-file",
      netrcFile,
      "--json",
    ]);
    assert.equal(client1.exitCode, 0, client1.stderr);
    // alice is no member of this pool: the files are printed, with what the gateway still needs.
    assert.match(
      client1.stderr,
      /warning: alice is not a member yet, .*nixpool access add alice --key .* --gateway/,
    );
    const cfg = JSON.parse(client1.stdout) as { cache: { nixConf: string; publicKey: string } };
    assert.equal(cfg.cache.publicKey, publicKey);
    assert.ok(cfg.cache.nixConf.startsWith(`${conf.stdout.trim()}\n`), cfg.cache.nixConf);
    assert.match(
      cfg.cache.nixConf,
      /\n# builders-use-substitutes: [^\n]*\n# [^\n]*\nbuilders-use-substitutes = true\n$/,
    );
    await writeFile(join(confDir, "nix.conf"), `substituters =\ntrusted-public-keys =\n${cfg.cache.nixConf}`);
    const shown2 = await run(["nix", "--extra-experimental-features", "nix-command", "show-config"], {
      env: { NIX_CONF_DIR: confDir },
    });
    assert.ok(shown2.stdout.includes(`trusted-public-keys = ${publicKey}`), shown2.stdout);
    assert.match(shown2.stdout, /^builders-use-substitutes = true$/m);
    const netrcText = await pool.cli(["cache", "netrc", "--url", clientUrl()]);
    assert.equal(netrcText.exitCode, 0, netrcText.stderr);
    await writeFile(netrcFile, netrcText.stdout, { mode: 0o600 });
    const fresh = ["--argstr", "seed", `${s}-conf`];
    const built = await pool.cli([
      "build",
      FIXTURE,
      "-A",
      "hidden",
      ...fresh,
      "--no-out-link",
      "--builder",
      "local1",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const path = await outputOf(
      (await run(["nix-instantiate", FIXTURE, "-A", "hidden", ...fresh])).stdout.trim(),
    );
    const r = await client.exec([
      "nix-store",
      "-r",
      path,
      ...(await client.cacheOptions(clientUrl(), publicKey)),
      "--option",
      "netrc-file",
      netrcFile,
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(await isValidOnClient(client, path));
  });

  test("`nix path-info --store http://…` lists the sizes, references and signatures the builders' stores hold", async () => {
    const netrcFile = join(work.dir, "netrc-here");
    await writeFile(netrcFile, `machine 127.0.0.1 login nixpool password ${cacheToken}\n`, { mode: 0o600 });
    const r = await run([
      "nix",
      "--extra-experimental-features",
      "nix-command",
      "path-info",
      "--json",
      "--sigs",
      "--recursive",
      "--store",
      `http://127.0.0.1:${port}/cache`,
      "--option",
      "netrc-file",
      netrcFile,
      root,
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const infos = JSON.parse(r.stdout) as {
      path: string;
      narSize: number;
      narHash: string;
      references: string[];
      signatures: string[];
    }[];
    assert.equal(infos.length, 3, "the root and its two leaves");
    const key = parsePublicSigningKey(publicKey);
    for (const i of infos) {
      const local = JSON.parse(
        (await run(["nix", "--extra-experimental-features", "nix-command", "path-info", "--json", i.path]))
          .stdout,
      ) as { narSize: number; narHash: string; references: string[] }[];
      assert.equal(i.narSize, local[0]?.narSize, `${i.path}: NAR size`);
      assert.equal(i.narHash, local[0]?.narHash, `${i.path}: NAR hash`);
      assert.deepEqual(
        [...i.references].sort(),
        [...(local[0]?.references ?? [])].sort(),
        `${i.path}: references`,
      );
      assert.equal(i.signatures.length, 1);
      const narinfo = parseNarInfo((await get(`/cache/${hashOf(i.path)}.narinfo`)).body.toString());
      assert.ok(
        verifyFingerprint(key, narInfoFingerprint(narinfo), i.signatures[0] ?? ""),
        `${i.path}: signature`,
      );
    }
  });

  test("a path only an untrusted builder built is not offered, to Nix or over HTTP", async () => {
    const leafDrv = (
      await run(["nix-instantiate", TRUST_FIXTURE, "-A", "leaf", "--argstr", "seed", s])
    ).stdout.trim();
    const built = await pool.cli([
      "--inventory",
      inventory,
      "build",
      TRUST_FIXTURE,
      "-A",
      "leaf",
      "--argstr",
      "seed",
      s,
      "--no-out-link",
      "--builder",
      "u1",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const leaf = await outputOf(leafDrv);
    assert.ok(await isValidOnHost(pool, "local2", leaf), "u1 holds it");
    const records = await readFile(join(pool.stateDir, "trust", "results.jsonl"), "utf8");
    assert.match(records, new RegExp(`"output":"${leaf}".*"trust":"untrusted"`));
    const info = await get(`/cache/${hashOf(leaf)}.narinfo`);
    assert.equal(info.status, 404);
    const r = await client.exec([
      "nix-store",
      "-r",
      leaf,
      ...(await client.cacheOptions(clientUrl(), publicKey, netrc())),
    ]);
    assert.notEqual(r.exitCode, 0);
    assert.equal(await isValidOnClient(client, leaf), false);
  });

  test('a result an untrusted builder built is offered once verified (untrustedResults = "verify")', async () => {
    const inv = await writeTrustInventory(
      pool,
      work.dir,
      [
        { host: "local1", name: "t1", trust: "trusted", maxJobs: 1 },
        { host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 },
      ],
      'untrustedResults = "verify"',
    );
    const args = ["-A", "spread", "--argstr", "seed", `${s}-verify`];
    const built = await pool.cli([
      "--inventory",
      inv,
      "build",
      TRUST_FIXTURE,
      ...args,
      "--json",
      "--no-out-link",
      "--builder",
      "t1",
      "--builder",
      "u1",
      // The running serve has the other inventory: this build runs here.
      "--no-coordinator",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const j = JSON.parse(built.stdout) as {
      derivations: { drv: string; verified: boolean; builds: { builder: string }[] }[];
    };
    const verified = j.derivations.filter((d) => d.verified && d.builds.some((b) => b.builder === "u1"));
    assert.ok(verified.length > 0, "u1 built something that t1 verified");
    const key = parsePublicSigningKey(publicKey);
    for (const d of verified) {
      const out = await outputOf(d.drv);
      const records = await readFile(join(pool.stateDir, "trust", "results.jsonl"), "utf8");
      assert.match(records, new RegExp(`"output":"${out}".*"builder":"u1","trust":"untrusted"`));
      const r = await get(`/cache/${hashOf(out)}.narinfo`);
      assert.equal(r.status, 200, `${out} is offered`);
      const info = parseNarInfo(r.body.toString());
      assert.ok(verifyFingerprint(key, narInfoFingerprint(info), info.sigs[0] ?? ""), "and signed");
    }
  });

  test("bad names, traversal, unknown hashes and ranges get 4xx, never a file", async () => {
    const hidden = await outputOf(await instantiate("hidden"));
    const info = parseNarInfo((await get(`/cache/${hashOf(hidden)}.narinfo`)).body.toString());
    // Paths that leave /cache once normalised reach the API, which wants its own token: 401.
    const cases: [string, number][] = [
      ["/cache/not-a-hash.narinfo", 400],
      ["/cache/etc-passwd", 400],
      [`/cache/${"e".repeat(32)}.narinfo`, 400],
      [`/cache/${"0".repeat(32)}.narinfo`, 404],
      ["/cache/nar/..%2f..%2f..%2fetc%2fpasswd", 400],
      ["/cache/nar/%2fetc%2fpasswd", 400],
      ["/cache/nar/../../etc/passwd", 401],
      ["/cache/%2e%2e/%2e%2e/etc/passwd", 401],
      [`/cache/${hashOf(hidden)}.narinfo/../../../etc/shadow`, 401],
      [`/cache/nar/${"0".repeat(32)}-${"0".repeat(52)}.nar`, 404],
      [`/cache/nar/${hashOf(hidden)}-${"0".repeat(52)}.nar`, 404],
      [`/cache/${"a".repeat(5000)}.narinfo`, 400],
    ];
    for (const [path, status] of cases) {
      const r = await get(path);
      assert.equal(r.status, status, `${path.slice(0, 80)}: ${r.body.toString().slice(0, 200)}`);
      assert.ok(!r.body.toString().includes("root:"), `${path}: no file content`);
    }
    // Headers beyond node's limit: 431, and the service keeps answering.
    const huge = await get("/cache/nix-cache-info", { "X-Big": "x".repeat(20_000) });
    assert.equal(huge.status, 431);
    // HEAD: the size, no body; a range as Nix asks when it resumes; one it cannot satisfy.
    const head = await raw(port, "HEAD", `/cache/${info.url}`, auth());
    assert.equal(head.status, 200);
    assert.equal(head.headers["content-length"], String(info.narSize));
    assert.equal(head.headers["accept-ranges"], "bytes");
    assert.equal(head.body.length, 0);
    const whole = await get(`/cache/${info.url}`);
    assert.equal(whole.status, 200);
    assert.equal(whole.body.length, info.narSize);
    const narFile = join(work.dir, "hidden.nar");
    await writeFile(narFile, whole.body);
    const narHash = (
      await run(["nix-hash", "--type", "sha256", "--flat", "--base32", narFile])
    ).stdout.trim();
    assert.equal(`sha256:${narHash}`, info.narHash, "the bytes are the NAR the narinfo names");
    const part = await get(`/cache/${info.url}`, { Range: "bytes=10-" });
    assert.equal(part.status, 206);
    assert.equal(part.headers["content-range"], `bytes 10-${info.narSize - 1}/${info.narSize}`);
    assert.deepEqual(part.body, whole.body.subarray(10));
    // Ranges that end before the NAR does end at their last byte (the store's session, cut
    // mid-answer, is replaced): the next requests on the same store are answered whole.
    for (let round = 0; round < 4; round++) {
      const short = await get(`/cache/${info.url}`, { Range: `bytes=${round}-${round + 9}` });
      assert.equal(short.status, 206);
      assert.deepEqual(short.body, whole.body.subarray(round, round + 10));
    }
    assert.deepEqual((await get(`/cache/${info.url}`)).body, whole.body, "a fresh session sends it whole");
    const beyond = await get(`/cache/${info.url}`, { Range: `bytes=${info.narSize}-` });
    assert.equal(beyond.status, 416);
    assert.equal((await get("/cache/nix-cache-info")).status, 200, "still serving");
  });

  test("a tampered copy in a builder's store is rejected by the client's hash check", async () => {
    const hidden = await outputOf(await instantiate("hidden"));
    assert.equal(
      (await run(["nix-store", "--check-validity", hidden], { reject: false })).exitCode,
      1,
      "not here",
    );
    const holders = [];
    for (const h of pool.pool.hosts) {
      if (!(await isValidOnHost(pool, h.name, hidden))) continue;
      holders.push(h.name);
      const file = join(h.storeDir, "store", hidden.slice("/nix/store/".length));
      const text = await readFile(file, "utf8");
      await chmod(file, 0o644);
      await writeFile(file, text.replace("hidden", "HIDDEN"));
    }
    assert.ok(holders.length > 0, "a builder holds it");
    const r = await client.exec([
      "nix-store",
      "-r",
      hidden,
      ...(await client.cacheOptions(clientUrl(), publicKey, netrc())),
    ]);
    assert.notEqual(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /hash mismatch/);
    assert.equal(await isValidOnClient(client, hidden), false);
  });

  test("the dashboard's cache numbers and top paths follow a substitution live, without a reload", async () => {
    const fresh = ["--argstr", "seed", `${s}-live`];
    const built = await pool.cli([
      "build",
      FIXTURE,
      "-A",
      "hidden",
      ...fresh,
      "--no-out-link",
      "--builder",
      "local1",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const path = await outputOf(
      (await run(["nix-instantiate", FIXTURE, "-A", "hidden", ...fresh])).stdout.trim(),
    );
    const browser = await openBrowser();
    try {
      const { page } = browser;
      const base = `http://127.0.0.1:${port}`;
      await page.goto(`${base}/?token=${encodeURIComponent(await serveToken())}`);
      await waitForText(page, "#live", "live");
      await page.evaluate("window.notReloaded = true");
      const count = async (name: string) =>
        (await page.locator(`[data-count="${name}"]`).textContent()) ?? "";
      const before = { hits: Number(await count("cache-hits")), nars: Number(await count("cache-nars")) };
      const exactBytes = async () =>
        Number(
          /^(\d+) bytes$/.exec(
            (await page.locator('[data-count="cache-bytes"]').getAttribute("title")) ?? "",
          )?.[1],
        );
      const bytesBefore = await exactBytes();
      assert.equal(await page.locator(`#cache-top td[title="${path}"]`).count(), 0, "not downloaded yet");
      const r = await client.exec([
        "nix-store",
        "-r",
        path,
        ...(await client.cacheOptions(clientUrl(), publicKey, netrc())),
      ]);
      assert.equal(r.exitCode, 0, r.stderr);
      await waitForText(page, `#cache-top td[title="${path}"]`, path.slice(44), 30_000);
      await waitForText(page, '[data-count="cache-hits"]', new RegExp(`^(?!${before.hits}$)\\d+$`), 30_000);
      await waitForText(page, '[data-count="cache-nars"]', new RegExp(`^(?!${before.nars}$)\\d+$`), 30_000);
      const row = page.locator(`#cache-top td[title="${path}"]`).locator("xpath=..");
      assert.equal((await row.locator('[data-field="nars"]').textContent())?.trim(), "1");
      assert.match((await row.locator('[data-field="bytes"]').textContent()) ?? "", /^\d+ B$/, "a small NAR");
      assert.ok(
        Number(await count("cache-hits")) > before.hits && Number(await count("cache-nars")) > before.nars,
      );
      const narSize = parseNarInfo((await get(`/cache/${hashOf(path)}.narinfo`)).body.toString()).narSize;
      assert.ok((await exactBytes()) >= bytesBefore + narSize, "the bytes sent grew by the NAR");
      assert.match(await count("cache-bytes"), /^\d+(\.\d)? (B|KiB|MiB|GiB)$/);
      assert.equal(await page.evaluate("window.notReloaded"), true, "the page was not reloaded");
      assert.deepEqual(browser.problems, []);
      assert.deepEqual(browser.failedRequests, []);
    } finally {
      await browser.close();
    }
  });

  test("results the coordinator's history records are offered without STATE/trust/results.jsonl, by the same trust rule", async () => {
    const fresh = ["--argstr", "seed", `${s}-history`];
    // Through the running coordinator (serve), which records it in its history as well.
    const built = await pool.cli([
      "build",
      FIXTURE,
      "-A",
      "hidden",
      ...fresh,
      "--no-out-link",
      "--builder",
      "local1",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const path = await outputOf(
      (await run(["nix-instantiate", FIXTURE, "-A", "hidden", ...fresh])).stdout.trim(),
    );
    // Built by the untrusted u1 only, through the coordinator too (an earlier test).
    const leaf = await outputOf(
      (await run(["nix-instantiate", TRUST_FIXTURE, "-A", "leaf", "--argstr", "seed", s])).stdout.trim(),
    );
    const resultsFile = join(pool.stateDir, "trust", "results.jsonl");
    await rename(resultsFile, `${resultsFile}.aside`);
    try {
      const r = await get(`/cache/${hashOf(path)}.narinfo`);
      assert.equal(r.status, 200, `offered from the history: ${r.body.toString()}`);
      const info = parseNarInfo(r.body.toString());
      assert.equal(info.storePath, path);
      assert.ok(
        verifyFingerprint(parsePublicSigningKey(publicKey), narInfoFingerprint(info), info.sigs[0] ?? ""),
      );
      assert.equal(
        (await get(`/cache/${hashOf(leaf)}.narinfo`)).status,
        404,
        "an untrusted builder's result is not",
      );
      const sub = await client.exec([
        "nix-store",
        "-r",
        path,
        ...(await client.cacheOptions(clientUrl(), publicKey, netrc())),
      ]);
      assert.equal(sub.exitCode, 0, sub.stderr);
      assert.ok(await isValidOnClient(client, path));
    } finally {
      await rename(`${resultsFile}.aside`, resultsFile);
    }
  });

  test("slow clients are cut after the idle and header timeouts, freeing their NAR sessions; huge requests get their 4xx", async () => {
    // A small NAR on local1 only (never copied here), big enough that a client that stops reading
    // leaves the cache's stream stalled on full socket buffers.
    const args = ["--argstr", "seed", `${s}-slow`, "--arg", "bigMiB", "64"];
    const built = await pool.cli([
      "--inventory",
      inventory,
      "build",
      FIXTURE,
      "-A",
      "bigSize",
      ...args,
      "--no-out-link",
      "--builder",
      "local1",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const big = await outputOf((await run(["nix-instantiate", FIXTURE, "-A", "big", ...args])).stdout.trim());
    // The same service with its limits made small (the defaults are 30 s and 60 s).
    await serve.stop();
    serve = await startServe(
      pool.stateDir,
      ["--listen", "0.0.0.0:0", "--idle-timeout", "2s", "--header-timeout", "2s"],
      ["--inventory", inventory],
    );
    port = Number(/:(\d+)$/.exec(serve.url)?.[1]);
    try {
      const info = parseNarInfo((await get(`/cache/${hashOf(big)}.narinfo`)).body.toString());
      const basic = auth().Authorization;
      const narRequest = `GET /cache/${info.url} HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic}\r\n\r\n`;
      // Clients that stop reading the NAR: as many as the store has NAR sessions.
      const stalled = Array.from({ length: NAR_SESSIONS }, () => {
        const c = rawConnect(port);
        c.socket.write(narRequest);
        c.socket.pause();
        return c;
      });
      // A slowloris: headers a byte at a time, never ending.
      const loris = rawConnect(port);
      dribble(loris, "GET /cache/nix-cache-info HTTP/1.1\r\nHost: x\r\n", 50);
      // A request whose promised body never comes.
      const unfinished = rawConnect(port);
      unfinished.socket.write(
        `POST /api/builds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await serveToken()}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"drvs":`,
      );
      // Every stalled reader took a session and started its NAR.
      const readersIn = await waitFor(
        async () => (await cacheStats()).topPaths.find((p) => p.path === big)?.nars === NAR_SESSIONS,
        { timeoutMs: 60_000 },
      );
      assert.ok(readersIn, "the stalled readers' downloads started");
      // Another client is served meanwhile: the cache's info, and a narinfo asked of the same store.
      assert.equal((await get("/cache/nix-cache-info")).status, 200);
      const hidden = await outputOf(await instantiate("hidden"));
      assert.equal((await get(`/cache/${hashOf(hidden)}.narinfo`)).status, 200);
      // The server cuts each stalled download (its store session is killed), answers the
      // slowloris 408 and closes the unfinished request.
      const cut = await waitFor(
        () =>
          (serve.stderr().match(new RegExp(`sending ${big} from local1 was cut`, "g")) ?? []).length >=
          NAR_SESSIONS,
        { timeoutMs: 60_000 },
      );
      assert.ok(cut, `every stalled download was cut:\n${serve.stderr()}`);
      for (const c of stalled) {
        c.socket.resume();
        await c.closed;
        assert.equal(statusOf(c.received()), 200);
        assert.ok(c.received().length < info.narSize, "the NAR was not sent whole");
      }
      await loris.closed;
      assert.equal(statusOf(loris.received()), 408);
      await unfinished.closed;
      assert.equal(unfinished.received().length, 0, "no answer to half a request");
      // Their sessions are free again: the same store sends the whole NAR.
      const whole = await get(`/cache/${info.url}`);
      assert.equal(whole.status, 200);
      assert.equal(whole.body.length, info.narSize);
      // Huge requests: their 4xx, before anything is read into memory.
      const exchange = async (request: string) => statusOf(await rawExchange(port, request));
      const head = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
      assert.equal(
        await exchange(head(`/cache/${"a".repeat(20_000)}.narinfo`)),
        414,
        "URL beyond the header limit",
      );
      assert.equal(await exchange(head(`/cache/${"a".repeat(10_000)}.narinfo`)), 414, "URL over 8 KiB");
      assert.equal(await exchange(head("/cache/nix-cache-info", `X-Big: ${"b".repeat(20_000)}\r\n`)), 431);
      assert.equal(
        await exchange(
          `GET /cache/nix-cache-info HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic}\r\nContent-Length: 5\r\n\r\nhello`,
        ),
        413,
        "a body on GET",
      );
      assert.equal(
        await exchange(`POST /cache/nix-cache-info HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`),
        405,
      );
      assert.equal((await get("/cache/nix-cache-info")).status, 200, "still serving");
    } finally {
      await serve.stop();
      serve = await startServe(pool.stateDir, ["--listen", "0.0.0.0:0"], ["--inventory", inventory]);
      port = Number(/:(\d+)$/.exec(serve.url)?.[1]);
    }
  });

  test("a builder dying mid-download: Nix resumes where it was cut from another builder; what only it held is 404", async () => {
    const args = ["--argstr", "seed", s, "--arg", "bigMiB", "256"];
    const built = await pool.cli([
      "--inventory",
      inventory,
      "build",
      FIXTURE,
      "-A",
      "bigSize",
      ...args,
      "--no-out-link",
      "--verify",
      "2",
      "--builder",
      "local1",
      "--builder",
      "local2",
    ]);
    assert.equal(built.exitCode, 0, built.stderr);
    const big = await outputOf((await run(["nix-instantiate", FIXTURE, "-A", "big", ...args])).stdout.trim());
    assert.ok((await isValidOnHost(pool, "local1", big)) && (await isValidOnHost(pool, "local2", big)));
    // The cache asks first the builder that built it last.
    const records = (await readFile(join(pool.stateDir, "trust", "results.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { output: string; builder: string; builtAt: string })
      .filter((r) => r.output === big)
      .sort((a, b) => b.builtAt.localeCompare(a.builtAt));
    const first = pool.pool.hosts.find((h) => h.name === records[0]?.builder);
    assert.ok(first, "the first holder is a pool host");
    const stats = async () =>
      JSON.parse(
        (await get("/api/cache/stats", { Authorization: `Bearer ${await serveToken()}` })).body.toString(),
      ) as { bytesServed: number; narsCut: number; rangeRequests: number; narsServed: number };
    // A path only the first holder has (a build-time input, never copied here): gone with it.
    const onlyArgs = ["--argstr", "seed", `${s}-only`, "--arg", "bigMiB", "1"];
    const onlyBuilt = await pool.cli([
      "--inventory",
      inventory,
      "build",
      FIXTURE,
      "-A",
      "bigSize",
      ...onlyArgs,
      "--no-out-link",
      "--builder",
      first.name,
    ]);
    assert.equal(onlyBuilt.exitCode, 0, onlyBuilt.stderr);
    const only = await outputOf(
      (await run(["nix-instantiate", FIXTURE, "-A", "big", ...onlyArgs])).stdout.trim(),
    );
    assert.equal(
      (await get(`/cache/${hashOf(only)}.narinfo`)).status,
      200,
      "offered while its builder is up",
    );
    const before = await stats();
    const opts = await client.cacheOptions(clientUrl(), publicKey, netrc());
    const proc = spawnPiped(hostExecArgv(client.host, ["nix-store", "-r", big, ...opts]));
    let stderr = "";
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    proc.stdout.resume();
    proc.stdin.end();
    const pid = proc.pid as number;
    const flowing = await waitFor(async () => (await stats()).bytesServed - before.bytesServed >= 4 << 20, {
      timeoutMs: 60_000,
      intervalMs: 5,
    });
    // The client stops reading: what is in flight stays in flight while its builder dies.
    process.kill(pid, "SIGSTOP");
    assert.ok(flowing, "the download started");
    const sent = (await stats()).bytesServed - before.bytesServed;
    assert.ok(sent < 256 << 20, `the download is under way (${sent} bytes sent), not over`);
    // The cache sees the end of the builder's stream once the client has read what was in flight.
    await killNetns(first.netns);
    process.kill(pid, "SIGCONT");
    const r = await proc.exited;
    assert.equal(r.exitCode, 0, stderr);
    const after = await stats();
    assert.ok(after.narsCut > before.narsCut, "the first download was cut");
    assert.ok(after.rangeRequests > before.rangeRequests, "Nix resumed with a range");
    const verify = await client.exec(["nix-store", "--verify-path", big]);
    assert.equal(verify.exitCode, 0, verify.stderr);
    assert.match(serve.stderr(), new RegExp(`sending ${big} from ${first.name} was cut`));
    // Asked afresh now that its first holder is down: the other builder that holds it serves it.
    const bigInfo = await get(`/cache/${hashOf(big)}.narinfo`);
    assert.equal(bigInfo.status, 200, "still offered: another builder holds it");
    const head = await get(`/cache/${parseNarInfo(bigInfo.body.toString()).url}`, { Range: "bytes=0-1023" });
    assert.equal(head.status, 206);
    assert.equal(head.body.length, 1024);
    // What only the dead builder held is no longer offered.
    const gone = await waitFor(async () => (await get(`/cache/${hashOf(only)}.narinfo`)).status === 404, {
      timeoutMs: 30_000,
    });
    assert.ok(gone, "a path whose only holder is down is 404");
  });
});
