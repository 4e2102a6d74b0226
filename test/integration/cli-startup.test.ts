import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { CLI, withTempDir } from "../helpers/cli.js";

// `nixpool builders` with nothing to read loads no schema (start-up, docs/performance.md); with a
// file to read, the file is validated as strictly as ever.

/** A module hook that prints every package module the CLI loads, one `LOADED url` line each. */
const HOOK = `
import { register } from "node:module";
register("data:text/javascript," + encodeURIComponent(\`
export async function load(url, context, next) {
  if (url.includes("/node_modules/")) process.stderr.write("LOADED " + url + "\\\\n");
  return next(url, context);
}\`));
`;

async function runBuilders(dir: string, args: string[] = []) {
  const hook = join(dir, "hook.mjs");
  await writeFile(hook, HOOK);
  const state = join(dir, "state");
  const r = await run(["node", "--import", hook, CLI, "--state-dir", state, ...args, "builders"], {
    cwd: dir,
    reject: false,
    timeout: 60_000,
  });
  const loaded = r.stderr.split("\n").filter((l) => l.startsWith("LOADED "));
  const packages = new Set(loaded.map((l) => /\/node_modules\/((@[^/]+\/)?[^/]+)\//.exec(l)?.[1]));
  return { ...r, packages, stderr: r.stderr.replace(/^LOADED .*\n/gm, "") };
}

test("nixpool builders without an inventory or records loads neither zod nor the TOML parser", () =>
  withTempDir(async (dir) => {
    const r = await runBuilders(dir);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /No builders/);
    assert.ok(r.packages.has("commander"), `the hook saw no package at all: ${[...r.packages].join(", ")}`);
    assert.equal(r.packages.has("zod"), false);
    assert.equal(r.packages.has("smol-toml"), false);
  }));

test("with files to read, nixpool builders loads the schemas and refuses an invalid inventory or pool record", () =>
  withTempDir(async (dir) => {
    await writeFile(join(dir, "nixpool.toml"), '[builders.b1]\nhost = "h"\nmaxJobs = "4"\n');
    const inv = await runBuilders(dir);
    assert.equal(inv.exitCode, 2, inv.stderr);
    assert.match(inv.stderr, /nixpool\.toml: builders\.b1\.maxJobs: must be number/);
    assert.ok(inv.packages.has("zod") && inv.packages.has("smol-toml"));

    await writeFile(join(dir, "nixpool.toml"), '[builders.b1]\nhost = "h"\n');
    await mkdir(join(dir, "state", "local"), { recursive: true });
    await writeFile(join(dir, "state", "local", "pool.json"), JSON.stringify({ jobs: "2" }));
    const pool = await runBuilders(dir);
    assert.notEqual(pool.exitCode, 0);
    assert.match(pool.stderr, /local pool record .*pool\.json is not valid \(jobs: /);

    await writeFile(
      join(dir, "state", "local", "pool.json"),
      JSON.stringify({ jobs: 2, createdAt: "2026-11-30T12:00:00Z", clientKeyPath: "/k", hosts: [] }),
    );
    await mkdir(join(dir, "state", "hetzner", "workers", "0123456789"), { recursive: true });
    await writeFile(join(dir, "state", "hetzner", "workers", "0123456789", "worker.json"), "{}");
    const worker = await runBuilders(dir);
    assert.equal(worker.exitCode, 0, worker.stderr);
    assert.match(worker.stdout, /b1/);
    assert.ok(worker.packages.has("zod"));
  }));
