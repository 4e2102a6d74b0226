// The installed keys command (a small sh script) and the checks of `access sshd-config`: sshd runs
// the command as an unprivileged user, which must be able to run it and reach the state directory.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { USER_NAME_PATTERN } from "../../src/core/access/names.js";
import { asNobody, makeKeysCommandDirs, runCli } from "../helpers/cli.js";
import { stageCli, type StagedCli } from "../helpers/staged-cli.js";

describe("the installed keys command and sshd-config's checks", () => {
  let tmp: Awaited<ReturnType<typeof makeKeysCommandDirs>>;
  /** A prefix sshd accepts: root's, under /run (0755), not under the shared /tmp. */
  let prefix: string;
  let command: string;
  let state: string;
  let staged: StagedCli;
  let aliceKey: string;
  const cli = (args: string[], stateDir = state) => runCli(stateDir, args);

  before(async () => {
    tmp = await makeKeysCommandDirs("nixpool-keys-command-");
    state = join(tmp.dir, "state");
    prefix = tmp.commandPrefix;
    command = join(prefix, "lib", "keys-command");
    staged = await stageCli();
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(tmp.dir, "alice")]);
    aliceKey = (await readFile(join(tmp.dir, "alice.pub"), "utf8")).trim();
    for (const args of [
      ["access", "add", "alice", "--key", aliceKey, "--trusted"],
      ["access", "add", "bob", "--key", aliceKey, "--vouched-by", "alice", "--expires", "2099-01-01"],
    ]) {
      const r = await cli(args);
      assert.equal(r.exitCode, 0, r.stderr);
    }
  });
  after(async () => {
    await tmp?.cleanup();
    await staged?.cleanup();
  });

  test("install-keys-command: root's 0755 sh script; refuses /tmp and non-root", async () => {
    const shared = await cli(["access", "install-keys-command", "--prefix", join(tmp.dir, "lib")]);
    assert.equal(shared.exitCode, 2, shared.stderr);
    assert.match(
      shared.stderr,
      /^error: sshd would refuse a keys command in .*: \/tmp is writable by its group or others \(mode 01777\)\.$/m,
    );
    assert.match(shared.stderr, /^hint: Choose another prefix: --prefix \/usr\/local\/lib\/nixpool$/m);
    assert.equal(
      await stat(join(tmp.dir, "lib")).catch(() => "absent"),
      "absent",
      "a refusal creates nothing",
    );

    const r = await cli(["access", "install-keys-command", "--prefix", join(prefix, "lib")]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Installed ${command} \\(root, 0755\\)\\.$`, "m"));
    assert.match(r.stdout, new RegExp(`nixpool access sshd-config --keys-command ${command}$`, "m"));
    const s = await stat(command);
    assert.equal(s.uid, 0);
    assert.equal(s.mode & 0o7777, 0o755);
    assert.match(await readFile(command, "utf8"), /^#!\/bin\/sh\n/);
    const again = await cli(["access", "install-keys-command", "--prefix", join(prefix, "lib")]);
    assert.match(again.stdout, /^Up to date: /);

    const asUser = await run(
      asNobody([
        "node",
        staged.cli,
        "--state-dir",
        tmp.dir,
        "access",
        "install-keys-command",
        "--prefix",
        prefix,
      ]),
      { reject: false, cwd: "/" },
    );
    assert.equal(asUser.exitCode, 2, asUser.stderr);
    assert.match(asUser.stderr, /needs root/);
    assert.match(asUser.stderr, /hint: Run: sudo nixpool access install-keys-command/);
  });

  test("as nobody it answers exactly as nixpool access keys, for members, strangers and key IDs", async () => {
    const cases: string[][] = [
      ["alice"],
      ["bob"],
      ["--protocol", "ssh", "bob"],
      ["nobody-listed"],
      ["../users.toml"],
      ["ALICE"],
      ["alice;id"],
      ["--principals", "alice"],
      ["--principals", "--key-id", "nixpool:alice:7", "alice"],
      ["--principals", "--key-id", "nixpool:bob:7", "alice"],
      ["--principals", "--key-id", "nixpool:alice:7x", "alice"],
    ];
    for (const c of cases) {
      const sh = await run(asNobody([command, "--state-dir", state, ...c]), { reject: false, cwd: "/" });
      assert.equal(sh.exitCode, 0, `${c.join(" ")}: ${sh.stderr}`);
      const user = c.at(-1) ?? "";
      const flags = c.slice(0, -1);
      const viaCli = await cli(["access", "keys", ...flags, "--", user]);
      // The same keys; principals carry sshd's expiry-time, which sshd enforces itself.
      assert.equal(sh.stdout.replace(/^expiry-time="\d+Z" /gm, ""), viaCli.stdout, c.join(" "));
    }
    assert.match(
      (await run(asNobody([command, "--state-dir", state, "bob"]), { cwd: "/" })).stdout,
      /^restrict,expiry-time="20990101000000Z",command="nix-daemon --stdio" ssh-ed25519 \S+ nixpool:bob\n$/,
    );
    assert.equal(
      (await run(asNobody([command, "--state-dir", state, "--principals", "bob"]), { cwd: "/" })).stdout,
      'expiry-time="20990101000000Z" bob\n',
    );
  });

  test("its name check is USER_NAME_PATTERN", async () => {
    const names = [
      "a",
      "_x",
      "a-b_9",
      "a".repeat(32),
      "a".repeat(33),
      "9a",
      "-a",
      "A",
      "a.b",
      "a b",
      "é",
      "a/b",
      "a*",
    ];
    for (const name of names) {
      const r = await run([command, "--state-dir", tmp.dir, name], { reject: false });
      // An unreachable answers directory is exit 1, a refused name exit 0 before it is looked at.
      assert.equal(r.exitCode === 1, USER_NAME_PATTERN.test(name), `${name}: ${r.exitCode} ${r.stderr}`);
    }
  });

  test("sshd-config refuses what sshd would refuse, naming the path and the fix", async () => {
    const missing = await cli(["access", "sshd-config"]);
    assert.equal(missing.exitCode, 2);
    assert.match(
      missing.stderr,
      /^error: The keys command \/usr\/local\/lib\/nixpool\/keys-command does not exist\.$/m,
    );
    assert.match(missing.stderr, /^hint: Install it: sudo nixpool access install-keys-command/m);

    // A state directory inside a 0700 directory (such as /root): nobody cannot reach the answers.
    const hidden = join(tmp.dir, "private");
    await mkdir(hidden, { mode: 0o700 });
    const hiddenState = join(hidden, "state");
    const add = await cli(["access", "add", "alice", "--key", aliceKey], hiddenState);
    assert.equal(add.exitCode, 0, add.stderr);
    const unreachable = await cli(["access", "sshd-config", "--keys-command", command], hiddenState);
    assert.equal(unreachable.exitCode, 2);
    assert.match(
      unreachable.stderr,
      new RegExp(
        `^error: nobody cannot search ${hidden} \\(mode 0700\\), so the keys command cannot read ${hiddenState}/access/sshd/ssh-ng and sshd refuses every login\\.$`,
        "m",
      ),
    );
    assert.match(unreachable.stderr, new RegExp(`^hint: Run: chmod o\\+x ${hidden}; `, "m"));
    // The same command as nobody really fails there, with its reason in sshd's log.
    const really = await run(asNobody([command, "--state-dir", hiddenState, "alice"]), {
      reject: false,
      cwd: "/",
    });
    assert.equal(really.exitCode, 1);
    assert.match(really.stderr, /cannot reach .*access\/sshd\/ssh-ng as nobody/);

    // A keys command in a directory nobody cannot traverse (a checkout under /root).
    await chmod(prefix, 0o700);
    try {
      const blocked = await cli(["access", "sshd-config", "--keys-command", command]);
      assert.equal(blocked.exitCode, 2);
      assert.match(
        blocked.stderr,
        new RegExp(
          `^error: nobody cannot search ${prefix} \\(mode 0700\\), so sshd cannot run the keys command ${command}`,
          "m",
        ),
      );
      assert.match(
        blocked.stderr,
        /^hint: Install a copy outside it: sudo nixpool access install-keys-command/m,
      );
      assert.match(blocked.stderr, new RegExp(`or run: chmod o\\+x ${prefix}$`, "m"));
    } finally {
      await chmod(prefix, 0o755);
    }

    // nixpool doctor on this shared builder names the same problems, as a failing local check.
    const doctor = await cli(["--inventory", "/dev/null", "doctor", "--json"], hiddenState);
    assert.equal(doctor.exitCode, 1, doctor.stderr);
    const row = (
      JSON.parse(doctor.stdout) as {
        local: {
          id: string;
          status: string;
          data?: { problems: { code: string; message: string; hint: string }[] };
        }[];
      }
    ).local.find((c) => c.id === "local.keys-command");
    assert.equal(row?.status, "fail");
    const index = row?.data?.problems.find((p) => p.code === "ACCESS_INDEX_UNREACHABLE");
    assert.match(index?.message ?? "", new RegExp(`^nobody cannot search ${hidden} \\(mode 0700\\)`));
    assert.match(index?.hint ?? "", new RegExp(`^Run: chmod o\\+x ${hidden}; `));

    const ok = await cli(["access", "sshd-config", "--keys-command", command]);
    assert.equal(ok.exitCode, 0, ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(`^AuthorizedKeysCommand ${command} --state-dir ${state} --protocol ssh-ng %u$`, "m"),
    );
  });
});
