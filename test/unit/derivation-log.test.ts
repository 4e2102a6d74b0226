import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DerivationLog } from "../../src/dispatch/derivation-log.js";
import { withTempDir } from "../helpers/cli.js";

test("a log that cannot be written (its directory is a file) never stops the build: the tail is kept", async () => {
  await withTempDir(async (dir) => {
    const notADir = join(dir, "logs");
    await writeFile(notADir, "");
    const log = new DerivationLog(notADir, "/nix/store/00000000000000000000000000000000-x.drv");
    await log.begin(1, "b1");
    log.line("building");
    await new Promise((r) => setImmediate(r));
    log.line("done");
    await log.end();
    assert.deepEqual(log.tail, ["building", "done"]);
  }, "nixpool-log-");
});

test("a log file that cannot be created never stops the build", async () => {
  // /proc/self takes no new files: the open fails after begin() returned, on the stream.
  const denied = new DerivationLog("/proc/self", "/nix/store/00000000000000000000000000000000-y.drv");
  await denied.begin(1, "b1");
  denied.line("one");
  await new Promise((r) => setTimeout(r, 50));
  denied.line("two");
  await denied.end();
  assert.deepEqual(denied.tail, ["one", "two"]);
});
