import { after, before, describe, test } from "node:test";
import { fileInstallable, NO_FLAKE_OPTIONS } from "../../src/core/installable.js";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { makeTempDir } from "../helpers/cli.js";
import { isValidOnHost, tamperHost, writeTrustInventory } from "../helpers/trust-pool.js";
import { DEFAULT_TRUST_POLICY } from "../../src/core/dispatch/trust-policy.js";
import { evaluateDerivations } from "../../src/dispatch/evaluate.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { Coordinator } from "../../src/serve/coordinator.js";

const FIXTURE = resolve(import.meta.dirname, "../fixtures/trust.nix");
const seed = () => randomBytes(8).toString("hex");

interface DrvJson {
  drv: string;
  name: string;
  builder: string | null;
  status: string;
  trust: string | null;
  verified: boolean;
  builds: { builder: string; trust: string; narHashes: Record<string, string> }[];
  startedAt: string | null;
  finishedAt: string | null;
}
interface ErrorJson {
  code: string;
  message: string;
  hint: string;
  details: { drv: string; kept: string };
}
interface BuildJson {
  outputs: string[];
  derivations: DrvJson[];
}

const byName = (j: BuildJson, name: string): DrvJson => {
  const d = j.derivations.find((x) => x.name === name);
  assert.ok(d, `${name} is in the report`);
  return d;
};

async function outputOf(drv: string): Promise<string> {
  return (await run(["nix-store", "-q", "--outputs", drv])).stdout.trim();
}

describe("trust: untrusted builders and verified results, on a local pool", { timeout: 900_000 }, () => {
  let pool: TestPool;
  let work: { dir: string; cleanup: () => Promise<void> };

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-trust-");
  });
  after(async () => {
    await pool?.cleanup();
    await work?.cleanup();
  });

  const build = (inventory: string, builders: string[], args: string[]) =>
    pool.cli(
      [
        "--inventory",
        inventory,
        "build",
        FIXTURE,
        "--json",
        "--no-out-link",
        ...builders.flatMap((b) => ["--builder", b]),
        ...args,
      ],
      { cwd: work.dir },
    );

  test("a trustedOnly derivation never runs on the untrusted host, even when it is the only free one", async () => {
    const inv = await writeTrustInventory(
      pool,
      work.dir,
      [
        { host: "local1", name: "t1", trust: "trusted", maxJobs: 1 },
        { host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 },
      ],
      'trustedOnly = ["secret-*"]',
    );
    const r = await build(inv, ["t1", "u1"], ["-A", "placement", "--argstr", "seed", seed()]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    const secrets = [byName(j, "secret-a"), byName(j, "secret-b")];
    const open = [byName(j, "open-1"), byName(j, "open-2")];
    for (const d of secrets) {
      assert.equal(d.builder, "t1", `${d.name} built on the trusted builder`);
      assert.equal(d.trust, "trusted");
      assert.equal(
        await isValidOnHost(pool, "local2", await outputOf(d.drv)),
        false,
        `${d.name} never on u1`,
      );
    }
    for (const d of open) {
      assert.equal(d.builder, "u1");
      assert.equal(d.trust, "untrusted");
    }
    // t1 has one slot: the second secret waited for it while u1 stood idle (its builds were over).
    const second = secrets.map((d) => Date.parse(d.startedAt ?? "")).sort((a, b) => a - b)[1] as number;
    const openDone = Math.max(...open.map((d) => Date.parse(d.finishedAt ?? "")));
    assert.ok(second > openDone, "the second secret started after u1 had nothing left to do");
  });

  test("with no trusted capable builder, NO_TRUSTED_BUILDER before anything starts (--trusted-only too)", async () => {
    const inv = await writeTrustInventory(
      pool,
      work.dir,
      [{ host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 }],
      'trustedOnly = ["secret-*"]',
    );
    const s = seed();
    const r = await build(inv, ["u1"], ["-A", "placement", "--argstr", "seed", s]);
    assert.equal(r.exitCode, 1, r.stderr);
    const e = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, "NO_TRUSTED_BUILDER");
    assert.match(e.message, /No trusted builder can build secret-[ab] \(\[policy\] trustedOnly "secret-\*"/);
    assert.match(e.message, /nothing was started/);
    const r2 = await build(inv, ["u1"], ["-A", "reproducible", "--argstr", "seed", s, "--trusted-only"]);
    assert.equal(r2.exitCode, 1, r2.stderr);
    assert.match(r2.stdout, /"NO_TRUSTED_BUILDER"/);
    assert.match(r2.stdout, /No trusted builder can build reproducible \(--trusted-only/);
  });

  test("--verify 2 accepts a reproducible derivation and refuses one whose builds differ, keeping both", async () => {
    const s = seed();
    // The pool's own builders, local1 and local2 (no inventory here).
    const ok = await pool.cli(
      [
        "build",
        FIXTURE,
        "--json",
        "--no-out-link",
        "-A",
        "reproducible",
        "--argstr",
        "seed",
        s,
        "--verify",
        "2",
      ],
      { cwd: work.dir },
    );
    assert.equal(ok.exitCode, 0, ok.stderr);
    const d = byName(JSON.parse(ok.stdout) as BuildJson, "reproducible");
    assert.equal(d.verified, true);
    assert.deepEqual(d.builds.map((b) => b.builder).sort(), ["local1", "local2"]);
    assert.equal(d.builds[0]?.narHashes["out"], d.builds[1]?.narHashes["out"]);
    assert.match(d.builds[0]?.narHashes["out"] ?? "", /^sha256:[0-9a-z]{52}$/);

    const bad = await pool.cli(
      [
        "build",
        FIXTURE,
        "--json",
        "--no-out-link",
        "-A",
        "unreproducible",
        "--argstr",
        "seed",
        s,
        "--verify",
        "2",
      ],
      { cwd: work.dir },
    );
    assert.equal(bad.exitCode, 1, bad.stderr);
    const e = (JSON.parse(bad.stdout) as { error: ErrorJson }).error;
    assert.equal(e.code, "NOT_REPRODUCIBLE");
    assert.match(
      e.message,
      /^Builds of unreproducible differ: output out has NAR hash sha256:\S+ on local[12] \(trusted\) and sha256:\S+ on local[12] \(trusted\); both outputs are kept in /,
    );
    const [h1, h2] = [...e.message.matchAll(/sha256:[0-9a-z]+/g)].map((m) => m[0]);
    assert.notEqual(h1, h2);
    // Both outputs are kept, unpacked, and the hint's command shows how they differ.
    const cmd = /See the difference with: (diff -r|diffoscope) (\S+) (\S+)$/.exec(e.hint);
    assert.ok(cmd, e.hint);
    const [a, b] = [cmd[2] as string, cmd[3] as string];
    assert.ok(a.startsWith(join(pool.stateDir, "trust", "differ")), a);
    assert.notEqual(await readFile(a, "utf8"), await readFile(b, "utf8"));
    const diff = await run(["diff", "-r", a, b], { reject: false });
    assert.equal(diff.exitCode, 1, "diff -r shows a difference");
  });

  test('untrustedResults = "verify": an untrusted build is accepted once a trusted builder built the same bytes', async () => {
    const inv = await writeTrustInventory(
      pool,
      work.dir,
      [
        { host: "local1", name: "t1", trust: "trusted", maxJobs: 1 },
        { host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 },
      ],
      'untrustedResults = "verify"',
    );
    const r = await build(inv, ["t1", "u1"], ["-A", "spread", "--argstr", "seed", seed()]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    const checked = j.derivations.filter((d) => d.builds.some((b) => b.builder === "u1"));
    assert.ok(checked.length > 0, "u1 built something");
    for (const d of checked) {
      assert.deepEqual(
        d.builds.map((b) => b.builder),
        ["u1", "t1"],
        `${d.name}: checked by t1`,
      );
      assert.equal(d.verified, true);
      assert.equal(d.builder, "t1");
      assert.equal(d.trust, "trusted");
    }
  });

  test("nixpool verify PATH builds a recorded output again on another builder and finds it the same", async () => {
    const link = join(work.dir, "chain-ok");
    const b = await pool.cli(
      [
        "build",
        FIXTURE,
        "--json",
        "-A",
        "chain",
        "--argstr",
        "seed",
        seed(),
        "--builder",
        "local1",
        "-o",
        link,
      ],
      { cwd: work.dir },
    );
    assert.equal(b.exitCode, 0, b.stderr);
    const out = (JSON.parse(b.stdout) as BuildJson).outputs[0] as string;
    // Recorded: local1 built it, with its NAR hash (the hash this machine's copy has too).
    const lines = (await readFile(join(pool.stateDir, "trust", "results.jsonl"), "utf8")).trim().split("\n");
    const rec = lines
      .map((l) => JSON.parse(l) as { output: string; builder: string; narHash: string })
      .find((r) => r.output === out);
    assert.equal(rec?.builder, "local1");
    assert.equal(rec?.narHash, (await run(["nix-store", "-q", "--hash", out])).stdout.trim());
    const v = await pool.cli(["verify", link, "--json"], { cwd: work.dir });
    assert.equal(v.exitCode, 0, v.stderr);
    const [checked] = (
      JSON.parse(v.stdout) as {
        verified: {
          path: string;
          builtBy: string;
          rebuiltOn: string;
          narHash: string;
          rebuiltNarHash: string;
        }[];
      }
    ).verified;
    assert.equal(checked?.path, out);
    assert.equal(checked?.builtBy, "local1");
    assert.equal(checked?.rebuiltOn, "local2", "built again on the other builder");
    assert.equal(checked?.rebuiltNarHash, checked?.narHash);
    // Only local1 exists besides the recorded builder: nothing else can check it.
    const none = await pool.cli(["verify", link, "--json", "--builder", "local1"], { cwd: work.dir });
    assert.equal(none.exitCode, 2, none.stderr);
    assert.match(none.stdout, /"VERIFY_TOO_FEW_BUILDERS"/);
    const notStore = await pool.cli(["verify", work.dir, "--json"], { cwd: work.dir });
    // Neither a store path nor a link to one: read as an installable, and that directory is no flake.
    assert.equal(notStore.exitCode, 2);
    assert.match(notStore.stdout, /"NOT_A_FLAKE"/);
  });

  test('untrustedResults = "verify" catches an untrusted builder that tampers with its outputs', async () => {
    await tamperHost(pool, "local2", work.dir);
    const inv = await writeTrustInventory(
      pool,
      work.dir,
      [
        { host: "local1", name: "t1", trust: "trusted", maxJobs: 1 },
        { host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 },
      ],
      'untrustedResults = "verify"',
    );
    const r = await build(inv, ["t1", "u1"], ["--keep-going", "-A", "spread", "--argstr", "seed", seed()]);
    assert.equal(r.exitCode, 1, r.stderr);
    const e = (JSON.parse(r.stdout) as { error: ErrorJson }).error;
    assert.equal(e.code, "NOT_REPRODUCIBLE");
    assert.match(
      e.message,
      /^Builds of spread-\d differ: output out has NAR hash sha256:\S+ on u1 \(untrusted\) and sha256:\S+ on t1 \(trusted\);.* The output of untrusted builder u1 was not accepted\.$/,
    );
    const drv = e.details.drv;
    // The tampered bytes never reached this machine's store.
    const out = await outputOf(drv);
    const valid = await run(["nix-store", "--check-validity", out], { reject: false });
    assert.notEqual(valid.exitCode, 0, "the differing output is not in the local store");
    const kept = e.details.kept;
    assert.match(await readFile(join(kept, "u1", "out"), "utf8"), /tampered/);
    assert.doesNotMatch(await readFile(join(kept, "t1", "out"), "utf8"), /tampered/);
  });

  test("a trustedOnly output already on the untrusted host is built on a trusted one, not taken from there", async () => {
    // local2 tampers (again, when this test runs alone); it gets a tampered secret-c, built there without a policy.
    await tamperHost(pool, "local2", work.dir);
    const s = seed();
    const hosts = [
      { host: "local1", name: "t1", trust: "trusted" as const, maxJobs: 1 },
      { host: "local2", name: "u1", trust: "untrusted" as const, maxJobs: 2 },
    ];
    const plant = await build(
      await writeTrustInventory(pool, work.dir, hosts, ""),
      ["u1"],
      ["-A", "secret", "--argstr", "seed", s],
    );
    assert.equal(plant.exitCode, 0, plant.stderr);
    const out = (JSON.parse(plant.stdout) as BuildJson).outputs[0] as string;
    assert.match(await readFile(out, "utf8"), /tampered/);
    await run(["nix-store", "--delete", out]);
    assert.equal(await isValidOnHost(pool, "local2", out), true);

    const inv = await writeTrustInventory(pool, work.dir, hosts, 'trustedOnly = ["secret-*"]');
    const r = await build(inv, ["t1", "u1"], ["-A", "secret", "--argstr", "seed", s]);
    assert.equal(r.exitCode, 0, r.stderr);
    const d = byName(JSON.parse(r.stdout) as BuildJson, "secret-c");
    assert.equal(d.builder, "t1", "built on the trusted builder");
    assert.equal(d.status, "built");
    assert.equal(await readFile(out, "utf8"), "c\n", "this machine holds t1's bytes, not u1's");
  });

  test("the coordinator applies the policy it is given: trustedOnly derivations of a submitted build stay on trusted builders", async () => {
    const builders = poolBuilders(pool.pool).map((b) =>
      b.name === "local2" ? { ...b, trust: "untrusted" as const } : { ...b, trust: "trusted" as const },
    );
    const c = await Coordinator.open({
      stateDir: pool.stateDir,
      builders,
      trust: { ...DEFAULT_TRUST_POLICY, trustedOnly: ["secret-*"] },
    });
    try {
      const derivations = await evaluateDerivations({
        installables: [
          fileInstallable(FIXTURE, ["placement"], [{ kind: "argstr", name: "seed", value: seed() }]),
        ],
        flake: NO_FLAKE_OPTIONS,
      });
      const id = c.submit({ derivations, label: "trust" }, { user: "root", uid: 0, via: "socket" });
      const done = await c.waitFor(id);
      assert.equal(done.status, "succeeded", JSON.stringify(done.error));
      const secrets = done.derivations.filter((d) => d.name.startsWith("secret-"));
      assert.equal(secrets.length, 2);
      for (const d of secrets) assert.equal(d.builder, "local1", `${d.name} built on the trusted builder`);
      assert.ok(
        done.derivations.some((d) => d.builder === "local2"),
        "the untrusted builder built the others",
      );
    } finally {
      await c.close();
    }
  });

  test("nixpool deploy builds under the inventory's policy: a trustedOnly system is not built on an untrusted --build-host", async () => {
    const inv = await writeTrustInventory(
      pool,
      work.dir,
      [
        { host: "local1", name: "t1", trust: "trusted", maxJobs: 1 },
        { host: "local2", name: "u1", trust: "untrusted", maxJobs: 2 },
      ],
      'trustedOnly = ["secret-*"]',
    );
    const s = seed();
    const r = await pool.cli(
      [
        "--inventory",
        inv,
        "deploy",
        FIXTURE,
        "-A",
        "secret",
        "--argstr",
        "seed",
        s,
        "--build-host",
        "u1",
      ].concat(["--target", "t1", "--json"]),
      { cwd: work.dir },
    );
    assert.equal(r.exitCode, 1, r.stderr);
    const e = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, "NO_TRUSTED_BUILDER");
    assert.match(e.message, /No trusted builder can build secret-c/);
  });

  test("--verify and --trusted-only are refused with a coordinator named, not dropped", async () => {
    for (const flags of [["--verify", "2"], ["--verify-only", "leaf"], ["--trusted-only"]]) {
      const r = await pool.cli(
        ["build", FIXTURE, "-A", "leaf", "--json", "--coordinator", "unix:/nonexistent/api.sock", ...flags],
        { cwd: work.dir },
      );
      assert.equal(r.exitCode, 2, `${flags.join(" ")}: ${r.stdout}${r.stderr}`);
      const e = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
      assert.equal(e.code, "FLAG_CONFLICT");
      assert.match(
        e.message,
        /^--(verify|trusted-only) builds here; it does not go through a coordinator\.$/,
      );
    }
  });

  test("nixpool verify PATH catches a builder whose rebuild differs from the recorded output", async () => {
    // local2 tampers since the test above; local1 builds, local2 checks.
    const link = join(work.dir, "chain-tampered");
    const b = await pool.cli(
      [
        "build",
        FIXTURE,
        "--json",
        "-A",
        "chain",
        "--argstr",
        "seed",
        seed(),
        "--builder",
        "local1",
        "-o",
        link,
      ],
      { cwd: work.dir },
    );
    assert.equal(b.exitCode, 0, b.stderr);
    const v = await pool.cli(["verify", link, "--json"], { cwd: work.dir });
    assert.equal(v.exitCode, 1, v.stderr);
    const e = (JSON.parse(v.stdout) as { error: ErrorJson }).error;
    assert.equal(e.code, "NOT_REPRODUCIBLE");
    assert.match(
      e.message,
      /^Builds of chain differ: output out has NAR hash sha256:\S+ on local1 \(trusted\) and sha256:\S+ on local2 \(trusted\); both outputs are kept in /,
    );
    assert.match(await readFile(join(e.details.kept, "local2", "out"), "utf8"), /tampered/);
    assert.doesNotMatch(await readFile(join(e.details.kept, "local1", "out"), "utf8"), /tampered/);
  });
});
