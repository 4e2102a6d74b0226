import { test } from "node:test";
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { runCli, withTempDir } from "../helpers/cli.js";

test("serve token: made once (0600), printed the same until --new replaces it", async () => {
  await withTempDir(async (stateDir) => {
    const first = await runCli(stateDir, ["serve", "token"]);
    assert.equal(first.exitCode, 0, first.stderr);
    const token = first.stdout.trim();
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    const file = join(stateDir, "serve", "token");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await runCli(stateDir, ["serve", "token"])).stdout.trim(), token);
    const renewed = await runCli(stateDir, ["serve", "token", "--new"]);
    assert.equal(renewed.exitCode, 0, renewed.stderr);
    assert.notEqual(renewed.stdout.trim(), token);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });
});
