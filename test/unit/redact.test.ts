import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { redact, redactForTerminal, registerSecret } from "../../src/core/redact.js";
import { renderTable } from "../../src/cli/output.js";

describe("redact", () => {
  it("hides a registered token in plain text and in JSON text, even with quotes or backslashes", () => {
    const token = 'tok"en\\9f3b2a71';
    registerSecret(token);
    assert.equal(redact(`token ${token} here`), "token [redacted] here");
    const json = redact(JSON.stringify({ error: { message: `bad token ${token}` } }));
    assert.ok(!json.includes("9f3b2a71"), json);
    assert.deepEqual(JSON.parse(json), { error: { message: "bad token [redacted]" } });
  });

  it("hides private keys in plain text and inside JSON strings (cloud-init user_data)", () => {
    const key =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    const userData = `#cloud-config\nssh_keys:\n  ed25519_private: |\n    ${key.replace(/\n/g, "\n    ")}`;
    for (const text of [key, JSON.stringify({ user_data: userData })]) {
      const out = redact(text);
      assert.ok(!out.includes("b3BlbnNzaC1rZXktdjEAAAAA"), out);
      assert.match(out, /\[private key redacted\]/);
    }
  });
});

describe("redactForTerminal", () => {
  it("shows control characters other than newline and tab as ?", () => {
    assert.equal(redactForTerminal("a\u001b[2Jb\u0007c\rd\n\te\u009b"), "a?[2Jb?c?d\n\te?");
  });
});

describe("renderTable", () => {
  it("shows control characters in cells (API server names) as ?", () => {
    const t = renderTable(["NAME", "OWNER"], [["srv\u001b]0;x\u0007", "a\nb"]]);
    assert.ok(!t.includes("\u001b") && !t.includes("\u0007") && t.split("\n").length === 2, t);
    assert.match(t, /srv\?\]0;x\?\s+a\?b/);
  });
});
