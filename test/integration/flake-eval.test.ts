import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { localSystem } from "../../src/config/load.js";
import { checkParts } from "../../src/core/flake-check.js";
import { NO_FLAKE_OPTIONS, type FlakeInstallable } from "../../src/core/installable.js";
import { evaluateFlake } from "../../src/dispatch/evaluate.js";
import { withTempDir } from "../helpers/cli.js";

// Evaluation only (real Nix 2.8, no pool): how a flake's sets become derivations when some members
// do not evaluate. Seconds.

const SYSTEM = localSystem();

/** A flake whose checks and NixOS systems fail to evaluate in each of the ways Nix reports. */
const FLAKE = `{
  outputs = { self }:
    let
      mk = name: builtins.derivation { inherit name; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
    in {
      checks.${SYSTEM} = {
        ok = mk "ok";
        thrown = throw "this check throws";
        attrMissing = { }.notThere;
        typeError = mk (1 + "x");
      };
      nixosConfigurations = {
        good.config.system.build.toplevel = mk "good-system";
        bad.config.system.build = { };
      };
    };
}
`;

test("a set member that does not evaluate, whatever Nix's error, is named alone and the others still evaluate", async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, "flake.nix"), FLAKE);
    const flake: FlakeInstallable = { kind: "flake", ref: `path:${dir}`, fragment: "", shown: `path:${dir}` };
    const [checks, , nixos] = checkParts(flake, SYSTEM);
    assert.ok(checks && nixos);

    const c = await evaluateFlake(checks.installable, NO_FLAKE_OPTIONS, checks.select);
    assert.deepEqual(
      c.roots.map((r) => r.attr),
      [`checks.${SYSTEM}.ok`],
    );
    const failed = new Map(c.failed.map((f) => [f.attr, f.error]));
    assert.deepEqual([...failed.keys()].sort(), [
      `checks.${SYSTEM}.attrMissing`,
      `checks.${SYSTEM}.thrown`,
      `checks.${SYSTEM}.typeError`,
    ]);
    assert.match(failed.get(`checks.${SYSTEM}.attrMissing`)?.message ?? "", /attribute 'notThere' missing/);
    assert.match(failed.get(`checks.${SYSTEM}.typeError`)?.message ?? "", /cannot add/);
    assert.match(failed.get(`checks.${SYSTEM}.thrown`)?.message ?? "", /this check throws/);

    const n = await evaluateFlake(nixos.installable, NO_FLAKE_OPTIONS, nixos.select);
    assert.deepEqual(
      n.roots.map((r) => r.attr),
      ["nixosConfigurations.good"],
    );
    assert.deepEqual(
      n.failed.map((f) => f.attr),
      ["nixosConfigurations.bad"],
    );
    assert.match(n.failed[0]?.error.message ?? "", /toplevel/);
  });
});

test("a single derivation that does not evaluate is still one error, the set's walk is not split", async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, "flake.nix"), FLAKE);
    const i: FlakeInstallable = {
      kind: "flake",
      ref: `path:${dir}`,
      fragment: `checks.${SYSTEM}.typeError`,
      shown: `path:${dir}#checks.${SYSTEM}.typeError`,
    };
    await assert.rejects(evaluateFlake(i, NO_FLAKE_OPTIONS, { deep: false, toplevel: false }), (e: Error) => {
      assert.match(e.message, /cannot add/);
      return true;
    });
  });
});
