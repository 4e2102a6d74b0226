import { test } from "node:test";
import assert from "node:assert/strict";
import { renderNixConfFragment, renderSshdFragment } from "../../../src/core/access/fragments.js";
import type { AccessUser } from "../../../src/core/access/users.js";

const base = {
  keysCommand: ["/usr/bin/node", "/opt/nixpool/keys-command.js", "--state-dir", "/var/lib/nixpool"],
  commandUser: "nobody",
  maxStartups: "10:30:100",
  loginGraceTime: 30,
};

test("the sshd fragment names the keys command, its user and bounds", () => {
  const text = renderSshdFragment(base);
  assert.match(
    text,
    /^AuthorizedKeysCommand \/usr\/bin\/node \/opt\/nixpool\/keys-command\.js --state-dir \/var\/lib\/nixpool %u$/m,
  );
  assert.match(text, /^AuthorizedKeysCommandUser nobody$/m);
  assert.match(text, /^MaxStartups 10:30:100$/m);
  assert.doesNotMatch(text, /TrustedUserCAKeys/);
});

test("with a CA the fragment trusts it, revokes through the KRL and asks for principals", () => {
  const text = renderSshdFragment({
    ...base,
    ca: {
      publicKeyFile: "/var/lib/nixpool/ca/ca.pub",
      krlFile: "/var/lib/nixpool/ca/revoked.krl",
      principalsCommand: [...base.keysCommand, "--principals"],
    },
  });
  assert.match(text, /^TrustedUserCAKeys \/var\/lib\/nixpool\/ca\/ca\.pub$/m);
  assert.match(text, /^RevokedKeys \/var\/lib\/nixpool\/ca\/revoked\.krl$/m);
  assert.match(text, /^AuthorizedPrincipalsCommand .* --principals --key-id %i %u$/m);
  // OpenSSH 9.2 ignores an AuthorizedPrincipalsCommand that comes after AuthorizedKeysCommand.
  assert.ok(text.indexOf("AuthorizedPrincipalsCommand ") < text.indexOf("AuthorizedKeysCommand "));
});

test("paths that sshd would split or expand are refused", () => {
  assert.throws(() => renderSshdFragment({ ...base, keysCommand: ["node", "x"] }), /absolute path/);
  assert.throws(
    () => renderSshdFragment({ ...base, keysCommand: ["/usr/bin/node", "/my dir/k.js"] }),
    /cannot go into sshd_config/,
  );
  assert.throws(
    () => renderSshdFragment({ ...base, keysCommand: ["/usr/bin/node", "/x/%h.js"] }),
    /cannot go into sshd_config/,
  );
  assert.throws(() => renderSshdFragment({ ...base, maxStartups: "10\nPermitRootLogin yes" }), /MaxStartups/);
  assert.throws(
    () => renderSshdFragment({ ...base, commandUser: "nobody\nPermitRootLogin yes" }),
    /command user/,
  );
});

test("the keys command never runs as root", () => {
  assert.throws(() => renderSshdFragment({ ...base, commandUser: "root" }), /must not run as root/);
});

const u = (name: string, trusted: boolean, expires?: string): AccessUser => ({
  name,
  github: undefined,
  keys: [],
  trusted,
  canVouch: false,
  gateway: false,
  vouchedBy: undefined,
  expires,
  added: undefined,
});

test("nix.conf: active trusted members are trusted, active members allowed", () => {
  const text = renderNixConfFragment(
    { users: [u("alice", true), u("bob", false), u("old", true, "2020-01-01T00:00:00.000Z")] },
    Date.parse("2026-11-27T00:00:00Z"),
  );
  assert.match(text, /^trusted-users = root alice$/m);
  assert.match(text, /^allowed-users = root alice bob$/m);
});
