import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  parseAction,
  parseActivateProgram,
  parseBuildHost,
  parseConfirmTimeout,
  parseParallel,
} from "../../src/core/deploy/deploy-options.js";
import { deployExitCode, summaryRows, type TargetOutcome } from "../../src/core/deploy/deploy-outcome.js";
import {
  currentGeneration,
  generationAfterSet,
  parseGenerations,
  rollbackGeneration,
} from "../../src/core/deploy/generations.js";
import {
  activateArgv,
  armArgv,
  claimArgv,
  generationsArgv,
  restoreArgv,
  WATCHDOG_SCRIPT,
  type ActivationSpec,
} from "../../src/core/deploy/remote-scripts.js";
import { isNixpoolError, type NixpoolError } from "../../src/core/errors.js";

function errorOf(f: () => unknown): NixpoolError {
  try {
    f();
  } catch (e) {
    assert.ok(isNixpoolError(e));
    return e;
  }
  assert.fail("expected an error");
}

const P = "/nix/var/nix/profiles/system";
const A = "/nix/store/10j32b5jyyq5vlzh5ic8x1by63irlra7-deploy-system-A";
const B = "/nix/store/b9r1paal73lsg4iahijf2mzx94ky4r98-deploy-system-B";

describe("deploy: a profile's generations", () => {
  const listing = `1\t${A}\t1796048882\n2\t${B}\t1796048886\n10\t${A}\t1796048890\ncurrent\tsystem-2-link\n`;

  it("reads numbers, systems, times and the current one, sorted by number", () => {
    const gens = parseGenerations(listing, "web", P);
    assert.deepEqual(
      gens.map((g) => [g.number, g.path, g.createdAt, g.current]),
      [
        [1, A, 1796048882, false],
        [2, B, 1796048886, true],
        [10, A, 1796048890, false],
      ],
    );
    assert.equal(currentGeneration(gens)?.number, 2);
    assert.equal(
      rollbackGeneration(gens)?.number,
      1,
      "the newest older than the current, as nix-env --rollback",
    );
  });

  it("a profile that does not exist yet has no generations", () => {
    assert.deepEqual(parseGenerations("current\t\n", "web", P), []);
    assert.equal(rollbackGeneration([]), undefined);
  });

  it("knows Nix's rule: --set makes no new generation when the newest is that system", () => {
    const gens = parseGenerations(listing, "web", P);
    assert.equal(generationAfterSet(gens, A), 10);
    assert.equal(generationAfterSet(gens, B), 11);
    assert.equal(generationAfterSet([], B), 1);
  });

  for (const [what, text] of [
    ["a missing current line", `1\t${A}\t1\n`],
    ["a path outside the store", `1\t/etc/passwd\t1\ncurrent\t\n`],
    ["a bad number", `x\t${A}\t1\ncurrent\t\n`],
    ["a current link without a number", `1\t${A}\t1\ncurrent\t/nix/store/x\n`],
  ]) {
    it(`refuses ${what}`, () => {
      const e = errorOf(() => parseGenerations(text as string, "web", P));
      assert.equal(e.code, "DEPLOY_TARGET_ANSWER_INVALID");
      assert.match(
        e.message,
        /^Target web listed the generations of \/nix\/var\/nix\/profiles\/system in a form/,
      );
    });
  }
});

describe("deploy: options", () => {
  it("reads --action, --build-host, --confirm-timeout, --activate, --parallel with their defaults", () => {
    assert.equal(parseAction(undefined), "switch");
    assert.equal(parseAction("dry-activate"), "dry-activate");
    assert.deepEqual(parseBuildHost(undefined), { kind: "auto" });
    assert.deepEqual(parseBuildHost("local"), { kind: "local" });
    assert.deepEqual(parseBuildHost("b1"), { kind: "builder", name: "b1" });
    assert.equal(parseConfirmTimeout(undefined), 30_000);
    assert.equal(parseConfirmTimeout("45"), 45_000, "a bare number is seconds");
    assert.equal(parseConfirmTimeout("2m"), 120_000);
    assert.equal(parseActivateProgram(undefined), "bin/switch-to-configuration");
    assert.equal(parseActivateProgram("bin/activate"), "bin/activate");
    assert.equal(parseActivateProgram("/run/current-system/bin/x"), "/run/current-system/bin/x");
    assert.equal(parseParallel(undefined), 4);
  });

  for (const [what, f, code] of [
    ["an unknown action", () => parseAction("reboot"), "USAGE"],
    ["a build host with a space", () => parseBuildHost("a b"), "USAGE"],
    ["a confirm timeout under 1 s", () => parseConfirmTimeout("500ms"), "DURATION_INVALID"],
    ["an --activate with arguments", () => parseActivateProgram("bin/activate --now"), "USAGE"],
    ["an --activate leaving the system", () => parseActivateProgram("../../bin/sh"), "USAGE"],
    ["--parallel 0", () => parseParallel("0"), "USAGE"],
  ] as const) {
    it(`refuses ${what} (exit 2)`, () => {
      const e = errorOf(f);
      assert.equal(e.code, code);
      assert.equal(e.exitCode, 2);
    });
  }
});

describe("deploy: outcomes", () => {
  const ok: TargetOutcome = { target: "a", status: "activated", generation: 3, path: A, ms: 1200 };
  const bad: TargetOutcome = {
    target: "b",
    status: "rolled-back",
    generation: 2,
    path: B,
    ms: 900,
    error: {
      code: "DEPLOY_ACTIVATION_FAILED",
      message: "Activation failed on target b.",
      hint: undefined,
      exitCode: 1,
    },
  };
  const usage = {
    ...bad,
    status: "failed" as const,
    error: { ...bad.error!, code: "TARGET_HOST_KEY_MISSING", exitCode: 2 },
  };

  it("exit 0 when all activated, 3 when some failed, else the failure's own status", () => {
    assert.equal(deployExitCode([ok]), 0);
    assert.equal(deployExitCode([ok, bad]), 3);
    assert.equal(deployExitCode([bad]), 1);
    assert.equal(deployExitCode([usage]), 2);
    assert.equal(deployExitCode([usage, bad]), 1);
  });

  it("one table row per target: result, generation, time, path or error", () => {
    assert.deepEqual(
      summaryRows([ok, { ...bad, generation: undefined }], (ms) => `${ms}ms`),
      [
        ["a", "activated", "3", "1200ms", A],
        ["b", "rolled-back", "-", "900ms", "DEPLOY_ACTIVATION_FAILED: Activation failed on target b."],
      ],
    );
  });
});

describe("deploy: the scripts run on the target", () => {
  const spec: ActivationSpec = {
    profile: P,
    system: B,
    program: "bin/switch-to-configuration",
    action: "switch",
    change: { kind: "set" },
    restore: { generation: 1, path: A },
    confirmSeconds: 35,
    activationLimitSeconds: 600,
  };
  const dir = "/tmp/nixpool-deploy.AbCd1234";

  it("values travel as positional parameters, never inside the script text", () => {
    for (const argv of [
      armArgv(spec),
      activateArgv(dir, spec),
      claimArgv(dir),
      restoreArgv(dir, spec),
      generationsArgv(P),
    ]) {
      assert.deepEqual(argv.slice(0, 2), ["sh", "-c"]);
      assert.equal(argv[3], "sh");
      assert.ok(!(argv[2] ?? "").includes("/nix/store/"), "no store path in a script");
    }
    assert.deepEqual(armArgv(spec).slice(4), [
      WATCHDOG_SCRIPT,
      B,
      "bin/switch-to-configuration",
      P,
      "1",
      A,
      "bin/switch-to-configuration",
      "switch",
      "35",
      "600",
    ]);
    assert.deepEqual(activateArgv(dir, spec).slice(4), [
      dir,
      P,
      "set",
      "-",
      B,
      "bin/switch-to-configuration",
      "switch",
    ]);
    assert.deepEqual(activateArgv(dir, { ...spec, change: { kind: "switch", generation: 7 } }).slice(4, 8), [
      dir,
      P,
      "switch",
      "7",
    ]);
    assert.deepEqual(
      restoreArgv(dir, { ...spec, restore: { generation: undefined, path: undefined } }).slice(4),
      [dir, P, "-", "-", "bin/switch-to-configuration", "switch"],
    );
  });
});
