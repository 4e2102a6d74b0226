import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, readlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { makeTempDir } from "../helpers/cli.js";

const FIXTURE = resolve(import.meta.dirname, "../fixtures/dispatch.nix");
const seed = () => randomBytes(8).toString("hex");

interface DrvJson {
  drv: string;
  name: string;
  builder: string | null;
  status: string;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  queuedMs: number;
  uploadMs: number;
  buildMs: number;
  downloadMs: number;
}
interface BuildJson {
  outputs: string[];
  outLink: string;
  dispatcher: { kind: string; reason: string };
  derivations: DrvJson[];
  stats: { pathsUploaded: number; pathsDownloaded: number; bytesUploaded: number; bytesDownloaded: number };
}

async function isValidLocally(path: string): Promise<boolean> {
  const r = await run(["nix-store", "--check-validity", path], { reject: false });
  return r.exitCode === 0;
}

describe("nixpool's own dispatcher on a local pool", { timeout: 900_000 }, () => {
  let pool: TestPool;
  let work: { dir: string; cleanup: () => Promise<void> };

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-dispatch-");
  });
  after(async () => {
    await pool?.cleanup();
    await work?.cleanup();
  });

  const build = (args: string[]) => pool.cli(["build", FIXTURE, "--json", ...args], { cwd: work.dir });

  test("a graph builds on the pool, with the same output path as nix-build, and is the default dispatcher", async () => {
    const s = seed();
    const link = join(work.dir, "graph");
    const svg = join(work.dir, "graph.svg");
    const r = await build([
      "-A",
      "graph",
      "--argstr",
      "seed",
      s,
      "--arg",
      "n",
      "6",
      "-o",
      link,
      "--timeline",
      svg,
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    // The timeline: one build bar per derivation, each in the row of the slot that built it.
    const chart = await readFile(svg, "utf8");
    assert.match(chart, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    for (const d of j.derivations) {
      assert.match(chart, new RegExp(`${d.name}: build on ${d.builder} #[12]`), `${d.name} has a build bar`);
    }
    assert.equal(j.dispatcher.kind, "nixpool");
    assert.equal(j.derivations.length, 7);
    for (const d of j.derivations) {
      assert.equal(d.status, "built", d.name);
      assert.match(d.builder ?? "", /^local[12]$/);
      assert.equal(d.attempts, 1);
      assert.ok(d.startedAt && d.finishedAt && Date.parse(d.finishedAt) >= Date.parse(d.startedAt));
      assert.ok(d.buildMs >= 0 && d.uploadMs >= 0 && d.queuedMs >= 0);
    }
    const out = await readlink(link);
    assert.deepEqual(j.outputs, [out]);
    assert.equal((await readFile(out, "utf8")).trim().split("\n").length, 6);
    // Nix itself, given the same expression, finds exactly that output already built.
    const nix = await run(
      [
        "nix-build",
        FIXTURE,
        "-A",
        "graph",
        "--argstr",
        "seed",
        s,
        "--arg",
        "n",
        "6",
        "--no-out-link",
        "--max-jobs",
        "0",
      ],
      { reject: false },
    );
    assert.equal(nix.exitCode, 0, nix.stderr);
    assert.equal(nix.stdout.trim(), out);

    // A second build of the same graph builds nothing and sends nothing.
    const again = await build(["-A", "graph", "--argstr", "seed", s, "--arg", "n", "6", "-o", link]);
    assert.equal(again.exitCode, 0, again.stderr);
    const j2 = JSON.parse(again.stdout) as BuildJson;
    assert.equal(j2.derivations.filter((d) => d.status === "built").length, 0);
    assert.equal(j2.stats.pathsUploaded, 0);
    assert.equal(j2.stats.bytesUploaded, 0);

    // A new root over the same leaves: the leaves' outputs never came back here, yet they are
    // found on the builders and not rebuilt; only the root is built, and no leaf output is re-sent.
    const tagged = await build(["-A", "graphTagged", "--argstr", "seed", s, "--arg", "n", "6", "-o", link]);
    assert.equal(tagged.exitCode, 0, tagged.stderr);
    const j3 = JSON.parse(tagged.stdout) as BuildJson;
    assert.deepEqual(
      j3.derivations.filter((d) => d.status === "built").map((d) => d.name),
      ["graph-root-tagged"],
    );
    // The first build sent exactly the leaves built on the other builder, straight from it, to the
    // root's builder, which so holds every leaf. The new root sends nothing if it goes there, and
    // else exactly the leaves its builder did not build itself.
    const leaves = j.derivations.filter((d) => d.name.startsWith("leaf-"));
    const firstRootOn = j.derivations.find((d) => d.name === "graph-root")?.builder;
    const lacking = (on: string | null | undefined) => leaves.filter((d) => d.builder !== on).length;
    assert.equal(
      j.stats.pathsUploaded,
      lacking(firstRootOn),
      `first build uploaded ${j.stats.pathsUploaded}`,
    );
    const rootOn = j3.derivations.find((d) => d.name === "graph-root-tagged")?.builder;
    assert.equal(j3.stats.pathsUploaded, rootOn === firstRootOn ? 0 : lacking(rootOn));
    assert.equal(j3.stats.pathsDownloaded, 1, "only the root's output comes here");
    // Bytes go with the paths: some exactly when paths were sent (a NAR is never empty).
    for (const x of [j, j3]) {
      assert.equal(x.stats.bytesUploaded > 0, x.stats.pathsUploaded > 0, JSON.stringify(x.stats));
      assert.ok(x.stats.bytesDownloaded >= 100 * x.stats.pathsDownloaded, JSON.stringify(x.stats));
    }
  });

  test("multiple outputs, a consumer of one of them, and a fixed-output derivation", async () => {
    const s = seed();
    const r = await build(["-A", "usesDev", "--argstr", "seed", s, "-o", join(work.dir, "dev")]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    assert.deepEqual(j.derivations.map((d) => d.name).sort(), ["multi", "uses-dev"]);
    assert.equal((await readFile(j.outputs[0] as string, "utf8")).trim(), "dev");

    const m = await build(["-A", "multi", "--argstr", "seed", s, "-o", join(work.dir, "multi")]);
    assert.equal(m.exitCode, 0, m.stderr);
    const jm = JSON.parse(m.stdout) as BuildJson;
    const outs = (
      await run(["nix-store", "-q", "--outputs", jm.derivations[0]?.drv ?? ""], { reject: false })
    ).stdout
      .trim()
      .split("\n");
    assert.equal(outs.length, 3);
    for (const o of outs) assert.equal(await isValidLocally(o), true, `${o} came back`);
    assert.equal(
      await readlink(join(work.dir, "multi")),
      outs.find((o) => o.endsWith("-multi")),
    );

    const f = await build(["-A", "fixed", "--argstr", "seed", s, "-o", join(work.dir, "fixed")]);
    assert.equal(f.exitCode, 0, f.stderr);
    assert.equal(await readFile(join(work.dir, "fixed"), "utf8"), "hello\n");
  });

  test("an attribute naming one output (-A multi.dev) links that output, named as nix-build names it", async () => {
    const s = seed();
    const r = await build(["-A", "multi.dev", "--argstr", "seed", s, "-o", join(work.dir, "only")]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    assert.match(j.outputs[0] ?? "", /-multi-dev$/);
    assert.equal(await readlink(join(work.dir, "only-dev")), j.outputs[0]);
    assert.equal((await readFile(j.outputs[0] as string, "utf8")).trim(), "dev");
  });

  test("outputs copied back: only what was asked for by default, every output with --copy-back all", async () => {
    const leafOutputs = async (j: BuildJson) => {
      const leaves = j.derivations.filter((d) => d.name.startsWith("leaf-"));
      const outs = await run(["nix-store", "-q", "--outputs", ...leaves.map((d) => d.drv)]);
      return outs.stdout.trim().split("\n");
    };
    const some = await build(["-A", "graph", "--argstr", "seed", seed(), "--arg", "n", "3", "--no-out-link"]);
    assert.equal(some.exitCode, 0, some.stderr);
    const js = JSON.parse(some.stdout) as BuildJson;
    assert.equal(await isValidLocally(js.outputs[0] as string), true);
    for (const o of await leafOutputs(js))
      assert.equal(await isValidLocally(o), false, `${o} stayed on its builder`);

    const all = await build([
      "-A",
      "graph",
      "--argstr",
      "seed",
      seed(),
      "--arg",
      "n",
      "3",
      "--no-out-link",
      "--copy-back",
      "all",
    ]);
    assert.equal(all.exitCode, 0, all.stderr);
    for (const o of await leafOutputs(JSON.parse(all.stdout) as BuildJson))
      assert.equal(await isValidLocally(o), true, `${o} came back`);
  });

  test("features: a kvm derivation goes to the one kvm builder; one nobody offers fails with NO_CAPABLE_BUILDER", async () => {
    const [h1] = pool.pool.hosts;
    assert.ok(h1);
    const inv = join(work.dir, "features.toml");
    await writeFile(
      inv,
      [
        "[builders.kvmhost]",
        `host = "${h1.address}"`,
        'user = "root"',
        'protocol = "ssh-ng"',
        "maxJobs = 2",
        'supportedFeatures = ["kvm"]',
        `hostKey = "${h1.hostKeyPub}"`,
        `identityFile = "${pool.pool.clientKeyPath}"`,
        "",
      ].join("\n"),
    );
    const withInv = (args: string[]) =>
      pool.cli(
        [
          "--inventory",
          inv,
          "build",
          FIXTURE,
          "--json",
          "--builder",
          "kvmhost",
          "--builder",
          "local2",
          ...args,
        ],
        {
          cwd: work.dir,
        },
      );
    const r = await withInv(["-A", "needsKvm", "--argstr", "seed", seed(), "-o", join(work.dir, "kvm")]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as BuildJson).derivations[0]?.builder, "kvmhost");

    const g = await withInv(["-A", "needsGpu", "--argstr", "seed", seed()]);
    assert.equal(g.exitCode, 1);
    const err = (JSON.parse(g.stdout) as { error: { code: string; message: string } }).error;
    assert.equal(err.code, "NO_CAPABLE_BUILDER");
    assert.match(err.message, /needs-gpu.*gpu.*kvmhost.*kvm.*local2/);
  });

  test("a failing derivation: exit 1, the derivation, builder and log tail; --keep-going builds the rest", async () => {
    const s = seed();
    const r = await pool.cli(["build", FIXTURE, "-A", "fails", "--argstr", "seed", s], { cwd: work.dir });
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /error: Derivation fails failed on builder local[12]/);
    assert.match(r.stderr, /the reason is here/);
    assert.match(r.stderr, /hint: Its full log: .*fails\.log/);
    const logFile = /Its full log: (\S+\.log)/.exec(r.stderr)?.[1] ?? "";
    assert.match(await readFile(logFile, "utf8"), /about to fail/);

    const k = await build([
      "-A",
      "keepGoing",
      "--argstr",
      "seed",
      s,
      "--argstr",
      "sleep",
      "1",
      "--keep-going",
    ]);
    assert.equal(k.exitCode, 1);
    const details = (JSON.parse(k.stdout) as { error: { code: string; details: { records: DrvJson[] } } })
      .error;
    assert.equal(details.code, "BUILD_FAILED");
    const byName = Object.fromEntries(details.details.records.map((d) => [d.name, d.status]));
    assert.deepEqual(byName, { fails: "failed", "ok-1": "built", "ok-2": "built" });
  });

  test("--dispatcher hook keeps Nix's build hook path, and says so", async () => {
    const r = await build([
      "-A",
      "ok1",
      "--argstr",
      "seed",
      seed(),
      "--dispatcher",
      "hook",
      "-o",
      join(work.dir, "hook"),
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BuildJson;
    assert.equal(j.dispatcher.kind, "hook");
    assert.match(j.dispatcher.reason, /--dispatcher hook/);
  });
});
