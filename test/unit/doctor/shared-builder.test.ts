import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSshdKeysCommand } from "../../../src/doctor/shared-builder-probe.js";

test("the keys command sshd -T shows is nixpool's only when it names this state directory", () => {
  const effective = [
    "port 22",
    "authorizedkeyscommand /usr/local/lib/nixpool/keys-command --state-dir /var/lib/nixpool --protocol ssh %u",
    "authorizedkeyscommanduser nixkeys",
  ].join("\n");
  assert.deepEqual(parseSshdKeysCommand(effective, "/var/lib/nixpool"), {
    command: "/usr/local/lib/nixpool/keys-command",
    user: "nixkeys",
    protocol: "ssh",
  });
  assert.equal(parseSshdKeysCommand(effective, "/srv/other"), undefined);
  assert.equal(parseSshdKeysCommand("authorizedkeyscommand none\n", "/var/lib/nixpool"), undefined);
});
