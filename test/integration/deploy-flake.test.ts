import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { statePaths } from "../../src/config/state-paths.js";
import type { TargetOutcome } from "../../src/core/deploy/deploy-outcome.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { freshSeed } from "../helpers/example-builds.js";
import { makeTempDir } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";

const FIXTURES = resolve(import.meta.dirname, "../fixtures");
const FLAKE_FEATURES = ["--extra-experimental-features", "nix-command flakes"];

interface DeployJson {
  targets: (TargetOutcome & { next?: string })[];
  exitCode: number;
}

/**
 * A git repository holding the stand-in flake (test/fixtures/deploy-flake): its flake.nix, a copy
 * of the stand-in system, and the seed and system it is evaluated with, all `git add`ed.
 */
async function makeStandInFlake(dir: string, seed: string): Promise<void> {
  const system = (
    await run(["nix-instantiate", "--eval", "--json", "--expr", "builtins.currentSystem"])
  ).stdout.trim();
  await mkdir(dir, { recursive: true });
  await copyFile(join(FIXTURES, "deploy-flake", "flake.nix"), join(dir, "flake.nix"));
  await copyFile(join(FIXTURES, "deploy-system.nix"), join(dir, "system.nix"));
  await writeFile(join(dir, "params.nix"), `{ seed = "${seed}"; system = ${system}; }\n`);
  await run(["git", "init", "-q", dir]);
  await run(["git", "-C", dir, "add", "-A"]);
}

/** What `nix build` makes of a flake attribute: the output path nixpool must deploy. */
async function nixBuild(flake: string, attr: string): Promise<string> {
  const r = await run(
    [
      "nix",
      ...FLAKE_FEATURES,
      "build",
      "--no-link",
      "--json",
      `${flake}#${attr}`,
      "--option",
      "substituters",
      "",
    ],
    { timeout: 120_000 },
  );
  // Nix 2.8 has no --print-out-paths: its --json lists each derivation's outputs.
  const [built] = JSON.parse(r.stdout) as { outputs: { out: string } }[];
  return built?.outputs.out ?? "";
}

describe("nixpool deploy of a flake's NixOS configurations to local pool hosts", { timeout: 600_000 }, () => {
  let tp: TestPool;
  let h1: HostRecord;
  let h2: HostRecord;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let flake: string;
  const seed = freshSeed();

  const toplevel = (host: string) => `nixosConfigurations.${host}.config.system.build.toplevel`;

  /** The activations a host's stand-in switch-to-configuration recorded: "NAME ACTION" lines. */
  async function activations(h: HostRecord): Promise<string[]> {
    const text = await readFile(
      join(statePaths(tp.stateDir).localPool.host(h.name).rootHome, "deploy-activations"),
      "utf8",
    ).catch(() => "");
    return text.split("\n").filter(Boolean);
  }

  async function validOn(h: HostRecord, path: string): Promise<boolean> {
    return (
      (await run(hostExecArgv(h, ["nix-store", "--check-validity", path]), { reject: false })).exitCode === 0
    );
  }

  /** nixpool deploy ARGS --json, run in the flake's directory. */
  async function deploy(args: readonly string[]) {
    const r = await tp.cli(["deploy", ...args, "--json"], { cwd: flake });
    let json: DeployJson | undefined;
    try {
      json = JSON.parse(r.stdout) as DeployJson;
    } catch {
      json = undefined;
    }
    return { r, json };
  }

  before(async () => {
    tp = await startTestPool(2, 1);
    [h1, h2] = tp.pool.hosts as [HostRecord, HostRecord];
    tmp = await makeTempDir("nixpool-deploy-flake-");
    flake = join(tmp.dir, "fleet");
    await makeStandInFlake(flake, seed);
  });

  after(async () => {
    await tp?.cleanup();
    await tmp?.cleanup();
  });

  test("deploy .#local1 with no --target: built on the pool, activated on local1, the path nix build gives", async () => {
    const { r, json } = await deploy([".#local1"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const outcome = json?.targets[0];
    assert.equal(json?.targets.length, 1);
    assert.equal(outcome?.target, "local1");
    assert.equal(outcome?.status, "activated");
    assert.equal(outcome?.generation, 1);
    assert.equal(outcome?.path, await nixBuild(flake, toplevel("local1")));
    assert.match(outcome?.path ?? "", /-deploy-system-one$/);
    assert.equal(await validOn(h1, outcome?.path), true);
    assert.deepEqual(await activations(h1), ["one switch"]);
  });

  test("deploy . --target local1 --target local2: each target gets its own configuration", async () => {
    const before1 = (await activations(h1)).length;
    const before2 = (await activations(h2)).length;
    const { r, json } = await deploy([".", "--target", "local1", "--target", "local2"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const byTarget = new Map(json?.targets.map((o) => [o.target, o]));
    assert.deepEqual([...byTarget.keys()].sort(), ["local1", "local2"]);
    assert.equal(byTarget.get("local1")?.status, "activated");
    assert.equal(byTarget.get("local2")?.status, "activated");
    assert.equal(byTarget.get("local1")?.path, await nixBuild(flake, toplevel("local1")));
    assert.equal(byTarget.get("local2")?.path, await nixBuild(flake, toplevel("local2")));
    assert.deepEqual((await activations(h1)).slice(before1), ["one switch"]);
    assert.deepEqual((await activations(h2)).slice(before2), ["two switch"]);
    // The text form: one table for both, a progress line per system built.
    const text = await tp.cli(["deploy", ".", "--target", "local1", "--target", "local2"], { cwd: flake });
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /^TARGET +RESULT +GENERATION +TIME +DETAIL\n/);
    assert.match(text.stdout, /\nlocal1 +activated +1 .*-deploy-system-one\n/);
    assert.match(text.stdout, /\nlocal2 +activated +1 .*-deploy-system-two\n/);
    assert.match(text.stderr, /building .*#local1 on the pool/);
    assert.match(text.stderr, /building .*#local2 on the pool/);
  });

  test("a host the flake has no configuration for: DEPLOY_CONFIG_UNKNOWN naming the configurations, exit 2, nothing activated", async () => {
    const before1 = (await activations(h1)).length;
    for (const args of [[".#nosuchhost"], [".", "--target", "local1", "--target", "nosuchhost"]]) {
      const r = await tp.cli(["deploy", ...args, "--json"], { cwd: flake });
      assert.equal(r.exitCode, 2, r.stderr);
      const error = (JSON.parse(r.stdout) as { error: { code: string; message: string; hint: string } })
        .error;
      assert.equal(error.code, "DEPLOY_CONFIG_UNKNOWN");
      assert.match(
        error.message,
        /^The flake .* has no NixOS configuration nosuchhost; it has local1, local2, newhost\.$/,
      );
      assert.match(error.hint, /nixpool deploy .*#local1 --target nosuchhost/);
    }
    assert.equal((await activations(h1)).length, before1, "nothing was built or activated");
  });

  test("an attribute path (.#x.y) deploys to --target as a Nix file does; without --target it is a usage error", async () => {
    const before2 = (await activations(h2)).length;
    const { r, json } = await deploy([".#systems.web", "--target", "local2"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(json?.targets[0]?.status, "activated");
    assert.equal(json?.targets[0]?.path, await nixBuild(flake, "systems.web"));
    const full = await deploy([`.#${toplevel("local1")}`, "--target", "local2", "--build-host", "local"]);
    assert.equal(full.r.exitCode, 0, full.r.stderr);
    assert.equal(full.json?.targets[0]?.path, await nixBuild(flake, toplevel("local1")));
    assert.deepEqual((await activations(h2)).slice(before2), ["web switch", "one switch"]);
    const none = await tp.cli(["deploy", ".#systems.web"], { cwd: flake });
    assert.equal(none.exitCode, 2);
    assert.match(none.stderr, /needs at least one --target/);
  });

  test("a Nix file still deploys as before (-A, --argstr, --target)", async () => {
    const before1 = (await activations(h1)).length;
    const nixFile = join(flake, "system.nix");
    const { r, json } = await deploy([
      nixFile,
      "--argstr",
      "name",
      "file",
      "--argstr",
      "seed",
      seed,
      "--target",
      "local1",
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(json?.targets[0]?.status, "activated");
    assert.match(json?.targets[0]?.path ?? "", /-deploy-system-file$/);
    assert.deepEqual((await activations(h1)).slice(before1), ["file switch"]);
  });
});
