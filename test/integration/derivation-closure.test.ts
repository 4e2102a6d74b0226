import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { readDerivationClosure } from "../../src/adapters/derivation-closure.js";
import { run } from "../../src/adapters/runner.js";
import { isNixpoolError } from "../../src/core/errors.js";

const GRAPH = resolve(import.meta.dirname, "../fixtures/nix/graph.nix");
const NIX_ENV = { NIX_CONFIG: "substituters =" };

test("the closure of a generated 5,000-derivation graph is read in one pass and matches Nix's", async (t) => {
  const salt = randomBytes(6).toString("hex");
  const root = (
    await run(["nix-instantiate", GRAPH, "--argstr", "salt", salt], { env: NIX_ENV, timeout: 300_000 })
  ).stdout.trim();
  const started = performance.now();
  const closure = await readDerivationClosure([root]);
  const ms = performance.now() - started;
  t.diagnostic(`readDerivationClosure: ${closure.size} derivations in ${ms.toFixed(0)} ms`);
  // Nix's own view of the same closure: every .drv nix-store -qR lists.
  const nixView = (await run(["nix-store", "-qR", root], { env: NIX_ENV })).stdout
    .split("\n")
    .filter((p) => p.endsWith(".drv"));
  assert.equal(closure.size, 5001);
  assert.deepEqual([...closure.keys()].sort(), nixView.sort());
  const rootDrv = closure.get(root);
  assert.ok(rootDrv);
  assert.equal(rootDrv.inputDrvs.size, 5000);
  const child = [...closure.entries()].find(([p]) => p.endsWith("-node-4.drv"));
  assert.ok(child);
  // node 4's parent is node 1 ((4 - 1) / 2).
  assert.deepEqual(
    [...child[1].inputDrvs.keys()].map((p) => p.replace(/^.*-node-/, "node-")),
    ["node-1.drv"],
  );
  assert.ok(ms < 5000, `reading 5,001 derivations took ${ms} ms`);
});

test("bad roots and missing files are clear errors", async () => {
  await assert.rejects(readDerivationClosure(["/etc/passwd"]), (e: unknown) => {
    assert.ok(isNixpoolError(e));
    assert.equal(e.code, "DERIVATION_INVALID");
    assert.match(e.message, /"\/etc\/passwd" is not a derivation path/);
    return true;
  });
  const missing = `/nix/store/${"0".repeat(32)}-missing.drv`;
  await assert.rejects(readDerivationClosure([missing]), (e: unknown) => {
    assert.ok(isNixpoolError(e));
    assert.equal(e.code, "DERIVATION_UNREADABLE");
    assert.match(e.message, /missing\.drv \(ENOENT\)/);
    return true;
  });
});
