import { test } from "node:test";
import assert from "node:assert/strict";
import type { Builder } from "../../../src/core/builder.js";
import { sampleBuilder } from "../../helpers/builders.js";
import { memoryReader } from "../../helpers/machines-files.js";
import { judgeBuilder, type BuilderProbe } from "../../../src/core/doctor/builder-verdicts.js";
import { remoteStoreKind } from "../../../src/core/doctor/remote-verdicts.js";
import {
  judgeLocal,
  localStoreKind,
  roundTripObstacle,
  type LocalFacts,
} from "../../../src/core/doctor/local-verdicts.js";
import { assembleBuilderReport, assembleReport, computeExitCode } from "../../../src/core/doctor/model.js";
import { parseRemoteFacts, parseSshVerbose, type RemoteFacts } from "../../../src/core/doctor/parse.js";
import { renderDoctorReport, toDoctorJson } from "../../../src/core/doctor/render.js";
import {
  parseMachineEntry,
  parseMachinesFile,
  type ParsedMachine,
} from "../../../src/core/machines-parse.js";

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4ICnaFD9NFgSVA/bKHPAq2/ARDwFab1o/vsrihPjRO";
const OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFf6eCF/IOLqfn77M1YNRCnKsTTM0gMgHciZUBq1NWu9";

function builder(over: Partial<Builder> = {}): Builder {
  return sampleBuilder({
    host: "10.0.0.2",
    user: "root",
    maxJobs: 2,
    hostKey: HOST_KEY,
    identityFile: "/k/id_ed25519",
    ...over,
  });
}

function facts(over: Partial<RemoteFacts> = {}): RemoteFacts {
  return {
    ...parseRemoteFacts(""),
    user: "root",
    uid: 0,
    groups: ["root"],
    nproc: 2,
    epochSeconds: 1000,
    path: "/usr/bin:/bin",
    which: { "nix-store": "/usr/bin/nix-store", "nix-daemon": "/usr/bin/nix-daemon", nix: "/usr/bin/nix" },
    nixVersion: "2.8.0",
    stateWritable: true,
    storeOwner: "root",
    storeFreeBytes: 50 * 1024 ** 3,
    config: {
      system: "x86_64-linux",
      "extra-platforms": ["i686-linux"],
      "system-features": ["benchmark", "big-parallel"],
      "trusted-users": ["root"],
      "allowed-users": ["*"],
      store: "auto",
    },
    ...over,
  };
}

const ACCEPTED = parseSshVerbose(
  'debug1: Server accepts key: /k/id_ed25519 ED25519 SHA256:abc explicit\nAuthenticated to 10.0.0.2 ([10.0.0.2]:22) using "publickey".',
);

function healthy(over: Partial<BuilderProbe> = {}, f: Partial<RemoteFacts> = {}): BuilderProbe {
  return {
    builder: builder(),
    inventoryPath: "/etc/nixpool.toml",
    sshConfigPath: "/tmp/ssh_config",
    resolve: { ok: true, addresses: ["10.0.0.2"], ms: 0 },
    tcp: { ok: true, address: "10.0.0.2", ms: 3, banner: "SSH-2.0-OpenSSH_9.2p1" },
    keyscan: { keys: [{ type: "ssh-ed25519", blob: HOST_KEY.split(" ")[1] ?? "", comment: "" }] },
    identity: {
      path: "/k/id_ed25519",
      runner: "root",
      exists: true,
      readable: true,
      mode: 0o600,
      publicKey: HOST_KEY,
    },
    session: { exitCode: 0, trace: ACCEPTED, facts: facts(f), skewSeconds: 0, ms: 300 },
    ping: { exitCode: 0, stdout: "Store URL: ssh-ng://nixpool-b1\nVersion: 2.8.0\n", stderr: "", ms: 300 },
    roundTrip: { ok: true, stderr: "", outPath: "/nix/store/x-nixpool-doctor-probe", ms: 500 },
    ...over,
  };
}

const byId = (checks: ReturnType<typeof judgeBuilder>, id: string) => {
  const c = checks.find((x) => x.id === id);
  assert.ok(c, id);
  return c;
};

test("a healthy builder passes every check, in a fixed order", () => {
  const checks = judgeBuilder(healthy());
  assert.deepEqual(
    checks.map((c) => [c.id, c.status]),
    [
      ["dns", "pass"],
      ["tcp", "pass"],
      ["host-key", "pass"],
      ["identity", "pass"],
      ["auth", "pass"],
      ["remote-nix", "pass"],
      ["store-ping", "pass"],
      ["store-mode", "pass"],
      ["trust", "pass"],
      ["systems", "pass"],
      ["features", "pass"],
      ["max-jobs", "pass"],
      ["store-space", "pass"],
      ["clock", "pass"],
      ["round-trip", "pass"],
    ],
  );
});

test("an unreachable builder fails tcp and skips everything that needs SSH", () => {
  const unreachable = healthy({ tcp: { ok: false, error: "ETIMEDOUT", ms: 5000, timedOut: true } });
  delete unreachable.keyscan;
  delete unreachable.session;
  delete unreachable.ping;
  delete unreachable.roundTrip;
  const checks = judgeBuilder(unreachable);
  assert.equal(byId(checks, "tcp").status, "fail");
  assert.match(byId(checks, "tcp").message, /did not answer within 5\.0 s/);
  for (const id of ["host-key", "auth", "store-ping", "trust", "round-trip"])
    assert.equal(byId(checks, id).status, "skip", id);
  const refused = judgeBuilder(
    healthy({ tcp: { ok: false, error: "ECONNREFUSED", ms: 1, timedOut: false } }),
  );
  assert.match(byId(refused, "tcp").message, /connection refused/);
  assert.match(byId(refused, "tcp").fix ?? "", /Start sshd/);
});

test("host key: unpinned, mismatched (both fingerprints) and of a type the builder lacks", () => {
  const unpinned = byId(judgeBuilder(healthy({ builder: builder({ hostKey: undefined }) })), "host-key");
  assert.equal(unpinned.status, "fail");
  assert.match(unpinned.fix ?? "", /hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4I/);
  const mismatch = byId(judgeBuilder(healthy({ builder: builder({ hostKey: OTHER_KEY }) })), "host-key");
  assert.equal(mismatch.status, "fail");
  assert.match(
    mismatch.message,
    /presents ED25519 key SHA256:nP0glXAH0l728XqWztkuAGqdALKCkfRJLJf8JiLg5TI, but the inventory pins SHA256:/,
  );
  assert.match(mismatch.fix ?? "", /under \[builders\.b1\] in \/etc\/nixpool\.toml/);
  const wrongType = byId(
    judgeBuilder(healthy({ builder: builder({ hostKey: "ssh-rsa AAAAB3NzaC1yc2E" }) })),
    "host-key",
  );
  assert.match(
    wrongType.message,
    /pins a RSA key, but the builder offers only ED25519 .*inventory side is wrong/,
  );
  const pool = byId(
    judgeBuilder(healthy({ builder: builder({ hostKey: OTHER_KEY, source: "local" }) })),
    "host-key",
  );
  assert.match(pool.fix ?? "", /nixpool local down; nixpool local up/);
});

test("host key: the build hook's known_hosts tells which side is wrong", () => {
  const blob = (k: string) => k.split(" ")[1] ?? "";
  const hook = (key: string) => ({
    name: "nixpool-b1",
    entries: [{ file: "/root/.ssh/known_hosts", key: { type: "ssh-ed25519", blob: blob(key), comment: "" } }],
  });
  // Builder and pin agree; the hook's file is stale: the fix removes and rewrites its line.
  const noScan = healthy({ hookKnownHosts: hook(OTHER_KEY) });
  delete noScan.keyscan; // the session's ssh accepted the pinned key, so no ssh-keyscan ran
  const local = byId(judgeBuilder(noScan), "host-key");
  assert.equal(local.status, "fail");
  assert.equal(local.data?.["wrongSide"], "known_hosts");
  assert.equal(
    local.fix,
    `ssh-keygen -R nixpool-b1 -f /root/.ssh/known_hosts && echo 'nixpool-b1 ${HOST_KEY}' >> /root/.ssh/known_hosts`,
  );
  // The hook's file also lists the pinned key: ssh accepts it, so nothing is wrong.
  const both = healthy({ hookKnownHosts: hook(HOST_KEY) });
  both.hookKnownHosts?.entries.push({
    file: "/x",
    key: { type: "ssh-ed25519", blob: blob(OTHER_KEY), comment: "" },
  });
  const agrees = byId(judgeBuilder(both), "host-key");
  assert.equal(agrees.status, "pass");
  assert.match(agrees.message, /as \/root\/\.ssh\/known_hosts records/);
  // Pin stale, the hook's file agrees with the builder: the inventory side.
  const stalePin = builder({ hostKey: OTHER_KEY });
  const inv = byId(judgeBuilder(healthy({ builder: stalePin, hookKnownHosts: hook(HOST_KEY) })), "host-key");
  assert.equal(inv.data?.["wrongSide"], "inventory");
  assert.equal(inv.fix, `Set hostKey = "${HOST_KEY}" under [builders.b1] in /etc/nixpool.toml.`);
  // Pin and the hook's file agree, the builder differs: the builder side.
  const changed = byId(
    judgeBuilder(healthy({ builder: stalePin, hookKnownHosts: hook(OTHER_KEY) })),
    "host-key",
  );
  assert.equal(changed.data?.["wrongSide"], "builder");
  assert.match(changed.message, /the builder side changed/);
  // No record on this machine: both possibilities, with both fingerprints.
  const unknown = byId(judgeBuilder(healthy({ builder: stalePin })), "host-key");
  assert.equal(unknown.data?.["wrongSide"], "unknown: inventory or builder");
});

test("host key: a session and key scan cut short by the budget skip the host key check, not warn", () => {
  const p = healthy({
    unfinished: { "ssh session": "timed out", "ssh-keyscan": "the time budget ran out before it started" },
  });
  delete p.session;
  delete p.keyscan;
  const checks = judgeBuilder(p);
  assert.equal(byId(checks, "host-key").status, "skip");
  assert.match(byId(checks, "auth").message, /did not finish within the time budget/);
});

test("identity: missing, 0644, passphrase", () => {
  const missing = byId(
    judgeBuilder(healthy({ identity: { path: "/k/x", runner: "root", exists: false, readable: false } })),
    "identity",
  );
  assert.match(missing.message, /does not exist/);
  const open = byId(
    judgeBuilder(
      healthy({ identity: { path: "/k/x", runner: "root", exists: true, readable: true, mode: 0o644 } }),
    ),
    "identity",
  );
  assert.equal(open.fix, "chmod 600 /k/x");
  const enc = byId(
    judgeBuilder(
      healthy({
        identity: {
          path: "/k/x",
          runner: "root",
          exists: true,
          readable: true,
          mode: 0o600,
          encrypted: true,
        },
      }),
    ),
    "identity",
  );
  assert.match(enc.message, /passphrase/);
});

test("auth: a refused RSA key with an accepted ED25519 alternative names both and the identityFile to set", () => {
  const refused = parseSshVerbose(
    "debug1: Offering public key: /k/id_rsa RSA SHA256:r explicit\ndebug1: Authentications that can continue: publickey\nroot@h: Permission denied (publickey).",
  );
  const p = healthy({
    builder: builder({ identityFile: "/k/id_rsa" }),
    identity: {
      path: "/k/id_rsa",
      runner: "root",
      exists: true,
      readable: true,
      mode: 0o600,
      publicKey: "ssh-rsa AAAAB3 me",
    },
    session: { exitCode: 255, trace: refused, ms: 100 },
    alternatives: {
      tried: ["/k/id_ed25519"],
      accepted: { path: "/k/id_ed25519", type: "ED25519", fingerprint: "SHA256:e" },
    },
  });
  const checks = judgeBuilder(p);
  const auth = byId(checks, "auth");
  assert.equal(auth.status, "fail");
  assert.match(auth.message, /an RSA key is offered where only an ED25519 key is authorised/);
  assert.match(auth.fix ?? "", /identityFile = "\/k\/id_ed25519"/);
  assert.match(auth.fix ?? "", /echo 'ssh-rsa AAAAB3 me' >> ~root\/\.ssh\/authorized_keys/);
  assert.equal(byId(checks, "trust").status, "skip");
  const none = byId(judgeBuilder({ ...p, alternatives: { tried: [] } }), "auth");
  assert.match(none.message, /refused RSA key SHA256:r/);
  assert.match(none.fix ?? "", /Authorise the key on the builder/);
});

test("remote store kind follows Nix 2.8's auto rules", () => {
  assert.equal(remoteStoreKind(facts()), "local");
  assert.equal(remoteStoreKind(facts({ stateWritable: false, daemonSocket: true })), "daemon");
  assert.equal(remoteStoreKind(facts({ stateWritable: false, daemonSocket: false })), "local");
  assert.equal(remoteStoreKind(facts({ config: { store: "daemon" } })), "daemon");
});

test("trust, single-user, remote nix, systems, features, jobs, space, clock", () => {
  const untrusted = judgeBuilder(
    healthy({}, { config: { ...facts().config, store: "daemon", "trusted-users": ["nobody"] } }),
  );
  assert.equal(byId(untrusted, "trust").status, "fail");
  assert.match(byId(untrusted, "trust").fix ?? "", /trusted-users = nobody root/);
  const group = judgeBuilder(
    healthy(
      {},
      {
        user: "alice",
        groups: ["alice", "wheel"],
        daemonSocket: true,
        stateWritable: false,
        config: { ...facts().config, "trusted-users": ["root", "@wheel"] },
      },
    ),
  );
  assert.equal(byId(group, "trust").status, "pass");
  const single = judgeBuilder(healthy({}, { user: "alice", stateWritable: false, daemonSocket: false }));
  assert.equal(byId(single, "store-mode").status, "fail");
  assert.match(byId(single, "store-mode").symptom ?? "", /per-user/);
  assert.match(byId(single, "store-mode").fix ?? "", /user = "root"/);
  const noDaemon = judgeBuilder(healthy({}, { which: { "nix-store": "/usr/bin/nix-store" } }));
  assert.equal(byId(noDaemon, "remote-nix").status, "fail");
  assert.match(byId(noDaemon, "remote-nix").fix ?? "", /protocol = "ssh"/);
  const sshProto = judgeBuilder(
    healthy({ builder: builder({ protocol: "ssh" }) }, { which: { "nix-store": "/usr/bin/nix-store" } }),
  );
  assert.equal(byId(sshProto, "remote-nix").status, "pass");
  const arm = judgeBuilder(healthy({ builder: builder({ systems: ["aarch64-linux"] }) }));
  assert.match(byId(arm, "systems").fix ?? "", /systems = \["x86_64-linux"\]/);
  assert.equal(
    byId(judgeBuilder(healthy({ builder: builder({ systems: ["i686-linux"] }) })), "systems").status,
    "pass",
  );
  const kvm = judgeBuilder(healthy({ builder: builder({ supportedFeatures: ["kvm"] }) }));
  assert.equal(byId(kvm, "features").status, "fail");
  assert.match(byId(kvm, "features").fix ?? "", /system-features = benchmark big-parallel kvm/);
  assert.equal(byId(judgeBuilder(healthy({ builder: builder({ maxJobs: 8 }) })), "max-jobs").status, "warn");
  assert.equal(
    byId(judgeBuilder(healthy({}, { storeFreeBytes: 8 * 1024 ** 2 })), "store-space").status,
    "fail",
  );
  assert.equal(byId(judgeBuilder(healthy({}, { storeFreeBytes: 1024 ** 3 })), "store-space").status, "warn");
  const skewed = healthy();
  if (skewed.session) skewed.session.skewSeconds = -120;
  assert.match(byId(judgeBuilder(skewed), "clock").message, /120 s behind/);
  // 8 s off, measured over a 12 s session (a loaded machine): within the measurement's slack.
  if (skewed.session) Object.assign(skewed.session, { skewSeconds: -8, ms: 12_000 });
  assert.equal(byId(judgeBuilder(skewed), "clock").status, "pass");
  if (skewed.session) skewed.session.ms = 300;
  assert.equal(byId(judgeBuilder(skewed), "clock").status, "warn");
});

test("a failed round trip is attributed to the check that explains it", () => {
  const checks = judgeBuilder(
    healthy({
      roundTrip: {
        ok: false,
        stderr: "error: you are not privileged to build input-addressed derivations\n",
        ms: 400,
      },
    }),
  );
  const rt = byId(checks, "round-trip");
  assert.equal(rt.status, "fail");
  assert.match(rt.message, /does not trust the login user/);
  assert.match(rt.fix ?? "", /trust check/);
});

/** One machine entry, parsed by the one machines parser. */
function machine(line: string): ParsedMachine {
  const m = parseMachineEntry(line, { file: "/etc/nix/machines", line: 1 }).machine;
  assert.ok(m, line);
  return m;
}

function local(over: Partial<LocalFacts> = {}): LocalFacts {
  return {
    user: "alice",
    uid: 1000,
    groups: ["alice"],
    home: "/home/alice",
    nix: { version: "2.8.0" },
    config: {
      store: "auto",
      "trusted-users": ["root"],
      builders: "@/etc/nix/machines",
      "builders-use-substitutes": false,
    },
    daemonSocket: true,
    stateWritable: false,
    env: {},
    machines: {
      entries: [machine("ssh-ng://nixpool-b1")],
      files: [{ path: "/etc/nix/machines", exists: true }],
      problems: [],
    },
    substituters: [],
    poolUris: ["ssh-ng://nixpool-b1"],
    ...over,
  };
}

test("local checks: daemon mode, untrusted user, NIX_SSHOPTS that never reaches the hook, missing Nix", () => {
  assert.equal(localStoreKind(local()), "daemon");
  const checks = judgeLocal(local({ env: { NIX_SSHOPTS: "-F /home/alice/ssh_config" } }));
  const get = (id: string) => checks.find((c) => c.id === id);
  assert.match(get("local.nix-mode")?.message ?? "", /runs as root/);
  assert.equal(get("local.hook-ssh")?.status, "warn");
  assert.match(get("local.hook-ssh")?.message ?? "", /\/root\/\.ssh\/config/);
  assert.equal(get("local.trusted-user")?.status, "warn");
  assert.match(get("local.trusted-user")?.message ?? "", /ignores --builders/);
  assert.equal(get("local.builders")?.status, "pass");
  const noNix = judgeLocal(local({ nix: { error: "spawn nix ENOENT" } }));
  assert.deepEqual(
    noNix.map((c) => [c.id, c.status]),
    [["local.nix", "fail"]],
  );
  const missingFile = judgeLocal(
    local({ machines: { entries: [], files: [{ path: "/etc/nix/machines", exists: false }], problems: [] } }),
  );
  assert.equal(missingFile.find((c) => c.id === "local.builders")?.status, "warn");
  const offline = judgeLocal(
    local({ substituters: [{ url: "https://cache.nixos.org/", ok: false, error: "ENOTFOUND", ms: 3 }] }),
  );
  assert.equal(offline.find((c) => c.id === "local.substituters")?.status, "warn");
});

test("exit codes: 1 for a failing local check, 3 for a failing builder, 0 with warnings only", () => {
  const okLocal = judgeLocal(local());
  const badBuilder = assembleBuilderReport(
    { name: "b1", uri: "ssh-ng://nixpool-b1", address: "10.0.0.2:22" },
    judgeBuilder(healthy({ tcp: { ok: false, error: "ECONNREFUSED", ms: 1, timedOut: false } })),
    5,
  );
  const goodBuilder = assembleBuilderReport(
    { name: "b2", uri: "ssh-ng://nixpool-b2", address: "10.0.0.3:22" },
    judgeBuilder(healthy()),
    5,
  );
  assert.equal(computeExitCode(okLocal, [goodBuilder]), 0);
  assert.equal(computeExitCode(okLocal, [goodBuilder, badBuilder]), 3);
  assert.equal(computeExitCode(judgeLocal(local({ nix: {} })), [goodBuilder]), 1);
  const report = assembleReport(okLocal, [goodBuilder, badBuilder], 1234);
  assert.equal(report.exitCode, 3);
  assert.equal(report.summary.fail, 1);
  const text = renderDoctorReport(report);
  assert.match(text, /^b1 {2}ssh-ng:\/\/nixpool-b1 {2}10\.0\.0\.2:22 {2}FAIL/m);
  assert.match(text, /fix: Start sshd on the builder/);
  assert.match(text, /failing builders: b1$/);
  const json = toDoctorJson(report);
  assert.deepEqual(Object.keys(json), ["status", "exitCode", "durationMs", "summary", "local", "builders"]);
});

test("local hook-ssh: an alias of the machines file that the hook's ssh cannot resolve", () => {
  const single = local({ user: "root", uid: 0, stateWritable: true, daemonSocket: false });
  const ok = judgeLocal({ ...single, aliases: [{ alias: "nixpool-b1", hostname: "10.0.0.2" }] });
  assert.equal(ok.find((c) => c.id === "local.hook-ssh")?.status, "pass");
  const bad = judgeLocal({ ...single, aliases: [{ alias: "nixpool-b1", hostname: "nixpool-b1" }] });
  const c = bad.find((x) => x.id === "local.hook-ssh");
  assert.equal(c?.status, "warn");
  assert.match(c?.symptom ?? "", /Could not resolve hostname nixpool-b1/);
  assert.equal(c?.fix, "nixpool config apply");
});

test("a session that did not finish within the budget fails auth, not skips it", () => {
  const p = healthy({
    unfinished: {
      "ssh session": "ssh did not finish within 4000 ms.",
      "round trip": "nix-build did not finish within 4000 ms.",
    },
    budgetMs: 4000,
  });
  delete p.session;
  delete p.roundTrip;
  const checks = judgeBuilder(p);
  const auth = byId(checks, "auth");
  assert.equal(auth.status, "fail");
  assert.match(auth.message, /did not finish within the time budget \(4 s\)/);
  assert.equal(byId(checks, "round-trip").status, "skip");
  const notStarted = healthy({ unfinished: { "ssh session": "Could not start ssh: spawn ssh ENOENT." } });
  delete notStarted.session;
  assert.match(byId(judgeBuilder(notStarted), "auth").message, /could not run: Could not start ssh/);
});

test("the round trip is skipped, with the reason, when this machine's daemon would drop --builders", () => {
  assert.match(roundTripObstacle(local()) ?? "", /ignores --builders from alice .*sudo nixpool doctor/);
  assert.equal(
    roundTripObstacle(local({ config: { ...local().config, "trusted-users": ["root", "alice"] } })),
    undefined,
  );
  assert.equal(roundTripObstacle(local({ uid: 0, user: "root" })), undefined);
  assert.equal(roundTripObstacle(local({ stateWritable: true, daemonSocket: false })), undefined);
  const p = healthy({ roundTripSkipped: "this machine's nix-daemon ignores --builders from alice" });
  delete p.roundTrip;
  const rt = byId(judgeBuilder(p), "round-trip");
  assert.equal(rt.status, "skip");
  assert.match(rt.message, /ignores --builders from alice/);
});

test("a round trip whose hook cannot log in although nixpool's ssh can points at the hook's ssh setup", () => {
  const rt = byId(
    judgeBuilder(
      healthy({
        roundTrip: {
          ok: false,
          stderr:
            "ssh: Could not resolve hostname nixpool-b1: Name or service not known\nerror: cannot open connection to remote store 'ssh-ng://nixpool-b1': error: unexpected end-of-file\n",
          ms: 300,
        },
      }),
    ),
    "round-trip",
  );
  assert.equal(rt.status, "fail");
  assert.match(rt.message, /build hook could not log in/);
  assert.match(rt.fix ?? "", /sudo nixpool config apply/);
});

test("local nix older than 2.4 fails with the upgrade, and nothing else is judged", () => {
  const checks = judgeLocal(local({ nix: { version: "2.3.16" } }));
  assert.deepEqual(
    checks.map((c) => [c.id, c.status]),
    [["local.nix", "fail"]],
  );
  assert.match(checks[0]?.message ?? "", /Nix 2\.3\.16 is older than 2\.4/);
  assert.equal(checks[0]?.fix, "Upgrade Nix to 2.4 or later.");
});

test("auth: no mutual signature algorithm points at an ED25519 key", () => {
  const trace = parseSshVerbose(
    "debug1: Offering public key: /k/id_rsa RSA SHA256:r explicit\ndebug1: send_pubkey_test: no mutual signature algorithm\nroot@h: Permission denied (publickey).",
  );
  const auth = byId(judgeBuilder(healthy({ session: { exitCode: 255, trace, ms: 100 } })), "auth");
  assert.equal(auth.status, "fail");
  assert.match(auth.message, /SHA-1 signatures/);
  assert.match(
    auth.fix ?? "",
    /^Use an ED25519 key: ssh-keygen -t ed25519 .*identityFile = "\/root\/\.ssh\/nixpool_ed25519"/,
  );
});

test("local builders: the doctor reads machines with Nix 2.8's parser, and fails where Nix refuses them", async () => {
  // An indented comment is fatal to Nix 2.8; a scheme-less URI means ssh://, not the pool's ssh-ng://.
  const files: Record<string, string> = {
    "/etc/nix/machines": "nixpool-b1 x86_64-linux\n  # indented comment\n",
  };
  const parsed = await parseMachinesFile("builders setting", "@/etc/nix/machines", {
    read: memoryReader(files),
  });
  assert.deepEqual(
    parsed.machines.map((m) => m.storeUri),
    ["ssh://nixpool-b1"],
  );
  const facts = local({
    machines: {
      entries: parsed.machines,
      files: [{ path: "/etc/nix/machines", exists: true }],
      problems: parsed.diagnostics,
    },
  });
  const c = judgeLocal(facts).find((x) => x.id === "local.builders");
  assert.equal(c?.status, "fail");
  assert.match(c?.message ?? "", /\/etc\/nix\/machines:2: error: an entry holding only whitespace/);
  // Without the bad line the entry parses, but ssh:// is not the pool's ssh-ng:// builder.
  const ok = judgeLocal(
    local({
      machines: {
        entries: parsed.machines,
        files: [{ path: "/etc/nix/machines", exists: true }],
        problems: [],
      },
    }),
  ).find((x) => x.id === "local.builders");
  assert.equal(ok?.status, "warn");
  assert.match(ok?.message ?? "", /ssh:\/\/nixpool-b1\) include none of nixpool's builders/);
});
