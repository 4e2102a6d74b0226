import { test } from "node:test";
import assert from "node:assert/strict";
import {
  forcedCommandOf,
  isSafeForcedCommand,
  parseIndexEntry,
  renderGatewayLines,
  renderIndexEntry,
  renderPrincipalLines,
  renderSshdAnswers,
} from "../../../src/core/access/authorized-keys.js";
import { isNixpoolError } from "../../../src/core/errors.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPh1zGlyXL32/Aq4baq8rET644pSi+N+2z4OUZIzu5W";

test("precompiled answers: restricted keys per protocol and the principal, with sshd's expiry-time", () => {
  const expiresMs = Date.parse("2030-01-01T00:00:00Z");
  const a = renderSshdAnswers({ name: "bob", expiresMs, keys: [KEY] }, Date.parse("2026-01-01T00:00:00Z"));
  assert.equal(
    a["ssh-ng"],
    `restrict,expiry-time="20300101000000Z",command="nix-daemon --stdio" ${KEY} nixpool:bob\n`,
  );
  assert.equal(
    a.ssh,
    `restrict,expiry-time="20300101000000Z",command="nix-store --serve --write" ${KEY} nixpool:bob\n`,
  );
  assert.equal(a.principals, 'expiry-time="20300101000000Z" bob\n');
  assert.deepEqual(renderPrincipalLines({ name: "al", expiresMs: undefined, keys: [] }, 0), ["al"]);
  // Already expired when written: nothing at all.
  assert.deepEqual(renderSshdAnswers({ name: "bob", expiresMs, keys: [KEY] }, expiresMs + 1), {
    "ssh-ng": "",
    ssh: "",
    principals: "",
    gateway: "",
  });
});

test("gateway answers: only for a member with gateway rights, the gateway for them as the forced command", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const expiresMs = Date.parse("2030-01-01T00:00:00Z");
  const cmd = "/usr/bin/node /opt/nixpool/dist/cli/main.js --state-dir /var/lib/nixpool gateway";
  const e = { name: "ci", expiresMs, keys: [KEY] };
  assert.equal(renderSshdAnswers(e, now, cmd).gateway, "");
  assert.equal(
    renderSshdAnswers({ ...e, gateway: true }, now, cmd).gateway,
    `restrict,expiry-time="20300101000000Z",command="${cmd} --client ci" ${KEY} nixpool:ci\n`,
  );
  // Expired, or a command sshd could not quote: nothing (fail closed).
  assert.equal(renderSshdAnswers({ ...e, gateway: true }, expiresMs + 1, cmd).gateway, "");
  assert.deepEqual(renderGatewayLines({ ...e, gateway: true }, { command: '/bin/x" ; sh', nowMs: now }), []);
  assert.deepEqual(
    renderGatewayLines({ ...e, gateway: true }, { command: "nixpool gateway", nowMs: now }),
    [],
  );
  // The flag survives the index file.
  const text = renderIndexEntry({ ...e, gateway: true });
  assert.deepEqual(parseIndexEntry(text), { ...e, gateway: true });
  assert.equal(parseIndexEntry(text.replace("gateway yes", "gateway maybe")), undefined);
});

test("the gateway's forced command quotes an install path with a space, and refuses what sshd cannot carry", () => {
  const cmd = forcedCommandOf([
    "/usr/bin/node",
    "/opt/my tools/nixpool/dist/serve/gateway/main.js",
    "--state-dir",
    "/var/lib/nixpool",
  ]);
  assert.equal(
    cmd,
    "/usr/bin/node '/opt/my tools/nixpool/dist/serve/gateway/main.js' --state-dir /var/lib/nixpool",
  );
  assert.equal(isSafeForcedCommand(cmd), true);
  const now = Date.parse("2026-01-01T00:00:00Z");
  const [line] = renderGatewayLines(
    { name: "ci", keys: [KEY], gateway: true } as Parameters<typeof renderGatewayLines>[0],
    { command: cmd, nowMs: now },
  );
  assert.ok(line?.includes(`command="${cmd} --client ci"`), line);
  // Characters the shell would read in a path are quoted, never run.
  assert.equal(forcedCommandOf(["/usr/bin/node", "/x;rm -rf $HOME"]), "/usr/bin/node '/x;rm -rf $HOME'");
  for (const bad of ['/opt/a"b', "/opt/it's", "/opt/a\\b", "/opt/a\nb"]) {
    assert.throws(
      () => forcedCommandOf(["/usr/bin/node", bad]),
      (e: unknown) => isNixpoolError(e) && e.code === "KEYS_COMMAND_UNSAFE" && e.message.includes(bad),
      JSON.stringify(bad),
    );
  }
  // Unquoted spaces split a path: a command with a word the shell would read otherwise is refused.
  for (const unsafe of ["/usr/bin/node /x;sh", "/usr/bin/node $(id)", "node x", "/bin/x 'a\"b'", "'/x' ''"])
    assert.equal(isSafeForcedCommand(unsafe), false, unsafe);
  assert.equal(isSafeForcedCommand("/usr/bin/node /a/main.js --state-dir /var/lib/nixpool"), true);
});
