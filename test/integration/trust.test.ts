import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { makeTempDir } from "../helpers/cli.js";
import { isValidOnHost, writeTrustInventory } from "../helpers/trust-pool.js";

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
});
