import { test } from "node:test";
import assert from "node:assert/strict";
import { joinNixArgPairs } from "../../src/cli/nix-args.js";
import { builderForMachine, nixBuildArgv } from "../../src/adapters/nix-build.js";
import type { Builder } from "../../src/core/builder.js";

test("nix-build style --arg NAME VALUE pairs are joined; the joined form passes through", () => {
  assert.deepEqual(
    joinNixArgPairs(["node", "x", "build", "f.nix", "--arg", "n", "40", "--argstr", "seed", "a b"]),
    ["node", "x", "build", "f.nix", "--arg=n=40", "--argstr=seed=a b"],
  );
  assert.deepEqual(joinNixArgPairs(["build", "--arg", "n=4", "f.nix"]), ["build", "--arg", "n=4", "f.nix"]);
});

test("nix-build argv never builds locally and never substitutes", () => {
  const argv = nixBuildArgv(
    {
      builders: [],
      stateDir: "/s",
      paths: ["/x/f.nix"],
      attrs: ["a.b"],
      args: [{ kind: "argstr", name: "s", value: "v" }],
    },
    "/out",
    "/s/client/machines",
  );
  assert.deepEqual(argv, [
    "nix-build",
    "/x/f.nix",
    "-A",
    "a.b",
    "--argstr",
    "s",
    "v",
    "--out-link",
    "/out",
    "--max-jobs",
    "0",
    "--builders",
    "@/s/client/machines",
    "--option",
    "substituters",
    "",
    "--option",
    "builders-use-substitutes",
    "false",
    "--log-format",
    "internal-json",
  ]);
});

test("machine URIs from Nix's log map back to builder names", () => {
  const b = { name: "b1", host: "10.0.0.2" } as Builder;
  assert.equal(builderForMachine("ssh-ng://nixpool-b1", [b]), "b1");
  assert.equal(builderForMachine("ssh://root@10.0.0.2", [b]), "b1");
  assert.equal(builderForMachine("", [b]), "local");
  assert.equal(builderForMachine("ssh://elsewhere", [b]), "ssh://elsewhere");
});
