import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { run } from "../../src/adapters/runner.js";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { createLocalBooter } from "../../src/emulator/hetzner/local-booter.js";
import { CLI, makeTempDir, runCli } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";
import { graphArgs } from "../helpers/example-builds.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { localSystem } from "../../src/config/load.js";

const seed = () => randomBytes(6).toString("hex");
/** `nixpool build --on hetzner` of the example graph with n leaves and a fresh seed. */
const buildOn = (n: number, ...extra: string[]) => ["build", "--on", "hetzner", ...graphArgs(n), ...extra];

interface EmulatorStateJson {
  servers: { id: number; name: string; status: string; labels: Record<string, string> }[];
  ssh_keys: unknown[];
}

describe("workers on the Hetzner Cloud emulator (real hosts, sshd, nix)", { timeout: 900_000 }, () => {
  let emu: RunningEmulator;
  let root: string;
  let cleanupRoot: () => Promise<void>;
  const children: ChildProcess[] = [];
  let env: Record<string, string>;
  /** The user_data of every server created, as nixpool sent it. */
  const userData: string[] = [];

  const state = async (): Promise<EmulatorStateJson> =>
    (await (await fetch(`${emu.adminUrl}/state`)).json()) as EmulatorStateJson;
  const fault = async (f: unknown) => {
    const r = await fetch(`${emu.adminUrl}/faults`, { method: "POST", body: JSON.stringify(f) });
    assert.equal(r.status, 200);
  };
  const newStateDir = async (name: string) => {
    const dir = join(root, `${name}-${seed()}`);
    await mkdir(dir, { recursive: true });
    return dir;
  };
  const cli = (stateDir: string, args: string[], extraEnv: Record<string, string> = {}) =>
    runCli(stateDir, args, { env: { ...env, ...extraEnv }, cwd: stateDir, timeout: 300_000 });
  /** Starts the CLI in its own process group (as a terminal would), collecting stderr. */
  const spawnCli = (stateDir: string, args: string[], extraEnv: Record<string, string> = {}) => {
    const child = spawn("node", [CLI, "--state-dir", stateDir, ...args], {
      cwd: stateDir,
      env: { ...process.env, ...env, ...extraEnv },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout?.resume();
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    return { child, stderr: () => stderr, exited };
  };
  const waitUntil = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 120_000) => {
    if (!(await waitFor(cond, { timeoutMs, intervalMs: 200 }))) assert.fail(`timed out waiting for ${what}`);
  };
  const assertNoServers = async () => {
    await waitUntil("zero servers", async () => (await state()).servers.length === 0, 30_000);
    assert.deepEqual((await state()).servers, []);
    assert.deepEqual((await state()).ssh_keys, []);
  };

  before(async () => {
    ({ dir: root, cleanup: cleanupRoot } = await makeTempDir("nixpool-workers-"));
    const localBooter = createLocalBooter(join(root, "emulator-hosts"));
    emu = await startHetznerEmulator({
      tokens: [TEST_TOKEN],
      booter: (req) => {
        if (req.userData !== undefined) userData.push(req.userData);
        return localBooter(req);
      },
      timing: { createMs: 500, bootMs: 300, deleteMs: 200 },
    });
    env = {
      HCLOUD_ENDPOINT: emu.endpoint,
      HCLOUD_TOKEN: TEST_TOKEN,
      NIXPOOL_HCLOUD_BOOT_TIMEOUT: "90s",
    };
  });

  after(async () => {
    for (const c of children) {
      try {
        if (c.pid) process.kill(-c.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await emu?.close();
    await cleanupRoot?.();
  });

  test("build --on hetzner builds the example graph on a fresh worker, copies the result back, deletes it, prints the cost", async () => {
    const stateDir = await newStateDir("build");
    const r = await cli(stateDir, buildOn(4, "--json"));
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      outputs: string[];
      derivations: { name: string; builder: string }[];
      worker: { name: string; type: string; location: string; cost: { net: number; hours: number } };
    };
    assert.equal(out.worker.type, "cx23");
    assert.equal(out.derivations.length, 5);
    assert.ok(
      out.derivations.every((d) => d.builder === out.worker.name),
      JSON.stringify(out.derivations),
    );
    const link = await readlink(join(stateDir, "result"));
    assert.equal(link, out.outputs[0]);
    assert.equal((await readFile(link, "utf8")).trim().split("\n").length, 4);
    assert.match(
      r.stderr,
      /deleted; cost: €0\.0068 net, €0\.0081 gross \(1 started hour of cx23 in fsn1 incl\. primary IPv4; API prices/,
    );
    await assertNoServers();
    const list = await cli(stateDir, ["worker", "list", "--json"]);
    assert.deepEqual(JSON.parse(list.stdout), { workers: [], snapshots: [] });
  });

  test("build --on hetzner takes a flake output: built on the worker, result linked, worker deleted", async () => {
    const stateDir = await newStateDir("flake");
    const flake = join(stateDir, "flake");
    await mkdir(flake);
    const system = localSystem();
    await writeFile(
      join(flake, "flake.nix"),
      `{ outputs = { self }: { packages.${system}.pair = builtins.derivation { name = "flake-on-worker"; seed = "${seed()}"; system = "${system}"; builder = "/bin/sh"; args = [ "-c" "echo from-the-worker > $out" ]; }; }; }\n`,
    );
    const r = await cli(stateDir, ["build", "--on", "hetzner", `path:${flake}#pair`, "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      outputs: string[];
      derivations: { builder: string }[];
      worker: { name: string };
    };
    assert.deepEqual(
      out.derivations.map((d) => d.builder),
      [out.worker.name],
    );
    assert.equal(
      (await readFile(await readlink(join(stateDir, "result")), "utf8")).trim(),
      "from-the-worker",
    );
    await assertNoServers();
  });

  test("the user_data nixpool sent passes cloud-init's own schema validator", async () => {
    assert.ok(userData.length > 0, "no server was created yet");
    for (const [i, ud] of userData.entries()) {
      const file = join(root, `user-data-${i}.yaml`);
      await writeFile(file, ud, { mode: 0o600 });
      const r = await run(["cloud-init", "schema", "--config-file", file], { reject: false });
      assert.equal(r.exitCode, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /Valid cloud-config/);
      assert.match(ud, /^\s+max-jobs = \d+$/m);
    }
  });

  test("429 and 5xx storms, conflicts and dropped connections are absorbed", async () => {
    const stateDir = await newStateDir("storm");
    await fault([
      { kind: "rate_limit", count: 4 },
      { kind: "server_error", count: 3, status: 503 },
      { kind: "server_error", count: 1, status: 500, method: "POST", path: "/servers" },
      { kind: "conflict", count: 1, method: "DELETE" },
      { kind: "drop", count: 1, method: "GET", path: "/actions" },
    ]);
    const r = await cli(stateDir, buildOn(2));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /→ 429 rate_limit_exceeded; retry/);
    assert.match(r.stderr, /→ 503 unavailable; retry/);
    assert.match(r.stderr, /POST \/servers → 500 server_error; retry/);
    assert.match(r.stderr, /→ 409 conflict; retry/);
    assert.match(r.stderr, /deleted; cost:/);
    await assertNoServers();
  });

  test("a create whose answer was lost is retried without making a second server", async () => {
    const stateDir = await newStateDir("lost-answer");
    const before = (await (await fetch(`${emu.adminUrl}/state`)).json()) as { servers_created: number };
    await fault([
      { kind: "drop", count: 1, after: true, method: "POST", path: "/ssh_keys" },
      { kind: "drop", count: 1, after: true, method: "POST", path: "/servers" },
    ]);
    const r = await cli(stateDir, buildOn(1));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /POST \/servers → .*; retry 1/);
    assert.match(r.stderr, /the server was created by an earlier attempt; using it/);
    const after = (await (await fetch(`${emu.adminUrl}/state`)).json()) as { servers_created: number };
    assert.equal(after.servers_created - before.servers_created, 1);
    await assertNoServers();
  });

  test("a server that never becomes reachable ends in a clear error and is deleted", async () => {
    const stateDir = await newStateDir("noboot");
    await fault({ kind: "boot", mode: "unreachable" });
    const r = await cli(stateDir, ["worker", "up", "--boot-timeout", "8s"]);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /error: Worker hz-[0-9a-f]{10} \([0-9.]+\) never answered on SSH/);
    assert.match(r.stderr, /hint: The server is deleted/);
    assert.match(r.stderr, /deleted; cost:/);
    await assertNoServers();
    assert.deepEqual(JSON.parse((await cli(stateDir, ["worker", "list", "--json"])).stdout), {
      workers: [],
      snapshots: [],
    });
  });

  test("a slow boot is waited for: SSH retried with the pinned key until it answers", async () => {
    const stateDir = await newStateDir("slowboot");
    await fault({ kind: "boot", mode: "slow", delayMs: 6000 });
    const r = await cli(stateDir, ["worker", "shell", "--type", "cpx12", "-c", "true"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /waiting for SSH with the pinned host key\n.*SSH answers; waiting for Nix/s);
    assert.match(r.stderr, /deleted; cost:/);
    const after = (await (await fetch(`${emu.adminUrl}/state`)).json()) as { faults: unknown[] };
    assert.deepEqual(after.faults, [], "the slow boot hit this worker");
    await assertNoServers();
  });

  test("a failed create action is deleted too", async () => {
    const stateDir = await newStateDir("failboot");
    await fault({ kind: "boot", mode: "fail" });
    const r = await cli(stateDir, buildOn(1));
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /action create_server \(\d+\) failed: Server creation failed/);
    await assertNoServers();
  });

  test("a build that outlasts its lease renews it, so another owner's gc leaves the server alone", async () => {
    const stateDir = await newStateDir("renew");
    const other = await newStateDir("other-owner");
    const proc = spawnCli(stateDir, buildOn(1, "--argstr", "sleep", "24"), {
      NIXPOOL_HCLOUD_TTL: "12s",
    });
    await waitUntil("the build to start on the worker", () => /building leaf-/.test(proc.stderr()));
    const [server] = (await state()).servers;
    const firstExpiry = Number(server?.labels["nixpool-expires"]);
    // Past the original expiry: only a renewed label keeps the server out of the reaper's hands.
    await waitUntil("the original lease to expire", () => Date.now() > (firstExpiry + 2) * 1000, 60_000);
    const gc = await cli(other, ["worker", "gc", "--json"]);
    assert.equal(gc.exitCode, 0, gc.stderr);
    assert.deepEqual((JSON.parse(gc.stdout) as { deleted: unknown[] }).deleted, []);
    const renewed = Number((await state()).servers[0]?.labels["nixpool-expires"]);
    assert.ok(renewed > firstExpiry, `${renewed} > ${firstExpiry}`);
    assert.equal(await proc.exited, 0, proc.stderr());
    assert.match(proc.stderr(), /deleted; cost:/);
    await assertNoServers();
  });

  test("kill -9 of nixpool mid-build, then worker gc: zero servers", async () => {
    const stateDir = await newStateDir("kill9");
    const proc = spawnCli(stateDir, buildOn(2, "--argstr", "sleep", "60"));
    await waitUntil("the build to start on the worker", () => /building leaf-/.test(proc.stderr()));
    assert.equal((await state()).servers.length, 1);
    process.kill(proc.child.pid ?? 0, "SIGKILL");
    await proc.exited;
    assert.equal((await state()).servers.length, 1, "the server outlives a killed nixpool");
    const gc = await cli(stateDir, ["worker", "gc", "--json"]);
    assert.equal(gc.exitCode, 0, gc.stderr);
    const res = JSON.parse(gc.stdout) as { deleted: { reason: string }[]; deletedSshKeys: number };
    assert.deepEqual(
      res.deleted.map((d) => d.reason),
      ["holder process gone"],
    );
    await assertNoServers();
  });

  test("Ctrl-C (SIGINT to the process group) mid-build: exit 130, zero servers", async () => {
    const stateDir = await newStateDir("sigint");
    const proc = spawnCli(stateDir, buildOn(2, "--argstr", "sleep", "60"));
    await waitUntil("the build to start on the worker", () => /building leaf-/.test(proc.stderr()));
    process.kill(-(proc.child.pid ?? 0), "SIGINT");
    assert.equal(await proc.exited, 130, proc.stderr());
    assert.match(proc.stderr(), /SIGINT: stopping; the worker is being deleted/);
    assert.match(proc.stderr(), /deleted; cost:/);
    await assertNoServers();
  });

  test("SIGTERM while the worker boots: exit 130, zero servers", async () => {
    const stateDir = await newStateDir("sigterm");
    await fault({ kind: "boot", mode: "slow", delayMs: 60_000 });
    const proc = spawnCli(stateDir, buildOn(1));
    await waitUntil("the worker to boot", () => /waiting for SSH/.test(proc.stderr()));
    process.kill(proc.child.pid ?? 0, "SIGTERM");
    assert.equal(await proc.exited, 130, proc.stderr());
    await assertNoServers();
  });

  test("worker up --type auto picks the cheapest fitting type; the worker is a builder until worker down", async (t) => {
    const stateDir = await newStateDir("auto");
    // A kept worker outlives a failed assertion; delete whatever is left before the next test.
    t.after(async () => {
      for (const s of (await state()).servers)
        await fetch(`${emu.endpoint}/servers/${s.id}`, {
          method: "DELETE",
          headers: { Authorization: `Bearer ${TEST_TOKEN}` },
        });
    });
    const up = await cli(stateDir, [
      "worker",
      "up",
      "--min-cores",
      "4",
      "--location",
      "hel1",
      "--ttl",
      "30m",
      "--json",
    ]);
    assert.equal(up.exitCode, 0, up.stderr);
    const w = (JSON.parse(up.stdout) as { worker: { name: string; type: string; cores: number } }).worker;
    // cx33 (4 cores, cheapest) is sold out in hel1; cx32 is phased out; cpx32 is next.
    assert.equal(w.type, "cpx32");
    assert.match(up.stderr, /cheapest fitting type at €0\.0218\/h net; next: cx43 at €0\.0263\/h/);
    const builders = JSON.parse((await cli(stateDir, ["builders", "--json"])).stdout) as {
      builders: { name: string; source: string; maxJobs: number; hostKey: string }[];
    };
    assert.deepEqual(
      builders.builders.map((b) => [b.name, b.source, b.maxJobs]),
      [[w.name, "hetzner", 4]],
    );
    const list = JSON.parse((await cli(stateDir, ["worker", "list", "--json"])).stdout) as {
      workers: { name: string; status: string; cost: { net: number; hours: number } }[];
    };
    assert.deepEqual(
      list.workers.map((x) => [x.name, x.status, x.cost.hours, x.cost.net]),
      [[w.name, "ready", 1, 0.0226]],
    );
    const table = (await cli(stateDir, ["worker", "list"])).stdout;
    assert.match(table, /^NAME +STATUS +TYPE +LOCATION +ADDRESS +EXPIRES +COST SO FAR$/m);
    assert.match(table, new RegExp(`^${w.name} +ready +cpx32 +hel1 .*€0\\.0226 net \\(1 h\\)$`, "m"));
    const down = await cli(stateDir, ["worker", "down", w.name]);
    assert.equal(down.exitCode, 0, down.stderr);
    assert.match(down.stdout, /deleted; cost: €0\.0226 net/);
    await assertNoServers();
  });

  test("worker shell --keep keeps the worker, loudly, until its lease expires; then gc deletes it", async () => {
    const stateDir = await newStateDir("keep");
    const r = await cli(stateDir, [
      "worker",
      "shell",
      "--type",
      "cpx12",
      "--keep",
      "--ttl",
      "45s",
      "-c",
      "true",
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const m =
      /KEEPING worker (hz-[0-9a-f]{10}) \([0-9.]+\) until its lease expires at (\S+); it costs money until then\. Delete it sooner with: nixpool worker down hz-/.exec(
        r.stderr,
      );
    assert.ok(m, r.stderr);
    assert.doesNotMatch(r.stderr, /deleted; cost/);
    const [, name, expiresAt] = m;
    const list = JSON.parse((await cli(stateDir, ["worker", "list", "--json"])).stdout) as {
      workers: { name: string; status: string; holder: string; expiresAt: string }[];
    };
    assert.deepEqual(
      list.workers.map((w) => [w.name, w.status, w.holder, w.expiresAt]),
      [[name, "ready", "user", expiresAt]],
    );
    // The shell is gone, but the user holds the lease: the gc that worker list ran kept the server.
    assert.equal((await state()).servers.length, 1);
    await waitUntil("the lease to expire", () => Date.now() > Date.parse(expiresAt ?? "") + 1000, 60_000);
    const gc = await cli(stateDir, ["worker", "gc", "--json"]);
    assert.equal(gc.exitCode, 0, gc.stderr);
    assert.deepEqual(
      (JSON.parse(gc.stdout) as { deleted: { reason: string }[] }).deleted.map((d) => d.reason),
      ["lease expired"],
    );
    await assertNoServers();
  });

  test("worker shell runs with the worker's address, ssh command and store, then deletes it", async () => {
    const stateDir = await newStateDir("shell");
    const r = await cli(stateDir, [
      "worker",
      "shell",
      "--type",
      "cpx12",
      "-c",
      'echo "store=$NIXPOOL_WORKER_STORE"; $NIXPOOL_WORKER_SSH nix-store --version; type nix_on_worker >/dev/null && echo fn-ok',
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /store=ssh-ng:\/\/nixpool-hz-[0-9a-f]{10}/);
    assert.match(r.stdout, /nix-store \(Nix\) 2\.8/);
    assert.match(r.stdout, /fn-ok/);
    assert.match(r.stderr, /deleted; cost:/);
    await assertNoServers();
  });
});
