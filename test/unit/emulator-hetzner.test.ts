import { test } from "node:test";
import assert from "node:assert/strict";
import { matchLabels, parseLabelSelector } from "../../src/emulator/hetzner/label-selector.js";
import { parseUserData } from "../../src/emulator/hetzner/user-data.js";
import { filterNixConf } from "../../src/emulator/hetzner/local-booter.js";

test("label selectors parse every operator, with commas inside in/notin", () => {
  assert.deepEqual(parseLabelSelector("nixpool=1,owner==me, env in (a, b),x notin (c),k,!gone,t!=v"), [
    { op: "eq", key: "nixpool", value: "1" },
    { op: "eq", key: "owner", value: "me" },
    { op: "in", key: "env", values: ["a", "b"] },
    { op: "notin", key: "x", values: ["c"] },
    { op: "exists", key: "k" },
    { op: "absent", key: "gone" },
    { op: "ne", key: "t", value: "v" },
  ]);
  assert.ok("error" in (parseLabelSelector("a in (b") as object));
  assert.ok("error" in (parseLabelSelector("a b") as object));
});

test("label selectors match labels", () => {
  const sel = (s: string) => {
    const r = parseLabelSelector(s);
    if ("error" in r) throw new Error(r.error);
    return r;
  };
  const labels = { nixpool: "1", owner: "alice", "nixpool.dev/lease": "abc" };
  assert.equal(matchLabels(labels, sel("nixpool=1,owner=alice")), true);
  assert.equal(matchLabels(labels, sel("nixpool=1,owner=bob")), false);
  assert.equal(matchLabels(labels, sel("nixpool.dev/lease")), true);
  assert.equal(matchLabels(labels, sel("!nixpool.dev/lease")), false);
  assert.equal(matchLabels(labels, sel("owner in (bob,alice)")), true);
  assert.equal(matchLabels(labels, sel("owner notin (bob,alice)")), false);
  assert.equal(matchLabels(labels, sel("missing!=x")), true);
  assert.equal(matchLabels(labels, sel("")), true);
});

test("user_data: host key, root's authorized keys and nix.conf are read; anything else is ignored", () => {
  const ud = [
    "#cloud-config",
    "ssh_keys:",
    "  ed25519_private: |",
    "    -----BEGIN OPENSSH PRIVATE KEY-----",
    "    abc",
    "    -----END OPENSSH PRIVATE KEY-----",
    "  ed25519_public: ssh-ed25519 AAAAhost host",
    "ssh_authorized_keys: [ssh-ed25519 AAAAtop top]",
    "users:",
    "  - name: root",
    "    ssh_authorized_keys: [ssh-ed25519 AAAAroot root]",
    "  - name: other",
    "    ssh_authorized_keys: [ssh-ed25519 AAAAother other]",
    "write_files:",
    "  - path: /etc/nix/nix.conf",
    "    content: |",
    "      max-jobs = 4",
    "",
  ].join("\n");
  const cfg = parseUserData(ud);
  assert.equal(
    cfg.hostKeyPrivate,
    "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
  );
  assert.equal(cfg.hostKeyPublic, "ssh-ed25519 AAAAhost host");
  assert.deepEqual(cfg.authorizedKeys, ["ssh-ed25519 AAAAtop top", "ssh-ed25519 AAAAroot root"]);
  assert.equal(cfg.nixConf, "max-jobs = 4\n");
  assert.deepEqual(parseUserData("#!/bin/sh\necho hi").authorizedKeys, []);
  assert.deepEqual(parseUserData("#cloud-config\n: : :\n  - [").authorizedKeys, []);
  assert.equal(parseUserData(undefined).hostKeyPrivate, undefined);
});

test("a server's nix.conf cannot override the settings a shared-kernel host depends on", () => {
  assert.equal(
    filterNixConf(
      "max-jobs = 4\nbuild-users-group = nixbld\nsubstituters = https://cache.nixos.org\ntrusted-users = root",
    ),
    "max-jobs = 4\ntrusted-users = root",
  );
  assert.equal(filterNixConf(undefined), "");
});
