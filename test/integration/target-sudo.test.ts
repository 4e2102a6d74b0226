import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { statePaths } from "../../src/config/state-paths.js";
import { resolve } from "node:path";
import { writeClientFiles } from "../../src/adapters/nix-build.js";
import { run } from "../../src/adapters/runner.js";
import { copyClosure, type CopySource } from "../../src/deploy/closure-copy.js";
import { openTargetServe, runOnTarget } from "../../src/deploy/target-ssh.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { linkTo, poolHostTarget } from "../helpers/pool-targets.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { expectCode } from "../helpers/serve.js";
import { addTargetUsers, type TargetUsers } from "../helpers/target-user.js";

const CLOSURE_NIX = resolve(import.meta.dirname, "../fixtures/nix/closure.nix");
const NIX_CONFIG = "substituters =\nsandbox = false\nbuild-users-group =";

describe(
  "a non-root target user through sudo -n (pool host local2; local1 builds)",
  { timeout: 600_000 },
  () => {
    let tp: TestPool;
    let users: TargetUsers;
    before(async () => {
      tp = await startTestPool(2, 1);
      users = await addTargetUsers(
        tp.pool.hosts[1]!,
        [
          { name: "deployer", sudo: true },
          { name: "nosudo", sudo: false },
        ],
        [(await readFile(`${statePaths(tp.stateDir).localPool.clientKey}.pub`, "utf8")).trim()],
      );
    });
    after(async () => {
      await users?.remove();
      await tp?.cleanup();
    });

    test("the rule is the host's alone, valid for sudo, and for that user only", async () => {
      const rule = users.rules.get("deployer")!;
      assert.equal(users.rules.has("nosudo"), false);
      assert.equal(existsSync(rule), false, "this machine's /etc/sudoers.d is never touched");
      const host = tp.pool.hosts[1]!;
      assert.match(
        (await run(hostExecArgv(host, ["cat", rule]))).stdout,
        /^deployer ALL=\(ALL:ALL\) NOPASSWD: ALL$/m,
      );
      await run(hostExecArgv(host, ["visudo", "-c"]));
    });

    test("commands run as root through sudo -n for the user with the rule", async () => {
      const link = await linkTo(
        tp,
        poolHostTarget(tp, 1, { user: "deployer", sudo: true }),
        "deployer-known_hosts",
      );
      assert.equal((await runOnTarget(link, ["id", "-un"])).stdout.trim(), "root");
      const plain = await linkTo(
        tp,
        poolHostTarget(tp, 1, { user: "deployer", sudo: false }),
        "plain-known_hosts",
      );
      assert.equal(
        (await runOnTarget(plain, ["id", "-un"])).stdout.trim(),
        "deployer",
        "the login itself is not root",
      );
      const serve = await openTargetServe(link);
      await serve.close();
    });

    test("a user without the rule is refused with the target named and a hint; never a prompt", async () => {
      const link = await linkTo(
        tp,
        poolHostTarget(tp, 1, { user: "nosudo", sudo: true }),
        "nosudo-known_hosts",
      );
      const e = await expectCode(
        runOnTarget(link, ["id", "-un"], { timeout: 20_000 }),
        "TARGET_SUDO_REFUSED",
        /^Target local2 asks nosudo for a password for sudo; nixpool runs sudo -n and never types one\.$/,
      );
      assert.match(
        e.hint ?? "",
        /NOPASSWD rule in \/etc\/sudoers\.d.*docs\/deploy\.md#certificates-for-sudo/,
      );
      await expectCode(openTargetServe(link), "TARGET_SUDO_REFUSED");
    });

    test("a closure reaches the sudo target through this machine and directly from the builder", async () => {
      const builders = poolBuilders(tp.pool);
      const files = await writeClientFiles(tp.stateDir, builders);
      const from: CopySource = { kind: "builder", builder: builders[0]!, sshConfig: files.sshConfig };
      const target = await linkTo(
        tp,
        poolHostTarget(tp, 1, { user: "deployer", sudo: true }),
        "deployer-known_hosts",
      );
      const toBuilder = await linkTo(tp, poolHostTarget(tp, 0), "builder-known_hosts");
      for (const route of ["via-here", "direct"] as const) {
        const salt = `sudo-${route}-${randomBytes(4).toString("hex")}`;
        const root = (
          await run(["nix-build", CLOSURE_NIX, "-A", "root", "--argstr", "salt", salt, "--no-out-link"], {
            env: { NIX_CONFIG },
            timeout: 300_000,
          })
        ).stdout.trim();
        await copyClosure({ paths: [root], from: { kind: "local" }, to: toBuilder });
        const r = await copyClosure({ paths: [root], from, to: target, route });
        assert.deepEqual([r.route, r.sent.length], [route, 5], r.fallback);
        const check = await openTargetServe(target);
        try {
          assert.deepEqual(await check.queryValidPaths([root]), [root]);
        } finally {
          await check.close();
        }
      }
    });
  },
);
