import { test } from "node:test";
import assert from "node:assert/strict";
import {
  parseIndexEntry,
  renderGatewayLines,
  renderIndexEntry,
  renderPrincipalLines,
  renderSshdAnswers,
} from "../../../src/core/access/authorized-keys.js";

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
