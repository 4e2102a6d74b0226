import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { appendFile, chmod, copyFile, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { run, spawnDetached } from "../../src/adapters/runner.js";
import {
  hostExecArgv,
  setLinkUp,
  startHost,
  stopHost,
  type HostSpec,
} from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import type { CheckResult, DoctorReport } from "../../src/core/doctor/model.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { stageCli } from "../helpers/staged-cli.js";
import { waitFor } from "../../src/adapters/wait-for.js";

const SYSTEM = process.arch === "arm64" ? "aarch64-linux" : "x86_64-linux";

interface InvBuilder {
  host: string;
  port?: number;
  supportedFeatures?: string[];
  user?: string;
  protocol?: "ssh" | "ssh-ng";
  systems?: string[];
  maxJobs?: number;
  hostKey?: string;
  identityFile?: string;
}

function renderInventory(builders: Record<string, InvBuilder>): string {
  const q = (s: string) => JSON.stringify(s);
  return Object.entries(builders)
    .map(([name, b]) =>
      [
        `[builders.${name}]`,
        `host = ${q(b.host)}`,
        ...(b.port ? [`port = ${b.port}`] : []),
        ...(b.supportedFeatures ? [`supportedFeatures = [${b.supportedFeatures.map(q).join(", ")}]`] : []),
        ...(b.user ? [`user = ${q(b.user)}`] : []),
        `protocol = ${q(b.protocol ?? "ssh-ng")}`,
        `systems = [${(b.systems ?? [SYSTEM]).map(q).join(", ")}]`,
        `maxJobs = ${b.maxJobs ?? 1}`,
        ...(b.hostKey ? [`hostKey = ${q(b.hostKey)}`] : []),
        ...(b.identityFile ? [`identityFile = ${q(b.identityFile)}`] : []),
        "",
      ].join("\n"),
    )
    .join("\n");
}

function parseNames(inventory: string): Record<string, true> {
  return Object.fromEntries(
    [...inventory.matchAll(/^\[builders\.([^\]]+)\]$/gm)].map((m) => [m[1] ?? "", true]),
  );
}

function check(report: DoctorReport, builder: string, id: string): CheckResult {
  const b = report.builders.find((x) => x.name === builder);
  assert.ok(b, `no report for ${builder}`);
  const c = b.checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} for ${builder}`);
  return c;
}

async function keygen(type: "ed25519" | "rsa", path: string): Promise<string> {
  await run([
    "ssh-keygen",
    "-q",
    "-t",
    type,
    ...(type === "rsa" ? ["-b", "2048"] : []),
    "-N",
    "",
    "-C",
    "doctor-test",
    "-f",
    path,
  ]);
  return (await readFile(`${path}.pub`, "utf8")).trim();
}

async function waitForFile(path: string, timeoutMs: number): Promise<void> {
  assert.ok(await waitFor(() => existsSync(path), { timeoutMs }), `${path} did not appear in time`);
}

describe("nixpool doctor on builders with injected faults", { timeout: 600_000 }, () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  const hosts: HostRecord[] = [];
  let report: DoctorReport;
  let exitCode: number;
  let stderr: string;
  let invPath: string;
  let keys: { dir: string; ed: string; edPub: string; rsa: string; rsaPub: string };
  let hookSshConfig: string;
  let hookKnownHosts: string;

  before(async () => {
    tmp = await makeTempDir("nixpool-doctor-");
    await chmod(tmp.dir, 0o755); // a non-root login must reach its authorized_keys
    const keyDir = join(tmp.dir, "keys");
    await mkdir(keyDir, { mode: 0o700 });
    const ed = join(keyDir, "id_ed25519");
    const rsa = join(keyDir, "id_rsa");
    keys = { dir: keyDir, ed, edPub: await keygen("ed25519", ed), rsa, rsaPub: await keygen("rsa", rsa) };
    const otherHostKey = await keygen("ed25519", join(tmp.dir, "other_host_key"));

    // Fault: nix-daemon missing from the session PATH (everything else of /usr/bin present).
    const fakeBin = join(tmp.dir, "bin-without-nix-daemon");
    await mkdir(fakeBin);
    for (const n of await readdir("/usr/bin"))
      if (n !== "nix-daemon") await symlink(join("/usr/bin", n), join(fakeBin, n));
    // Fault: nix-store missing from the session PATH (what ssh:// runs).
    const noStoreBin = join(tmp.dir, "bin-without-nix-store");
    await mkdir(noStoreBin);
    for (const n of await readdir("/usr/bin"))
      if (n !== "nix-store") await symlink(join("/usr/bin", n), join(noStoreBin, n));
    // Fault: the builder's clock two hours ahead (a time namespace cannot move the real-time
    // clock, so its `date` is the one program replaced).
    const skewBin = join(tmp.dir, "bin-skewed-date");
    await mkdir(skewBin);
    await writeFile(
      join(skewBin, "date"),
      '#!/bin/sh\nexec /usr/bin/date -d "@$(( $(/usr/bin/date +%s) + 7200 ))" "$@"\n',
      { mode: 0o755 },
    );
    // Fault: a key protected by a passphrase.
    const withPassphrase = join(keyDir, "id_passphrase");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-f", withPassphrase]);
    // Fault: a non-root login needs an authorized_keys file it can read.
    const akAll = join(tmp.dir, "authorized_keys_all");
    await writeFile(akAll, `${keys.edPub}\n`, { mode: 0o644 });

    const spec = (name: string, extra: Partial<HostSpec> = {}): HostSpec => ({
      name,
      dir: join(tmp.dir, "hosts", name),
      jobs: 1,
      authorizedKeys: [keys.edPub],
      ...extra,
    });
    const started = await Promise.allSettled([
      startHost(spec("healthy")),
      startHost(spec("edonly")),
      startHost(spec("rsaonly", { authorizedKeys: [keys.rsaPub] })),
      startHost(spec("untrusted")),
      startHost(spec("notallowed")),
      startHost(spec("singleuser", { sshdConfig: `AuthorizedKeysFile ${akAll}` })),
      startHost(spec("nodaemon", { sshdConfig: `SetEnv PATH=${fakeBin}` })),
      startHost(spec("nostore", { sshdConfig: `SetEnv PATH=${noStoreBin}` })),
      startHost(spec("unreachable")),
      startHost(spec("tinystore")),
      startHost(spec("hang", { sshdConfig: "ForceCommand /bin/sleep 600" })),
      startHost(spec("skewed", { sshdConfig: `SetEnv PATH=${skewBin}:/usr/bin:/bin` })),
    ]);
    for (const r of started) if (r.status === "fulfilled") hosts.push(r.value);
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const h = (name: string) => {
      const x = hosts.find((y) => y.name === name);
      assert.ok(x);
      return x;
    };

    // Untrusted: the builder's commands go through a nix-daemon that does not trust root.
    const untrusted = h("untrusted");
    await appendFile(untrusted.nixConfPath, "\nstore = daemon\ntrusted-users = nobody\n");
    spawnDetached(hostExecArgv(untrusted, ["nix-daemon", "--store", "local"]));
    await waitForFile(join(untrusted.storeDir, "var/nix/daemon-socket/socket"), 10_000);

    // Not allowed: the builder's nix-daemon admits nobody but "nobody".
    const notAllowed = h("notallowed");
    await appendFile(
      notAllowed.nixConfPath,
      "\nstore = daemon\ntrusted-users = nobody\nallowed-users = nobody\n",
    );
    spawnDetached(hostExecArgv(notAllowed, ["nix-daemon", "--store", "local"]));
    await waitForFile(join(notAllowed.storeDir, "var/nix/daemon-socket/socket"), 10_000);

    // Single-user: a login user "nixtest" who cannot write the root-owned store, and no daemon.
    const single = h("singleuser");
    const passwd = join(single.dir, "passwd");
    await writeFile(
      passwd,
      `${await readFile("/etc/passwd", "utf8")}nixtest:x:4242:4242:doctor test:/tmp:/bin/sh\n`,
    );
    await run(hostExecArgv(single, ["mount", "--bind", passwd, "/etc/passwd"]));

    // Unreachable: the link is cut.
    await setLinkUp(h("unreachable"), false);

    // Tiny store: an 8 MiB tmpfs over the builder's /nix.
    await run(hostExecArgv(h("tinystore"), ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", "/nix"]));

    const mode644 = join(tmp.dir, "id_ed25519_0644");
    await copyFile(ed, mode644);
    await chmod(mode644, 0o644);

    const base = (name: string): InvBuilder => ({
      host: h(name).address,
      user: "root",
      hostKey: h(name).hostKeyPub,
      identityFile: ed,
    });
    // The build hook's own ssh setup (NIX_SSHOPTS of a single-user Nix): aliases whose
    // known_hosts disagree with the inventory or the builder, to learn which side is wrong.
    hookKnownHosts = join(tmp.dir, "hook_known_hosts");
    const healthyKey = h("healthy").hostKeyPub;
    await writeFile(
      hookKnownHosts,
      [
        `nixpool-stale-known-hosts ${otherHostKey}`,
        `nixpool-builder-key-changed ${otherHostKey}`,
        `nixpool-stale-pin ${healthyKey}`,
        "",
      ].join("\n"),
    );
    hookSshConfig = join(tmp.dir, "hook_ssh_config");
    await writeFile(
      hookSshConfig,
      ["stale-known-hosts", "builder-key-changed", "stale-pin"]
        .map((n) =>
          [
            `Host nixpool-${n}`,
            `  HostName ${h("healthy").address}`,
            `  HostKeyAlias nixpool-${n}`,
            `  UserKnownHostsFile ${hookKnownHosts}`,
            "  GlobalKnownHostsFile /dev/null",
            "",
          ].join("\n"),
        )
        .join("\n"),
    );

    const inventory = renderInventory({
      healthy: base("healthy"),
      "healthy-ssh": { ...base("healthy"), protocol: "ssh" },
      "wrong-host-key": { ...base("healthy"), hostKey: otherHostKey },
      "missing-identity": { ...base("healthy"), identityFile: join(tmp.dir, "no-such-key") },
      "identity-0644": { ...base("healthy"), identityFile: mode644 },
      "rsa-offered": { ...base("edonly"), identityFile: keys.rsa },
      "ed25519-offered": { ...base("rsaonly"), identityFile: keys.ed },
      untrusted: base("untrusted"),
      "untrusted-ssh": { ...base("untrusted"), protocol: "ssh" },
      "not-allowed": base("notallowed"),
      "not-allowed-ssh": { ...base("notallowed"), protocol: "ssh" },
      "single-user": { ...base("singleuser"), user: "nixtest" },
      "no-nix-daemon": base("nodaemon"),
      "nodaemon-ssh": { ...base("nodaemon"), protocol: "ssh" },
      "no-nix-store": { ...base("nostore"), protocol: "ssh" },
      "stale-known-hosts": base("healthy"),
      "builder-key-changed": { ...base("healthy"), hostKey: otherHostKey },
      "stale-pin": { ...base("healthy"), hostKey: otherHostKey },
      unreachable: base("unreachable"),
      "tiny-store": base("tinystore"),
      "wrong-system": { ...base("healthy"), systems: ["aarch64-linux"] },
      "missing-feature": { ...base("healthy"), supportedFeatures: ["cuda"] },
      "too-many-jobs": { ...base("healthy"), maxJobs: 512 },
      "not-pinned": { host: h("healthy").address, user: "root", identityFile: ed },
      "no-such-host": { ...base("healthy"), host: "no-such-builder.invalid" },
      "wrong-port": { ...base("healthy"), port: 2222 },
      passphrase: { ...base("healthy"), identityFile: withPassphrase },
      skewed: base("skewed"),
    });
    invPath = join(tmp.dir, "nixpool.toml");
    await writeFile(invPath, inventory + renderInventory({ hang: base("hang") }));
    const stateDir = join(tmp.dir, "state");
    const names = Object.keys(parseNames(inventory)); // every builder but "hang", checked on its own below
    const r = await runCli(
      stateDir,
      ["--inventory", invPath, "doctor", ...names, "--json", "--timeout", "60"],
      { env: { NIX_SSHOPTS: `-F ${hookSshConfig}` } },
    );
    exitCode = r.exitCode;
    stderr = r.stderr;
    report = JSON.parse(r.stdout) as DoctorReport;
  });

  after(async () => {
    await Promise.all(hosts.map((h) => stopHost(h)));
    await tmp?.cleanup();
  });

  test("exit code 3: some builders fail, this machine does not", () => {
    assert.equal(exitCode, 3, stderr);
    assert.ok(!report.local.some((c) => c.status === "fail"), JSON.stringify(report.local, null, 2));
  });

  test("a healthy builder passes every check, over ssh-ng and ssh", () => {
    for (const name of ["healthy", "healthy-ssh"]) {
      const b = report.builders.find((x) => x.name === name);
      assert.ok(b);
      assert.deepEqual(
        b.checks.filter((c) => c.status !== "pass").map((c) => [c.id, c.message]),
        [],
        name,
      );
      assert.match(
        check(report, name, "round-trip").message,
        /copied \/nix\/store\/\S+-nixpool-doctor-probe back/,
      );
      assert.match(check(report, name, "tcp").message, /:22 answered in \d+ ms \(SSH-2\.0-OpenSSH/);
    }
  });

  test("wrong pinned host key: both fingerprints and the key line to pin", () => {
    const c = check(report, "wrong-host-key", "host-key");
    assert.equal(c.status, "fail");
    const healthy = hosts.find((h) => h.name === "healthy");
    assert.ok(healthy);
    assert.match(c.message, /presents ED25519 key SHA256:\S+, but the inventory pins SHA256:/);
    assert.ok(c.fix?.includes(`hostKey = "${healthy.hostKeyPub}"`), c.fix);
    assert.equal(check(report, "wrong-host-key", "auth").status, "skip");
  });

  test("which side is wrong: this machine's known_hosts, the builder, or the inventory", async () => {
    const healthy = hosts.find((x) => x.name === "healthy");
    assert.ok(healthy);
    const blob = healthy.hostKeyPub.split(" ")[1] ?? "?";
    // Inventory and builder agree; the hook's known_hosts holds another key.
    const local = check(report, "stale-known-hosts", "host-key");
    assert.equal(local.status, "fail");
    assert.match(
      local.message,
      /The builder and the inventory agree .* this machine's known_hosts is the wrong side/,
    );
    assert.ok(local.message.includes(hookKnownHosts), local.message);
    assert.equal(local.data?.["wrongSide"], "known_hosts");
    assert.equal(
      local.fix,
      `ssh-keygen -R nixpool-stale-known-hosts -f ${hookKnownHosts} && echo 'nixpool-stale-known-hosts ssh-ed25519 ${blob}' >> ${hookKnownHosts}`,
    );
    assert.match(local.symptom ?? "", /REMOTE HOST IDENTIFICATION HAS CHANGED/);
    // Inventory and the hook's known_hosts agree; the builder now presents another key.
    const builderSide = check(report, "builder-key-changed", "host-key");
    assert.equal(builderSide.status, "fail");
    assert.match(builderSide.message, /the builder side changed/);
    assert.equal(builderSide.data?.["wrongSide"], "builder");
    assert.match(builderSide.fix ?? "", /^Do not build there until the builder's console confirms SHA256:/);
    // The builder and the hook's known_hosts agree; the inventory pin is the odd one out.
    const inventorySide = check(report, "stale-pin", "host-key");
    assert.equal(inventorySide.status, "fail");
    assert.match(inventorySide.message, /the inventory side is wrong/);
    assert.equal(inventorySide.data?.["wrongSide"], "inventory");
    assert.ok(inventorySide.fix?.includes(`hostKey = "${healthy.hostKeyPub}"`), inventorySide.fix);
    // The fix, run as printed, makes the check pass.
    await run(["sh", "-c", local.fix ?? "false"]);
    const again = await runCli(
      join(tmp.dir, "state"),
      ["--inventory", invPath, "doctor", "stale-known-hosts", "--no-local", "--json", "--timeout", "60"],
      { env: { NIX_SSHOPTS: `-F ${hookSshConfig}` } },
    );
    const fixed = check(JSON.parse(again.stdout) as DoctorReport, "stale-known-hosts", "host-key");
    assert.equal(fixed.status, "pass", fixed.message);
    assert.match(fixed.message, /as \S+hook_known_hosts records/);
  });

  test("missing identity file: named, with the command that creates it", () => {
    const c = check(report, "missing-identity", "identity");
    assert.equal(c.status, "fail");
    assert.match(c.message, /no-such-key does not exist/);
    assert.match(c.fix ?? "", /ssh-keygen -t ed25519/);
    assert.match(c.symptom ?? "", /^no such identity: \S+no-such-key: No such file or directory\n/);
    assert.equal(check(report, "missing-identity", "auth").status, "fail");
  });

  test("identity file the user running ssh cannot read: chown and chmod for that user", async (t) => {
    // The doctor runs as "nobody" (from a copy of the CLI it can read); the key sits in root's
    // 0700 directory.
    const staged = await stageCli();
    t.after(() => staged.cleanup());
    const state = join(tmp.dir, "state-nobody");
    await mkdir(state, { mode: 0o777 });
    await chmod(state, 0o777);
    const r = await run(
      [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        ...["node", staged.cli, "--state-dir", state, "--inventory", invPath, "doctor", "healthy"],
        ...["--no-local", "--json", "--timeout", "60"],
      ],
      // A working directory nobody can enter (a checkout under /root) would fail every spawn.
      { reject: false, timeout: 120_000, cwd: state },
    );
    assert.equal(r.exitCode, 3, r.stderr);
    const asNobody = JSON.parse(r.stdout) as DoctorReport;
    const c = check(asNobody, "healthy", "identity");
    assert.equal(c.status, "fail");
    assert.equal(c.message, `The identity file ${keys.ed} cannot be read (EACCES).`);
    assert.equal(
      c.fix,
      `Make it readable by the user who runs ssh (nobody here; root when nix-daemon runs the build hook): chown nobody ${keys.ed} && chmod 600 ${keys.ed}`,
    );
    assert.equal(
      c.symptom,
      `no such identity: ${keys.ed}: Permission denied\nroot@${hosts.find((x) => x.name === "healthy")?.address ?? "?"}: Permission denied (publickey).`,
    );
    const auth = check(asNobody, "healthy", "auth");
    assert.equal(auth.status, "fail");
    assert.match(auth.message, /refused no key at all for user root/);
  });

  test("identity file of mode 0644: chmod 600", () => {
    const c = check(report, "identity-0644", "identity");
    assert.equal(c.status, "fail");
    assert.match(c.message, /mode 0644/);
    assert.match(c.fix ?? "", /^chmod 600 \S+id_ed25519_0644$/);
    const auth = check(report, "identity-0644", "auth");
    assert.equal(auth.status, "fail");
    assert.match(auth.fix ?? "", /chmod 600/);
  });

  test("RSA key offered where only an ED25519 key is authorised, and the other way round", () => {
    const rsa = check(report, "rsa-offered", "auth");
    assert.equal(rsa.status, "fail");
    assert.match(rsa.message, /an RSA key is offered where only an ED25519 key is authorised/);
    assert.ok(rsa.fix?.includes(`identityFile = "${keys.ed}"`), rsa.fix);
    assert.ok(rsa.fix?.includes(keys.rsaPub.split(" ")[1] ?? "?"), "fix offers to authorise the RSA key");
    const ed = check(report, "ed25519-offered", "auth");
    assert.equal(ed.status, "fail");
    assert.match(ed.message, /an ED25519 key is offered where only an RSA key is authorised/);
    assert.ok(ed.fix?.includes(`identityFile = "${keys.rsa}"`), ed.fix);
  });

  test("untrusted remote user: the trusted-users line for the builder", () => {
    const c = check(report, "untrusted", "trust");
    assert.equal(c.status, "fail");
    assert.match(c.message, /does not trust root/);
    assert.match(c.fix ?? "", /trusted-users = nobody root/);
    assert.match(c.symptom ?? "", /not privileged to build input-addressed derivations/);
    const rt = check(report, "untrusted", "round-trip");
    assert.equal(rt.status, "fail");
    assert.match(rt.symptom ?? "", /you are not privileged to build input-addressed derivations/);
    assert.equal(check(report, "untrusted", "store-mode").message.startsWith("Multi-user"), true);
    // ssh:// (nix-store --serve) goes through the same daemon and is refused the same way.
    assert.equal(check(report, "untrusted-ssh", "trust").status, "fail");
    assert.match(
      check(report, "untrusted-ssh", "round-trip").symptom ?? "",
      /not privileged to build input-addressed/,
    );
  });

  test("a login user outside the builder's allowed-users: the daemon hangs up", () => {
    for (const name of ["not-allowed", "not-allowed-ssh"]) {
      const c = check(report, name, "trust");
      assert.equal(c.status, "fail", name);
      assert.match(c.message, /refuses root: it is neither in allowed-users \(nobody\) nor in trusted-users/);
      assert.match(c.fix ?? "", /^On the builder, add to \/etc\/nix\/nix\.conf: trusted-users = nobody root/);
      const rt = check(report, name, "round-trip");
      assert.equal(rt.status, "fail", name);
      // On failure, show what Nix printed (the symptom), so an unknown wording can be added.
      assert.match(rt.message, /hangs up on the login user/, `${name}: ${JSON.stringify(rt)}`);
    }
    assert.match(
      check(report, "not-allowed-ssh", "round-trip").symptom ?? "",
      /remote store 'daemon': error: (?:reading from file: Connection reset by peer|unexpected end-of-file|writing to file: Broken pipe)/,
    );
    assert.match(
      check(report, "not-allowed", "trust").symptom ?? "",
      /^error: splicing data from daemon socket to stdout: Connection reset by peer\ncannot build on 'ssh-ng:\/\/nixpool-not-allowed'/,
    );
  });

  test("single-user remote store: the per-user permission error, log in as the owner", () => {
    const c = check(report, "single-user", "store-mode");
    assert.equal(c.status, "fail");
    assert.match(c.message, /single-user/);
    assert.match(c.fix ?? "", /user = "root"/);
    assert.match(c.fix ?? "", /start nix-daemon there/);
    const ping = check(report, "single-user", "store-ping");
    assert.equal(ping.status, "fail");
    assert.match(ping.symptom ?? "", /could not set permissions on '\/nix\/var\/nix\/profiles\/per-user'/);
  });

  test("missing nix-daemon: fails for ssh-ng with the fix, passes for ssh", () => {
    const c = check(report, "no-nix-daemon", "remote-nix");
    assert.equal(c.status, "fail");
    assert.match(c.message, /nix-daemon is not on the PATH/);
    assert.match(c.fix ?? "", /ln -s \S+nix-daemon \/usr\/local\/bin\/nix-daemon/);
    assert.match(c.fix ?? "", /protocol = "ssh"/);
    assert.match(check(report, "no-nix-daemon", "store-ping").symptom ?? "", /nix-daemon: command not found/);
    assert.equal(check(report, "nodaemon-ssh", "remote-nix").status, "pass");
    assert.equal(check(report, "nodaemon-ssh", "round-trip").status, "pass");
  });

  test("missing nix-store over ssh:// (nix-store --serve): the ln -s to run", () => {
    const c = check(report, "no-nix-store", "remote-nix");
    assert.equal(c.status, "fail");
    assert.match(c.message, /nix-store is not on the PATH .*"nix-store --serve --write"/);
    assert.match(
      c.fix ?? "",
      /^On the builder, put nix-store on the system PATH: ln -s \S+\/nix-store \/usr\/local\/bin\/nix-store\.$/,
    );
    assert.match(check(report, "no-nix-store", "round-trip").symptom ?? "", /nix-store: command not found/);
  });

  test("unreachable builder: TCP fails, the rest is skipped", () => {
    const c = check(report, "unreachable", "tcp");
    assert.equal(c.status, "fail");
    assert.match(c.message, /did not answer|unreachable|sent no SSH banner/);
    assert.match(c.fix ?? "", /remove it from the pool while it is down/);
    assert.match(c.symptom ?? "", /Connection timed out|No route to host/);
    assert.equal(check(report, "unreachable", "round-trip").status, "skip");
  });

  test("tiny store: free space named, with garbage collection as the fix", () => {
    const c = check(report, "tiny-store", "store-space");
    assert.equal(c.status, "fail");
    assert.match(c.message, /Only \d+(\.\d+)? MiB free/);
    assert.match(c.fix ?? "", /nix-collect-garbage -d/);
    assert.equal(c.symptom, "error: writing to file: No space left on device");
  });

  test("a builder whose sessions hang fails within its time budget", async () => {
    const r = await runCli(join(tmp.dir, "state"), [
      "--inventory",
      invPath,
      "doctor",
      "hang",
      "--no-local",
      "--json",
      "--timeout",
      "4",
    ]);
    assert.equal(r.exitCode, 3, r.stderr);
    const hang = JSON.parse(r.stdout) as DoctorReport;
    const auth = check(hang, "hang", "auth");
    assert.equal(auth.status, "fail");
    assert.match(auth.message, /did not finish within the time budget \(4 s\)/);
    assert.equal(check(hang, "hang", "round-trip").status, "skip");
  });

  test("a declared feature the builder lacks, more jobs than cores", () => {
    const f = check(report, "missing-feature", "features");
    assert.equal(f.status, "fail");
    assert.match(f.message, /supports cuda/);
    assert.match(f.fix ?? "", /system-features = .*cuda/);
    const j = check(report, "too-many-jobs", "max-jobs");
    assert.equal(j.status, "warn");
    assert.match(j.fix ?? "", /maxJobs = \d+ under \[builders\.too-many-jobs\]/);
  });

  test("no pinned key: the key line to pin, never a connection that accepts it", () => {
    const c = check(report, "not-pinned", "host-key");
    assert.equal(c.status, "fail");
    const healthy = hosts.find((x) => x.name === "healthy");
    assert.ok(c.fix?.includes(`hostKey = "${healthy?.hostKeyPub ?? "?"}"`), c.fix);
    assert.equal(check(report, "not-pinned", "round-trip").status, "skip");
  });

  test("a name that does not resolve, a port nothing listens on", () => {
    const dns = check(report, "no-such-host", "dns");
    assert.equal(dns.status, "fail");
    assert.match(dns.message, /no-such-builder\.invalid does not resolve/);
    assert.match(dns.fix ?? "", /set host = "ADDRESS" under \[builders\.no-such-host\]/);
    assert.equal(check(report, "no-such-host", "tcp").status, "skip");
    const tcp = check(report, "wrong-port", "tcp");
    assert.equal(tcp.status, "fail");
    assert.match(tcp.message, /connection refused/);
    assert.match(
      tcp.fix ?? "",
      /^Start sshd on the builder .*set port = PORT under \[builders\.wrong-port\]/,
    );
    assert.match(tcp.symptom ?? "", /port 2222: Connection refused$/);
  });

  test("a passphrase-protected key cannot be used in batch mode", () => {
    const c = check(report, "passphrase", "identity");
    assert.equal(c.status, "fail");
    assert.match(c.message, /passphrase/);
    assert.match(c.fix ?? "", /ssh-keygen -t ed25519 -N "" .*identityFile = /);
  });

  test("a builder clock two hours ahead", () => {
    const c = check(report, "skewed", "clock");
    assert.equal(c.status, "warn");
    assert.match(c.message, /\d+ s ahead/);
    assert.ok(((c.data?.["skewSeconds"] as number | undefined) ?? 0) > 7000);
    assert.match(c.fix ?? "", /Synchronise the builder's clock/);
  });

  test("wrong system in the inventory: the systems line to write", () => {
    const c = check(report, "wrong-system", "systems");
    assert.equal(c.status, "fail");
    assert.match(
      c.message,
      /builds aarch64-linux, but the builder is x86_64-linux|builds aarch64-linux, but the builder is aarch64/,
    );
    assert.ok(c.fix?.includes(`systems = ["${SYSTEM}"]`), c.fix);
    const rt = check(report, "wrong-system", "round-trip");
    assert.equal(rt.status, "fail");
    assert.match(rt.message, /: the builder cannot build this system or these features/);
    assert.match(rt.fix ?? "", /See the systems check above/);
  });
});

describe("nixpool doctor on a healthy local pool", { timeout: 300_000 }, () => {
  let pool: TestPool;
  before(async () => {
    pool = await startTestPool(2, 1);
  });
  after(async () => {
    await pool?.cleanup();
  });

  test("every builder check passes and the exit code is 0; text output names each builder", async () => {
    const r = await pool.cli(["doctor", "--json"]);
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as DoctorReport;
    assert.deepEqual(
      report.builders.map((b) => b.name),
      ["local1", "local2"],
    );
    for (const b of report.builders) {
      assert.deepEqual(
        b.checks.filter((c) => c.status !== "pass").map((c) => c.id),
        [],
        b.name,
      );
    }
    const text = await pool.cli(["doctor", "local2", "--no-local"]);
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /^local2 {2}ssh-ng:\/\/nixpool-local2 .* PASS/m);
    assert.doesNotMatch(text.stdout, /^local1 /m);
  });

  test("a builder cut off from the network fails with exit code 3", async () => {
    const h = pool.pool.hosts[0];
    assert.ok(h);
    await setLinkUp(h, false);
    try {
      // A duration (5s) and a bare number (5, seconds as always) mean the same budget.
      const r = await pool.cli(["doctor", "--json", "--no-local", "--timeout", "5s"]);
      assert.equal(r.exitCode, 3, r.stderr);
      const report = JSON.parse(r.stdout) as DoctorReport;
      assert.equal(report.builders.find((b) => b.name === "local1")?.status, "fail");
      assert.equal(report.builders.find((b) => b.name === "local2")?.status, "pass");
      const text = await pool.cli(["doctor", "local1", "--no-local", "--timeout", "5"]);
      assert.equal(text.exitCode, 3, text.stderr);
      assert.match(text.stdout, /^local1 .* FAIL /m);
      assert.match(text.stdout, /^ {2}fail {2}tcp +\S+:22 (did not answer|accepted the connection)/m);
      assert.match(text.stdout, /^ +fix: .*remove it from the pool while it is down\.$/m);
      assert.match(text.stdout, /failing builders: local1$/m);
      assert.equal(text.stderr, "", "a bare number of seconds is the convention: no deprecation note");
      const bad = await pool.cli(["doctor", "--no-local", "--timeout", "2h"]);
      assert.equal(bad.exitCode, 2);
      assert.match(bad.stderr, /--timeout "2h" is longer than 1h/);
    } finally {
      await setLinkUp(h, true);
    }
  });
});

/**
 * Runs `doctor --json` with no builders (this machine's checks only) and the environment that
 * `env` builds in a temporary directory, removed after the test.
 */
async function doctorLocal(
  t: TestContext,
  env: (dir: string) => Record<string, string> | Promise<Record<string, string>>,
): Promise<{ exitCode: number; stderr: string; local: (id: string) => CheckResult }> {
  const tmp = await makeTempDir("nixpool-doctor-local-");
  t.after(() => tmp.cleanup());
  const inv = join(tmp.dir, "nixpool.toml");
  await writeFile(inv, "");
  const r = await runCli(join(tmp.dir, "state"), ["--inventory", inv, "doctor", "--json"], {
    env: await env(tmp.dir),
  });
  const report = JSON.parse(r.stdout) as DoctorReport;
  return {
    exitCode: r.exitCode,
    stderr: r.stderr,
    local: (id) => {
      const c = report.local.find((x) => x.id === id);
      assert.ok(c, `no local check ${id}`);
      return c;
    },
  };
}

describe("nixpool doctor: checks of this machine", () => {
  test("the local nix check fails with the install command, and the exit code is 1", async (t) => {
    const r = await doctorLocal(t, async (dir) => {
      // A PATH with node and nothing else: no nix, as on a machine without Nix.
      const bin = join(dir, "bin");
      await mkdir(bin);
      await symlink(process.execPath, join(bin, "node"));
      return { PATH: bin };
    });
    assert.equal(r.exitCode, 1, r.stderr);
    const nix = r.local("local.nix");
    assert.equal(nix.status, "fail");
    assert.match(nix.message, /^Nix is not installed or not on PATH/);
    assert.match(nix.fix ?? "", /apt-get install nix-bin/);
  });

  test("a missing machines file, an unreachable substituter, an untrusted user under a daemon", async (t) => {
    let missing = "";
    let closedPort = 0;
    const r = await doctorLocal(t, async (dir) => {
      missing = join(dir, "no-such-machines");
      // A port nothing listens on: bound, then released.
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      closedPort = (server.address() as AddressInfo).port;
      await new Promise((resolve) => server.close(resolve));
      // This machine's nix.conf, injected with NIX_CONF_DIR (Nix reads it instead of /etc/nix).
      const confDir = join(dir, "nix");
      await mkdir(confDir);
      await writeFile(
        join(confDir, "nix.conf"),
        [
          `builders = @${missing}`,
          `substituters = http://127.0.0.1:${closedPort}`,
          "store = daemon",
          "trusted-users = nobody",
          "builders-use-substitutes = true",
          "",
        ].join("\n"),
      );
      return { NIX_CONF_DIR: confDir };
    });
    assert.equal(r.exitCode, 0, r.stderr);
    const builders = r.local("local.builders");
    assert.equal(builders.status, "warn");
    assert.ok(builders.message.includes(`names ${missing}, which does not exist`), builders.message);
    assert.equal(builders.fix, "Write the machines file: nixpool config apply");
    const subst = r.local("local.substituters");
    assert.equal(subst.status, "warn");
    assert.match(
      subst.message,
      new RegExp(`^http://127\\.0\\.0\\.1:${closedPort} \\(ECONNREFUSED\\) unreachable`),
    );
    assert.match(subst.fix ?? "", /set "substituters =" in \/etc\/nix\/nix\.conf/);
    assert.match(subst.symptom ?? "", /Couldn't connect to server \(7\); retrying in … ms$/);
    const trusted = r.local("local.trusted-user");
    assert.equal(trusted.status, "warn");
    assert.match(
      trusted.message,
      /root is not in trusted-users \(nobody\): the daemon silently ignores --builders/,
    );
    assert.match(trusted.fix ?? "", /add "trusted-users = nobody root" to \/etc\/nix\/nix\.conf/);
    assert.match(r.local("local.nix-mode").message, /nix-daemon performs builds/);
    assert.match(r.local("local.builders-use-substitutes").message, /^true: builders fetch inputs/);
  });

  test("under a daemon, the hook's SSH setup is root's and NIX_SSHOPTS is reported as ignored", async (t) => {
    const r = await doctorLocal(t, (dir) => ({
      NIX_REMOTE: "daemon",
      NIX_SSHOPTS: `-F ${join(dir, "ssh_config")}`,
    }));
    assert.notEqual(r.exitCode, 1, r.stderr);
    assert.match(r.local("local.nix-mode").message, /nix-daemon performs builds/);
    const hook = r.local("local.hook-ssh");
    assert.equal(hook.status, "warn");
    assert.match(hook.message, /runs as root .*\/root\/\.ssh\/config.*does not reach it/);
    assert.match(hook.fix ?? "", /sudo nixpool config apply/);
  });
});
