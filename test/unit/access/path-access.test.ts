import { test } from "node:test";
import assert from "node:assert/strict";
import {
  findAccessBlocker,
  findUnsafeForSshd,
  listPathComponents,
  type Account,
  type PathNode,
} from "../../../src/core/access/path-access.js";

const dir = (path: string, mode: number, uid = 0, gid = 0): PathNode => ({
  path,
  uid,
  gid,
  mode,
  isDirectory: true,
});
const file = (path: string, mode: number, uid = 0, gid = 0): PathNode => ({
  path,
  uid,
  gid,
  mode,
  isDirectory: false,
});
const nobody: Account = { name: "nobody", uid: 65534, gids: [65534] };

test("listPathComponents walks from / down to the path", () => {
  assert.deepEqual(listPathComponents("/a/b/c"), ["/", "/a", "/a/b", "/a/b/c"]);
  assert.deepEqual(listPathComponents("/"), ["/"]);
});

test("a 0700 directory on the way blocks another user, with the chmod for its class", () => {
  const chain = [dir("/", 0o755), dir("/root", 0o700), dir("/root/src", 0o755), file("/root/src/cmd", 0o755)];
  assert.deepEqual(findAccessBlocker(chain, nobody, { read: true, execute: true }), {
    path: "/root",
    mode: 0o700,
    lacks: "search",
    fix: "chmod o+x /root",
  });
  // Group members use the group bits; the owner its own.
  const grouped = [dir("/", 0o755), dir("/srv", 0o750, 0, 65534), file("/srv/cmd", 0o740, 0, 65534)];
  assert.equal(findAccessBlocker(grouped, nobody, { read: true, execute: true })?.fix, "chmod g+rx /srv/cmd");
  const owned = [dir("/", 0o755), dir("/home/n", 0o700, 65534), file("/home/n/f", 0o600, 65534)];
  assert.equal(findAccessBlocker(owned, nobody, { read: true, execute: false }), undefined);
});

test("the file itself: read and execute for a command, search only for a directory", () => {
  const base = [dir("/", 0o755), dir("/usr", 0o755)];
  assert.equal(
    findAccessBlocker([...base, file("/usr/cmd", 0o750)], nobody, { read: true, execute: true })?.lacks,
    "read",
  );
  assert.equal(
    findAccessBlocker([...base, file("/usr/cmd", 0o744)], nobody, { read: true, execute: true })?.lacks,
    "execute",
  );
  assert.equal(
    findAccessBlocker([...base, file("/usr/cmd", 0o755)], nobody, { read: true, execute: true }),
    undefined,
  );
  assert.equal(
    findAccessBlocker([...base, dir("/usr/d", 0o711)], nobody, { read: false, execute: false }),
    undefined,
  );
  assert.equal(
    findAccessBlocker([...base, dir("/usr/d", 0o700)], nobody, { read: false, execute: false })?.path,
    "/usr/d",
  );
  // Root reads anything but executes only what has an execute bit.
  const root: Account = { name: "root", uid: 0, gids: [0] };
  assert.equal(
    findAccessBlocker([...base, file("/usr/cmd", 0o600)], root, { read: true, execute: true })?.lacks,
    "execute",
  );
});

test("sshd's safe path: root's and not writable by group or others, all the way up", () => {
  assert.equal(findUnsafeForSshd([dir("/", 0o755), dir("/usr", 0o755), file("/usr/cmd", 0o755)]), undefined);
  assert.deepEqual(findUnsafeForSshd([dir("/", 0o755), dir("/tmp", 0o1777), dir("/tmp/x", 0o755)]), {
    path: "/tmp",
    reason: "is writable by its group or others (mode 01777)",
    fix: undefined,
  });
  assert.equal(findUnsafeForSshd([dir("/", 0o755), dir("/srv", 0o775)])?.fix, "chmod go-w /srv");
  assert.deepEqual(
    findUnsafeForSshd([dir("/", 0o755), dir("/home/u", 0o755, 1000), file("/home/u/cmd", 0o755)]),
    {
      path: "/home/u",
      reason: "is owned by uid 1000, not root",
      fix: "chown root /home/u",
    },
  );
});
