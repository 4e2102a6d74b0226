import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import type { BootedHost } from "../../src/emulator/hetzner/booter.js";
import { createLocalBooter } from "../../src/emulator/hetzner/local-booter.js";
import { makeTempDir } from "../helpers/cli.js";

// The local booter's half of the emulator's provisioning time: while cloud-init "installs" Nix,
// SSH answers and Nix's commands are not found on that machine (exit 127), and only there; once
// installed, they work. The emulator's sequencing of it is in test/unit/emulator-boot-timing.test.ts.

describe(
  "an emulated server whose cloud-init is still installing Nix (real host, sshd)",
  { timeout: 120_000 },
  () => {
    let dir: string;
    let cleanup: () => Promise<void>;
    let host: BootedHost;
    let key: string;

    before(async () => {
      ({ dir, cleanup } = await makeTempDir("nixpool-provisioning-"));
      key = join(dir, "login");
      await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", key]);
      host = await createLocalBooter(join(dir, "hosts"))({
        serverId: 4242,
        name: "provisioning",
        cores: 1,
        userData: undefined,
        hostKeyPrivate: undefined,
        authorizedKeys: [(await readFile(`${key}.pub`, "utf8")).trim()],
        nixConf: undefined,
      });
    });
    after(async () => {
      await host?.stop();
      await cleanup?.();
    });

    const onHost = (command: string) =>
      run(
        [
          "ssh",
          "-i",
          key,
          "-o",
          "BatchMode=yes",
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "LogLevel=ERROR",
          `root@${host.address}`,
          command,
        ],
        { reject: false, timeout: 60_000 },
      );

    test("Nix is not found over SSH until it is installed; this machine's Nix is untouched", async () => {
      assert.equal(typeof host.setNixInstalled, "function", "the local booter can hide Nix");
      const setNixInstalled = (installed: boolean) => host.setNixInstalled?.(installed);
      assert.equal((await onHost("nix-store --version")).exitCode, 0);

      await setNixInstalled(false);
      assert.equal((await onHost("true")).exitCode, 0, "SSH answers while Nix is being installed");
      const hidden = await onHost("nix-store --version");
      assert.equal(hidden.exitCode, 127);
      assert.match(hidden.stderr, /nix-store: not found/);
      const ping = await onHost("nix-daemon --stdio </dev/null");
      assert.equal(ping.exitCode, 127);
      const here = await run(["nix-store", "--version"], { reject: false });
      assert.equal(here.exitCode, 0, "the hiding stays in the host's mount namespace");

      await setNixInstalled(true);
      const back = await onHost("nix-store --version");
      assert.equal(back.exitCode, 0, back.stderr);
      assert.match(back.stdout, /nix-store \(Nix\) 2\./);
    });
  },
);
