import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { statePaths } from "../../src/config/state-paths.js";
import { POOL_NETWORK, vethNames } from "../../src/core/local-net.js";
import type { TargetOutcome } from "../../src/core/deploy/deploy-outcome.js";
import type { Generation } from "../../src/core/deploy/generations.js";
import { armArgv } from "../../src/core/deploy/remote-scripts.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { freshSeed } from "../helpers/example-builds.js";
import { CLI } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { waitForSsh } from "../helpers/processes.js";
import { addTargetUsers } from "../helpers/target-user.js";

const SYSTEM = resolve(import.meta.dirname, "../fixtures/deploy-system.nix");
const DISPATCH = resolve(import.meta.dirname, "../fixtures/dispatch.nix");

interface DeployJson {
  targets: TargetOutcome[];
  exitCode: number;
}

describe("nixpool deploy to local pool hosts", { timeout: 600_000 }, () => {
  let tp: TestPool;
  let h1: HostRecord;
  let h2: HostRecord;
  const seed = freshSeed();
  const paths = new Map<string, string>();

  /** Deploys the stand-in system NAME (behaving as asked) with --json. */
  async function deploy(name: string, extra: string[] = [], behaviour = "ok") {
    const r = await tp.cli([
      "deploy",
      SYSTEM,
      "--argstr",
      "seed",
      seed,
      "--argstr",
      "name",
      name,
      "--argstr",
      "behaviour",
      behaviour,
      "--json",
      ...(extra.includes("--target") ? [] : ["--target", "local1"]),
      ...(extra.includes("--build-host") ? [] : ["--build-host", "local"]),
      ...extra,
    ]);
    const json = JSON.parse(r.stdout) as DeployJson;
    return { r, json, outcome: json.targets[0] as TargetOutcome };
  }

  async function generations(target = "local1"): Promise<Generation[]> {
    const r = await tp.cli(["deploy", "--generations", "--target", target, "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    return (
      (JSON.parse(r.stdout) as { targets: { generations: Generation[] }[] }).targets[0]?.generations ?? []
    );
  }

  const current = async (target = "local1") => (await generations(target)).find((g) => g.current)?.number;

  /** What the stand-in's switch-to-configuration recorded on a host: "NAME ACTION" lines. */
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

  /** Brings back a link the stand-in cut (and the route to the other pool hosts, gone with it). */
  async function restoreLink(h: HostRecord): Promise<void> {
    await run(["ip", "-n", h.netns, "link", "set", vethNames(h.slot).builder, "up"], { reject: false });
    await run(["ip", "-n", h.netns, "route", "replace", POOL_NETWORK, "via", h.hostAddress], {
      reject: false,
    });
  }

  before(async () => {
    tp = await startTestPool(2, 1);
    [h1, h2] = tp.pool.hosts as [HostRecord, HostRecord];
  });

  after(async () => {
    // The cut-link test takes local1's link down; restore it so the pool stops cleanly either way.
    if (h1) await restoreLink(h1);
    await tp?.cleanup();
  });

  test("generations A then B are activated, each with a GC root where it was built", async () => {
    for (const [name, gen] of [
      ["A", 1],
      ["B", 2],
    ] as const) {
      const { r, outcome } = await deploy(name);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(outcome.status, "activated");
      assert.equal(outcome.generation, gen);
      assert.match(outcome.path ?? "", /-deploy-system-/);
      paths.set(name, outcome.path as string);
      assert.equal(await readlink(statePaths(tp.stateDir).deploy.gcroot("local1")), outcome.path);
    }
    assert.deepEqual(await activations(h1), ["A switch", "B switch"]);
    const gens = await generations();
    assert.deepEqual(
      gens.map((g) => [g.number, g.path, g.current]),
      [
        [1, paths.get("A"), false],
        [2, paths.get("B"), true],
      ],
    );
    // The text forms: the summary table and the generations table. The same system again makes
    // no new generation (Nix's rule).
    const table = await tp.cli([
      "deploy",
      SYSTEM,
      "--argstr",
      "seed",
      seed,
      "--argstr",
      "name",
      "B",
      "--target",
      "local1",
      "--build-host",
      "local",
      "--quiet",
    ]);
    assert.equal(table.exitCode, 0, table.stderr);
    assert.match(table.stdout, /^TARGET +RESULT +GENERATION +TIME +DETAIL\nlocal1 +activated +2 /);
    const list = await tp.cli(["deploy", "--generations", "--target", "local1"]);
    assert.match(
      list.stdout,
      /^local1:\nGENERATION +DATE \(UTC\) +SYSTEM\n1 .*\n2 .* current .*-deploy-system-B\n$/,
    );
  });

  test("a failing activation is rolled back to the previous generation, exit 1", async () => {
    const before = (await activations(h1)).length;
    const { r, outcome } = await deploy("C", [], "fail");
    assert.equal(r.exitCode, 1);
    assert.equal(outcome.status, "rolled-back");
    assert.equal(outcome.error?.code, "DEPLOY_ACTIVATION_FAILED");
    assert.match(
      outcome.error?.message ?? "",
      /^Activation failed on target local1 \(.*exited 4 \(activation of C failed on purpose\)\); rolled back to generation 2\.$/,
    );
    assert.deepEqual((await activations(h1)).slice(before), ["C switch", "B switch"]);
    assert.equal(await current(), 2);
  });

  test("an activation that cuts the target's link is rolled back by the watchdog", async () => {
    const before = (await activations(h1)).length;
    const { r, outcome } = await deploy("D", ["--confirm-timeout", "3s"], "cut-link");
    assert.equal(r.exitCode, 1);
    assert.equal(outcome.status, "unconfirmed");
    assert.equal(outcome.error?.code, "DEPLOY_UNCONFIRMED");
    assert.match(
      outcome.error?.message ?? "",
      /^Target local1 could not be reached over a fresh ssh connection within 3 s after activation .*rolls it back to generation 2\.$/,
    );
    // The watchdog acted alone, with the link still down: B's activation is recorded.
    const rolled = await waitFor(
      async () => (await activations(h1)).slice(before).join(",") === "D switch,B switch",
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
    assert.ok(rolled, `activations: ${(await activations(h1)).join(", ")}`);
    await restoreLink(h1);
    // The link is up again once sshd answers through it (not at once on a loaded machine).
    await waitForSsh(h1.address);
    assert.equal(await current(), 2);
  });

  test("--rollback returns to generation A", async () => {
    const r = await tp.cli(["deploy", "--rollback", "--target", "local1", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const outcome = (JSON.parse(r.stdout) as DeployJson).targets[0];
    assert.equal(outcome?.generation, 1);
    assert.equal(outcome?.path, paths.get("A"));
    assert.equal(await current(), 1);
    assert.equal((await activations(h1)).at(-1), "A switch");
  });

  test("a result without bin/switch-to-configuration is refused, the profile untouched", async () => {
    const r = await tp.cli([
      "deploy",
      DISPATCH,
      "-A",
      "ok1",
      "--argstr",
      "seed",
      seed,
      "--target",
      "local1",
      "--build-host",
      "local",
      "--json",
    ]);
    assert.equal(r.exitCode, 1);
    const outcome = (JSON.parse(r.stdout) as DeployJson).targets[0];
    assert.equal(outcome?.error?.code, "DEPLOY_NO_ACTIVATION");
    assert.equal(await current(), 1);
  });

  test("a target whose host key does not match its pin is refused before anything is copied; with another target: exit 3 and a table", async () => {
    const inventory = join(tp.stateDir, "nixpool.toml");
    await writeFile(
      inventory,
      `[targets.impostor]\nhost = "${h1.address}"\nuser = "root"\nidentityFile = "${statePaths(tp.stateDir).localPool.clientKey}"\nhostKey = "${h2.hostKeyPub}"\n`,
    );
    const args = [
      "deploy",
      SYSTEM,
      "--argstr",
      "seed",
      seed,
      "--argstr",
      "name",
      "F",
      "--build-host",
      "local",
      "--inventory",
      inventory,
    ];
    const one = await tp.cli([...args, "--target", "impostor", "--json"]);
    assert.equal(one.exitCode, 1);
    const o = (JSON.parse(one.stdout) as DeployJson).targets[0];
    assert.equal(o?.status, "failed");
    assert.equal(o?.error?.code, "HOST_KEY_MISMATCH");
    const built = (
      await run(["nix-build", SYSTEM, "--argstr", "seed", seed, "--argstr", "name", "F", "--no-out-link"])
    ).stdout.trim();
    assert.equal(await validOn(h1, built), false, "nothing reached the impostor's address");

    const two = await tp.cli([...args, "--target", "local2", "--target", "impostor"]);
    assert.equal(two.exitCode, 3, two.stderr);
    assert.match(
      two.stdout,
      /^TARGET +RESULT +GENERATION +TIME +DETAIL\nlocal2 +activated +1 .*\nimpostor +failed +- .*HOST_KEY_MISMATCH: Target impostor/,
    );
    assert.match(
      two.stderr,
      /error: Target impostor .* presented a host key that does not match its pinned key/,
    );
    assert.equal(await validOn(h2, built), true);
    assert.deepEqual(await activations(h2), ["F switch"]);
  });

  test("--build-host NAME: built on that builder, copied from there, its GC root kept there", async () => {
    const { r, outcome } = await deploy("G", ["--build-host", "local2"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const path = outcome.path as string;
    assert.equal(outcome.route, "direct", "pool hosts reach each other: builder → target directly");
    assert.equal(
      (await run(["nix-store", "--check-validity", path], { reject: false })).exitCode,
      1,
      "the result stays on the builder",
    );
    assert.equal(await validOn(h1, path), true);
    const root = join(
      statePaths(tp.stateDir).localPool.host(h2.name).rootHome,
      ".local/state/nixpool/gcroots/deploy-local1",
    );
    assert.equal(await readlink(root), path);
    assert.equal((await activations(h1)).at(-1), "G switch");
  });

  test("while an earlier deploy's watchdog is undecided (nixpool interrupted), a deploy is refused before anything changes", async () => {
    const gen = await current();
    const before = (await activations(h1)).length;
    // The state a Ctrl-C during an activation leaves: a watchdog armed, not yet decided.
    const armed = await run(
      hostExecArgv(h1, [
        "env",
        "-u",
        "TMPDIR",
        ...armArgv({
          profile: "/nix/var/nix/profiles/system",
          system: "/",
          program: "/bin/true",
          action: "switch",
          change: { kind: "set" },
          restore: { generation: undefined, path: undefined },
          confirmSeconds: 600,
          activationLimitSeconds: 600,
        }),
      ]),
    );
    const dir = armed.stdout.trim();
    try {
      // Pool hosts share this machine's /tmp: local1's pending watchdog is no concern of local2's.
      const other = await deploy("H", ["--target", "local2"]);
      assert.equal(other.r.exitCode, 0, other.r.stderr);
      const { r, outcome } = await deploy("H");
      assert.equal(r.exitCode, 1);
      assert.equal(outcome.status, "failed");
      assert.equal(outcome.error?.code, "DEPLOY_TARGET_BUSY");
      assert.ok(outcome.error?.message.includes(dir), outcome.error?.message);
      assert.equal(await current(), gen);
      assert.equal((await activations(h1)).length, before, "nothing was activated");
    } finally {
      await run(hostExecArgv(h1, ["sh", "-c", 'kill -- -"$(cat "$1/watchdog.pid")"', "sh", dir]), {
        reject: false,
      });
      // A signal is not an exit: wait until the watchdog is gone before saying it is.
      const gone = await waitFor(
        async () =>
          (
            await run(hostExecArgv(h1, ["sh", "-c", 'kill -0 "$(cat "$1/watchdog.pid")"', "sh", dir]), {
              reject: false,
            })
          ).exitCode !== 0,
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      assert.ok(gone, "the watchdog exited after its signal");
    }
    // A watchdog that is gone (killed, or the target rebooted) blocks nothing.
    const { r, outcome } = await deploy("H");
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(outcome.status, "activated");
    await run(hostExecArgv(h1, ["rm", "-rf", "--", dir]));
  });

  test("a non-root target user through sudo -n: deployed, the watchdog armed and disarmed as root, rolled back", async () => {
    const users = await addTargetUsers(
      h2,
      [{ name: "deployer", sudo: true }],
      [(await readFile(`${statePaths(tp.stateDir).localPool.clientKey}.pub`, "utf8")).trim()],
    );
    try {
      const inventory = join(tp.stateDir, "nixpool.toml");
      await writeFile(
        inventory,
        `[targets.web]\nhost = "${h2.address}"\nuser = "deployer"\nsudo = true\nidentityFile = "${statePaths(tp.stateDir).localPool.clientKey}"\nhostKey = "${h2.hostKeyPub}"\n`,
      );
      const gen = await current("local2");
      const before = (await activations(h2)).length;
      const ok = await deploy("S", ["--target", "web", "--inventory", inventory]);
      assert.equal(ok.r.exitCode, 0, ok.r.stderr);
      assert.equal(ok.outcome.status, "activated");
      const failed = await deploy("T", ["--target", "web", "--inventory", inventory], "fail");
      assert.equal(failed.r.exitCode, 1, failed.r.stderr);
      assert.equal(failed.outcome.error?.code, "DEPLOY_ACTIVATION_FAILED");
      assert.deepEqual((await activations(h2)).slice(before), ["S switch", "T switch", "S switch"]);
      assert.equal(await current("local2"), (gen ?? 0) + 1);
      const back = await tp.cli([
        "deploy",
        "--rollback",
        "--target",
        "web",
        "--inventory",
        inventory,
        "--json",
      ]);
      assert.equal(back.exitCode, 0, back.stderr);
      assert.equal(await current("local2"), gen);
    } finally {
      await users.remove();
    }
  });

  test("Ctrl-C during the activation: nixpool says the watchdog rolls back, and it does", async () => {
    const gen = await current();
    const before = (await activations(h1)).length;
    const child = spawn(
      "node",
      [CLI, "--state-dir", tp.stateDir, "deploy", SYSTEM, "--argstr", "seed", seed, "--argstr", "name", "I"]
        .concat(["--argstr", "behaviour", "slow", "--target", "local1", "--build-host", "local"])
        .concat(["--confirm-timeout", "1s"]),
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const exited = once(child, "exit");
    const started = await waitFor(async () => (await activations(h1)).slice(before).includes("I switch"), {
      timeoutMs: 120_000,
      intervalMs: 100,
    });
    assert.ok(started, stderr);
    child.kill("SIGINT");
    const [code] = (await exited) as [number | null];
    assert.equal(code, 130, stderr);
    assert.match(
      stderr,
      new RegExp(
        `Interrupted during the activation on target local1: .* rolls it back to generation ${gen} `,
      ),
    );
    const rolled = await waitFor(async () => (await activations(h1)).length === before + 2, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    assert.ok(rolled, `activations: ${(await activations(h1)).join(", ")}`);
    assert.equal(await current(), gen);
  });
});
