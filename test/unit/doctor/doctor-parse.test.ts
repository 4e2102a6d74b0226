import { test } from "node:test";
import assert from "node:assert/strict";
import {
  compareVersions,
  configBool,
  configWords,
  matchNixUser,
  parseDfLine,
  parseKeyscan,
  parseNixConfig,
  parseNixVersion,
  parseRemoteFacts,
  parseSshResolved,
  parseSshVerbose,
  parseStorePing,
} from "../../../src/core/doctor/parse.js";
import { classifyFailure, symptomOf } from "../../../src/core/doctor/nix-errors.js";
import { fingerprintOf, keyTypeLabel, readKeyFields } from "../../../src/core/public-key.js";

test("Nix versions are parsed and compared numerically", () => {
  assert.equal(parseNixVersion("nix (Nix) 2.8.0\n"), "2.8.0");
  assert.equal(parseNixVersion("nix-store (Nix) 2.18.1"), "2.18.1");
  assert.equal(parseNixVersion("bash: nix: command not found"), undefined);
  assert.ok(compareVersions("2.8.0", "2.4") > 0);
  assert.ok(compareVersions("2.10", "2.9.9") > 0);
  assert.equal(compareVersions("2.4", "2.4.0"), 0);
  assert.ok(compareVersions("2.3.16", "2.4") < 0);
});

test("nix show-config: the JSON form and the plain form give the same settings", () => {
  const json = parseNixConfig(
    JSON.stringify({
      "trusted-users": { value: ["root", "@wheel"], defaultValue: ["root"] },
      builders: { value: "@/etc/nix/machines" },
      "builders-use-substitutes": { value: false },
      "max-jobs": { value: 4 },
    }),
  );
  assert.deepEqual(configWords(json, "trusted-users"), ["root", "@wheel"]);
  assert.deepEqual(configWords(json, "builders"), ["@/etc/nix/machines"]);
  assert.equal(configBool(json, "builders-use-substitutes"), false);
  assert.deepEqual(configWords(json, "max-jobs"), ["4"]);
  const text = parseNixConfig(
    "trusted-users = root @wheel\nbuilders = @/etc/nix/machines\nsubstituters = \nbuilders-use-substitutes = true\n",
  );
  assert.deepEqual(configWords(text, "trusted-users"), ["root", "@wheel"]);
  assert.deepEqual(configWords(text, "substituters"), []);
  assert.equal(configBool(text, "builders-use-substitutes"), true);
});

test("nix store ping: Nix 2.8 prints URL and version; newer Nix adds Trusted", () => {
  assert.deepEqual(parseStorePing("Store URL: ssh-ng://b1\nVersion: 2.8.0\n"), {
    url: "ssh-ng://b1",
    version: "2.8.0",
  });
  assert.deepEqual(parseStorePing("Store URL: ssh-ng://b1\nVersion: 2.24.9\nTrusted: 0\n"), {
    url: "ssh-ng://b1",
    version: "2.24.9",
    trusted: false,
  });
  assert.equal(parseStorePing("Store URL: daemon\nTrusted: 1").trusted, true);
});

// Real `ssh -v` output of OpenSSH 9.2 (Debian 12), abridged to the lines that matter.
const SSH_ACCEPTED = `OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026
debug1: Server host key: ssh-ed25519 SHA256:RRi8gZXEgBU++M67dOLuaYlpjGrR9XRn6brYVZaByfg
debug1: Authentications that can continue: publickey,password,keyboard-interactive
debug1: Offering public key: /k/ided ED25519 SHA256:nP0glXAH0l728XqWztkuAGqdALKCkfRJLJf8JiLg5TI explicit
debug1: Server accepts key: /k/ided ED25519 SHA256:nP0glXAH0l728XqWztkuAGqdALKCkfRJLJf8JiLg5TI explicit
Authenticated to 127.0.0.1 ([127.0.0.1]:2299) using "publickey".`;

const SSH_RSA_REFUSED = `debug1: Will attempt key: /k/idrsa RSA SHA256:11spH1g3ge1GC7clXbh24Rps8qHhtrHUj9HkIn06NNA explicit
debug1: Authentications that can continue: publickey,password,keyboard-interactive
debug1: Next authentication method: publickey
debug1: Offering public key: /k/idrsa RSA SHA256:11spH1g3ge1GC7clXbh24Rps8qHhtrHUj9HkIn06NNA explicit
debug1: Authentications that can continue: publickey,password,keyboard-interactive
debug1: No more authentication methods to try.
root@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).`;

const SSH_CHANGED = `debug1: Server host key: ssh-ed25519 SHA256:RRi8gZXEgBU++M67dOLuaYlpjGrR9XRn6brYVZaByfg
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
Host key for [127.0.0.1]:2299 has changed and you have requested strict checking.
Host key verification failed.`;

test("ssh -v: an accepted key, with its type and fingerprint", () => {
  const t = parseSshVerbose(SSH_ACCEPTED);
  assert.equal(t.authenticated, true);
  assert.deepEqual(t.accepted, {
    path: "/k/ided",
    type: "ED25519",
    fingerprint: "SHA256:nP0glXAH0l728XqWztkuAGqdALKCkfRJLJf8JiLg5TI",
  });
  assert.deepEqual(t.serverHostKey, {
    type: "ssh-ed25519",
    fingerprint: "SHA256:RRi8gZXEgBU++M67dOLuaYlpjGrR9XRn6brYVZaByfg",
  });
  assert.deepEqual(t.otherLines, []);
});

test("ssh -v: an RSA key offered and refused", () => {
  const t = parseSshVerbose(SSH_RSA_REFUSED);
  assert.equal(t.authenticated, false);
  assert.equal(t.permissionDenied, true);
  assert.deepEqual(
    t.offered.map((k) => k.type),
    ["RSA"],
  );
  assert.deepEqual(t.methodsCanContinue, ["publickey", "password", "keyboard-interactive"]);
  assert.equal(t.accepted, undefined);
});

test("ssh -v: changed and unknown host keys, bad permissions, missing files, network errors", () => {
  assert.equal(parseSshVerbose(SSH_CHANGED).hostKeyChanged, true);
  assert.equal(
    parseSshVerbose(
      "No ED25519 host key is known for nixpool-b1 and you have requested strict checking.\nHost key verification failed.",
    ).hostKeyUnknown,
    true,
  );
  const perm = parseSshVerbose(
    `Permissions 0644 for '/k/id' are too open.\nLoad key "/k/id": bad permissions\nroot@h: Permission denied (publickey).`,
  );
  assert.deepEqual(perm.badPermissions, ["/k/id"]);
  const missing = parseSshVerbose(
    "Warning: Identity file /k/nope not accessible: No such file or directory.",
  );
  assert.deepEqual(missing.notAccessible, [{ path: "/k/nope", reason: "No such file or directory" }]);
  assert.equal(
    parseSshVerbose("ssh: connect to host 10.0.0.2 port 22: Connection refused").connectError,
    "Connection refused",
  );
  assert.equal(
    parseSshVerbose("ssh: Could not resolve hostname nosuch.invalid: Name or service not known").resolveError,
    "Name or service not known",
  );
  assert.equal(
    parseSshVerbose("debug1: send_pubkey_test: no mutual signature algorithm").noMutualSignature,
    true,
  );
});

test("ssh-keyscan output and fingerprints match OpenSSH's", () => {
  const keys = parseKeyscan(
    "# 127.0.0.1:2299 SSH-2.0-OpenSSH_9.2p1\n[127.0.0.1]:2299 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4ICnaFD9NFgSVA/bKHPAq2/ARDwFab1o/vsrihPjRO\n",
  );
  assert.equal(keys.length, 1);
  const k = keys[0];
  assert.ok(k);
  assert.equal(k.type, "ssh-ed25519");
  // ssh-keygen -lf of this key printed exactly this fingerprint.
  assert.equal(fingerprintOf(k), "SHA256:nP0glXAH0l728XqWztkuAGqdALKCkfRJLJf8JiLg5TI");
  assert.deepEqual(readKeyFields("ssh-rsa AAAAB3 comment here"), {
    type: "ssh-rsa",
    blob: "AAAAB3",
    comment: "comment here",
  });
  assert.equal(keyTypeLabel("ssh-ed25519"), "ED25519");
  assert.equal(keyTypeLabel("ssh-rsa"), "RSA");
  assert.equal(keyTypeLabel("ecdsa-sha2-nistp256"), "ECDSA");
});

test("remote facts: every field of the script's output", () => {
  const f = parseRemoteFacts(
    [
      "@@user nixtest",
      "@@uid 4242",
      "@@groups nixtest wheel",
      "@@nproc 8",
      "@@date 1700000000",
      "@@nix-remote ",
      "@@path /usr/bin:/bin",
      "@@which nix-store /usr/bin/nix-store",
      "@@which nix-daemon ",
      "@@which nix /usr/bin/nix",
      "@@nix-version nix-store (Nix) 2.8.0",
      "@@daemon-socket yes",
      "@@store-owner root",
      "@@df /dev/vda 263174212 23000000 83000000 22% /",
      "@@config-begin",
      JSON.stringify({ system: { value: "x86_64-linux" }, "trusted-users": { value: ["root"] } }),
      "",
      "@@config-end",
    ].join("\n"),
  );
  assert.equal(f.user, "nixtest");
  assert.equal(f.uid, 4242);
  assert.deepEqual(f.groups, ["nixtest", "wheel"]);
  assert.equal(f.nproc, 8);
  assert.equal(f.epochSeconds, 1700000000);
  assert.deepEqual(f.which, { "nix-store": "/usr/bin/nix-store", nix: "/usr/bin/nix" });
  assert.equal(f.nixVersion, "2.8.0");
  assert.equal(f.daemonSocket, true);
  assert.equal(f.stateWritable, false);
  assert.equal(f.storeFreeBytes, 83000000 * 1024);
  assert.deepEqual(configWords(f.config ?? {}, "trusted-users"), ["root"]);
});

test("df and user lists", () => {
  assert.deepEqual(parseDfLine("tmpfs 8192 100 8092 2% /nix"), {
    sizeBytes: 8192 * 1024,
    availableBytes: 8092 * 1024,
  });
  assert.equal(parseDfLine("garbage"), undefined);
  assert.equal(matchNixUser("alice", ["users"], ["root", "@users"]), true);
  assert.equal(matchNixUser("alice", ["users"], ["root"]), false);
  assert.equal(matchNixUser("alice", [], ["*"]), true);
});

test("Nix failures are recognised from their text, and the symptom drops progress noise", () => {
  assert.equal(
    classifyFailure("error: you are not privileged to build input-addressed derivations")?.check,
    "trust",
  );
  assert.equal(
    classifyFailure(
      "error: could not set permissions on '/nix/var/nix/profiles/per-user' to 755: Operation not permitted",
    )?.check,
    "store-mode",
  );
  assert.equal(classifyFailure("bash: nix-daemon: command not found")?.check, "remote-nix");
  assert.equal(classifyFailure("Host key verification failed.")?.check, "host-key");
  assert.equal(classifyFailure("root@h: Permission denied (publickey).")?.check, "auth");
  assert.equal(classifyFailure("error: something new"), undefined);
  assert.equal(
    symptomOf(
      "these 1 derivations will be built:\n  /nix/store/x.drv\nbuilding '/nix/store/x.drv' on 'ssh-ng://b1'...\ncopying 0 paths...\nerror: you are not privileged to build input-addressed derivations\nerror: builder for '/nix/store/x.drv' failed with exit code 1\n",
    ),
    "error: you are not privileged to build input-addressed derivations",
  );
});

test("the build hook's buried cause is the symptom, not its closing complaint (Nix 2.8 output)", () => {
  const stderr = [
    "this derivation will be built:",
    "  /nix/store/hq57-p.drv",
    "bash: line 1: nix-daemon: command not found",
    "cannot build on 'ssh-ng://b1': error: cannot open connection to remote store 'ssh-ng://b1': error: unexpected end-of-file",
    "Failed to find a machine for remote build!",
    "derivation: hq57-p.drv",
    "required (system, features): (x86_64-linux, )",
    "1 available machines:",
    "(systems, maxjobs, supportedFeatures, mandatoryFeatures)",
    "(x86_64-linux, 1, , )",
    "error: unable to start any build; remote machines may not have all required system features.",
    "       https://nixos.org/manual/nix/stable/advanced-topics/distributed-builds.html",
  ].join("\n");
  assert.equal(classifyFailure(stderr)?.check, "remote-nix");
  assert.equal(
    symptomOf(stderr),
    "bash: line 1: nix-daemon: command not found\nerror: unable to start any build; remote machines may not have all required system features.",
  );
});

test("ssh -G: the known_hosts name and files the hook's ssh uses", () => {
  const g = (extra: string) =>
    `host nixpool-b1\nhostname 10.0.0.2\nport 2222\n${extra}userknownhostsfile ~/.ssh/known_hosts ~/.ssh/known_hosts2\nglobalknownhostsfile /etc/ssh/ssh_known_hosts /dev/null\n`;
  assert.deepEqual(parseSshResolved(g("")), {
    hostname: "10.0.0.2",
    port: 2222,
    knownHostsName: "[10.0.0.2]:2222",
    knownHostsFiles: ["~/.ssh/known_hosts", "~/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts"],
  });
  assert.equal(parseSshResolved(g("hostkeyalias nixpool-b1\n")).knownHostsName, "nixpool-b1");
  assert.deepEqual(
    parseKeyscan("# Host nixpool-b1 found: line 3\nnixpool-b1 ssh-ed25519 AAAA\n@revoked * ssh-rsa BBBB\n"),
    [{ type: "ssh-ed25519", blob: "AAAA", comment: "" }],
  );
});

test("a builder's daemon hanging up on the login user is recognised however Nix 2.8 reads the close", () => {
  for (const tail of [
    "reading from file: Connection reset by peer",
    "unexpected end-of-file",
    "writing to file: Broken pipe",
  ]) {
    const stderr = `error: cannot open connection to remote store 'daemon': error: ${tail}`;
    const f = classifyFailure(stderr);
    assert.equal(f?.check, "trust", tail);
    assert.match(f?.cause ?? "", /hangs up on the login user/, tail);
  }
});
