import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { isHostFragment, nixosToplevel, planDeploySystems } from "../../src/core/deploy/deploy-systems.js";
import { ExitCode, isNixpoolError, type NixpoolError } from "../../src/core/errors.js";
import type { FileInstallable, FlakeInstallable } from "../../src/core/installable.js";

function errorOf(f: () => unknown): NixpoolError {
  try {
    f();
  } catch (e) {
    if (isNixpoolError(e)) return e;
    throw e;
  }
  assert.fail("expected a NixpoolError");
}

const flake = (fragment: string): FlakeInstallable => ({
  kind: "flake",
  ref: "/repo",
  fragment,
  shown: fragment === "" ? "." : `.#${fragment}`,
});
const FILE: FileInstallable = {
  kind: "file",
  file: "/repo/system.nix",
  shown: "system.nix",
  attrs: [],
  args: [],
};
const NAMES = ["web", "db"];
const TOPLEVEL = (n: string) => `nixosConfigurations.${n}.config.system.build.toplevel`;

describe("deploy: which system each target gets", () => {
  it(".#HOST without --target: HOST's toplevel to the target HOST (nixos-rebuild --flake .#HOST)", () => {
    const [a, ...rest] = planDeploySystems(flake("web"), [], NAMES);
    assert.equal(rest.length, 0);
    assert.deepEqual(a?.targets, ["web"]);
    assert.equal(a?.configuration, "web");
    assert.equal(a?.system.kind === "flake" && a.system.fragment, TOPLEVEL("web"));
    assert.equal(a?.system.kind === "flake" && a.system.shown, ".#web");
  });

  it(".#HOST --target a --target b: HOST's system to both", () => {
    const plan = planDeploySystems(flake("web"), ["a", "b"], NAMES);
    assert.deepEqual(
      plan.map((p) => p.targets),
      [["a", "b"]],
    );
  });

  it(". --target web --target db: each target its own configuration, in order", () => {
    const plan = planDeploySystems(flake(""), ["web", "db"], NAMES);
    assert.deepEqual(
      plan.map((p) => [p.configuration, p.targets, p.system.kind === "flake" ? p.system.fragment : ""]),
      [
        ["web", ["web"], TOPLEVEL("web")],
        ["db", ["db"], TOPLEVEL("db")],
      ],
    );
  });

  it("an unknown configuration: DEPLOY_CONFIG_UNKNOWN (2) naming those there are; none at all says so", () => {
    for (const [i, targets] of [
      [flake("mail"), []],
      [flake(""), ["web", "mail"]],
    ] as const) {
      const e = errorOf(() => planDeploySystems(i, targets, NAMES));
      assert.equal(e.code, "DEPLOY_CONFIG_UNKNOWN");
      assert.equal(e.exitCode, ExitCode.usage);
      assert.equal(e.message, "The flake /repo has no NixOS configuration mail; it has web, db.");
      assert.equal(e.hint, "Deploy one of them, e.g.: nixpool deploy .#web --target mail");
    }
    const none = errorOf(() => planDeploySystems(flake("web"), [], []));
    assert.match(none.message, /has no NixOS configurations/);
  });

  it("an attribute path (.#x.y) or a Nix file goes as it is to every --target, and needs one", () => {
    const [a] = planDeploySystems(flake("systems.web"), ["t"], NAMES);
    assert.equal(a?.system.kind === "flake" && a.system.fragment, "systems.web");
    assert.deepEqual(a?.targets, ["t"]);
    assert.deepEqual(planDeploySystems(FILE, ["t", "u"], undefined)[0]?.targets, ["t", "u"]);
    for (const i of [flake("systems.web"), FILE, flake("")]) {
      const e = errorOf(() => planDeploySystems(i, [], NAMES));
      assert.equal(e.code, "USAGE");
      assert.equal(e.exitCode, ExitCode.usage);
    }
  });

  it("a host name is a fragment without dots or quotes; an odd configuration name is quoted", () => {
    assert.equal(isHostFragment("web-1"), true);
    assert.equal(isHostFragment("a.b"), false);
    assert.equal(isHostFragment(""), false);
    assert.equal(
      nixosToplevel(flake(""), "web.example").fragment,
      `nixosConfigurations."web.example".config.system.build.toplevel`,
    );
  });
});
