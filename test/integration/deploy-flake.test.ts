import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { statePaths } from "../../src/config/state-paths.js";
import type { TargetOutcome } from "../../src/core/deploy/deploy-outcome.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { freshSeed } from "../helpers/example-builds.js";
import { CLI, makeTempDir } from "../helpers/cli.js";
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

/**
 * A stand-in for nixos-install, for a pool host: records its arguments in /root/nixos-install-args
 * (each host has its own /root), then checks what the real one needs before it installs: the
 * mount point exists, the system is valid in this machine's store. A file `fail-boot-loader`
 * under the root makes it fail as a boot loader that cannot be installed does; `slow-install`
 * makes it take 10 s (time to interrupt nixpool during it).
 */
const STAND_IN_NIXOS_INSTALL = `#!/bin/sh
printf '%s\\n' "$@" > /root/nixos-install-args
root=/mnt system=
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; shift ;;
    --system) system=$2; shift ;;
  esac
  shift
done
[ -e "$root" ] || { echo "mount point $root doesn't exist" >&2; exit 1; }
nix-store --check-validity "$system" || { echo "error: path '$system' is not valid" >&2; exit 1; }
[ -e "$root/slow-install" ] && sleep 10
echo "installing the boot loader..." >&2
if [ -e "$root/fail-boot-loader" ]; then echo "error: no boot loader could be installed (on purpose)" >&2; exit 1; fi
echo "installation finished!" >&2
`;

/**
 * Makes a pool host look like a machine booted from a NixOS installer: the stand-in nixos-install
 * in /usr/local/sbin (on root's PATH over ssh), bind-mounted in that host's mount namespace only.
 */
async function installStandInNixosInstall(h: HostRecord, dir: string): Promise<void> {
  const bin = join(dir, `${h.name}-installer-sbin`);
  await mkdir(bin, { recursive: true, mode: 0o755 });
  await writeFile(join(bin, "nixos-install"), STAND_IN_NIXOS_INSTALL);
  await chmod(join(bin, "nixos-install"), 0o755);
  await run(hostExecArgv(h, ["mount", "--bind", bin, "/usr/local/sbin"]));
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

/** A flake attribute's output path, evaluated only (nothing built in this machine's store). */
async function outPathOf(flake: string, attr: string): Promise<string> {
  const r = await run([
    "nix",
    ...FLAKE_FEATURES,
    "eval",
    "--raw",
    `${flake}#${attr}.outPath`,
    "--option",
    "substituters",
    "",
  ]);
  return r.stdout.trim();
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

  describe("--install: a new host booted from an installer", () => {
    let inventory: string;
    const installArgs = async (h: HostRecord) =>
      (
        await readFile(
          join(statePaths(tp.stateDir).localPool.host(h.name).rootHome, "nixos-install-args"),
          "utf8",
        ).catch(() => "")
      )
        .split("\n")
        .filter(Boolean);

    before(async () => {
      await installStandInNixosInstall(h2, tmp.dir);
      // newhost: the installer's address and its pinned key (local2's).
      inventory = join(tp.stateDir, "nixpool.toml");
      await writeFile(
        inventory,
        `[targets.newhost]\nhost = "${h2.address}"\nuser = "root"\nidentityFile = "${statePaths(tp.stateDir).localPool.clientKey}"\nhostKey = "${h2.hostKeyPub}"\n`,
      );
    });

    test("--install with --rollback, --generations, --action…, or --root without it: FLAG_CONFLICT, exit 2", async () => {
      for (const extra of [
        ["--rollback"],
        ["--generations"],
        ["--action", "boot"],
        ["--activate", "bin/activate"],
        ["--confirm-timeout", "5s"],
      ]) {
        const r = await tp.cli(["deploy", ".#newhost", "--install", ...extra, "--json"], { cwd: flake });
        assert.equal(r.exitCode, 2, `${extra.join(" ")}: ${r.stderr}`);
        const error = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
        assert.equal(error.code, "FLAG_CONFLICT");
        assert.ok(error.message.includes(extra[0] as string), error.message);
      }
      const root = await tp.cli(["deploy", ".#local1", "--root", "/mnt"], { cwd: flake });
      assert.equal(root.exitCode, 2);
      assert.match(root.stderr, /--root is the installed system's root, for --install only/);
    });

    test("a target that is no installer (no nixos-install, or no --root directory): DEPLOY_INSTALL_NOT_READY before anything is built or copied", async () => {
      const path = await outPathOf(flake, toplevel("newhost"));
      const notReady = async (args: readonly string[]) => {
        const { r } = await deploy([".#newhost", "--install", ...args]);
        assert.equal(r.exitCode, 1, r.stderr);
        const error = (JSON.parse(r.stdout) as { error: { code: string; message: string; hint: string } })
          .error;
        assert.equal(error.code, "DEPLOY_INSTALL_NOT_READY");
        return error;
      };
      const plain = await notReady(["--target", "local1"]);
      assert.match(
        plain.message,
        /^Target local1 has no nixos-install on its PATH .*; nothing was copied\.$/,
      );
      const noRoot = await notReady(["--root", "/no/such/root", "--inventory", inventory]);
      assert.equal(
        noRoot.message,
        "Target newhost has no directory /no/such/root to install into; nothing was copied.",
      );
      assert.match(noRoot.hint, /mount the new system's file systems under \/no\/such\/root/);
      const built = await run(["nix-store", "--check-validity", path], { reject: false });
      assert.notEqual(built.exitCode, 0, "nothing was built");
      assert.equal(await validOn(h1, path), false);
      assert.equal(await validOn(h2, path), false);
      assert.deepEqual(await installArgs(h2), [], "nixos-install never ran");
    });

    test("deploy .#newhost --target newhost --install: built on the pool, the closure in the installer's store, nixos-install --system PATH --root /mnt, then: reboot", async () => {
      const before2 = (await activations(h2)).length;
      const path = await outPathOf(flake, toplevel("newhost"));
      const { r, json } = await deploy([
        ".#newhost",
        "--target",
        "newhost",
        "--install",
        "--inventory",
        inventory,
      ]);
      assert.equal(r.exitCode, 0, r.stderr);
      const outcome = json?.targets[0];
      assert.equal(outcome?.target, "newhost");
      assert.equal(outcome?.status, "installed");
      assert.equal(outcome?.path, path);
      assert.equal(outcome?.generation, undefined);
      assert.match(outcome?.next ?? "", /^reboot newhost into its new system/);
      assert.equal(await validOn(h2, path), true, "the closure is valid in the installer's store");
      const here = await run(["nix-store", "--check-validity", path], { reject: false });
      assert.notEqual(here.exitCode, 0, "built on the pool, copied from there: not in this machine's store");
      assert.deepEqual(await installArgs(h2), [
        "--system",
        path,
        "--root",
        "/mnt",
        "--no-root-passwd",
        "--no-channel-copy",
      ]);
      assert.equal((await activations(h2)).length, before2, "nothing was activated");
      // The text form: the table says installed, then what to do next.
      const text = await tp.cli(["deploy", ".#newhost", "--install", "--inventory", inventory], {
        cwd: flake,
      });
      assert.equal(text.exitCode, 0, text.stderr);
      assert.equal(await nixBuild(flake, toplevel("newhost")), path, "the path nix build gives");
      assert.match(
        text.stdout,
        /^TARGET +RESULT +GENERATION +TIME +DETAIL\nnewhost +installed +- .*-deploy-system-new\n/,
      );
      assert.match(text.stdout, /\nNext for newhost: reboot newhost into its new system \(ssh -p 22 root@/);
      assert.match(text.stderr, /newhost: copied 0 of 1 paths/);
    });

    test("--root DIR goes to nixos-install; nixos-install failing is DEPLOY_INSTALL_FAILED with its stderr, exit 1", async () => {
      const root = join(tmp.dir, "new-root");
      await mkdir(root);
      const ok = await deploy([".#newhost", "--install", "--root", root, "--inventory", inventory]);
      assert.equal(ok.r.exitCode, 0, ok.r.stderr);
      assert.deepEqual((await installArgs(h2)).slice(2, 4), ["--root", root]);
      await writeFile(join(root, "fail-boot-loader"), "");
      const { r, json } = await deploy([".#newhost", "--install", "--root", root, "--inventory", inventory]);
      assert.equal(r.exitCode, 1, r.stderr);
      const outcome = json?.targets[0];
      assert.equal(outcome?.status, "failed");
      assert.equal(outcome?.error?.code, "DEPLOY_INSTALL_FAILED");
      assert.equal(
        outcome?.error?.message,
        "nixos-install failed on target newhost with exit 1: error: no boot loader could be installed (on purpose).",
      );
      assert.match(
        outcome?.error?.hint ?? "",
        /ssh -p 22 root@.* nixos-install --system \/nix\/store\/\S+ --root /,
      );
      const text = await tp.cli(
        ["deploy", ".#newhost", "--install", "--root", root, "--inventory", inventory],
        {
          cwd: flake,
        },
      );
      assert.equal(text.exitCode, 1);
      assert.match(
        text.stderr,
        /error: nixos-install failed on target newhost with exit 1: error: no boot loader/,
      );
    });

    test("Ctrl-C during nixos-install: exit 130, saying the install may be half done and how to run it again", async () => {
      const root = join(tmp.dir, "slow-root");
      await mkdir(root);
      await writeFile(join(root, "slow-install"), "");
      const argsFile = join(statePaths(tp.stateDir).localPool.host(h2.name).rootHome, "nixos-install-args");
      await rm(argsFile, { force: true });
      const child = spawn(
        "node",
        [CLI, "--state-dir", tp.stateDir, "deploy", ".#newhost", "--install", "--root", root].concat([
          "--inventory",
          inventory,
        ]),
        { cwd: flake, stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      const exited = once(child, "exit");
      const started = await waitFor(async () => (await installArgs(h2)).length > 0, {
        timeoutMs: 120_000,
        intervalMs: 100,
      });
      assert.ok(started, stderr);
      child.kill("SIGINT");
      const [code] = (await exited) as [number | null];
      assert.equal(code, 130, stderr);
      assert.match(
        stderr,
        /error: Interrupted during nixos-install on target newhost: it may still be running there or have stopped half way/,
      );
      assert.match(
        stderr,
        /hint: Run it again to be sure .*nixos-install --system \/nix\/store\/\S+ --root /,
      );
    });
  });
});
