import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { localSystem } from "../../src/config/load.js";
import { hostExecArgv, startHost, stopHost } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { CLI, makeTempDir } from "../helpers/cli.js";
import { freshSeed, graphArgs } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";

// `nixpool build --coordinator http://…` from another machine: a client host with its own network
// namespace and Nix store evaluates, uploads the .drv closure the coordinator lacks, the pool
// builds the graph, and the outputs come back into the client's own store with the out-link.

interface BuildJson {
  buildId: string;
  outputs: string[];
  derivations: { name: string; builder: string | null; status: string }[];
}

describe("a remote client of the coordinator (its own store)", { timeout: 900_000 }, () => {
  let pool: TestPool;
  let work: { dir: string; cleanup: () => Promise<void> };
  let client: HostRecord;
  let serve: ServeProcess;
  let token: string;

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-remote-");
    client = await startHost({
      name: "client",
      dir: join(work.dir, "client-host"),
      jobs: 1,
      authorizedKeys: [],
    });
    // The coordinator listens where the client host reaches this machine.
    serve = await startServe(pool.stateDir, ["--listen", `${client.hostAddress}:0`]);
    token = (await pool.cli(["serve", "token"])).stdout.trim();
  });
  after(async () => {
    if (serve) await serve.stop();
    if (client) await stopHost(client);
    await pool?.cleanup();
    await work?.cleanup();
  });

  /** Runs nixpool inside the client host (its store), against the coordinator by URL and token. */
  const onClient = (args: string[]) =>
    run(
      hostExecArgv(client, [
        "env",
        `NIXPOOL_COORDINATOR_TOKEN=${token}`,
        "node",
        CLI,
        "--state-dir",
        join(work.dir, "client-state"),
        "build",
        "--coordinator",
        serve.url,
        ...args,
      ]),
      { reject: false, timeout: 300_000, cwd: work.dir },
    );
  const validOnClient = async (path: string) =>
    (await run(hostExecArgv(client, ["nix-store", "--check-validity", path]), { reject: false })).exitCode ===
    0;
  const validHere = async (path: string) =>
    (await run(["nix-store", "--check-validity", path], { reject: false })).exitCode === 0;

  test("a graph evaluated on the client is uploaded, built on the pool, and its outputs land in the client's store", async () => {
    const seed = freshSeed();
    const link = join(work.dir, "graph-result");
    const r = await onClient([...graphArgs(6, { seed }), "-o", link, "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    assert.ok(j.buildId);
    assert.equal(j.derivations.length, 7);
    for (const d of j.derivations)
      assert.match(d.builder ?? "", /^local[12]$/, `${d.name} built on the pool`);
    const out = j.outputs[0] ?? "";
    assert.ok(await validOnClient(out), "the output is in the client's store");
    const linked = await run(hostExecArgv(client, ["readlink", link]));
    assert.equal(linked.stdout.trim(), out);
    const content = await run(hostExecArgv(client, ["cat", out]));
    assert.equal(content.stdout.trim().split("\n").length, 6);

    // The same graph again: the coordinator has everything, the client too: nothing moves.
    const again = await onClient([...graphArgs(6, { seed }), "--no-out-link"]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /uploaded|downloaded/);
  });

  test("uploads are announced; the client's .drv files reach the coordinator's store", async () => {
    const seed = freshSeed();
    const r = await onClient([...graphArgs(2, { seed }), "--no-out-link"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /uploaded \d+ paths \([\d.]+ MB\) to the coordinator/);
    assert.match(r.stderr, /downloaded \d+ paths/);
    const drv = /\/nix\/store\/[a-z0-9]{32}-graph-root\.drv/.exec(
      (await run(hostExecArgv(client, ["nix-instantiate", ...graphArgs(2, { seed })]))).stdout,
    )?.[0];
    assert.ok(drv && (await validHere(drv)), "the root's .drv is in the coordinator's store now");
  });

  test("a flake evaluated on the client builds the same way", async () => {
    const flake = join(work.dir, "remote-flake");
    await mkdir(flake);
    const system = localSystem();
    await writeFile(
      join(flake, "flake.nix"),
      `{ outputs = { self }: { packages.${system}.default = builtins.derivation { name = "remote-flake"; seed = "${freshSeed()}"; system = "${system}"; builder = "/bin/sh"; args = [ "-c" "echo remote > $out" ]; }; }; }\n`,
    );
    const r = await onClient([`path:${flake}`, "--no-out-link", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const out = (JSON.parse(r.stdout) as BuildJson).outputs[0] ?? "";
    assert.ok(await validOnClient(out));
    assert.equal((await run(hostExecArgv(client, ["cat", out]))).stdout.trim(), "remote");
  });

  test("the store routes refuse what is not an export stream, and paths that are not store paths", async () => {
    const bad = await fetch(`${serve.url}/api/store/import`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/x-nix-export" },
      body: Buffer.alloc(64, 7),
    });
    assert.equal(bad.status, 400, "a stream that is not an export is refused");
    const refused = await fetch(`${serve.url}/api/store/valid`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ paths: ["/etc/passwd"] }),
    });
    assert.equal(refused.status, 400);
  });
});
