import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { localSystem } from "../../src/config/load.js";
import { checkParts } from "../../src/core/flake-check.js";
import { run } from "../../src/adapters/runner.js";
import { NO_FLAKE_OPTIONS, type FlakeInstallable, type Installable } from "../../src/core/installable.js";
import { evaluateDerivations, evaluateFlake } from "../../src/dispatch/evaluate.js";
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

test("several outputs of a flake without a lock file: locked once, one commit with --commit-lock-file, no git race", async () => {
  await withTempDir(async (dir) => {
    await mkdir(join(dir, "dep"));
    await writeFile(join(dir, "dep", "flake.nix"), `{ outputs = _: { value = "v"; }; }`);
    await writeFile(
      join(dir, "flake.nix"),
      `{
  inputs.dep.url = "path:./dep";
  outputs = { self, dep }: {
    packages.${SYSTEM} = builtins.listToAttrs (builtins.genList (i: {
      name = "p\${toString i}";
      value = builtins.derivation { name = "p\${toString i}"; v = dep.value; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
    }) 6);
  };
}
`,
    );
    const env = {
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@t",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@t",
    };
    const git = (...args: string[]) => run(["git", "-C", dir, ...args], { env });
    await git("init", "-q");
    await git("add", "flake.nix", "dep/flake.nix");
    await git("commit", "-q", "-m", "init");
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const installables: Installable[] = Array.from({ length: 6 }, (_, n) => ({
        kind: "flake",
        ref: dir,
        fragment: `p${n}`,
        shown: `${dir}#p${n}`,
      }));
      const warnings: string[] = [];
      const roots = await evaluateDerivations({
        installables,
        flake: { ...NO_FLAKE_OPTIONS, commitLockFile: true },
        onWarning: (m) => warnings.push(m),
      });
      assert.equal(roots.length, 6);
      const log = (await git("log", "--format=%s")).stdout.trim().split("\n");
      assert.deepEqual(log, ["flake.lock: Add", "init"]);
      assert.ok(!warnings.some((w) => /updating lock file/.test(w)), warnings.join("\n"));
    } finally {
      process.env = saved;
    }
  });
});
