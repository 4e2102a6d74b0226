import { test } from "node:test";
import assert from "node:assert/strict";
import { symlink } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { parseGenerations } from "../../src/core/deploy/generations.js";
import { generationsArgv } from "../../src/core/deploy/remote-scripts.js";
import { withTempDir } from "../helpers/cli.js";

const A = "/nix/store/10j32b5jyyq5vlzh5ic8x1by63irlra7-nixos-system-a";
const B = "/nix/store/b9r1paal73lsg4iahijf2mzx94ky4r98-nixos-system-b";

test("the generations of a profile, with another profile named after it beside it (system-old)", async () => {
  await withTempDir(async (dir) => {
    const profile = join(dir, "system");
    await symlink(A, `${profile}-1-link`);
    await symlink(B, `${profile}-2-link`);
    await symlink("system-2-link", profile);
    // `nix-env -p …/system-old` keeps its own generations next to system's.
    await symlink(A, `${profile}-old-1-link`);
    await symlink("system-old-1-link", `${profile}-old`);
    const r = await run(generationsArgv(profile));
    const gens = parseGenerations(r.stdout, "web", profile);
    assert.deepEqual(
      gens.map((g) => [g.number, g.path, g.current]),
      [
        [1, A, false],
        [2, B, true],
      ],
    );
  });
});
