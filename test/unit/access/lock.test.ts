import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { withLock } from "../../../src/access/lock.js";
import { isNixpoolError } from "../../../src/core/errors.js";
import { withTempDir } from "../../helpers/cli.js";

test("a second holder waits for the first to release the lock, then runs", () =>
  withTempDir(async (dir) => {
    const lock = join(dir, "state", "access.lock");
    const order: string[] = [];
    const first = withLock(lock, async () => {
      assert.equal((await readFile(lock, "utf8")).trim(), String(process.pid));
      order.push("first in");
      await sleep(200);
      order.push("first out");
    });
    await sleep(20);
    const second = withLock(lock, () => Promise.resolve(order.push("second")));
    await Promise.all([first, second]);
    assert.deepEqual(order, ["first in", "first out", "second"]);
    await assert.rejects(readFile(lock), { code: "ENOENT" });
  }));

test("a lock a live process holds past the timeout is ACCESS_LOCKED, naming the process", () =>
  withTempDir(async (dir) => {
    const lock = join(dir, "access.lock");
    await writeFile(lock, `${process.pid}\n`);
    let ran = false;
    const started = Date.now();
    await assert.rejects(
      withLock(lock, () => Promise.resolve((ran = true)), 300),
      (e: unknown) =>
        isNixpoolError(e) && e.code === "ACCESS_LOCKED" && e.message.includes(`process ${process.pid}`),
    );
    assert.ok(Date.now() - started >= 300, "gave up before the timeout");
    assert.equal(ran, false);
    assert.equal((await readFile(lock, "utf8")).trim(), String(process.pid), "the holder's lock was touched");
  }));

test("a lock left by a dead process is taken over at once", () =>
  withTempDir(async (dir) => {
    const lock = join(dir, "access.lock");
    const dead = spawnSync("true").pid; // exited and reaped
    assert.ok(dead > 0);
    await writeFile(lock, `${dead}\n`);
    const started = Date.now();
    assert.equal(await withLock(lock, () => Promise.resolve("ran"), 5_000), "ran");
    assert.ok(Date.now() - started < 1_000, "waited for a dead holder");
  }));
