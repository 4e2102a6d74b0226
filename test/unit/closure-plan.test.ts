import { test } from "node:test";
import assert from "node:assert/strict";
import { planClosureCopy } from "../../src/core/deploy/closure-plan.js";
import type { PathInfo } from "../../src/core/nix-serve/index.js";

const p = (name: string) => `/nix/store/${name.padEnd(32, "0")}-${name}`;
const info = (name: string, refs: string[], narSize = 100): PathInfo => ({
  path: p(name),
  deriver: "",
  references: refs.map(p),
  downloadSize: narSize,
  narSize,
  narHash: "sha256:x",
  ca: "",
  sigs: [],
});

// system -> app -> lib -> glibc; system -> glibc; app references itself.
const closure = [
  info("system", ["app", "glibc"], 10),
  info("app", ["app", "lib"], 20),
  info("lib", ["glibc"], 30),
  info("glibc", [], 40),
];

test("a target with nothing gets the whole closure, every path after its references", () => {
  const plan = planClosureCopy(closure, []);
  assert.deepEqual(plan.missing, [p("glibc"), p("lib"), p("app"), p("system")]);
  assert.equal(plan.closure, 4);
  assert.equal(plan.narBytes, 100);
});

test("only what the target lacks is sent; a complete target gets nothing", () => {
  const plan = planClosureCopy(closure, [p("glibc"), p("lib")]);
  assert.deepEqual(plan.missing, [p("app"), p("system")]);
  assert.equal(plan.narBytes, 30);
  assert.deepEqual(
    planClosureCopy(
      closure,
      closure.map((i) => i.path),
    ),
    { closure: 4, missing: [], narBytes: 0 },
  );
});

test("infos that are not a closure are refused, naming the missing reference", () => {
  assert.throws(
    () => planClosureCopy([info("app", ["lib"])], []),
    /lib.* \(a reference of .*app\) is not in the closure/,
  );
  // ...unless the target already holds it.
  assert.deepEqual(planClosureCopy([info("app", ["lib"])], [p("lib")]).missing, [p("app")]);
});
