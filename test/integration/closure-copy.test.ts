import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { writeClientFiles, type ClientFiles } from "../../src/adapters/nix-build.js";
import { run } from "../../src/adapters/runner.js";
import type { Builder } from "../../src/core/builder.js";
import { copyClosure, type CopySource } from "../../src/deploy/closure-copy.js";
import { openTargetServe, type TargetLink } from "../../src/deploy/target-ssh.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { POOL_NETWORK } from "../../src/core/local-net.js";
import { ed25519Line } from "../helpers/key-fixtures.js";
import { linkTo, poolHostTarget } from "../helpers/pool-targets.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";

const CLOSURE_NIX = resolve(import.meta.dirname, "../fixtures/nix/closure.nix");
const NIX_CONFIG = "substituters =\nsandbox = false\nbuild-users-group =";

/** Builds the fixture's closure on this machine: [root, lib] output paths. */
async function buildClosure(salt: string, small = 5): Promise<{ root: string; lib: string }> {
  const out = async (attr: string) =>
    (
      await run(
        [
          "nix-build",
          CLOSURE_NIX,
          "-A",
          attr,
          "--argstr",
          "salt",
          salt,
          "--arg",
          "small",
          String(small),
          "--no-out-link",
        ],
        {
          env: { NIX_CONFIG },
          timeout: 300_000,
        },
      )
    ).stdout.trim();
  return { root: await out("root"), lib: await out("lib") };
}

describe(
  "copying a closure to a deploy target (pool hosts: local1 builds, local2 is the target)",
  { timeout: 600_000 },
  () => {
    let tp: TestPool;
    let files: ClientFiles;
    let builder: Builder;
    let target: TargetLink;
    let fromBuilder: CopySource;
    const local: CopySource = { kind: "local" };
    const onTarget = async (paths: string[]) => {
      const s = await openTargetServe(target);
      try {
        return await s.queryValidPaths(paths);
      } finally {
        await s.close();
      }
    };
    /** Puts a fresh closure on the builder (copied from this machine, which tests that route too). */
    const closureOnBuilder = async (salt: string) => {
      const c = await buildClosure(salt);
      const toBuilder = await linkTo(tp, poolHostTarget(tp, 0), "builder-known_hosts");
      const r = await copyClosure({ paths: [c.root], from: local, to: toBuilder });
      assert.equal(r.route, "via-here");
      assert.equal(r.fallback, "the closure is on this machine");
      assert.equal(r.sent.length, 7, "5 small paths, lib and root");
      return c;
    };

    before(async () => {
      tp = await startTestPool(2, 1);
      const builders = poolBuilders(tp.pool);
      builder = builders[0]!;
      files = await writeClientFiles(tp.stateDir, builders);
      fromBuilder = { kind: "builder", builder, sshConfig: files.sshConfig };
      target = await linkTo(tp, poolHostTarget(tp, 1));
    });
    after(async () => {
      await tp?.cleanup();
    });

    test("through this machine: only the missing paths, references first; a second copy sends nothing", async () => {
      const c = await closureOnBuilder(`via-${randomBytes(4).toString("hex")}`);
      const first = await copyClosure({ paths: [c.lib], from: fromBuilder, to: target, route: "via-here" });
      assert.deepEqual(first.sent, [c.lib]);
      const r = await copyClosure({ paths: [c.root], from: fromBuilder, to: target, route: "via-here" });
      assert.equal(r.route, "via-here");
      assert.equal(r.closure, 7);
      assert.equal(r.sent.length, 6, "lib was there already");
      assert.ok(!r.sent.includes(c.lib));
      assert.equal(r.sent.at(-1), c.root, "the root comes after its references");
      assert.ok(r.narBytes > 0);
      assert.deepEqual((await onTarget([c.root, c.lib])).sort(), [c.root, c.lib].sort());
      const again = await copyClosure({ paths: [c.root], from: fromBuilder, to: target, route: "via-here" });
      assert.deepEqual([again.sent.length, again.narBytes], [0, 0]);
    });

    test("builder → target directly: the target sees the builder log in, and nothing is sent twice", async () => {
      const c = await closureOnBuilder(`direct-${randomBytes(4).toString("hex")}`);
      const r = await copyClosure({ paths: [c.root], from: fromBuilder, to: target });
      assert.equal(r.route, "direct", r.fallback);
      assert.equal(r.fallback, undefined);
      assert.equal(r.sent.length, 7);
      assert.deepEqual(await onTarget([c.root]), [c.root]);
      // The bytes came from local1's address, not from this machine's side of local2's link.
      const log = await readFile(tp.pool.hosts[1]!.sshdLogPath, "utf8");
      assert.match(
        log,
        new RegExp(`Accepted publickey for root from ${tp.pool.hosts[0]!.address.replace(/\./g, "\\.")} `),
      );
      const again = await copyClosure({ paths: [c.root], from: fromBuilder, to: target });
      assert.deepEqual([again.route, again.sent.length], ["direct", 0]);
    });

    test("a builder that cannot reach the target: the copy goes through this machine and says why", async () => {
      const c = await closureOnBuilder(`cut-${randomBytes(4).toString("hex")}`);
      const ns = tp.pool.hosts[0]!.netns;
      await run(["ip", "-n", ns, "route", "del", POOL_NETWORK]);
      try {
        const r = await copyClosure({ paths: [c.root], from: fromBuilder, to: target });
        assert.equal(r.route, "via-here");
        assert.match(r.fallback ?? "", /unreachable/);
        assert.equal(r.sent.length, 7);
        assert.deepEqual(await onTarget([c.root]), [c.root]);
        const c2 = await closureOnBuilder(`cut2-${randomBytes(4).toString("hex")}`);
        await assert.rejects(
          copyClosure({ paths: [c2.root], from: fromBuilder, to: target, route: "direct" }),
          (e: Error & { code?: string }) => {
            assert.equal(e.code, "COPY_DIRECT_FAILED");
            assert.match(e.message, /direct copy to target local2 from builder local1 failed: unreachable/);
            return true;
          },
        );
      } finally {
        await run(["ip", "-n", ns, "route", "add", POOL_NETWORK, "via", tp.pool.hosts[0]!.hostAddress]);
      }
    });

    test("a target whose host key does not match its pin gets nothing, by either route", async () => {
      const c = await closureOnBuilder(`pin-${randomBytes(4).toString("hex")}`);
      const wrong = await linkTo(
        tp,
        poolHostTarget(tp, 1, { hostKey: ed25519Line(11) }),
        "wrong-known_hosts",
      );
      for (const route of ["direct", "via-here"] as const) {
        await assert.rejects(
          copyClosure({ paths: [c.root], from: fromBuilder, to: wrong, route }),
          (e: Error & { code?: string }) => {
            assert.equal(e.code, "HOST_KEY_MISMATCH");
            assert.match(
              e.message,
              /^Target local2 .* does not match its pinned key; nixpool refused to connect and sent nothing\.$/,
            );
            return true;
          },
        );
      }
      assert.deepEqual(await onTarget([c.root, c.lib]), [], "nothing of the closure reached the target");
    });

    test("a path the source does not hold is named, and nothing is sent", async () => {
      const missing = "/nix/store/00000000000000000000000000000000-not-there";
      await assert.rejects(
        copyClosure({ paths: [missing], from: fromBuilder, to: target }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "COPY_SOURCE_MISSING");
          assert.match(
            e.message,
            /builder local1 does not hold .*not-there, so it cannot be copied to target local2/,
          );
          return true;
        },
      );
    });
  },
);
