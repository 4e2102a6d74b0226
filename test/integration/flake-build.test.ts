import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { localSystem } from "../../src/config/load.js";
import { freshSeed } from "../helpers/example-builds.js";
import { makeTempDir } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe } from "../helpers/serve-process.js";

// Flakes on a real pool: flakes made here as git repositories (with flake.lock, a path: input, a
// dirty tree), built by nixpool build and nixpool check on two real builder hosts.

const SYSTEM = localSystem();
const NIX_FLAKES = [
  "nix",
  "--extra-experimental-features",
  "nix-command flakes",
  "--option",
  "substituters",
  "",
];

/** A flake whose every derivation carries `seed` (a fresh seed: nothing is built yet). */
function flakeNix(seed: string, checks: number, failing: string | undefined, unevaluable = false): string {
  return `{
  inputs.dep.url = "path:./dep";
  outputs = { self, dep }:
    let
      mk = name: script: builtins.derivation {
        inherit name;
        seed = "${seed}";
        system = "${SYSTEM}";
        builder = "/bin/sh";
        args = [ "-c" script ];
      };
      check = i: mk "check-\${toString i}" (if "check-\${toString i}" == "${failing ?? ""}"
        then "echo check-\${toString i} is failing on purpose; exit 3"
        else "echo ok > $out");
    in {
      packages.${SYSTEM} = {
        hello = mk "hello" "echo hello > $out";
        two = mk "two" "echo two > $out";
        hooked = mk "hooked" "echo hooked > $out";
        default = mk "default-pkg" "echo default > $out";
        withDep = mk "with-dep" "echo \${dep.value} > $out";
      };
      checks.${SYSTEM} = builtins.listToAttrs (builtins.genList (i: { name = "c\${toString i}"; value = check i; }) ${checks})
        // ${unevaluable ? `{ unevaluable = throw "this check does not evaluate"; }` : "{ }"};
      nixosConfigurations.machine = { config.system.build.toplevel = mk "machine-system" "echo system > $out"; };
      hydraJobs = {
        linux.small = { a = mk "job-a" "echo a > $out"; };
        deeper.still.deeper = { b = mk "job-b" "echo b > $out"; };
      };
      broken = mk "broken" (1 + "x");
    };
}
`;
}

/** A git repository holding the flake and its path: input (committed, with its flake.lock). */
async function makeFlake(
  dir: string,
  seed: string,
  checks = 3,
  failing?: string,
  unevaluable = false,
): Promise<void> {
  await mkdir(join(dir, "dep"), { recursive: true });
  await writeFile(join(dir, "flake.nix"), flakeNix(seed, checks, failing, unevaluable));
  await writeFile(join(dir, "dep", "flake.nix"), `{ outputs = { self }: { value = "dep-${seed}"; }; }\n`);
  const git = (args: string[]) =>
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: dir, timeout: 60_000 });
  await git(["init", "-q", "."]);
  await git(["add", "-A"]);
  const lock = await run([...NIX_FLAKES, "flake", "lock"], { cwd: dir, reject: false, timeout: 120_000 });
  assert.equal(lock.exitCode, 0, lock.stderr);
  await git(["add", "-A"]);
  await git(["commit", "-qm", "flake"]);
}

/** What Nix itself makes of an output: the path `nix build` would produce. */
async function nixOutPath(dir: string, attr: string): Promise<string> {
  const r = await run([...NIX_FLAKES, "eval", "--raw", `.#${attr}.outPath`], { cwd: dir, timeout: 120_000 });
  return r.stdout.trim();
}

interface BuildJson {
  outputs: string[];
  derivations: { name: string; builder: string | null; status: string }[];
}

interface ErrorJson {
  error: { code: string; message: string; hint: string; details?: { tried?: string[]; position?: unknown } };
}

describe("flakes on a local pool", { timeout: 900_000 }, () => {
  let pool: TestPool;
  let work: { dir: string; cleanup: () => Promise<void> };
  let repo: string;
  const seed = freshSeed();

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-flake-");
    repo = join(work.dir, "repo");
    await mkdir(repo);
    await makeFlake(repo, seed);
  });
  after(async () => {
    await pool?.cleanup();
    await work?.cleanup();
  });

  const cli = (args: string[], cwd = repo) => pool.cli(args, { cwd });

  test(".#hello builds on the pool with the path nix build gives, and result links to it", async () => {
    const r = await cli(["build", ".#hello", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    const expected = await nixOutPath(repo, "packages.x86_64-linux.hello".replace("x86_64-linux", SYSTEM));
    assert.deepEqual(j.outputs, [expected]);
    assert.equal(await readlink(join(repo, "result")), expected);
    const hello = j.derivations.find((d) => d.name === "hello");
    assert.match(hello?.builder ?? "", /^local[12]$/, "built on a pool builder, never here");
    assert.equal(hello?.status, "built");
  });

  test("nixpool verify takes an installable: .#hello is built again on the other builder and compared", async () => {
    const first = await cli(["build", ".#hello", "--json"]);
    const builtBy = (JSON.parse(first.stdout) as BuildJson).derivations.find(
      (d) => d.name === "hello",
    )?.builder;
    const r = await cli(["verify", ".#hello", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { verified: { path: string; builtBy: string; rebuiltOn: string }[] };
    assert.equal(j.verified.length, 1);
    assert.equal(j.verified[0]?.path, await nixOutPath(repo, "hello"));
    assert.match(j.verified[0]?.rebuiltOn ?? "", /^local[12]$/);
    assert.notEqual(
      j.verified[0]?.rebuiltOn,
      builtBy,
      "rebuilt on a builder other than the one that built it",
    );
  });

  test("--dispatcher hook builds a flake output through Nix's build hook, on the pool", async () => {
    const r = await cli(["build", ".#hooked", "--dispatcher", "hook", "-o", "hooked", "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { outputs: string[]; derivations: { name: string; builder: string }[] };
    assert.deepEqual(j.outputs, [await nixOutPath(repo, "hooked")]);
    assert.equal(await readlink(join(repo, "hooked")), j.outputs[0]);
    assert.match(j.derivations.find((d) => d.name === "hooked")?.builder ?? "", /^local[12]$/);
  });

  test("a bare flake builds its default package; two installables give result and result-1", async () => {
    const bare = await cli(["build", ".", "-o", "bare", "--json"]);
    assert.equal(bare.exitCode, 0, bare.stderr);
    assert.deepEqual((JSON.parse(bare.stdout) as BuildJson).outputs, [await nixOutPath(repo, "default")]);
    assert.equal(await readlink(join(repo, "bare")), await nixOutPath(repo, "default"));

    const two = await cli(["build", `${repo}#two`, `path:${repo}#hello`, "-o", "pair", "--json"]);
    assert.equal(two.exitCode, 0, two.stderr);
    const outputs = (JSON.parse(two.stdout) as BuildJson).outputs;
    assert.deepEqual(outputs, [await nixOutPath(repo, "two"), await nixOutPath(repo, "hello")]);
    assert.equal(await readlink(join(repo, "pair")), outputs[0]);
    assert.equal(
      await readlink(join(repo, "pair-1")),
      outputs[1],
      "nix build's naming: LINK-1 for the second",
    );
  });

  test("a nested hydraJobs set builds every job; a path: input and --override-input", async () => {
    const jobs = await cli(["build", ".#hydraJobs", "--no-out-link", "--json"]);
    assert.equal(jobs.exitCode, 0, jobs.stderr);
    const names = (JSON.parse(jobs.stdout) as BuildJson).derivations.map((d) => d.name).sort();
    assert.deepEqual(names, ["job-a", "job-b"]);

    const withDep = await cli(["build", ".#withDep", "-o", "dep-result", "--json"]);
    assert.equal(withDep.exitCode, 0, withDep.stderr);
    const depOut = (JSON.parse(withDep.stdout) as BuildJson).outputs[0] ?? "";
    assert.equal((await run(["cat", depOut])).stdout.trim(), `dep-${seed}`);

    const other = join(work.dir, "other-dep");
    await mkdir(other);
    await writeFile(join(other, "flake.nix"), `{ outputs = { self }: { value = "overridden-${seed}"; }; }\n`);
    const over = await cli([
      "build",
      ".#withDep",
      "--override-input",
      "dep",
      `path:${other}`,
      "--no-out-link",
      "--json",
    ]);
    assert.equal(over.exitCode, 0, over.stderr);
    const overOut = (JSON.parse(over.stdout) as BuildJson).outputs[0] ?? "";
    assert.notEqual(overOut, depOut);
    assert.equal((await run(["cat", overOut])).stdout.trim(), `overridden-${seed}`);
  });

  test("a dirty git tree is a warning, not an error", async () => {
    const dirty = join(work.dir, "dirty");
    await mkdir(dirty);
    await makeFlake(dirty, `${seed}-dirty`);
    await writeFile(join(dirty, "flake.nix"), flakeNix(`${seed}-dirtier`, 3, undefined));
    const r = await cli(["build", ".#hello", "--no-out-link"], dirty);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /warning: Git tree '.*dirty' is dirty/);
    assert.match(r.stdout, new RegExp(`-hello`));
  });

  test("errors: flake not found, not a flake, attribute missing, evaluation error, -A with a flake", async () => {
    const expectError = async (args: string[], code: string, exit: number, cwd = repo) => {
      const r = await cli([...args, "--json"], cwd);
      assert.equal(r.exitCode, exit, `${args.join(" ")}: ${r.stderr}`);
      const j = JSON.parse(r.stdout) as ErrorJson;
      assert.equal(j.error.code, code, r.stdout);
      assert.ok(j.error.hint.length > 0);
      return j.error;
    };
    await expectError(["build", `${work.dir}/nowhere#x`], "FLAKE_NOT_FOUND", 2);
    const empty = join(work.dir, "empty");
    await mkdir(empty);
    await expectError(["build", `${empty}#x`], "NOT_A_FLAKE", 2);
    await expectError(["build", "."], "NOT_A_FLAKE", 2, empty);
    const missing = await expectError(["build", ".#nope"], "FLAKE_ATTRIBUTE_MISSING", 2);
    assert.deepEqual(missing.details?.tried, [
      `packages.${SYSTEM}.nope`,
      `legacyPackages.${SYSTEM}.nope`,
      "nope",
    ]);
    const broken = await expectError(["build", ".#broken"], "NIX_EVAL_FAILED", 1);
    // Nix's position in the flake's store copy, named in the checkout; no doctor hint for an evaluation.
    assert.match(broken.message, new RegExp(`at ${repo}/flake\\.nix:\\d+:\\d+`));
    assert.doesNotMatch(broken.hint, /doctor/);
    await expectError(["build", ".#hello", "-A", "x"], "FLAG_CONFLICT", 2);
    await expectError(["build", "flake.nix"], "USAGE", 2);

    const offline = join(work.dir, "offline");
    await mkdir(offline);
    await writeFile(
      join(offline, "flake.nix"),
      `{ inputs.far.url = "github:nixpool-tests/no-such-repo"; outputs = { self, far }: { packages.${SYSTEM}.x = far; }; }\n`,
    );
    const net = await expectError(["build", "path:.#x"], "FLAKE_INPUT_UNAVAILABLE", 1, offline);
    assert.match(net.hint, /--override-input/);
  });

  test("nixpool check: 30 checks, one failing, one not evaluating: the others all built, both named, exit 1", async () => {
    const many = join(work.dir, "many");
    await mkdir(many);
    await makeFlake(many, `${seed}-many`, 30, "check-17", true);
    const r = await cli(["check", "--json"], many);
    assert.equal(r.exitCode, 1, r.stderr);
    const j = JSON.parse(r.stdout) as {
      checks: { name: string; kind: string; status: string; builder: string | null; error: string | null }[];
      failed: number;
      error?: { code: string };
    };
    const checks = j.checks.filter((c) => c.kind === "check");
    assert.equal(checks.length, 31);
    assert.equal(j.failed, 2);
    assert.equal(j.error?.code, "CHECKS_FAILED");
    const failed = checks.filter((c) => c.status !== "passed");
    assert.deepEqual(
      failed.map((c) => [c.name, c.status]),
      [
        [`checks.${SYSTEM}.c17`, "failed"],
        [`checks.${SYSTEM}.unevaluable`, "eval failed"],
      ],
    );
    assert.match(failed[1]?.error ?? "", /this check does not evaluate/, "Nix's own message for that member");
    for (const c of checks.filter((x) => x.status === "passed")) assert.match(c.builder ?? "", /^local[12]$/);
    // Packages and NixOS systems are evaluated, not built (nix flake check does the same without --all).
    assert.ok(j.checks.some((c) => c.kind === "package" && c.status === "evaluated"));
    assert.deepEqual(
      j.checks.filter((c) => c.kind === "nixos").map((c) => [c.name, c.status]),
      [["nixosConfigurations.machine", "evaluated"]],
    );
    assert.match(r.stderr, /checks\.[^ ]+\.c17/);

    const table = await cli(["check", "--quiet"], many);
    assert.equal(table.exitCode, 1);
    assert.match(table.stdout, new RegExp(`checks\\.${SYSTEM}\\.c17\\s+failed`));
    assert.match(table.stdout, /29 of 31 passed/);
    // c2 before c10, as a person reads them.
    const at = (name: string) => table.stdout.search(new RegExp(`\\.${name}\\s`));
    assert.ok(at("c2") >= 0 && at("c2") < at("c10"), table.stdout);

    const all = await cli(["check", "--all", "--json"], many);
    const built = JSON.parse(all.stdout) as { checks: { kind: string; status: string }[] };
    assert.ok(
      built.checks.filter((c) => c.kind !== "check").every((c) => c.status === "passed"),
      all.stdout,
    );
  });

  test("a flake build through nixpool serve: built by the coordinator, labelled with the flake", async () => {
    const serve = await startServe(pool.stateDir);
    try {
      const r = await cli(["build", ".#two", "--no-out-link", "--json"]);
      assert.equal(r.exitCode, 0, r.stderr);
      const j = JSON.parse(r.stdout) as BuildJson & { buildId?: string };
      assert.ok(j.buildId, "went through the coordinator");
      const token = (await pool.cli(["serve", "token"])).stdout.trim();
      const res = await fetch(`${serve.url}/api/builds/${j.buildId}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      const detail = (await res.json()) as { label: string; status: string };
      assert.equal(detail.status, "succeeded");
      assert.equal(detail.label, `${repo}#two`);

      // nixpool check goes through the coordinator too: a failed check is in its report.
      const few = join(work.dir, "few");
      await mkdir(few);
      await makeFlake(few, `${seed}-few`, 3, "check-1");
      const check = await cli(["check", "--json"], few);
      assert.equal(check.exitCode, 1, check.stderr);
      const cj = JSON.parse(check.stdout) as { checks: { name: string; status: string }[]; failed: number };
      assert.deepEqual(
        cj.checks.filter((c) => c.name.startsWith("checks.")).map((c) => [c.name, c.status]),
        [0, 1, 2].map((i) => [`checks.${SYSTEM}.c${i}`, i === 1 ? "failed" : "passed"]),
      );
      const listed = (await (
        await fetch(`${serve.url}/api/builds`, { headers: { Authorization: `Bearer ${token}` } })
      ).json()) as { builds: { label: string }[] } | { label: string }[];
      const labels = (Array.isArray(listed) ? listed : listed.builds).map((b) => b.label);
      assert.ok(labels.includes(`check ${few}`), JSON.stringify(labels));
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  });
});
