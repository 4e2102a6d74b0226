import { test } from "node:test";
import assert from "node:assert/strict";
import {
  isCertRevoked,
  parsePrincipals,
  parseValidity,
  renderKrlSpec,
  renderSignArgv,
} from "../../../src/core/access/cert.js";
import { planHousekeeping } from "../../../src/core/access/housekeeping.js";
import { parseDuration } from "../../../src/core/duration.js";

const NOW = Date.parse("2026-11-27T10:00:00Z");

test("validity: relative, absolute and default start", () => {
  assert.deepEqual(parseValidity("+1h", NOW), { fromMs: NOW - 300_000, toMs: NOW + 3_600_000 });
  assert.deepEqual(parseValidity("-2h:-1h", NOW), { fromMs: NOW - 7_200_000, toMs: NOW - 3_600_000 });
  assert.deepEqual(parseValidity("2026-12-01T08:00:00Z:2026-12-01T18:00:00Z", NOW), {
    fromMs: Date.parse("2026-12-01T08:00:00Z"),
    toMs: Date.parse("2026-12-01T18:00:00Z"),
  });
  assert.throws(() => parseValidity("+1h:-1h", NOW), /ends before it starts/);
  assert.throws(() => parseValidity("+365d", NOW), /longer than 30 days/);
  assert.throws(() => parseValidity("forever", NOW), /not understood/);
  // A bare duration counts forward from now; a bare number is still refused.
  assert.deepEqual(parseValidity("10m", NOW), { fromMs: NOW - 300_000, toMs: NOW + 600_000 });
  assert.throws(() => parseValidity("10", NOW), /not understood/);
});

test("the sign argv always sets key ID, serial, window and the forced command", () => {
  const argv = renderSignArgv({
    caKeyFile: "/ca",
    publicKeyFile: "/k.pub",
    keyId: "nixpool:alice:7",
    principals: ["alice"],
    validity: { fromMs: NOW, toMs: NOW + 3_600_000 },
    serial: 7,
    protocol: "ssh-ng",
  });
  const after = (flag: string) => argv[argv.indexOf(flag) + 1];
  assert.equal(after("-I"), "nixpool:alice:7");
  assert.equal(after("-z"), "7");
  assert.equal(after("-V"), "20261127100000Z:20261127110000Z");
  assert.equal(after("-n"), "alice");
  assert.ok(argv.includes("clear"));
  assert.ok(argv.includes("force-command=nix-daemon --stdio"));
  assert.equal(argv.at(-1), "/k.pub");
});

test("a deploy certificate keeps clear but forces no command (sudo -n and the activation must run) and permits only agent forwarding", () => {
  const argv = renderSignArgv({
    caKeyFile: "/ca",
    publicKeyFile: "/k.pub",
    keyId: "nixpool:alice:8",
    principals: ["sudoer", "alice"],
    validity: { fromMs: NOW, toMs: NOW + 600_000 },
    serial: 8,
    protocol: "ssh-ng",
    use: "deploy",
  });
  assert.equal(argv[argv.indexOf("-n") + 1], "sudoer,alice");
  assert.ok(argv.includes("clear"));
  assert.ok(!argv.some((a) => a.startsWith("force-command=")), argv.join(" "));
  assert.equal(argv[argv.indexOf("permit-agent-forwarding") - 1], "-O");
});

test("principals are validated user names", () => {
  assert.deepEqual(parsePrincipals(undefined, "alice"), ["alice"]);
  assert.deepEqual(parsePrincipals("alice,bob,alice", "alice"), ["alice", "bob"]);
  assert.throws(() => parsePrincipals("alice,root", "alice"), /system account/);
  assert.throws(() => parsePrincipals("a b", "alice"), /refused/);
});

test("KRL spec lists serials and key IDs; a certificate is revoked by either", () => {
  const revoked = [{ serial: 3 }, { keyId: "nixpool:bob:4" }];
  assert.equal(renderKrlSpec(revoked), "serial: 3\nid: nixpool:bob:4\n");
  assert.equal(isCertRevoked(revoked, { serial: 3, keyId: "nixpool:alice:3" }), true);
  assert.equal(isCertRevoked(revoked, { serial: 4, keyId: "nixpool:bob:4" }), true);
  assert.equal(isCertRevoked(revoked, { serial: 4, keyId: "nixpool:alice:4" }), false);
});

test("housekeeping keeps what is recent", () => {
  const e = (path: string, ageH: number) => ({
    path,
    kind: "build-dir" as const,
    mtimeMs: NOW - ageH * 3_600_000,
  });
  assert.deepEqual(
    planHousekeeping(
      [e("/tmp/nix-build-a", 1), e("/tmp/nix-build-b", 50), e("/tmp/nix-build-c", 30)],
      NOW,
      parseDuration("1d") ?? 0,
    ).map((x) => x.path),
    ["/tmp/nix-build-b", "/tmp/nix-build-c"],
  );
  assert.equal(parseDuration("7d"), 604_800_000);
  assert.equal(parseDuration("7 days"), undefined);
});
