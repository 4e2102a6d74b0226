import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { setLinkUp } from "../../src/providers/local/host.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { CLI, withTempDir } from "../helpers/cli.js";
import { commandLines, killNetns, netnsPids, processesMarked } from "../helpers/processes.js";

const FIXTURE = resolve(import.meta.dirname, "../fixtures/dispatch.nix");
const MARK = "NIXPOOL_TEST_MARK";

interface DrvJson {
  name: string;
  builder: string | null;
  status: string;
  attempts: number;
  retries: { builder: string; reason: string }[];
}

/** Starts `nixpool build` on the pool in the background, marked so its processes can be found. */
function startBuild(pool: TestPool, cwd: string, args: string[], mark: string) {
  return execa("node", [CLI, "--state-dir", pool.stateDir, "build", FIXTURE, ...args], {
    cwd,
    reject: false,
    env: { [MARK]: mark },
    timeout: 300_000,
  });
}

/** Waits until a host runs one of the builds (a sleep inside its namespace). */
async function waitForBuildOn(netns: string, timeoutMs = 60_000): Promise<void> {
  const started = await waitFor(
    async () => (await commandLines(await netnsPids(netns))).some((c) => c.startsWith("/bin/sleep")),
    { timeoutMs, intervalMs: 100 },
  );
  if (!started) throw new Error(`no build started on ${netns} within ${timeoutMs} ms`);
}

async function sleepsIn(netns: string): Promise<string[]> {
  return (await commandLines(await netnsPids(netns))).filter(
    (c) => c.startsWith("/bin/sleep") || c.includes("nix-store --serve"),
  );
}

/** Whether this machine's store (a `nix-store --serve` the build started) has read 20 MB of an import. */
async function importing(mark: string): Promise<boolean> {
  for (const p of await processesMarked(MARK, mark)) {
    if (!p.cmd.startsWith("nix-store --serve")) continue;
    const io = await readFile(`/proc/${p.pid}/io`, "utf8").catch(() => "");
    if (Number(/^rchar: (\d+)/m.exec(io)?.[1] ?? 0) > 20e6) return true;
  }
  return false;
}

/** Whether a `nix-store --serve` in this host's namespace has read more than 20 MB (an import under way). */
async function receiving(netns: string): Promise<boolean> {
  for (const pid of await netnsPids(netns)) {
    const [cmd] = await commandLines([pid]);
    if (!cmd?.startsWith("nix-store --serve")) continue;
    const io = await readFile(`/proc/${pid}/io`, "utf8").catch(() => "");
    if (Number(/^rchar: (\d+)/m.exec(io)?.[1] ?? 0) > 20e6) return true;
  }
  return false;
}

const graphArgs = (n: number, secs: number) => [
  "-A",
  "graph",
  "--arg",
  "n",
  String(n),
  "--argstr",
  "sleep",
  String(secs),
  "--argstr",
  "seed",
  randomBytes(8).toString("hex"),
];

describe("dispatcher faults on real pool hosts", { timeout: 900_000, concurrency: false }, () => {
  test("a builder host killed mid-build: its derivations are retried on the other one and the build succeeds", async () => {
    const pool = await startTestPool(2, 2);
    try {
      await withTempDir(async (dir) => {
        const mark = randomBytes(6).toString("hex");
        const child = startBuild(pool, dir, [...graphArgs(8, 2), "--json", "--no-out-link"], mark);
        const h1 = pool.pool.hosts[0]!;
        await waitForBuildOn(h1.netns);
        assert.ok((await killNetns(h1.netns)) > 0);
        const r = await child;
        assert.equal(r.exitCode, 0, r.stderr);
        const j = JSON.parse(r.stdout) as { derivations: DrvJson[] };
        const retried = j.derivations.filter((d) => d.retries.length > 0);
        assert.ok(retried.length > 0, "some derivation was retried");
        for (const d of retried) {
          assert.equal(d.status, "built");
          assert.equal(d.builder, "local2");
          assert.match(d.retries[0]?.reason ?? "", /local1/);
        }
        assert.deepEqual(await processesMarked(MARK, mark), [], "nothing left running here");
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });

  test("a builder's link cut mid-build: it is declared lost within 20 s and the build succeeds elsewhere", async () => {
    const pool = await startTestPool(2, 2);
    try {
      await withTempDir(async (dir) => {
        const mark = randomBytes(6).toString("hex");
        const child = startBuild(pool, dir, [...graphArgs(6, 4), "--json", "--no-out-link"], mark);
        const h1 = pool.pool.hosts[0]!;
        await waitForBuildOn(h1.netns);
        await setLinkUp(h1, false);
        const r = await child;
        assert.equal(r.exitCode, 0, r.stderr);
        const j = JSON.parse(r.stdout) as { derivations: DrvJson[] };
        const retried = j.derivations.filter((d) => d.retries.length > 0);
        assert.ok(retried.length > 0, "the derivations of the cut builder were retried");
        for (const d of retried) {
          assert.equal(d.builder, "local2");
          // Found by ssh's keepalives (every 5 s, 3 unanswered: ≤ 20 s), not by a TCP timeout.
          assert.match(d.retries[0]?.reason ?? "", /local1 was lost \(it went silent/);
        }
        assert.deepEqual(await processesMarked(MARK, mark), [], "nothing left running here");
        await setLinkUp(h1, true);
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });

  test("a builder killed while another pulls its outputs: the receiving builder keeps working", async () => {
    const pool = await startTestPool(2, 1);
    try {
      await withTempDir(async (dir) => {
        const [h1, h2] = pool.pool.hosts;
        assert.ok(h1 && h2);
        // local2 is the only kvm builder: pulls-big runs there, with big's 400 MB from local1.
        const inv = join(dir, "kvm.toml");
        const entry = (name: string, h: typeof h1, features: string) =>
          [
            `[builders.${name}]`,
            `host = "${h.address}"`,
            'user = "root"',
            "maxJobs = 1",
            `supportedFeatures = [${features}]`,
            `hostKey = "${h.hostKeyPub}"`,
            `identityFile = "${pool.pool.clientKeyPath}"`,
          ].join("\n");
        await writeFile(inv, `${entry("plain", h1, "")}\n${entry("kvmhost", h2, '"kvm"')}\n`);
        const mark = randomBytes(6).toString("hex");
        const child = execa(
          "node",
          [CLI, "--state-dir", pool.stateDir, "--inventory", inv, "build", FIXTURE, "-A", "pullsBig"]
            .concat(["--arg", "n", "400", "--argstr", "sleep", "3", "--argstr", "seed", mark])
            .concat(["--builder", "plain", "--builder", "kvmhost", "--json", "--no-out-link"]),
          { cwd: dir, reject: false, env: { [MARK]: mark }, timeout: 300_000 },
        );
        // a-slow runs on kvmhost while big is built on plain; once both are done, big's transfer begins.
        await waitForBuildOn(h2.netns);
        const busy = async () =>
          (await commandLines(await netnsPids(h2.netns))).some((c) => c.startsWith("/bin/sleep")) ||
          (await commandLines(await netnsPids(h1.netns))).some((c) => c.startsWith("/bin/dd"));
        await waitFor(async () => !(await busy()), { timeoutMs: 120_000, intervalMs: 20 });
        // Kill plain once kvmhost's store has read 20 MB of big (not after a fixed pause, which a
        // loaded machine can overrun before the transfer has even started).
        await waitFor(() => receiving(h2.netns), { timeoutMs: 120_000, intervalMs: 20 });
        assert.ok((await killNetns(h1.netns)) > 0);
        const r = await child;
        assert.equal(r.exitCode, 0, `${r.stderr}${r.stdout}`);
        const j = JSON.parse(r.stdout) as { derivations: DrvJson[] };
        const pulls = j.derivations.find((d) => d.name === "pulls-big");
        assert.equal(pulls?.status, "built");
        assert.match(pulls?.retries[0]?.reason ?? "", /plain/, "pulls-big was retried after plain was lost");
        assert.equal(j.derivations.find((d) => d.name === "big")?.builder, "kvmhost", "big was built again");
        assert.deepEqual(await processesMarked(MARK, mark), [], "nothing left running here");
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });

  test("a builder killed while its root output streams here: built again elsewhere and copied back", async () => {
    const pool = await startTestPool(2, 1);
    let out: string | undefined;
    try {
      await withTempDir(async (dir) => {
        const mark = randomBytes(6).toString("hex");
        const args = ["-A", "big", "--arg", "n", "400", "--argstr", "seed", mark, "--json", "--no-out-link"];
        const child = startBuild(pool, dir, args, mark);
        // Whichever host builds big: once this machine's store has read 20 MB of it, kill that host.
        const dd = async () => {
          for (const h of pool.pool.hosts)
            if ((await commandLines(await netnsPids(h.netns))).some((c) => c.startsWith("/bin/dd"))) return h;
          return undefined;
        };
        const host = await waitFor(dd, { timeoutMs: 120_000, intervalMs: 20 });
        assert.ok(host, "a builder runs dd");
        await waitFor(() => importing(mark), { timeoutMs: 120_000, intervalMs: 20 });
        assert.ok((await killNetns(host.netns)) > 0);
        const r = await child;
        assert.equal(r.exitCode, 0, `${r.stderr}${r.stdout}`);
        const j = JSON.parse(r.stdout) as { outputs: string[]; derivations: DrvJson[] };
        out = j.outputs[0];
        const big = j.derivations.find((d) => d.name === "big");
        assert.equal(big?.status, "built");
        assert.notEqual(big?.builder, host.name, "built again on the other builder");
        assert.match(big?.retries[0]?.reason ?? "", new RegExp(host.name));
        assert.deepEqual(await processesMarked(MARK, mark), [], "nothing left running here");
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
      if (out) await execa("nix-store", ["--delete", out], { reject: false });
    }
  });

  test("a builder with 16 jobs behind sshd's default MaxStartups (10:30:100) opens every slot", async () => {
    const pool = await startTestPool(1, 16);
    try {
      await withTempDir(async (dir) => {
        const h = pool.pool.hosts[0]!;
        const config = await readFile(h.sshdConfigPath, "utf8");
        assert.match(config, /^MaxStartups /m);
        await writeFile(h.sshdConfigPath, config.replace(/^MaxStartups .*$/m, "MaxStartups 10:30:100"));
        process.kill(h.sshdPid, "SIGHUP"); // sshd re-reads its config
        await sleep(1000);
        const mark = randomBytes(6).toString("hex");
        const r = await startBuild(pool, dir, [...graphArgs(16, 1), "--json", "--no-out-link"], mark);
        assert.equal(r.exitCode, 0, `${r.stderr}${r.stdout}`);
        const j = JSON.parse(r.stdout) as { derivations: DrvJson[] };
        assert.equal(j.derivations.length, 17);
        assert.deepEqual(
          j.derivations.filter((d) => d.retries.length > 0),
          [],
          "no session was refused",
        );
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });

  test("every builder dead: a clear error naming them, exit 1, nothing left running", async () => {
    const pool = await startTestPool(2, 1);
    try {
      await withTempDir(async (dir) => {
        const mark = randomBytes(6).toString("hex");
        const child = startBuild(pool, dir, [...graphArgs(4, 5), "--no-out-link"], mark);
        await waitForBuildOn(pool.pool.hosts[0]!.netns);
        for (const h of pool.pool.hosts) await killNetns(h.netns);
        const r = await child;
        assert.equal(r.exitCode, 1, r.stderr);
        assert.match(r.stderr, /error: No capable builder is reachable: local1 \(.+\), local2 \(.+\)\./);
        assert.match(r.stderr, /hint: .*nixpool doctor/);
        assert.deepEqual(await processesMarked(MARK, mark), []);
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });

  test("Ctrl-C while an output streams here: exit 130, nothing left running, nothing half-imported", async () => {
    const pool = await startTestPool(1, 1);
    try {
      await withTempDir(async (dir) => {
        const mark = randomBytes(6).toString("hex");
        const args = ["-A", "big", "--arg", "n", "400", "--argstr", "seed", mark, "--json", "--no-out-link"];
        const child = startBuild(pool, dir, args, mark);
        await waitFor(() => importing(mark), { timeoutMs: 120_000, intervalMs: 20 });
        child.kill("SIGINT");
        const r = await child;
        assert.equal(r.exitCode, 130, `${r.stderr} ${r.signal} ${r.timedOut} ${r.stdout.slice(0, 300)}`);
        assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "INTERRUPTED");
        assert.deepEqual(await processesMarked(MARK, mark), [], "nothing left running here");
        const h = pool.pool.hosts[0]!;
        await waitFor(async () => (await sleepsIn(h.netns)).length === 0, {
          timeoutMs: 10_000,
          intervalMs: 200,
        });
        assert.deepEqual(await sleepsIn(h.netns), [], "no serve session left on the builder");
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });

  test("Ctrl-C: exit 130, and nothing is left running on the builders or here", async () => {
    const pool = await startTestPool(2, 2);
    try {
      await withTempDir(async (dir) => {
        const mark = randomBytes(6).toString("hex");
        const child = startBuild(pool, dir, [...graphArgs(6, 30), "--no-out-link"], mark);
        await waitForBuildOn(pool.pool.hosts[0]!.netns);
        await waitForBuildOn(pool.pool.hosts[1]!.netns);
        child.kill("SIGINT");
        const r = await child;
        assert.equal(r.exitCode, 130, r.stderr);
        const left = async () => [
          ...(await sleepsIn(pool.pool.hosts[0]!.netns)),
          ...(await sleepsIn(pool.pool.hosts[1]!.netns)),
        ];
        await waitFor(async () => (await left()).length === 0, { timeoutMs: 10_000, intervalMs: 200 });
        assert.deepEqual(await left(), [], "no build or serve session left on the builders");
        assert.deepEqual(await processesMarked(MARK, mark), [], "nothing left running here");
      }, "nixpool-fault-");
    } finally {
      await pool.cleanup();
    }
  });
});
