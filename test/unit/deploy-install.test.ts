import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { deployExitCode, summaryRows, type TargetOutcome } from "../../src/core/deploy/deploy-outcome.js";
import {
  checkInstallFlags,
  DEFAULT_INSTALL_ROOT,
  installFailedError,
  installInterruptedError,
  installNextStep,
  installPreflightArgv,
  nixosInstallArgv,
  parseInstallRoot,
  preflightError,
} from "../../src/core/deploy/install.js";
import { renderTargetCommand } from "../../src/core/deploy/target-ssh-argv.js";
import { ExitCode, isNixpoolError, type NixpoolError } from "../../src/core/errors.js";

function errorOf(f: () => unknown): NixpoolError {
  try {
    f();
  } catch (e) {
    if (isNixpoolError(e)) return e;
    throw e;
  }
  assert.fail("expected a NixpoolError");
}

const SYSTEM = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-newhost";
const T = { name: "newhost", host: "192.0.2.7", port: 22, user: "root" };

describe("deploy --install: flags", () => {
  it("--root is /mnt by default, an absolute directory otherwise (a trailing slash dropped), never / or ..", () => {
    assert.equal(parseInstallRoot(undefined), DEFAULT_INSTALL_ROOT);
    assert.equal(DEFAULT_INSTALL_ROOT, "/mnt");
    assert.equal(parseInstallRoot("/mnt/"), "/mnt");
    assert.equal(parseInstallRoot("/tmp/new-root"), "/tmp/new-root");
    for (const bad of ["/", "//", "mnt", "", "/mnt/../etc", "/mnt x", "/mnt;reboot", "/mnt\n"]) {
      const e = errorOf(() => parseInstallRoot(bad));
      assert.equal(e.code, "USAGE", bad);
      assert.equal(e.exitCode, ExitCode.usage);
    }
  });

  it("--install refuses --rollback, --generations, --action, --activate, --confirm-timeout; --root needs --install", () => {
    checkInstallFlags({ install: true, root: "/mnt" });
    checkInstallFlags({ action: "boot", rollback: false });
    for (const [flag, f] of [
      ["--rollback", { rollback: true }],
      ["--generations", { generations: true }],
      ["--action", { action: "switch" }],
      ["--activate", { activate: "bin/activate" }],
      ["--confirm-timeout", { confirmTimeout: "5s" }],
    ] as const) {
      const e = errorOf(() => checkInstallFlags({ install: true, ...f }));
      assert.equal(e.code, "FLAG_CONFLICT");
      assert.equal(e.exitCode, ExitCode.usage);
      assert.ok(e.message.includes(flag), e.message);
      assert.match(e.hint ?? "", /nixpool deploy .*--install/);
    }
    const root = errorOf(() => checkInstallFlags({ root: "/mnt" }));
    assert.equal(root.code, "FLAG_CONFLICT");
    assert.equal(root.exitCode, ExitCode.usage);
  });
});

describe("deploy --install: what runs on the target", () => {
  it("nixos-install --system PATH --root ROOT, no root password, no channel; only a store path", () => {
    assert.deepEqual(nixosInstallArgv(SYSTEM, "/mnt"), [
      "nixos-install",
      "--system",
      SYSTEM,
      "--root",
      "/mnt",
      "--no-root-passwd",
      "--no-channel-copy",
    ]);
    assert.throws(() => nixosInstallArgv("result", "/mnt"));
    // Every word reaches the login shell quoted, behind sudo -n when the target needs it.
    assert.equal(
      renderTargetCommand({ sudo: true }, nixosInstallArgv(SYSTEM, "/mnt")),
      `sudo -n -- nixos-install --system ${SYSTEM} --root /mnt --no-root-passwd --no-channel-copy`,
    );
  });

  it("the preflight takes the root as a parameter (never script text); its answer: ready, no-program or no-root", () => {
    const argv = installPreflightArgv("/no such dir");
    assert.deepEqual(argv.slice(0, 2), ["sh", "-c"]);
    assert.deepEqual(argv.slice(3), ["sh", "/no such dir"]);
    assert.ok(!(argv[2] ?? "").includes("/no such dir"));
    assert.equal(preflightError(T, "/mnt", "ready\n"), undefined);
    assert.equal(preflightError(T, "/mnt", "no-root\n")?.code, "DEPLOY_INSTALL_NOT_READY");
    assert.equal(
      preflightError(T, "/mnt", "no-root")?.message,
      "Target newhost has no directory /mnt to install into; nothing was copied.",
    );
    assert.match(preflightError(T, "/mnt", "no-program")?.message ?? "", /has no nixos-install on its PATH/);
    assert.equal(preflightError(T, "/mnt", "Welcome!\nready?")?.code, "DEPLOY_TARGET_ANSWER_INVALID");
  });

  it("a failing nixos-install: its last stderr line in the message, the tail in details, the command to rerun in the hint", () => {
    const stderr = `copying channel...\n${Array.from({ length: 30 }, (_, i) => `line ${i}`).join("\n")}\nerror: boot loader failed\n\n`;
    const e = installFailedError(T, SYSTEM, "/mnt", 1, stderr);
    assert.equal(e.code, "DEPLOY_INSTALL_FAILED");
    assert.equal(e.exitCode, ExitCode.failed);
    assert.equal(e.message, "nixos-install failed on target newhost with exit 1: error: boot loader failed.");
    assert.equal(
      e.hint,
      `The system is in the installer's store; fix the cause and run it again: ssh -p 22 root@192.0.2.7 nixos-install --system ${SYSTEM} --root /mnt --no-root-passwd --no-channel-copy`,
    );
    const details = e.details as { stderr: string };
    assert.equal(details.stderr.split("\n").length, 20);
    assert.equal(details.stderr.split("\n").at(-1), "error: boot loader failed");
    assert.equal(
      installFailedError(T, SYSTEM, "/mnt", 2, "").message,
      "nixos-install failed on target newhost with exit 2.",
    );
  });

  it("interrupted during nixos-install: exit 130, the install may be half done, the command to run it again", () => {
    const e = installInterruptedError(T, SYSTEM, "/mnt");
    assert.equal(e.code, "INTERRUPTED");
    assert.equal(e.exitCode, ExitCode.interrupted);
    assert.match(
      e.message,
      /^Interrupted during nixos-install on target newhost: .* \/mnt may not boot yet\.$/,
    );
    assert.match(
      e.hint ?? "",
      /ssh -p 22 root@192\.0\.2\.7 nixos-install --system \/nix\/store\/\S+ --root \/mnt /,
    );
  });

  it("what to do next: reboot, then pin the installed system's host key", () => {
    const next = installNextStep(T, "/mnt");
    assert.match(next, /^reboot newhost into its new system \(ssh -p 22 root@192\.0\.2\.7 reboot\); /);
    assert.match(next, /pin that one as newhost's hostKey/);
    assert.match(next, /nixos-enter --root \/mnt -c passwd/);
  });
});

describe("deploy --install: outcomes", () => {
  const installed: TargetOutcome = {
    target: "a",
    status: "installed",
    generation: undefined,
    path: SYSTEM,
    ms: 1500,
    next: "reboot a",
  };
  const failed: TargetOutcome = {
    target: "b",
    status: "failed",
    generation: undefined,
    path: undefined,
    ms: 800,
    error: { code: "DEPLOY_INSTALL_FAILED", message: "nixos-install failed.", hint: undefined, exitCode: 1 },
  };

  it("installed is a success: exit 0 when all installed, 3 with a failure beside, 1 when none", () => {
    assert.equal(deployExitCode([installed]), ExitCode.ok);
    assert.equal(deployExitCode([installed, failed]), ExitCode.partial);
    assert.equal(deployExitCode([failed]), ExitCode.failed);
  });

  it("the table says installed, no generation, the system's path", () => {
    assert.deepEqual(
      summaryRows([installed], (ms) => `${ms}ms`),
      [["a", "installed", "-", "1500ms", SYSTEM]],
    );
  });
});
