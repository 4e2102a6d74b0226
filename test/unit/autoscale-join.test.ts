import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Builder } from "../../src/core/builder.js";
import { statePaths } from "../../src/config/state-paths.js";
import { joinWithSshFiles } from "../../src/serve/autoscale/coordinator-autoscale.js";
import { sampleBuilder } from "../helpers/builders.js";
import { ed25519Line } from "../helpers/key-fixtures.js";

// Two workers woken from the same snapshot answer at the same moment (bench/autoscale.ts
// --hetzner-times): each join rewrote ssh_config and known_hosts without the other, so one
// worker had no Host alias and the other no pinned key, and the queue waited for ever.

test("workers joining at once are all in nixpool's ssh_config and known_hosts", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-join-"));
  try {
    const builders: Builder[] = [sampleBuilder({ name: "local1", hostKey: ed25519Line(1) })];
    const fleet = { builders, addBuilder: (b: Builder) => void builders.push(b) };
    const join = joinWithSshFiles({ stateDir: dir, writeSshFiles: true, fleet });
    const workers = [2, 3, 4].map((i) =>
      sampleBuilder({ name: `hz-${i}`, host: `10.0.0.${i}`, hostKey: ed25519Line(i) }),
    );
    await Promise.all(workers.map((w) => join(w)));

    assert.deepEqual(
      builders.map((b) => b.name),
      ["local1", "hz-2", "hz-3", "hz-4"],
    );
    const files = statePaths(dir).client;
    const sshConfig = await readFile(files.sshConfig, "utf8");
    const knownHosts = await readFile(files.knownHosts, "utf8");
    for (const b of builders) {
      assert.match(sshConfig, new RegExp(`^Host nixpool-${b.name}$`, "m"), b.name);
      assert.ok(knownHosts.includes(b.hostKey!.split(" ")[1]!), `${b.name}'s key`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
