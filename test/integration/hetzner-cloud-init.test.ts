import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { renderCloudInit } from "../../src/core/cloud-init.js";
import { makeTempDir } from "../helpers/cli.js";

test("nixpool's worker user_data passes cloud-init's own schema validator", async (t) => {
  const { dir, cleanup } = await makeTempDir("nixpool-cloudinit-");
  t.after(cleanup);
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host")]);
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, "login")]);
  const userData = renderCloudInit({
    hostname: "nixpool-0123456789",
    hostKeyPrivate: await readFile(join(dir, "host"), "utf8"),
    hostKeyPublic: await readFile(join(dir, "host.pub"), "utf8"),
    authorizedKeys: [(await readFile(join(dir, "login.pub"), "utf8")).trim()],
    maxJobs: 4,
    systemFeatures: ["nixos-test", "big-parallel", "benchmark"],
  });
  const file = join(dir, "user-data.yaml");
  await writeFile(file, userData);
  const ok = await run(["cloud-init", "schema", "--config-file", file], { reject: false });
  assert.equal(ok.exitCode, 0, ok.stderr + ok.stdout);
  assert.match(ok.stdout, /Valid cloud-config/);

  // The validator is not a rubber stamp: the same document with one wrong field fails.
  const broken = join(dir, "broken.yaml");
  await writeFile(broken, userData.replace("ssh_genkeytypes:\n  - ed25519", "ssh_genkeytypes: []"));
  assert.notEqual(await readFile(broken, "utf8"), userData);
  const bad = await run(["cloud-init", "schema", "--config-file", broken], { reject: false });
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stdout + bad.stderr, /ssh_genkeytypes/);
});
