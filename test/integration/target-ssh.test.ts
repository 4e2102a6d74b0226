import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkTargetLogin, openTargetServe, runOnTarget } from "../../src/deploy/target-ssh.js";
import { ed25519Line } from "../helpers/key-fixtures.js";
import { linkTo, poolHostTarget } from "../helpers/pool-targets.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { expectCode } from "../helpers/serve.js";

describe("reaching a deploy target over ssh (a pool host)", { timeout: 300_000 }, () => {
  let tp: TestPool;
  before(async () => {
    tp = await startTestPool(1, 1);
  });
  after(async () => {
    await tp?.cleanup();
  });

  test("with its pinned key: commands run (words reach it unchanged), a fresh login is confirmed, a serve session opens", async () => {
    const link = await linkTo(tp, poolHostTarget(tp, 0));
    const r = await runOnTarget(link, ["printf", "%s|", "a b", "it's", "$(id)"]);
    assert.equal(r.stdout, "a b|it's|$(id)|");
    await checkTargetLogin(link);
    const serve = await openTargetServe(link);
    try {
      assert.equal(serve.serverVersion >> 8, 2);
      assert.deepEqual(await serve.queryValidPaths(["/nix/store/00000000000000000000000000000000-none"]), []);
    } finally {
      await serve.close();
    }
    const failed = await expectCode(
      runOnTarget(link, ["sh", "-c", "echo broken >&2; exit 3"]),
      "TARGET_COMMAND_FAILED",
    );
    assert.match(failed.message, /on target local1 with exit 3: broken/);
    // A multi-line script is named, not printed, in the one-sentence message.
    const script = ["set -eu", "echo long >&2", "exit 4"].join("\n");
    const scripted = await expectCode(runOnTarget(link, ["sh", "-c", script]), "TARGET_COMMAND_FAILED");
    assert.match(scripted.message, /^sh -c SCRIPT failed on target local1 with exit 4: long\.$/);
    assert.doesNotMatch(`${scripted.message}${scripted.hint ?? ""}`, /set -eu/);
    assert.equal((await runOnTarget(link, ["false"], { reject: false })).exitCode, 1);
  });

  test("a host key that does not match the pin is refused before anything is sent", async () => {
    const marker = join(tp.stateDir, "ran-on-target");
    const wrong = poolHostTarget(tp, 0, { hostKey: ed25519Line(7) });
    const link = await linkTo(tp, wrong, "wrong-known_hosts");
    const e = await expectCode(
      runOnTarget(link, ["touch", marker]),
      "HOST_KEY_MISMATCH",
      /Target local1 \(10\.[\d.]+:22\) presented a host key that does not match/,
    );
    assert.match(e.hint ?? "", /hostKey of target local1/);
    // The pool host shares this machine's /tmp: the command would have left the marker.
    assert.equal(existsSync(marker), false, "the remote command ran despite the mismatch");
    await expectCode(openTargetServe(link), "HOST_KEY_MISMATCH");
    await expectCode(checkTargetLogin(link), "HOST_KEY_MISMATCH");
    // The same command with the right pin does run: the marker test can fail.
    await runOnTarget(await linkTo(tp, poolHostTarget(tp, 0)), ["touch", marker]);
    assert.equal(existsSync(marker), true);
  });

  test("a refused login and a closed port are named for the target", async () => {
    const noKey = await linkTo(
      tp,
      poolHostTarget(tp, 0, {
        identityFile: join(tp.stateDir, "local", "hosts", "local1", "ssh_host_ed25519_key"),
      }),
    );
    await expectCode(
      runOnTarget(noKey, ["true"]),
      "TARGET_AUTH_FAILED",
      /Target local1 .* refused the login of root/,
    );
    const closed = await linkTo(tp, poolHostTarget(tp, 0, { port: 2 }));
    await expectCode(
      runOnTarget(closed, ["true"]),
      "TARGET_UNREACHABLE",
      /Target local1 .* refused the connection/,
    );
  });
});
