import { test } from "node:test";
import assert from "node:assert/strict";
import {
  parseIndexEntry,
  parseKeyIdUser,
  renderKeyId,
  renderAuthorizedKeysFile,
  renderAuthorizedLines,
  renderIndexEntry,
  type IndexEntry,
} from "../../../src/core/access/authorized-keys.js";
import { ed25519Line } from "../../helpers/key-fixtures.js";

const key = ed25519Line(3);
const entry: IndexEntry = { name: "alice", expiresMs: Date.parse("2026-12-01T00:00:00Z"), keys: [key] };

test("lines are restricted to the Nix protocol and carry the expiry", () => {
  assert.deepEqual(renderAuthorizedLines(entry, { protocol: "ssh-ng", nowMs: 0 }), [
    `restrict,expiry-time="20261201000000Z",command="nix-daemon --stdio" ${key} nixpool:alice`,
  ]);
  assert.match(
    renderAuthorizedLines({ ...entry, expiresMs: undefined }, { protocol: "ssh", nowMs: 0 })[0] ?? "",
    /^restrict,command="nix-store --serve --write" ssh-ed25519 /,
  );
});

test("an expired entry gives no lines", () => {
  assert.deepEqual(renderAuthorizedLines(entry, { protocol: "ssh-ng", nowMs: entry.expiresMs ?? 0 }), []);
  assert.equal(
    renderAuthorizedKeysFile(entry, { protocol: "ssh-ng", nowMs: Date.parse("2027-01-01T00:00:00Z") })
      .split("\n")
      .filter((l) => l && !l.startsWith("#")).length,
    0,
  );
});

test("index entries round-trip; damaged ones are refused (fail closed)", () => {
  const text = renderIndexEntry(entry);
  assert.deepEqual(parseIndexEntry(text), entry);
  assert.deepEqual(parseIndexEntry(renderIndexEntry({ ...entry, expiresMs: undefined })), {
    ...entry,
    expiresMs: undefined,
  });
  assert.equal(parseIndexEntry(text.replace("key ssh-ed25519", 'key command="sh" ssh-ed25519')), undefined);
  assert.equal(parseIndexEntry(text.replace("expires", "expire")), undefined);
  assert.equal(parseIndexEntry("garbage"), undefined);
});

test("a nixpool key ID names its member; any other key ID names nobody", () => {
  assert.equal(renderKeyId("alice", 7), "nixpool:alice:7");
  assert.equal(parseKeyIdUser(renderKeyId("alice", 7)), "alice");
  for (const other of [
    "alice",
    "nixpool:alice",
    "nixpool:alice:",
    "nixpool:Alice:1",
    "nixpool:a;b:1",
    "x:alice:1",
    "",
  ]) {
    assert.equal(parseKeyIdUser(other), undefined, other);
  }
});
