import { test } from "node:test";
import assert from "node:assert/strict";
import {
  KeyLineError,
  dedupeKeys,
  fingerprintOf,
  formatKey,
  parseKeyLine,
  readKeyFields,
  type PublicKey,
} from "../../src/core/public-key.js";
import { ed25519Line, mismatchedLine, rsaLine } from "../helpers/key-fixtures.js";

test("a plain ed25519 line parses, comment kept", () => {
  const k = parseKeyLine(ed25519Line(1, "alice@laptop"));
  assert.equal(k.type, "ssh-ed25519");
  assert.equal(k.comment, "alice@laptop");
});

test("RSA keys need at least 2048 bits", () => {
  assert.equal(parseKeyLine(rsaLine(2048)).type, "ssh-rsa");
  assert.throws(() => parseKeyLine(rsaLine(1024)), /1024 bits/);
});

const hostile: [string, string, RegExp][] = [
  ["options before the key", `command="/bin/sh" ${ed25519Line(1)}`, /options/],
  ["restrict-free options", `no-pty,permitopen="*:*" ${ed25519Line(1)}`, /options/],
  ["a newline with a second key", `${ed25519Line(1)}\n${ed25519Line(2)}`, /newline|control/],
  ["a carriage return", `${ed25519Line(1)}\r`, /control/],
  ["a NUL", `${ed25519Line(1)}\u0000`, /control/],
  ["an unknown type", `ssh-dss ${ed25519Line(1).split(" ")[1]}`, /not an accepted key type/],
  ["a certificate type", `ssh-ed25519-cert-v01@openssh.com AAAA`, /not an accepted key type/],
  ["non-base64 data", "ssh-ed25519 $(reboot)", /not base64/],
  ["a mismatched embedded type", mismatchedLine(), /says "ssh-rsa"/],
  ["a truncated blob", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", /truncated|not 32 bytes/],
  ["shell text in the comment, non-ASCII", `${ed25519Line(1)} \u202e`, /non-ASCII/],
  ["an empty line", "   ", /empty/],
  ["an overlong line", `${ed25519Line(1)} ${"x".repeat(9000)}`, /longer/],
];
for (const [what, line, re] of hostile) {
  test(`refuses ${what}`, () => {
    assert.throws(
      () => parseKeyLine(line),
      (e: unknown) => e instanceof KeyLineError && re.test(e.message),
    );
  });
}

test("dedupeKeys ignores comments", () => {
  const a = parseKeyLine(ed25519Line(1, "one"));
  const b = parseKeyLine(ed25519Line(1, "two"));
  const c = parseKeyLine(ed25519Line(2));
  assert.deepEqual(dedupeKeys([a, b, c]), [a, c]);
});

test("one PublicKey: a key ssh reports and the same key nixpool validates agree on type, blob and fingerprint", () => {
  const line = ed25519Line(7, "host");
  const accepted: PublicKey = parseKeyLine(line);
  const reported: PublicKey<string> | undefined = readKeyFields(line);
  assert.ok(reported);
  assert.deepEqual(reported, accepted);
  assert.equal(formatKey(reported), formatKey(accepted));
  assert.equal(fingerprintOf(reported), fingerprintOf(accepted));
  // What ssh reports is read as-is, even a type nixpool refuses; only parseKeyLine judges it.
  assert.deepEqual(readKeyFields("ssh-dss AAAAB3 old"), { type: "ssh-dss", blob: "AAAAB3", comment: "old" });
  assert.throws(() => parseKeyLine("ssh-dss AAAAB3 old"), KeyLineError);
  assert.equal(readKeyFields("ssh-ed25519"), undefined);
});
