import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { run } from "../../src/adapters/runner.js";
import { isProcessAlive } from "../../src/adapters/process-alive.js";
import type { Pool } from "../../src/providers/local/records.js";
import { asNobody, CLI, makeTempDir, runCli, withTempDir } from "../helpers/cli.js";
import { stageCli, type StagedCli } from "../helpers/staged-cli.js";
import { EXAMPLES, freshSeed, graphArgs } from "../helpers/example-builds.js";

interface BuildJson {
  outputs: string[];
  outLink: string;
  derivations: { name: string; builder: string; drv: string; durationMs: number | null }[];
}

describe("local pool and offloaded builds", { timeout: 600_000 }, () => {
  let stateDir: string;
  let cleanupDir: () => Promise<void>;
  let pool: Pool;
  // What runs as nobody runs from a copy it can read: the checkout may sit in a 0700 directory.
  let staged: StagedCli;

  before(async () => {
    staged = await stageCli();
    ({ dir: stateDir, cleanup: cleanupDir } = await makeTempDir("nixpool-lpb-"));
    const up = await runCli(stateDir, ["local", "up", "--builders", "2", "--jobs", "2", "--json"]);
    assert.equal(up.exitCode, 0, up.stderr);
    pool = (JSON.parse(up.stdout) as { pool: Pool }).pool;
  });

  after(async () => {
    await runCli(stateDir, ["local", "down"]);
    await cleanupDir();
    await staged?.cleanup();
  });

  test("local up starts two distinct builder hosts, listed as builders with pinned keys", async () => {
    assert.equal(pool.hosts.length, 2);
    const [a, b] = pool.hosts;
    assert.ok(a && b);
    assert.notEqual(a.address, b.address);
    assert.notEqual(a.hostKeyPub, b.hostKeyPub);
    assert.notEqual(a.netns, b.netns);
    const status = await runCli(stateDir, ["local", "status", "--json"]);
    assert.equal(status.exitCode, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { up: boolean; hosts: { running: boolean }[] };
    assert.equal(s.up, true);
    assert.deepEqual(
      s.hosts.map((h) => h.running),
      [true, true],
    );
    const list = await runCli(stateDir, ["builders", "--json"]);
    const builders = (
      JSON.parse(list.stdout) as { builders: { name: string; source: string; hostKey: string }[] }
    ).builders;
    assert.deepEqual(
      builders.map((x) => [x.name, x.source, x.hostKey]),
      [
        ["local1", "local", a.hostKeyPub],
        ["local2", "local", b.hostKeyPub],
      ],
    );
    // Each host has its own store: a path built into one is absent from the other.
    const hostname = await run(["nsenter", "-t", String(a.sshdPid), "-m", "--", "cat", "/etc/nix/nix.conf"]);
    assert.match(hostname.stdout, /build-users-group =\n/);
    assert.match(hostname.stdout, /substituters =\n/);
  });

  test("build of the example graph runs every derivation on a pool builder and returns correct outputs", async () => {
    await withTempDir(async (dir) => {
      const outLink = join(dir, "graph-result");
      const r = await runCli(stateDir, ["build", ...graphArgs(11), "--out-link", outLink, "--json"], {
        cwd: dir,
      });
      assert.equal(r.exitCode, 0, r.stderr);
      const result = JSON.parse(r.stdout) as BuildJson;
      assert.equal(result.derivations.length, 12);
      // Listed in natural order: leaf-2 before leaf-10.
      assert.deepEqual(
        result.derivations.map((d) => d.name),
        ["graph-root", ...Array.from({ length: 11 }, (_, i) => `leaf-${i}`)],
      );
      for (const d of result.derivations)
        assert.ok(["local1", "local2"].includes(d.builder), `${d.name} on ${d.builder}`);
      // Both builders got work: the hook spread 11 leaves over 2 × 2 slots.
      assert.equal(new Set(result.derivations.map((d) => d.builder)).size, 2);
      const [output] = result.outputs;
      assert.ok(output);
      assert.ok(output.startsWith("/nix/store/") && output.endsWith("-graph-root"));
      assert.equal(await readlink(outLink), output);
      const content = await readFile(output, "utf8");
      assert.deepEqual(
        content.trim().split("\n"),
        Array.from({ length: 11 }, (_, i) => `leaf-${i}`),
      );
      // The result is registered in the local store and rooted by the out-link.
      const roots = await run(["nix-store", "--gc", "--print-roots"]);
      assert.ok(roots.stdout.includes(`${outLink} -> ${output}`), "out-link is a GC root");
      // The human-readable report names the builder of each derivation.
      const human = await runCli(stateDir, ["build", ...graphArgs(2), "-o", join(dir, "r2")], { cwd: dir });
      assert.equal(human.exitCode, 0, human.stderr);
      assert.match(
        human.stdout,
        /DERIVATION\s+BUILDER\s+ATTEMPTS\s+QUEUED\s+UPLOAD\s+BUILD\s+DOWNLOAD\s+STATUS/,
      );
      assert.match(human.stdout, /leaf-0\s+local[12]\s+1\s+[\d.]+s\s+[\d.]+s\s+[\d.]+s\s+\S+\s+built/);
      assert.match(human.stdout, /by nixpool's dispatcher \(the default\)/);
    });
  });

  test("--builder and --tag restrict where derivations go", async () => {
    await withTempDir(async (dir) => {
      const r = await runCli(
        stateDir,
        ["build", ...graphArgs(4), "--builder", "local2", "-o", join(dir, "r"), "--json"],
        { cwd: dir },
      );
      assert.equal(r.exitCode, 0, r.stderr);
      const result = JSON.parse(r.stdout) as BuildJson;
      assert.equal(result.derivations.length, 5);
      for (const d of result.derivations) assert.equal(d.builder, "local2");
      const unknown = await runCli(stateDir, ["build", join(EXAMPLES, "graph.nix"), "--builder", "nope"], {
        cwd: dir,
      });
      assert.equal(unknown.exitCode, 2);
      assert.match(unknown.stderr, /No builder is named "nope"/);
      const noTag = await runCli(stateDir, ["build", join(EXAMPLES, "graph.nix"), "--tag", "gpu"], {
        cwd: dir,
      });
      assert.equal(noTag.exitCode, 2);
      assert.match(noTag.stderr, /No builder carries the tag gpu/);
    });
  });

  test("build of the dependency chain copies each step between builders and ends with the right value", async () => {
    await withTempDir(async (dir) => {
      const r = await runCli(
        stateDir,
        [
          "build",
          join(EXAMPLES, "chain.nix"),
          "--arg",
          "length",
          "4",
          "--argstr",
          "seed",
          freshSeed(),
          "-o",
          join(dir, "chain"),
          "--json",
        ],
        { cwd: dir },
      );
      assert.equal(r.exitCode, 0, r.stderr);
      const result = JSON.parse(r.stdout) as BuildJson;
      assert.deepEqual(
        result.derivations.map((d) => d.name),
        ["chain-0", "chain-1", "chain-2", "chain-3", "chain-4"],
      );
      for (const d of result.derivations) assert.match(d.builder, /^local[12]$/);
      assert.equal((await readFile(result.outputs[0] ?? "", "utf8")).trim(), "4");
    });
  });

  test("-L prints the builders' build logs, prefixed with the derivation", async () => {
    await withTempDir(async (dir) => {
      const marker = `log-line-${freshSeed()}`;
      const file = join(dir, "talk.nix");
      await writeFile(
        file,
        `{ seed }: builtins.derivation { name = "talker"; system = builtins.currentSystem; builder = "/bin/sh";
           inherit seed; args = [ "-c" "echo ${marker}; echo done > $out" ]; }`,
      );
      const r = await runCli(
        stateDir,
        ["build", file, "--argstr", "seed", freshSeed(), "-L", "-o", join(dir, "r")],
        {
          cwd: dir,
        },
      );
      assert.equal(r.exitCode, 0, r.stderr);
      assert.ok(r.stderr.split("\n").includes(`talker> ${marker}`), r.stderr);
      const quiet = await runCli(
        stateDir,
        ["build", file, "--argstr", "seed", freshSeed(), "-o", join(dir, "r2")],
        {
          cwd: dir,
        },
      );
      assert.equal(quiet.exitCode, 0, quiet.stderr);
      assert.match(quiet.stderr, /building talker on local[12]/, "it was really built again");
      assert.ok(!quiet.stderr.includes(marker), "without -L no build log is printed");
    });
  });

  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    test(`${sig} during a build stops nix-build and exits 130, leaving no process behind`, async () => {
      await withTempDir(async (dir) => {
        const mark = freshSeed();
        const child = execa(
          "node",
          [
            CLI,
            "--state-dir",
            stateDir,
            "build",
            ...graphArgs(2, { seed: mark, sleep: 30 }),
            "-o",
            join(dir, "r"),
          ],
          { cwd: dir, reject: false },
        );
        let stderr = "";
        await new Promise<void>((resolveStarted, rejectStarted) => {
          child.stderr.on("data", (d: Buffer) => {
            stderr += d.toString();
            if (stderr.includes("building leaf-")) resolveStarted();
          });
          child.catch(rejectStarted);
          setTimeout(() => rejectStarted(new Error(`no build started: ${stderr}`)), 60_000);
        });
        child.kill(sig);
        const r = await child;
        assert.equal(r.exitCode, 130, String(r.stderr));
        assert.match(String(r.stderr), /interrupted/);
        assert.doesNotMatch(String(r.stderr), /built {4}leaf-/, "nothing is reported built");
        const left = await run(["pgrep", "-f", mark], { reject: false });
        assert.equal(left.stdout.trim(), "", "no nix-build or hook of this build is left");
      });
    });
  }

  test("a failing derivation is reported with its name, its builder and its log tail", async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, "broken.nix");
      await writeFile(
        file,
        `builtins.derivation { name = "broken"; system = builtins.currentSystem; builder = "/bin/sh"; seed = "${freshSeed()}";
           args = [ "-c" "echo first-line; echo the-tail-line-${freshSeed()}; exit 3" ]; }`,
      );
      const r = await runCli(stateDir, ["build", file, "-o", join(dir, "r")], { cwd: dir });
      assert.equal(r.exitCode, 1);
      assert.match(r.stderr, /error: Derivation broken failed on builder local[12]\./);
      assert.match(r.stderr, /the-tail-line-/);
      const j = await runCli(stateDir, ["build", file, "-o", join(dir, "r"), "--json"], { cwd: dir });
      const err = (
        JSON.parse(j.stdout) as { error: { code: string; details: { builder: string; derivation: string } } }
      ).error;
      assert.equal(err.code, "BUILD_FAILED");
      assert.match(err.details.builder, /^local[12]$/);
      assert.match(err.details.derivation, /-broken\.drv$/);
    });
  });

  test("a builder whose pinned host key does not match is refused, and nothing learns its real key", async () => {
    await withTempDir(async (dir) => {
      const host = pool.hosts[0];
      assert.ok(host);
      await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, "other")]);
      const wrongKey = (await readFile(join(dir, "other.pub"), "utf8"))
        .trim()
        .split(" ")
        .slice(0, 2)
        .join(" ");
      const inventory = join(dir, "nixpool.toml");
      await writeFile(
        inventory,
        `[builders.impostor]\nhost = "${host.address}"\nuser = "root"\nmaxJobs = 2\nhostKey = "${wrongKey}"\nidentityFile = "${pool.clientKeyPath}"\n`,
      );
      const emptyState = join(dir, "state");
      const r = await runCli(
        emptyState,
        ["--inventory", inventory, "build", ...graphArgs(1), "-o", join(dir, "r")],
        { cwd: dir },
      );
      assert.notEqual(r.exitCode, 0);
      assert.match(
        r.stderr,
        /error: Builder impostor \(10\.251\.[0-9.]+\) presented a host key that does not match its pinned key/,
      );
      assert.match(r.stderr, /hint: .*nixpool doctor impostor/);
      assert.ok(!existsSync(join(dir, "r")), "no result was produced");
      const knownHosts = await readFile(join(emptyState, "client", "known_hosts"), "utf8");
      assert.ok(!knownHosts.includes(host.hostKeyPub.split(" ")[1] ?? "x"), "the real key was not learned");
    });
  });

  test("local down stops exactly the pool's processes and leaves no namespace, link or state", async () => {
    const { dir: otherState, cleanup } = await makeTempDir("nixpool-lpb2-");
    try {
      const up = await runCli(otherState, ["local", "up", "--builders", "1", "--jobs", "1", "--json"]);
      assert.equal(up.exitCode, 0, up.stderr);
      const p = (JSON.parse(up.stdout) as { pool: Pool }).pool;
      // A host whose sshd died is reported at once (exit 3), and down still cleans it up.
      const dead = p.hosts[0];
      assert.ok(dead);
      process.kill(dead.sshdPid, "SIGKILL");
      const dying = await runCli(otherState, ["local", "status"]);
      assert.equal(dying.exitCode, 3, dying.stdout);
      assert.match(dying.stdout, /local1\s.*STOPPED/);
      const down = await runCli(otherState, ["local", "down"]);
      assert.equal(down.exitCode, 0, down.stderr);
      assert.match(down.stdout, /Stopped 1 builder hosts/);
      const netns = (await run(["ip", "netns", "list"])).stdout;
      const links = (await run(["ip", "-o", "link"])).stdout;
      for (const h of p.hosts) {
        assert.equal(isProcessAlive(h.sshdPid), false, "sshd is gone");
        assert.ok(!netns.split("\n").some((l) => l.split(" ")[0] === h.netns), `${h.netns} is gone`);
        assert.ok(!links.includes(`np${h.slot}h`), "veth is gone");
        assert.ok(!existsSync(h.dir), "host directory is gone");
        assert.ok(
          !(await readFile("/proc/self/mountinfo", "utf8")).includes(h.dir),
          "nothing of it is mounted",
        );
      }
      // The other pool is untouched.
      for (const h of pool.hosts) assert.equal(isProcessAlive(h.sshdPid), true);
      const status = await runCli(otherState, ["local", "status", "--json"]);
      assert.equal((JSON.parse(status.stdout) as { up: boolean }).up, false);
    } finally {
      await cleanup();
    }
  });

  test("when a Nix daemon would build, nixpool refuses a silent local build and points to config apply", async () => {
    await withTempDir(async (dir) => {
      await chmod(dir, 0o777);
      const host = pool.hosts[0];
      assert.ok(host);
      const inventory = join(dir, "nixpool.toml");
      await writeFile(inventory, `[builders.b1]\nhost = "${host.address}"\nhostKey = "${host.hostKeyPub}"\n`);
      // A user other than root whose Nix talks to a daemon: its hook ignores --builders and NIX_SSHOPTS.
      const r = await run(
        asNobody([
          "node",
          staged.cli,
          "--state-dir",
          join(dir, "state"),
          "--inventory",
          inventory,
          "build",
          join(staged.examples, "graph.nix"),
          "-o",
          join(dir, "r"),
        ]),
        { reject: false, env: { HOME: dir, NIX_REMOTE: "daemon" }, cwd: dir },
      );
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, /A Nix daemon performs your builds/);
      assert.match(r.stderr, /hint: .*nixpool config apply/);
      assert.ok(!existsSync(join(dir, "r")));
    });
  });

  test("local gc stops hosts whose state directory was deleted, and only those", async () => {
    const { dir: lostState, cleanup } = await makeTempDir("nixpool-lost-");
    try {
      const up = await runCli(lostState, ["local", "up", "--builders", "1", "--jobs", "1", "--json"]);
      assert.equal(up.exitCode, 0, up.stderr);
      const lost = (JSON.parse(up.stdout) as { pool: Pool }).pool.hosts[0];
      assert.ok(lost);
      await rm(lostState, { recursive: true, force: true });
      const dry = await runCli(stateDir, ["local", "gc", "--dry-run", "--json"]);
      const found = (JSON.parse(dry.stdout) as { orphans: { netns: string }[] }).orphans.map((o) => o.netns);
      assert.ok(found.includes(lost.netns), "the lost host is found");
      for (const h of pool.hosts) assert.ok(!found.includes(h.netns), "live pools are not orphans");
      assert.equal(isProcessAlive(lost.sshdPid), true, "dry run stops nothing");
      const gc = await runCli(stateDir, ["local", "gc"]);
      assert.equal(gc.exitCode, 0, gc.stderr);
      assert.equal(isProcessAlive(lost.sshdPid), false);
      const left = (await run(["ip", "netns", "list"])).stdout.split("\n").map((l) => l.split(" ")[0]);
      assert.ok(!left.includes(lost.netns), "its namespace is gone");
      for (const h of pool.hosts) assert.equal(isProcessAlive(h.sshdPid), true);
    } finally {
      await cleanup();
    }
  });

  test("without network namespaces (as in an unprivileged container), local up says so and what to do instead", async () => {
    await withTempDir(async (dir) => {
      const r = await run(
        [
          "unshare",
          "--user",
          "--map-root-user",
          "node",
          CLI,
          "--state-dir",
          join(dir, "s"),
          "local",
          "up",
          "--builders",
          "1",
        ],
        { reject: false },
      );
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, /error: Could not create network namespace nixpool-\d+/);
      assert.match(r.stderr, /hint: .*network namespaces.*remote builders/);
    });
  });

  test("without root, local up says so and what to do instead", async () => {
    await withTempDir(async (dir) => {
      await chmod(dir, 0o777);
      const r = await run(asNobody(["node", staged.cli, "--state-dir", join(dir, "s"), "local", "up"]), {
        reject: false,
        env: { HOME: dir },
      });
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, /needs root/);
      assert.match(r.stderr, /hint: .*nixpool\.toml/);
    });
  });
});
