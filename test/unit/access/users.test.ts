import { test } from "node:test";
import assert from "node:assert/strict";
import { isNixpoolError } from "../../../src/core/errors.js";
import { checkGithubHandle, checkUserName } from "../../../src/core/access/names.js";
import {
  canVouch,
  listGithubHandles,
  parseUsersFile,
  planAddUser,
  planRemoveUser,
  renderUsersFile,
  type UsersFile,
} from "../../../src/core/access/users.js";
import { ed25519Line } from "../../helpers/key-fixtures.js";

const NOW = Date.parse("2026-11-27T10:00:00Z");
const empty: UsersFile = { users: [] };

function rejects(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => isNixpoolError(e) && e.exitCode === 2 && re.test(e.message));
}

test("user names follow the Unix rule and refuse system accounts", () => {
  assert.equal(checkUserName("alice"), undefined);
  assert.equal(checkUserName("_ci-bot2"), undefined);
  for (const bad of [
    "Alice",
    "a;rm -rf /",
    "$(id)",
    "-x",
    "a b",
    "",
    "x".repeat(33),
    "root",
    "nixbld7",
    "nobody",
  ]) {
    assert.notEqual(checkUserName(bad), undefined, bad);
  }
});

test("GitHub handles follow GitHub's rule", () => {
  assert.equal(checkGithubHandle("Mic92"), undefined);
  assert.equal(checkGithubHandle("a-b-c"), undefined);
  for (const bad of ["-a", "a-", "a--b", "a_b", "a/b", "../x", "x".repeat(40), ""]) {
    assert.notEqual(checkGithubHandle(bad), undefined, bad);
  }
});

test("the first member needs no voucher; later ones do, from a member who may vouch", () => {
  const one = planAddUser(empty, { name: "alice", keys: [ed25519Line(1)], trusted: true }, NOW);
  rejects(() => planAddUser(one, { name: "bob", keys: [ed25519Line(2)] }, NOW), /needs a member to vouch/);
  const two = planAddUser(one, { name: "bob", github: "bob", vouchedBy: "alice" }, NOW);
  assert.equal(two.users[1]?.vouchedBy, "alice");
  // bob is neither trusted nor canVouch
  rejects(() => planAddUser(two, { name: "carol", vouchedBy: "bob" }, NOW), /may not vouch/);
  rejects(() => planAddUser(two, { name: "carol", vouchedBy: "zed" }, NOW), /not a member/);
  const three = planAddUser(two, { name: "carol", vouchedBy: "alice", canVouch: true }, NOW);
  assert.ok(
    canVouch(
      three.users.find((u) => u.name === "carol"),
      NOW,
    ),
  );
});

test("only the very first member comes in unvouched, even when no member may vouch any more", () => {
  const one = planAddUser(empty, { name: "alice", keys: [ed25519Line(1)] }, NOW);
  rejects(() => planAddUser(one, { name: "bob" }, NOW), /needs a member to vouch/);
  assert.throws(
    () => planAddUser(one, { name: "bob" }, NOW),
    (e: unknown) => isNixpoolError(e) && /set canVouch = true/.test(e.hint ?? ""),
  );
  const lapsed = planAddUser(empty, { name: "alice", trusted: true, expires: "2026-12-01" }, NOW);
  const later = Date.parse("2027-01-01T00:00:00Z");
  rejects(() => planAddUser(lapsed, { name: "bob" }, later), /needs a member to vouch/);
  rejects(() => planAddUser(lapsed, { name: "bob", vouchedBy: "alice" }, later), /may not vouch/);
});

test("only a trusted member can vouch for a trusted newcomer", () => {
  const f = planAddUser(
    planAddUser(empty, { name: "alice", trusted: true }, NOW),
    { name: "carol", canVouch: true, vouchedBy: "alice" },
    NOW,
  );
  rejects(
    () => planAddUser(f, { name: "dave", trusted: true, vouchedBy: "carol" }, NOW),
    /"carol" is not trusted, so cannot vouch for "dave" as trusted/,
  );
  assert.equal(planAddUser(f, { name: "dave", vouchedBy: "carol" }, NOW).users.length, 3);
  assert.equal(
    planAddUser(f, { name: "dave", trusted: true, vouchedBy: "alice" }, NOW).users.find(
      (u) => u.name === "dave",
    )?.trusted,
    true,
  );
});

test("an expired member may not vouch", () => {
  const f: UsersFile = {
    users: [
      {
        name: "old",
        github: undefined,
        keys: [],
        trusted: true,
        canVouch: true,
        gateway: false,
        vouchedBy: undefined,
        expires: "2026-01-01T00:00:00.000Z",
        added: undefined,
      },
      {
        name: "alice",
        github: undefined,
        keys: [],
        trusted: false,
        canVouch: true,
        gateway: false,
        vouchedBy: undefined,
        expires: undefined,
        added: undefined,
      },
    ],
  };
  assert.equal(canVouch(f.users[0], NOW), false);
  rejects(() => planAddUser(f, { name: "bob", vouchedBy: "old" }, NOW), /may not vouch/);
});

test("hostile fields are refused with the field named", () => {
  rejects(() => planAddUser(empty, { name: "x;reboot" }, NOW), /User name "x;reboot" is refused/);
  rejects(() => planAddUser(empty, { name: "alice", github: "a/../b" }, NOW), /GitHub handle/);
  rejects(
    () => planAddUser(empty, { name: "alice", keys: [`command="sh" ${ed25519Line(1)}`] }, NOW),
    /Key 1 .* options/,
  );
  rejects(() => planAddUser(empty, { name: "alice", expires: "tomorrow" }, NOW), /not a date/);
  rejects(() => planAddUser(empty, { name: "alice", expires: "2020-01-01" }, NOW), /already past/);
});

test("users.toml round-trips and validates hand edits", () => {
  const f = planAddUser(
    empty,
    { name: "alice", keys: [ed25519Line(1, "me")], trusted: true, expires: "2027-01-01" },
    NOW,
  );
  const text = renderUsersFile(f);
  assert.deepEqual(parseUsersFile(text, "users.toml"), f);
  const edited = text.replace(ed25519Line(1, "me"), `from=\\"*\\" ${ed25519Line(1)}`);
  assert.throws(
    () => parseUsersFile(edited, "users.toml"),
    /users\.alice\.keys\[0\]: the key line starts with authorized_keys options/,
  );
  assert.throws(() => parseUsersFile('[users."a b"]\n', "users.toml"), /user name must start/);
  assert.throws(() => parseUsersFile("[users.alice]\nshell = 1\n", "users.toml"), /users\.alice/);
  assert.throws(() => parseUsersFile("[users.alice\n", "users.toml"), /users\.toml:1:/);
});

test("TOML dates are accepted for expires", () => {
  const f = parseUsersFile("[users.alice]\nexpires = 2027-02-03\n", "u.toml");
  assert.equal(f.users[0]?.expires, "2027-02-03T00:00:00.000Z");
});

test("remove refuses an unknown member and keeps the others", () => {
  const f = planAddUser(empty, { name: "alice", trusted: true }, NOW);
  rejects(() => planRemoveUser(f, "bob"), /not listed/);
  assert.deepEqual(planRemoveUser(f, "alice").users, []);
});

test("GitHub handles are listed once, lower-cased and sorted", () => {
  let f = planAddUser(empty, { name: "alice", trusted: true, github: "Zed" }, NOW);
  f = planAddUser(f, { name: "bob", github: "zed", vouchedBy: "alice" }, NOW);
  f = planAddUser(f, { name: "carol", github: "Amy", vouchedBy: "alice" }, NOW);
  f = planAddUser(f, { name: "dave", vouchedBy: "alice" }, NOW);
  assert.deepEqual(listGithubHandles(f), ["amy", "zed"]);
});
