// Evaluation failures of nixpool build, with the real nix-build: nothing reaches a builder (the
// inventory's only builder does not exist), and Nix's warnings are never taken as the reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli, withTempDir } from "../helpers/cli.js";

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

/** nixpool build ARGS with one unreachable builder and a setting Nix warns about. */
async function build(dir: string, args: string[]) {
  const inventory = join(dir, "nixpool.toml");
  await writeFile(inventory, `[builders.b1]\nhost = "192.0.2.1"\nhostKey = "${HOST_KEY}"\n`);
  return runCli(join(dir, "state"), ["--inventory", inventory, "build", ...args], {
    cwd: dir,
    env: { ...process.env, NIX_CONFIG: "no-such-setting = 1" },
    timeout: 60_000,
  });
}

test("a missing file is NIX_FILE_NOT_FOUND (exit 2), not Nix's warning, with no doctor hint", async () => {
  await withTempDir(async (dir) => {
    const r = await build(dir, ["nope.nix"]);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^error: The Nix file ${join(dir, "nope.nix")} does not exist\\.$`, "m"),
    );
    assert.doesNotMatch(r.stderr, /warning|doctor/);
    const j = await build(dir, ["nope.nix", "--json"]);
    assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, "NIX_FILE_NOT_FOUND");
  });
});

test("a syntax error and an evaluation error show Nix's own error with file:line:column", async () => {
  await withTempDir(async (dir) => {
    const syntax = join(dir, "syntax.nix");
    await writeFile(syntax, "let x = 1; in { a = x\n");
    const r = await build(dir, [syntax]);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /^error: syntax error, unexpected end of file/m);
    assert.match(r.stderr, new RegExp(`at ${syntax}:1:22:`));
    assert.match(
      r.stderr,
      new RegExp(
        `^error: Nix could not evaluate ${syntax}: syntax error, .* \\(at ${syntax}:1:22\\)\\.$`,
        "m",
      ),
    );
    assert.match(r.stderr, /^hint: Fix the expression at /m);
    assert.doesNotMatch(r.stderr, /warning|doctor/);

    const typeError = join(dir, "type.nix");
    await writeFile(typeError, 'let x = 1; in\n  x + "a"\n');
    const j = await build(dir, [typeError, "--json"]);
    assert.equal(j.exitCode, 1, j.stderr);
    const error = (JSON.parse(j.stdout) as { error: { code: string; details: Record<string, unknown> } })
      .error;
    assert.equal(error.code, "NIX_EVAL_FAILED");
    assert.deepEqual(error.details["position"], { file: typeError, line: 2, column: 7 });
    assert.match(String(error.details["nixError"]), /^error: cannot add a string to an integer/);
  });
});
