// Access control against a real sshd on a builder host of the local pool, configured with the
// fragments nixpool prints. Builder users are Unix accounts of their own; the test gives the
// host a private /etc/passwd, /etc/group and /etc/shadow (bind-mounted in its mount namespace
// only) holding them, and a nix-daemon so that non-root sessions reach the host's store.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chown, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { run, spawnDetached, type RunResult } from "../../src/adapters/runner.js";
import { hostExecArgv, startHost, stopHost } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { makeKeysCommandDirs, runCli } from "../helpers/cli.js";
import { startFakeGithub, type FakeGithub } from "../helpers/fake-github.js";
import { waitForSsh } from "../helpers/processes.js";
import { waitFor } from "../../src/adapters/wait-for.js";

const ACCOUNTS = ["alice", "bob", "carol", "dave", "eve", "frank", "gina", "hank"] as const;
const FIRST_UID = 62101;
const NIX = ["nix", "--extra-experimental-features", "nix-command", "--option", "substituters", ""];
/** Runs ARGV as sshd's AuthorizedKeysCommandUser of the fragment (nobody). */
const asNobody = (argv: string[]) =>
  run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", ...argv], { reject: false });

describe("access control on a real sshd", () => {
  let tmp: Awaited<ReturnType<typeof makeKeysCommandDirs>>;
  let state: string;
  let gh: FakeGithub;
  let host: HostRecord | undefined;
  let daemonPid = 0;
  let knownHosts: string;
  // sshd runs the keys command as nobody: the installed copy (root's, under /run), never the
  // checkout, which may sit in a 0700 directory.
  let prefix: string;
  let keysCommand: string;
  const key = (name: string) => join(tmp.dir, "keys", name);
  const pub = async (name: string) => (await readFile(`${key(name)}.pub`, "utf8")).trim();
  const cli = (args: string[]) => runCli(state, args);

  async function mustCli(args: string[]): Promise<RunResult> {
    const r = await cli(args);
    assert.equal(r.exitCode, 0, `nixpool ${args.join(" ")}: ${r.stderr}`);
    return r;
  }

  /** Adds NAME with their own key, vouched for by alice. */
  async function addMember(name: string, ...extra: string[]): Promise<void> {
    await mustCli(["access", "add", name, "--key", await pub(name), "--vouched-by", "alice", ...extra]);
  }

  function sshOpts(identity: string, extra: string[] = []): string[] {
    return [
      "-F",
      "/dev/null",
      "-i",
      identity,
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      `UserKnownHostsFile=${knownHosts}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "BatchMode=yes",
      "-o",
      "ConnectTimeout=10",
      ...extra,
    ];
  }

  /** ssh USER@builder with OPTIONS, running COMMAND when given. */
  async function ssh(
    user: string,
    identity: string,
    options: string[],
    command?: string,
  ): Promise<RunResult> {
    return run(
      [
        "ssh",
        ...sshOpts(identity),
        ...options,
        `${user}@${host?.address}`,
        ...(command === undefined ? [] : [command]),
      ],
      {
        reject: false,
        timeout: 30_000,
        input: "",
      },
    );
  }

  /** A real `nix store ping` as USER, over ssh-ng:// unless told otherwise. */
  async function storePing(
    user: string,
    identity: string,
    extra: string[] = [],
    scheme: "ssh-ng" | "ssh" = "ssh-ng",
  ): Promise<RunResult> {
    return run([...NIX, "store", "ping", "--store", `${scheme}://${user}@${host?.address}`], {
      reject: false,
      timeout: 60_000,
      env: { NIX_SSHOPTS: sshOpts(identity, extra).join(" ") },
    });
  }

  async function sshdLogTail(): Promise<string> {
    return host
      ? (await readFile(host.sshdLogPath, "utf8").catch(() => "")).split("\n").slice(-40).join("\n")
      : "";
  }

  async function assertGetsIn(user: string, identity: string, extra: string[] = []) {
    const r = await storePing(user, identity, extra);
    assert.equal(
      r.exitCode,
      0,
      `${user} should get in: ${r.stderr}\n--- sshd log ---\n${await sshdLogTail()}`,
    );
  }

  async function assertRefused(user: string, identity: string, extra: string[] = []) {
    const r = await storePing(user, identity, extra);
    assert.notEqual(r.exitCode, 0, `${user} should be refused\n--- sshd log ---\n${await sshdLogTail()}`);
    assert.match(r.stderr, /Permission denied/, `${user}: ${r.stderr}`);
  }

  before(async () => {
    // sshd runs the keys command as nobody: the state must be readable by it.
    tmp = await makeKeysCommandDirs("nixpool-access-sshd-");
    state = join(tmp.dir, "state");
    prefix = tmp.commandPrefix;
    keysCommand = join(prefix, "keys-command");
    await mustCli(["access", "install-keys-command", "--prefix", prefix]);
    await mkdir(join(tmp.dir, "keys"), { recursive: true });
    for (const name of [...ACCOUNTS, "operator"]) {
      await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `${name}@test`, "-f", key(name)]);
    }

    gh = await startFakeGithub();
    gh.setKeys("dave-gh", [await pub("dave")]);
    await mustCli(["access", "add", "alice", "--key", await pub("alice"), "--trusted"]);
    await addMember("bob");
    await mustCli(["access", "add", "carol", "--vouched-by", "alice"]);
    await mustCli([
      "access",
      "add",
      "dave",
      "--github",
      "dave-gh",
      "--vouched-by",
      "alice",
      "--expires",
      "2099-01-01",
    ]);
    await addMember("frank");
    await addMember("gina", "--expires", "2099-01-01");
    await addMember("hank");
    // Static files for ssh:// (nix-store --serve): hank's only, so the others keep ssh-ng.
    // Written to a directory of their own (later add/remove keep it current), of which sshd is
    // given hank's file only.
    const written = join(tmp.dir, "written");
    await mustCli(["access", "sync", "--github-url", gh.url, "--write", written, "--protocol", "ssh"]);
    const staticDir = join(tmp.dir, "authorized_keys.d");
    await mkdir(staticDir);
    await copyFile(join(written, "hank"), join(staticDir, "hank"));
    await mustCli(["ca", "init"]);
    const hostDir = join(tmp.dir, "host");
    // First value wins: root keeps the pool's file, members also get nixpool's static files.
    const sshdConfig = `AuthorizedKeysFile ${hostDir}/authorized_keys ${staticDir}/%u\n${(await mustCli(["access", "sshd-config", "--keys-command", keysCommand])).stdout}`;
    const nixConf = (await mustCli(["access", "nix-conf"])).stdout;
    assert.match(sshdConfig, /TrustedUserCAKeys/);

    // Unix accounts, visible only inside the builder host's mount namespace.
    const etc = join(tmp.dir, "etc");
    await mkdir(etc);
    let passwd = await readFile("/etc/passwd", "utf8");
    let group = await readFile("/etc/group", "utf8");
    let shadow = await readFile("/etc/shadow", "utf8");
    for (const [i, name] of ACCOUNTS.entries()) {
      const uid = FIRST_UID + i;
      const home = join(tmp.dir, "home", name);
      await mkdir(home, { recursive: true });
      await chown(home, uid, uid);
      passwd += `${name}:x:${uid}:${uid}::${home}:/bin/sh\n`;
      group += `${name}:x:${uid}:\n`;
      // "*": no password, but not locked (sshd refuses "!" accounts when UsePAM is off).
      shadow += `${name}:*:19000:0:99999:7:::\n`;
    }
    await writeFile(join(etc, "passwd"), passwd, { mode: 0o644 });
    await writeFile(join(etc, "group"), group, { mode: 0o644 });
    await writeFile(join(etc, "shadow"), shadow, { mode: 0o600 });

    host = await startHost({
      name: "access",
      dir: hostDir,
      jobs: 1,
      authorizedKeys: [await pub("operator")],
      nixConf,
      sshdConfig,
    });
    for (const f of ["passwd", "group", "shadow"]) {
      await run(hostExecArgv(host, ["mount", "--bind", join(etc, f), `/etc/${f}`]));
    }
    // sshd keeps the LAST MaxStartups it reads (unlike most keywords): drop the pool's own, which
    // follows the fragment, and reload, so the fragment's value is the one in force.
    const config = await readFile(host.sshdConfigPath, "utf8");
    const fragmentMaxStartups = /^MaxStartups .*$/m.exec(sshdConfig)?.[0];
    const lines = config.split("\n");
    const later = lines.findLastIndex((l) => l.startsWith("MaxStartups ") && l !== fragmentMaxStartups);
    assert.ok(fragmentMaxStartups && later > lines.indexOf(fragmentMaxStartups), config);
    lines.splice(later, 1);
    await writeFile(host.sshdConfigPath, lines.join("\n"));
    process.kill(host.sshdPid, "SIGHUP");
    await waitForSsh(host.address);
    daemonPid = spawnDetached(hostExecArgv(host, ["nix-daemon"]));
    const socket = join(host.storeDir, "var", "nix", "daemon-socket", "socket");
    await waitFor(() => existsSync(socket), { timeoutMs: 10_000 });
    assert.ok(existsSync(socket), "the builder host's nix-daemon did not start");
    knownHosts = join(tmp.dir, "known_hosts");
    await writeFile(knownHosts, `${host.address} ${host.hostKeyPub}\n`);
  });

  after(async () => {
    if (daemonPid > 0) {
      try {
        process.kill(daemonPid, "SIGTERM");
      } catch {
        // already gone
      }
    }
    if (host) await stopHost(host);
    await gh?.stop();
    await tmp?.cleanup();
  });

  test("the generated fragments are in effect: sshd -T and the keys command user's view", async () => {
    const h = host as HostRecord;
    const effective = (await run(hostExecArgv(h, ["/usr/sbin/sshd", "-T", "-f", h.sshdConfigPath]))).stdout;
    const command = `${keysCommand} --state-dir ${state}`;
    for (const line of [
      `authorizedkeyscommand ${command} --protocol ssh-ng %u`,
      "authorizedkeyscommanduser nobody",
      `authorizedprincipalscommand ${command} --principals --key-id %i %u`,
      "authorizedprincipalscommanduser nobody",
      `trustedusercakeys ${join(state, "ca", "ca_ed25519.pub")}`,
      `revokedkeys ${join(state, "ca", "revoked.krl")}`,
      "maxstartups 10:30:100",
      "logingracetime 30",
      "passwordauthentication no",
    ]) {
      assert.ok(effective.split("\n").includes(line), `sshd -T lacks "${line}":\n${effective}`);
    }
    const nixConf = await readFile(h.nixConfPath, "utf8");
    assert.match(nixConf, /^trusted-users = root alice$/m);
    assert.match(nixConf, /^allowed-users = root alice bob carol dave frank gina hank$/m);

    // nobody reads a member's precompiled keys by name and nothing else of the state directory.
    const asNobodyKeys = await asNobody([keysCommand, "--state-dir", state, "alice"]);
    assert.match(
      asNobodyKeys.stdout,
      /^restrict,command="nix-daemon --stdio" ssh-ed25519 \S+ nixpool:alice$/m,
    );
    for (const denied of [
      ["ls", join(state, "access", "index")],
      ["ls", join(state, "access", "sshd", "ssh-ng")],
      ["ls", join(state, "ca")],
      ["cat", join(state, "users.toml")],
      ["cat", join(state, "access", "github-keys.json")],
      ["cat", join(state, "ca", "ca_ed25519")],
    ]) {
      const r = await asNobody(denied);
      assert.notEqual(r.exitCode, 0, `nobody could run ${denied.join(" ")}`);
      assert.match(r.stderr, /Permission denied/, denied.join(" "));
    }
  });

  test("a listed user's key reaches the Nix daemon: nix store ping and a real build over ssh-ng", async () => {
    await assertGetsIn("alice", key("alice"));
    await assertGetsIn("bob", key("bob"));
    // dave's key came from (fake) GitHub, and his line carries expiry-time: sshd accepts both.
    await assertGetsIn("dave", key("dave"));

    const nonce = `${Date.now()}-${process.pid}`;
    const derivation = (name: string) =>
      `builtins.derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ${nonce} > $out" ]; }\n`;
    const nixOpts = ["--option", "substituters", ""];
    // alice is trusted, bob is not: both build by sending the .drv and realising it remotely.
    for (const user of ["alice", "bob"]) {
      const file = join(tmp.dir, `build-${user}.nix`);
      await writeFile(file, derivation(`access-build-${user}`));
      const drv = (await run(["nix-instantiate", ...nixOpts, file])).stdout.trim();
      const env = { NIX_SSHOPTS: sshOpts(key(user)).join(" ") };
      const store = `ssh-ng://${user}@${host?.address}`;
      await run([...NIX, "copy", "--derivation", "--to", store, drv], { env, timeout: 120_000 });
      const built = await run(["nix-store", ...nixOpts, "--store", store, "-r", drv], {
        env,
        timeout: 120_000,
        reject: false,
      });
      assert.equal(built.exitCode, 0, `${user}: ${built.stderr}`);
      const out = built.stdout.trim().split("\n").at(-1) ?? "";
      assert.match(out, new RegExp(`^/nix/store/[a-z0-9]{32}-access-build-${user}$`));
      assert.equal((await run(hostExecArgv(host as HostRecord, ["cat", out]))).stdout.trim(), nonce);
    }

    // trusted-users from nix-conf: only a trusted user may waive signature checks, so an unsigned
    // path built here is refused from bob and accepted from alice, with the same --no-check-sigs.
    const localFile = join(tmp.dir, "local.nix");
    await writeFile(localFile, derivation("access-unsigned"));
    const local = (
      await run(["nix-build", ...nixOpts, "--no-out-link", localFile], { timeout: 120_000 })
    ).stdout.trim();
    const copyAs = (user: string) =>
      run([...NIX, "copy", "--no-check-sigs", "--to", `ssh-ng://${user}@${host?.address}`, local], {
        env: { NIX_SSHOPTS: sshOpts(key(user)).join(" ") },
        timeout: 120_000,
        reject: false,
      });
    const asBob = await copyAs("bob");
    assert.notEqual(asBob.exitCode, 0);
    assert.match(asBob.stderr, /lacks a valid signature/);
    const asAlice = await copyAs("alice");
    assert.equal(asAlice.exitCode, 0, asAlice.stderr);
  });

  test("a static file written by access sync --write gives ssh:// (nix-store --serve) and nothing else", async () => {
    const r = await storePing("hank", key("hank"), [], "ssh");
    assert.equal(r.exitCode, 0, `${r.stderr}\n--- sshd log ---\n${await sshdLogTail()}`);
    const cmd = await ssh("hank", key("hank"), [], "echo owned-$((6*7))");
    assert.doesNotMatch(cmd.stdout, /owned-42/);
  });

  test("an unlisted key and a removed user are refused; expiry takes effect at once", async () => {
    // gina's access now ends in 20 s (room for one CLI run and one login even on a loaded
    // machine); nothing nixpool runs between her two logins below.
    await mustCli(["access", "remove", "gina"]);
    const expires = Date.now() + 20_000;
    await addMember("gina", "--expires", new Date(expires).toISOString());
    await assertGetsIn("gina", key("gina"));
    assert.ok(Date.now() < expires, "the first login ended after the expiry: the check proves nothing");

    await assertRefused("alice", key("eve"));
    await assertRefused("eve", key("eve"));
    await assertGetsIn("frank", key("frank"));
    await mustCli(["access", "remove", "frank"]);
    await assertRefused("frank", key("frank"));

    await sleep(Math.max(0, expires + 1000 - Date.now()));
    await assertRefused("gina", key("gina"));
  });

  test("a restricted key opens no shell, runs no other command and forwards no port (ssh-ng and ssh)", async () => {
    // Control: the operator's unrestricted root key does get a shell, so the checks below can fail.
    const control = await ssh("root", key("operator"), [], "echo owned-$((6*7))");
    assert.match(control.stdout, /owned-42/, control.stderr);
    const controlForward = await ssh("root", key("operator"), ["-W", `${host?.address}:22`]);
    assert.match(controlForward.stdout, /^SSH-2\.0-OpenSSH/, controlForward.stderr);

    // alice's key comes from the keys command (ssh-ng), hank's from a static file (ssh).
    for (const user of ["alice", "hank"]) {
      const cmd = await ssh(user, key(user), [], "echo owned-$((6*7)); id");
      assert.doesNotMatch(cmd.stdout, /owned-42|uid=/, user);
      const shell = await ssh(user, key(user), ["-tt"], "/bin/sh -i");
      assert.doesNotMatch(shell.stdout, /owned|uid=|\$ |# /, user);
      assert.match(shell.stderr, /PTY allocation request failed/, user);
      const stdioForward = await ssh(user, key(user), ["-W", `${host?.address}:22`]);
      assert.notEqual(stdioForward.exitCode, 0, user);
      assert.doesNotMatch(stdioForward.stdout, /SSH-2\.0/, user);
      assert.match(stdioForward.stderr, /administratively prohibited|open failed/, user);
      const remote = await ssh(user, key(user), [
        "-o",
        "ExitOnForwardFailure=yes",
        "-N",
        "-R",
        "0:127.0.0.1:22",
      ]);
      assert.notEqual(remote.exitCode, 0, user);
      assert.match(remote.stderr, /forwarding failed/, user);
    }
  });

  test("GitHub down, slow, rate limited or hostile: cached users still get in and keys answer locally", async (t) => {
    t.after(async () => {
      gh.mode = "ok";
      await gh.setDown(false);
      gh.setKeys("dave-gh", [await pub("dave")]);
    });
    const cases: [string, () => Promise<void>][] = [
      ["down", () => gh.setDown(true)],
      [
        "slow",
        async () => {
          await gh.setDown(false);
          gh.mode = "slow";
          gh.slowMs = 30_000;
        },
      ],
      ["429", () => Promise.resolve(void (gh.mode = "429"))],
      ["oversized", () => Promise.resolve(void (gh.mode = "oversized"))],
      [
        // An answer smuggling eve's key with options: refused whole, dave keeps his cached key.
        "hostile",
        async () => {
          gh.mode = "ok";
          gh.setKeys("dave-gh", [await pub("dave"), `command="/bin/sh" ${await pub("eve")}`]);
        },
      ],
    ];
    for (const [what, makeIt] of cases) {
      await makeIt();
      const r = await cli(["access", "sync", "--github-url", gh.url, "--timeout", "1s"]);
      assert.equal(r.exitCode, 3, `${what}: ${r.stderr}`);
      await assertGetsIn("dave", key("dave"));
      await assertRefused("dave", key("eve"));
      const requests = gh.requests.length;
      const started = process.hrtime.bigint();
      const keys = await run([keysCommand, "--state-dir", state, "dave"]);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      assert.match(keys.stdout, /nixpool:dave/);
      assert.equal(gh.requests.length, requests, "the keys command asked GitHub");
      t.diagnostic(`GitHub ${what}: the installed keys command answered in ${ms.toFixed(1)} ms`);
    }
  });

  test("certificates: valid gets in; expired, not yet valid, wrong principal, another member's and revoked do not", async () => {
    const sign = async (user: string, out: string, extra: string[]) => {
      const r = await mustCli([
        "ca",
        "sign",
        user,
        "--key",
        `${key(user)}.pub`,
        "--out",
        join(tmp.dir, out),
        "--json",
        ...extra,
      ]);
      return JSON.parse(r.stdout) as { serial: number };
    };
    const withCert = (c: string) => ["-o", `CertificateFile=${join(tmp.dir, c)}`];
    // carol has no keys listed: only a certificate can let her in.
    await assertRefused("carol", key("carol"));
    await sign("carol", "valid-cert.pub", []);
    await assertGetsIn("carol", key("carol"), withCert("valid-cert.pub"));
    await sign("carol", "expired-cert.pub", ["--validity", "-2h:-1h"]);
    await assertRefused("carol", key("carol"), withCert("expired-cert.pub"));
    await sign("carol", "future-cert.pub", ["--validity", "+1h:+2h"]);
    await assertRefused("carol", key("carol"), withCert("future-cert.pub"));
    await sign("carol", "other-principal-cert.pub", ["--principals", "builders"]);
    await assertRefused("carol", key("carol"), withCert("other-principal-cert.pub"));
    const revoked = await sign("carol", "revoked-cert.pub", []);
    await assertGetsIn("carol", key("carol"), withCert("revoked-cert.pub"));
    await mustCli(["ca", "revoke", "--serial", String(revoked.serial)]);
    await assertRefused("carol", key("carol"), withCert("revoked-cert.pub"));
    // The first certificate is still good: revocation is per certificate.
    await assertGetsIn("carol", key("carol"), withCert("valid-cert.pub"));

    // bob's certificate names eve, who joins only later: it still cannot log in as eve.
    await sign("bob", "bob-eve-cert.pub", ["--principals", "bob,eve"]);
    await mustCli(["access", "add", "eve", "--vouched-by", "alice"]);
    await assertRefused("eve", key("bob"), withCert("bob-eve-cert.pub"));
    // Only the key ID binding refuses it: eve's own principal is answered.
    assert.equal((await mustCli(["access", "keys", "eve", "--principals"])).stdout, "eve\n");

    // A removed member's certificates stop at once too (principals come from the index), and are
    // revoked, so they do not come back if the name is given to a member again.
    const removed = JSON.parse((await mustCli(["access", "remove", "carol", "--json"])).stdout) as {
      certificatesRevoked: number;
    };
    assert.equal(removed.certificatesRevoked, 4); // the fifth was revoked above
    await assertRefused("carol", key("carol"), withCert("valid-cert.pub"));
    await mustCli(["access", "add", "carol", "--vouched-by", "alice"]);
    await assertRefused("carol", key("carol"), withCert("valid-cert.pub"));
    await sign("carol", "new-cert.pub", []);
    await assertGetsIn("carol", key("carol"), withCert("new-cert.pub"));
  });
});
