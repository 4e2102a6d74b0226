import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import type { DeployTarget } from "../../src/core/deploy/target.js";
import { linkTargets } from "../../src/deploy/run-deploy.js";
import { withTempDir } from "../helpers/cli.js";

const target = (name: string, blob: string): DeployTarget => ({
  name,
  host: "192.0.2.1",
  port: 22,
  user: "root",
  hostKey: `ssh-ed25519 ${blob}`,
  identityFile: undefined,
  sudo: false,
  profile: "/nix/var/nix/profiles/system",
  source: "inventory",
});

test("two deploys at once (different targets) never take each other's pinned key away", async () => {
  await withTempDir(async (stateDir) => {
    const [web] = await linkTargets(stateDir, [target("web", "AAAAC3NzaC1lZDI1NTE5AAAAIWeb")]);
    // A second nixpool deploy (or --generations) to another target starts while web's runs: web's
    // later connections (the fresh one that confirms the activation) still find web's key.
    await linkTargets(stateDir, [target("db", "AAAAC3NzaC1lZDI1NTE5AAAAIDb")]);
    const pinned = await readFile(web?.knownHostsFile ?? "", "utf8");
    assert.match(pinned, /^nixpool-target-web ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIWeb$/m);
    assert.doesNotMatch(pinned, /nixpool-target-db/, "each target reached with its own key only");
  });
});
