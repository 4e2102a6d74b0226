import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { run } from "../../src/adapters/runner.js";
import { makeTempDir } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { stageCli, type StagedCli } from "../helpers/staged-cli.js";

/**
 * A multi-user install, for real: in a private mount namespace, nixpool config apply writes
 * /etc/nix and /etc/ssh/ssh_config.d, a real nix-daemon starts, and an unprivileged user's
 * nixpool build is performed by that daemon, whose build hook (as root, with root's ssh
 * configuration) offloads to the pool.
 */
const SCRIPT = `
set -eu
mkdir -p /etc/nix /etc/ssh/ssh_config.d /nix/var/nix/daemon-socket
mount --bind "$T/etc-nix" /etc/nix
mount --bind "$T/ssh_config.d" /etc/ssh/ssh_config.d
mount --bind "$T/socket" /nix/var/nix/daemon-socket
node "$CLI" --state-dir "$STATE" config apply >"$T/apply.out"
nix-daemon >"$T/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null || true' EXIT
i=0; while [ ! -S /nix/var/nix/daemon-socket/socket ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
cd "$T/user"
setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$T/user" NIX_REMOTE=daemon \\
  node "$CLI" --state-dir "$T/user/state" build "$FILE" --arg n 3 --argstr seed "$SEED" -o "$T/user/result" --json \\
  >"$T/build.out" 2>"$T/build.err" || echo "build exit $?" >>"$T/build.err"
`;

describe("multi-user Nix: config apply makes the daemon offload to the pool", { timeout: 300_000 }, () => {
  let pool: TestPool;
  let t: { dir: string; cleanup: () => Promise<void> };
  // The unprivileged user runs a copy of the CLI: the checkout may sit in a 0700 directory.
  let staged: StagedCli;

  before(async () => {
    pool = await startTestPool(1, 2);
    t = await makeTempDir("nixpool-daemon-");
    staged = await stageCli();
  });
  after(async () => {
    await pool?.cleanup();
    await t?.cleanup();
    await staged?.cleanup();
  });

  test("an unprivileged user's build goes through the daemon to a pool builder", async () => {
    const T = t.dir;
    await chmod(T, 0o755);
    for (const d of ["etc-nix", "ssh_config.d", "socket", "user"]) await mkdir(join(T, d));
    await chmod(join(T, "socket"), 0o755);
    await chmod(join(T, "user"), 0o777);
    // The daemon builds nothing itself and has no binary cache to ask.
    await writeFile(
      join(T, "etc-nix", "nix.conf"),
      "build-users-group =\nsubstituters =\nmax-jobs = 0\nsandbox = false\n",
    );
    const file = join(T, "graph.nix");
    await copyFile(join(staged.examples, "graph.nix"), file);
    await chmod(file, 0o644);
    const r = await run(["unshare", "-m", "--propagation", "private", "sh", "-c", SCRIPT], {
      reject: false,
      timeout: 240_000,
      env: { T, CLI: staged.cli, STATE: pool.stateDir, FILE: file, SEED: randomBytes(6).toString("hex") },
    });
    const err = await readFile(join(T, "build.err"), "utf8").catch(() => "");
    const daemonLog = await readFile(join(T, "daemon.log"), "utf8").catch(() => "");
    assert.equal(r.exitCode, 0, `${r.stderr}\n${err}\n${daemonLog}`);
    assert.ok(!err.includes("build exit"), `${err}\n${daemonLog}`);
    assert.match(await readFile(join(T, "apply.out"), "utf8"), /machines/);
    const result = JSON.parse(await readFile(join(T, "build.out"), "utf8")) as {
      outputs: string[];
      derivations: { name: string; builder: string }[];
    };
    assert.equal(result.derivations.length, 4);
    for (const d of result.derivations) assert.equal(d.builder, "local1", `${d.name} built by the pool`);
    assert.deepEqual((await readFile(result.outputs[0] ?? "", "utf8")).trim().split("\n"), [
      "leaf-0",
      "leaf-1",
      "leaf-2",
    ]);
  });
});
