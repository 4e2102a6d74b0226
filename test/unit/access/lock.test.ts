import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { withLock } from "../../../src/access/lock.js";
import { isNixpoolError } from "../../../src/core/errors.js";
import { withTempDir } from "../../helpers/cli.js";

/** util-linux's flock(1) holding `file` in another process until killed (--close: its child does not inherit the lock). */
async function holdElsewhere(file: string) {
  const child = spawn("flock", ["--exclusive", "--close", file, "sh", "-c", "echo held; exec sleep 60"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await once(child.stdout, "data");
  return {
    pid: child.pid ?? 0,
    kill: async () => {
      child.kill("SIGKILL");
      await once(child, "exit");
    },
  };
}

test("a second holder waits for the first to release the lock, then runs", () =>
  withTempDir(async (dir) => {
    const lock = join(dir, "state", "access.lock");
    const order: string[] = [];
    let entered: () => void = () => undefined;
    const inside = new Promise<void>((r) => (entered = r));
    const first = withLock(lock, async () => {
      assert.equal(await readFile(lock, "utf8"), "", "the lock file holds nothing");
      order.push("first in");
      entered();
      await sleep(200);
      order.push("first out");
    });
    // Asked for only once the first holds it (its first take loads the locking library).
    await inside;
    const second = withLock(lock, () => Promise.resolve(order.push("second")));
    await Promise.all([first, second]);
    assert.deepEqual(order, ["first in", "first out", "second"]);
  }));

test("a lock another process holds past the timeout is ACCESS_LOCKED, naming the lock file", () =>
  withTempDir(async (dir) => {
    const lock = join(dir, "access.lock");
    const other = await holdElsewhere(lock);
    try {
      let ran = false;
      const started = Date.now();
      await assert.rejects(
        withLock(lock, () => Promise.resolve((ran = true)), 300),
        (e: unknown) => isNixpoolError(e) && e.code === "ACCESS_LOCKED" && e.message.includes(lock),
      );
      assert.ok(Date.now() - started >= 300, "gave up before the timeout");
      assert.equal(ran, false);
    } finally {
      await other.kill();
    }
  }));

test("a holder that dies releases the lock (the kernel drops it): taken at once, whatever the file holds", () =>
  withTempDir(async (dir) => {
    const lock = join(dir, "access.lock");
    const other = await holdElsewhere(lock);
    await writeFile(lock, `${other.pid}\n`);
    await other.kill();
    const started = Date.now();
    assert.equal(await withLock(lock, () => Promise.resolve("ran"), 5_000), "ran");
    assert.ok(Date.now() - started < 1_000, "waited for a dead holder");
    // Only the kernel's lock counts: a file naming a live process holds nothing.
    await writeFile(lock, `${process.pid}\n`);
    assert.equal(await withLock(lock, () => Promise.resolve("again"), 1_000), "again");
  }));
