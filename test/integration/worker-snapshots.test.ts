import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { run } from "../../src/adapters/runner.js";
import type { RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { CLI, makeTempDir, runCli } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";
import { emulatorEnv, startBootingEmulator, testAutoscaleConfig } from "../helpers/autoscale.js";
import { DISPATCH_FIXTURE, freshSeed, graphArgs, graphRequest } from "../helpers/example-builds.js";
import { socketRequest, startServe, type ServeProcess } from "../helpers/serve-process.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { fileInstallable, NO_FLAKE_OPTIONS } from "../../src/core/installable.js";
import { evaluateDerivations } from "../../src/dispatch/evaluate.js";
import { hetznerAutoscaleProvider } from "../../src/providers/hetzner/autoscale-provider.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import type { AutoscaleView, BuildDetail } from "../../src/serve/coordinator-types.js";

interface EmulatorImage {
  id: number;
  status: string;
  labels: Record<string, string>;
  image_size: number | null;
  disk_size: number;
}
interface EmulatorStateJson {
  servers: { id: number; name: string; status: string; labels: Record<string, string> }[];
  ssh_keys: unknown[];
  images: EmulatorImage[];
}
interface BuildJson {
  outputs: string[];
  derivations: { drv: string; name: string; status: string; builder: string | null }[];
  stats: { pathsUploaded: number; pathsDownloaded: number; bytesUploaded: number; bytesDownloaded: number };
}

describe(
  "suspended workers: snapshots and warm wakes (emulator, real hosts, sshd, nix)",
  { timeout: 1_800_000 },
  () => {
    let emu: RunningEmulator;
    let root: string;
    let cleanupRoot: () => Promise<void>;
    let env: Record<string, string>;
    const serves: ServeProcess[] = [];

    const state = async (): Promise<EmulatorStateJson> =>
      (await (await fetch(`${emu.adminUrl}/state`)).json()) as EmulatorStateJson;
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${emu.endpoint}${path}`, {
        method,
        headers: { Authorization: `Bearer ${TEST_TOKEN}`, "Content-Type": "application/json" },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return { status: r.status, body: (await r.text()) || "null" };
    };
    const newStateDir = async (name: string) => {
      const dir = join(root, `${name}-${randomBytes(4).toString("hex")}`);
      await mkdir(dir, { recursive: true });
      return dir;
    };
    const cli = (stateDir: string, args: string[], extraEnv: Record<string, string> = {}) =>
      runCli(stateDir, args, { env: { ...env, ...extraEnv }, cwd: stateDir, timeout: 300_000 });
    /** Runs the CLI where the runner would not (a process killed by a signal): its signal and stderr. */
    const runKilled = (stateDir: string, args: string[], extraEnv: Record<string, string>) =>
      new Promise<{ signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
        const child = spawn("node", [CLI, "--state-dir", stateDir, ...args], {
          cwd: stateDir,
          env: { ...process.env, ...env, ...extraEnv },
          stdio: ["ignore", "ignore", "pipe"],
        });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.once("error", reject);
        child.once("close", (_code, signal) => resolve({ signal, stderr }));
      });
    const ok = async (stateDir: string, args: string[], extraEnv: Record<string, string> = {}) => {
      const r = await cli(stateDir, args, extraEnv);
      assert.equal(r.exitCode, 0, `nixpool ${args.join(" ")}: ${r.stderr}`);
      return r;
    };
    const owner = async (stateDir: string) =>
      (await readFile(join(stateDir, "hetzner", "owner"), "utf8")).trim();
    const up = async (stateDir: string, ...args: string[]) => {
      const r = await ok(stateDir, ["worker", "up", "--ttl", "30m", "--json", ...args]);
      return { name: (JSON.parse(r.stdout) as { worker: { name: string } }).worker.name, stderr: r.stderr };
    };
    const build = async (stateDir: string, seed: string) =>
      JSON.parse((await ok(stateDir, ["build", ...graphArgs(2, { seed }), "--json"])).stdout) as BuildJson;
    /** Removes a build's outputs from this machine's store, so only a builder can still hold them. */
    const forgetLocally = async (stateDir: string, b: BuildJson) => {
      await rm(join(stateDir, "result"), { force: true });
      const outs: string[] = [];
      for (const d of b.derivations) {
        outs.push(...(await run(["nix-store", "-q", "--outputs", d.drv])).stdout.trim().split("\n"));
      }
      await run(["nix-store", "--delete", ...outs], { timeout: 60_000 });
      const valid = await run(["nix-store", "--check-validity", ...outs], { reject: false });
      assert.notEqual(valid.exitCode, 0, "the outputs are still valid here");
    };
    const assertNothingLeaked = async (stateDir: string) => {
      await waitFor(async () => (await state()).servers.length === 0, { timeoutMs: 30_000 });
      const s = await state();
      assert.deepEqual(s.servers, []);
      assert.deepEqual(s.ssh_keys, []);
      for (const i of s.images) {
        assert.equal(i.labels["nixpool"], "1", `snapshot ${i.id} is labelled`);
        assert.ok(
          i.labels["nixpool-owner"] && i.labels["nixpool-expires"],
          `snapshot ${i.id} has owner and expiry`,
        );
      }
      assert.deepEqual(
        (JSON.parse((await ok(stateDir, ["worker", "list", "--json"])).stdout) as { workers: unknown[] })
          .workers,
        [],
      );
    };

    before(async () => {
      ({ dir: root, cleanup: cleanupRoot } = await makeTempDir("nixpool-snapshots-"));
      emu = await startBootingEmulator(join(root, "emulator-hosts"), { createMs: 400, imageMs: 500 });
      env = { ...emulatorEnv(emu), NIXPOOL_HCLOUD_BOOT_TIMEOUT: "90s" };
    });
    after(async () => {
      for (const s of serves) await s.stop("SIGKILL");
      await emu?.close();
      await cleanupRoot?.();
    });

    test("suspend keeps what the worker built in a labelled snapshot; a wake holds it (no upload, no rebuild) and updates an outdated system", async () => {
      const stateDir = await newStateDir("warm");
      const seed = freshSeed();
      const w1 = await up(stateDir, "--type", "cx23");
      assert.match(w1.stderr, /system \/nix\/store\/[0-9a-z]{32}-nixpool-worker-system/);
      const first = await build(stateDir, seed);
      assert.ok(first.derivations.every((d) => d.status === "built" && d.builder === w1.name));

      const suspended = await ok(stateDir, ["worker", "suspend", w1.name, "--json"]);
      const out = JSON.parse(suspended.stdout) as { snapshot: { id: number; imageSizeGb: number } };
      assert.match(suspended.stderr, /kept \d+ built output\(s\) and the system as GC roots/);
      assert.match(suspended.stderr, /garbage collected/);
      const s1 = await state();
      assert.deepEqual(s1.servers, [], "the server is deleted");
      const image = s1.images.find((i) => i.id === out.snapshot.id);
      assert.equal(image?.status, "available");
      assert.equal(image?.disk_size, 40);
      assert.ok((image?.image_size ?? 0) > 0);
      const labels = image?.labels ?? {};
      assert.equal(labels["nixpool"], "1");
      assert.equal(labels["nixpool-owner"], await owner(stateDir));
      assert.equal(labels["nixpool-lease"], w1.name.slice(3));
      assert.equal(labels["nixpool-arch"], "x86");
      assert.equal(labels["nixpool-type"], "cx23");
      assert.equal(labels["nixpool-version"], "0.1.0");
      assert.match(labels["nixpool-system"] ?? "", /^[0-9a-z]{32}-nixpool-worker-system$/);
      assert.ok(Number(labels["nixpool-expires"]) * 1000 > Date.now() + 29 * 86_400_000);

      // The snapshot and its storage cost are listed.
      const list = JSON.parse((await ok(stateDir, ["worker", "list", "--json"])).stdout) as {
        workers: unknown[];
        snapshots: { id: number; cost: { monthly: number; soFar: number } }[];
      };
      assert.deepEqual(list.workers, []);
      assert.deepEqual(
        list.snapshots.map((x) => x.id),
        [out.snapshot.id],
      );
      assert.ok((list.snapshots[0]?.cost.monthly ?? 0) > 0);
      assert.match((await ok(stateDir, ["worker", "list"])).stdout, /^SNAPSHOT +STATUS +CREATED/m);

      // Woken on a 4-core type: its 2-job system is outdated and replaced; the built outputs are there.
      await forgetLocally(stateDir, first);
      const w2 = await up(stateDir, "--from-snapshot", "latest", "--type", "cx33");
      assert.match(w2.stderr, new RegExp(`from snapshot ${out.snapshot.id}`));
      assert.match(w2.stderr, /system updated from \/nix\/store\/\S+ to \/nix\/store\/\S+/);
      const second = await build(stateDir, seed);
      assert.deepEqual(
        second.derivations.map((d) => d.status),
        second.derivations.map(() => "cached"),
      );
      assert.equal(second.stats.pathsUploaded, 0);
      assert.equal(second.stats.bytesUploaded, 0);
      assert.ok(second.stats.bytesDownloaded > 0);
      assert.ok(second.stats.pathsDownloaded > 0, "the result came from the woken worker");
      assert.equal((await readFile(second.outputs[0] ?? "", "utf8")).trim().split("\n").length, 2);

      // A snapshot of the 80 GB cx33 does not fit a 40 GB cx23: refused before anything is rented.
      await ok(stateDir, ["worker", "suspend", w2.name]);
      const tooBig = await cli(stateDir, ["worker", "up", "--from-snapshot", "latest", "--type", "cx23"]);
      assert.equal(tooBig.exitCode, 2, tooBig.stderr);
      assert.match(tooBig.stderr, /SNAPSHOT_TOO_BIG|has a 40 GB disk; the snapshot needs 80 GB/);
      // The first snapshot, woken on its own type, has the current system already.
      const w3 = await up(stateDir, "--from-snapshot", String(out.snapshot.id), "--type", "cx23");
      assert.match(w3.stderr, /system \/nix\/store\/\S+ is current/);
      await ok(stateDir, ["worker", "down", w3.name]);
      await assertNothingLeaked(stateDir);

      // Retention: keep the newest one; gc deletes the older.
      await writeFile(join(stateDir, "nixpool.toml"), "[hetzner]\nkeepSnapshots = 1\n");
      const gc = JSON.parse((await ok(stateDir, ["worker", "gc", "--json"])).stdout) as {
        deletedSnapshots: { id: number; reason: string }[];
      };
      assert.deepEqual(gc.deletedSnapshots, [{ id: out.snapshot.id, reason: "past retention" }]);
      const me = await owner(stateDir);
      const left = (await state()).images.filter((i) => i.labels["nixpool-owner"] === me);
      assert.equal(left.length, 1);
      assert.equal(left[0]?.labels["nixpool-type"], "cx33");
    });

    test("--from-snapshot ID of another pool's snapshot is refused before anything is rented", async () => {
      const stateDir = await newStateDir("other-pool");
      const me = await owner(stateDir).catch(() => "");
      const theirs = (await state()).images.find(
        (i) => i.status === "available" && i.labels["nixpool"] === "1" && i.labels["nixpool-owner"] !== me,
      );
      assert.ok(theirs, "the first test left another pool's snapshot");
      const created = ((await (await fetch(`${emu.adminUrl}/state`)).json()) as { servers_created: number })
        .servers_created;
      const r = await cli(stateDir, [
        "worker",
        "up",
        "--ttl",
        "30m",
        "--json",
        "--from-snapshot",
        String(theirs.id),
      ]);
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`Snapshot ${theirs.id} was taken by another nixpool pool`));
      assert.match(r.stderr, /hint: .*nixpool worker list/);
      assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "SNAPSHOT_NOT_FOUND");
      const after = (await (await fetch(`${emu.adminUrl}/state`)).json()) as { servers_created: number };
      assert.equal(after.servers_created, created, "nothing rented");
      assert.deepEqual((await state()).servers, []);
    });

    test("a suspend killed after create_image is finished by worker gc: snapshot available, server deleted, nothing leaked", async () => {
      const stateDir = await newStateDir("crash");
      const w = await up(stateDir, "--type", "cx23");
      const killed = await runKilled(stateDir, ["worker", "suspend", w.name], {
        NIXPOOL_TEST_SUSPEND_CRASH: "image",
      });
      assert.equal(killed.signal, "SIGKILL");
      assert.match(killed.stderr, /snapshot \d+ is being created/);
      const mid = await state();
      assert.equal(mid.servers.length, 1, "the server is still there (off)");
      assert.equal(mid.servers[0]?.status, "off");
      // Its 30-minute lease was extended when the suspend began: no owner's gc reaps it mid-suspend.
      const expires = Number(mid.servers[0]?.labels["nixpool-expires"]) * 1000;
      assert.ok(expires > Date.now() + 90 * 60_000, `lease extended for the suspend: ${expires}`);
      const record = JSON.parse(
        await readFile(join(stateDir, "hetzner", "workers", w.name.slice(3), "worker.json"), "utf8"),
      ) as {
        status: string;
        lease: { expiresAt: string };
        suspend: { step: string; imageId: number | null };
      };
      assert.equal(record.status, "suspending");
      assert.equal(
        Math.floor(Date.parse(record.lease.expiresAt) / 1000) * 1000,
        expires,
        "the record says the same",
      );
      assert.equal(record.suspend.step, "image");
      assert.ok(record.suspend.imageId !== null, "the snapshot's id was recorded before the crash");
      const gc = await ok(stateDir, ["worker", "gc"]);
      assert.match(gc.stderr, /finishing the suspend of hz-/);
      assert.match(gc.stdout, /finished 1 suspend\(s\)/);
      await assertNothingLeaked(stateDir);
      const me = await owner(stateDir);
      const mine = (await state()).images.filter((i) => i.labels["nixpool-owner"] === me);
      assert.deepEqual(
        mine.map((i) => [i.status, i.labels["nixpool-lease"]]),
        [["available", w.name.slice(3)]],
      );
    });

    test("gc deletes any owner's expired snapshot and refuses none of the others'", async () => {
      const stateDir = await newStateDir("expired");
      const others = (await state()).images;
      assert.ok(others.length > 0, "earlier tests left snapshots");
      const victim = others[0] as EmulatorImage;
      const put = await api("PUT", `/images/${victim.id}`, {
        labels: { ...victim.labels, "nixpool-expires": String(Math.floor(Date.now() / 1000) - 60) },
      });
      assert.equal(put.status, 200, put.body);
      const gc = JSON.parse((await ok(stateDir, ["worker", "gc", "--json"])).stdout) as {
        deletedSnapshots: { id: number; reason: string }[];
      };
      assert.deepEqual(gc.deletedSnapshots, [{ id: victim.id, reason: "expired" }]);
      assert.deepEqual(
        (await state()).images.map((i) => i.id).sort(),
        others
          .filter((i) => i.id !== victim.id)
          .map((i) => i.id)
          .sort(),
      );
    });
    test("the coordinator's autoscaler wakes its worker from the newest snapshot: the suspended worker's outputs are there, nothing rebuilt", async () => {
      const stateDir = await newStateDir("autoscale-wake");
      const seed = freshSeed();
      const w1 = await up(stateDir, "--type", "cx23");
      const first = await build(stateDir, seed);
      assert.ok(first.derivations.every((d) => d.status === "built" && d.builder === w1.name));
      const suspended = JSON.parse((await ok(stateDir, ["worker", "suspend", w1.name, "--json"])).stdout) as {
        snapshot: { id: number };
      };
      await forgetLocally(stateDir, first);

      const derivations = await evaluateDerivations({
        flake: NO_FLAKE_OPTIONS,
        installables: [
          fileInstallable(
            graphArgs(2, { seed })[0] ?? "",
            [],
            [
              { kind: "arg", name: "n", value: "2" },
              { kind: "argstr", name: "seed", value: seed },
            ],
          ),
        ],
      });
      const config = testAutoscaleConfig({ serverTypes: ["cx23"] });
      const lines: string[] = [];
      const log = (l: string) => lines.push(l);
      const runEnv = { ...process.env, ...env };
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: {
          config,
          provider: hetznerAutoscaleProvider({ stateDir, env: runEnv, config, log }),
          log,
        },
      });
      try {
        const id = c.submit({ derivations, label: "wake" }, { user: "test", via: "local" });
        const done = await c.waitFor(id);
        assert.equal(done.status, "succeeded", `${JSON.stringify(done.error)}\n${lines.join("\n")}`);
        assert.ok(
          lines.some((l) => l.includes(`from snapshot ${suspended.snapshot.id}`)),
          `woken from the snapshot:\n${lines.join("\n")}`,
        );
        const listed = JSON.parse((await api("GET", "/servers")).body) as {
          servers: { image: { id: number } }[];
        };
        assert.equal(listed.servers.length, 1);
        assert.equal(
          listed.servers[0]?.image.id,
          suspended.snapshot.id,
          "the rented server boots the snapshot",
        );
        assert.deepEqual(
          done.derivations.map((d) => d.status),
          done.derivations.map(() => "cached"),
          "the woken worker already holds every output",
        );
        const snapshots = (c.autoscale() as AutoscaleView).snapshots;
        assert.equal(snapshots?.count, 1, "the pool's snapshot and its storage cost are in the view");
        assert.ok((snapshots?.gb ?? 0) > 0 && (snapshots?.monthly ?? -1) >= 0, JSON.stringify(snapshots));
      } finally {
        await c.close();
      }
      await waitFor(async () => (await state()).servers.length === 0, { timeoutMs: 60_000 });
      assert.deepEqual((await state()).servers, [], "closing the coordinator deletes its worker");
    });

    /** test/fixtures/dispatch.nix's attributes, evaluated here with `seed` (n: leaves, and big's MB). */
    const fixture = (attrs: string[], seed: string, n = 4) =>
      evaluateDerivations({
        flake: NO_FLAKE_OPTIONS,
        installables: attrs.map((a) =>
          fileInstallable(
            DISPATCH_FIXTURE,
            [a],
            [
              { kind: "arg", name: "n", value: String(n) },
              { kind: "argstr", name: "seed", value: seed },
            ],
          ),
        ),
      });
    const until = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 180_000) => {
      if (!(await waitFor(cond, { timeoutMs, intervalMs: 200 })))
        assert.fail(`timed out waiting for ${what}`);
    };
    const mySnapshots = async (stateDir: string) => {
      const me = await owner(stateDir);
      return (await state()).images.filter((i) => i.labels["nixpool-owner"] === me);
    };

    test("suspendIdle: the coordinator suspends its idle worker into a snapshot and wakes it for a NEW build: the new derivations are built, 0 bytes of their inputs uploaded", async () => {
      const stateDir = await newStateDir("suspend-idle");
      const seed = freshSeed();
      const config = testAutoscaleConfig({
        serverTypes: ["cx23"],
        // Released as soon as it is idle: less than this is always left of its paid hour.
        minLifetimeMs: 0,
        releaseMarginMs: 3_599_999,
        suspendIdle: true,
      });
      const lines: string[] = [];
      const log = (l: string) => lines.push(l);
      const provider = hetznerAutoscaleProvider({
        stateDir,
        env: { ...process.env, ...env },
        config,
        log,
        snapshots: { keep: 1, ttlMs: 86_400_000 },
      });
      const c = await Coordinator.open({ stateDir, builders: [], autoscale: { config, provider, log } });
      const me = { user: "test", via: "local" } as const;
      const view = () => c.autoscale() as AutoscaleView;
      try {
        // 4 leaves, a root, and `big` (4 MB) built on a fresh worker.
        const first = await c.waitFor(
          c.submit({ derivations: await fixture(["graph", "big"], seed), label: "before" }, me),
        );
        assert.equal(first.status, "succeeded", `${JSON.stringify(first.error)}\n${lines.join("\n")}`);
        const worker = first.derivations[0]?.builder ?? "";
        assert.match(worker, /^hz-/);
        assert.ok(first.derivations.every((d) => d.status === "built" && d.builder === worker));

        // Idle: suspended (the decision and its outcome in the view, as the history has them).
        await until("the worker suspended", () =>
          view().decisions.some((d) => d.action === "suspended" && d.worker === worker),
        );
        const decisions = view().decisions;
        const suspend = decisions.find((d) => d.action === "suspend" && d.worker === worker);
        assert.match(
          suspend?.reason ?? "",
          /^suspending hz-\S+ \(cx23\) into a snapshot, then deleting it: idle, .+ left of its paid hour 1; lived \d+ (s|min)$/,
          JSON.stringify(decisions),
        );
        assert.ok(!decisions.some((d) => d.action === "delete"), "suspended, not merely deleted");
        const done = decisions.find((d) => d.action === "suspended")?.reason ?? "";
        const imageId = Number(/suspended into snapshot (\d+) \(/.exec(done)?.[1]);
        assert.ok(imageId > 0, done);
        assert.deepEqual(view().workers, [], "billed until deleted, then gone");
        assert.equal(view().settings.suspendIdle, true);
        await until("the server deleted", async () => (await state()).servers.length === 0, 30_000);
        const image = (await mySnapshots(stateDir)).find((i) => i.id === imageId);
        assert.equal(image?.status, "available");
        assert.equal(image?.labels["nixpool-lease"], worker.slice(3));
        assert.ok(lines.some((l) => /kept \d+ built output\(s\) and the system as GC roots/.test(l)));

        // `big` is valid on the coordinator (a root, copied back): were the woken worker without
        // it, it would be uploaded (4 MB). The leaves are on the worker only: they would be rebuilt.
        const bigOut = first.outputs.find((o) => o.endsWith("-big")) ?? "";
        assert.equal((await run(["nix-store", "--check-validity", bigOut], { reject: false })).exitCode, 0);

        // A new root over the same leaves and a new dependant of `big`: woken from the snapshot.
        const second = await c.waitFor(
          c.submit({ derivations: await fixture(["graphTagged", "usesBig"], seed), label: "after" }, me),
        );
        assert.equal(second.status, "succeeded", `${JSON.stringify(second.error)}\n${lines.join("\n")}`);
        assert.ok(
          lines.some((l) => l.includes(`from snapshot ${imageId}`)),
          `woken from the snapshot:\n${lines.join("\n")}`,
        );
        const byStatus = (st: string) =>
          second.derivations
            .filter((d) => d.status === st)
            .map((d) => d.name)
            .sort();
        assert.deepEqual(byStatus("built"), ["graph-root-tagged", "uses-big"], "the new derivations built");
        assert.deepEqual(byStatus("cached"), ["big", "leaf-0", "leaf-1", "leaf-2", "leaf-3"], "inputs held");
        const stats = second.report?.stats;
        assert.equal(stats?.bytesUploaded, 0, "0 bytes of inputs uploaded");
        assert.equal(stats?.pathsUploaded, 0);
        assert.ok((stats?.bytesDownloaded ?? 0) > 0, "bytes are counted: the new outputs came back");
      } finally {
        await c.close();
      }
      await until("closing deletes its worker", async () => (await state()).servers.length === 0, 60_000);
    });

    test("kill -9 of nixpool serve while it suspends (during its GC; while the snapshot is creating): worker gc finishes each, 0 servers, 0 keys, only labelled snapshots within keepSnapshots", async () => {
      // An emulator of its own whose snapshots take 15 s: the kill lands while one is creating.
      const outer = { emu, env };
      const hostsDir = join(root, "emulator-hosts-slow-images");
      emu = await startBootingEmulator(hostsDir, { createMs: 400, imageMs: 15_000 });
      env = { ...env, HCLOUD_ENDPOINT: emu.endpoint };
      try {
        await killedWhileSuspending(hostsDir);
      } finally {
        await emu.close();
        ({ emu, env } = outer);
      }
    });

    /**
     * Holds a shared lock on a Nix store's GC lock (what builds take; `nix-store --gc` waits for
     * an exclusive one) until released.
     */
    const holdGcLock = (lockFile: string) =>
      new Promise<{ release: () => Promise<void> }>((resolve, reject) => {
        const p = spawn("flock", ["-s", lockFile, "-c", "echo locked; exec cat"], {
          stdio: ["pipe", "pipe", "inherit"],
        });
        p.once("error", reject);
        p.once("close", (code) => reject(new Error(`flock ended (${code})`)));
        p.stdout.once("data", () =>
          resolve({
            release: () =>
              new Promise<void>((done) => {
                p.once("close", () => done());
                p.stdin.end();
              }),
          }),
        );
      });

    const killedWhileSuspending = async (hostsDir: string) => {
      const stateDir = await newStateDir("serve-crash");
      const inventory = join(stateDir, "nixpool.toml");
      await writeFile(
        inventory,
        [
          "[hetzner]",
          "keepSnapshots = 1",
          "[autoscale.hetzner]",
          "maxWorkers = 1",
          'serverTypes = ["cx23"]',
          'scaleUpAfter = "0s"',
          'minLifetime = "0s"',
          'releaseMargin = "59m59s"',
          'interval = "300ms"',
          'bootTimeout = "2m"',
          "suspendIdle = true",
          "",
        ].join("\n"),
      );
      const gcCli = () => ok(stateDir, ["--inventory", inventory, "worker", "gc"]);
      const record = async (lease: string) =>
        JSON.parse(await readFile(join(stateDir, "hetzner", "workers", lease, "worker.json"), "utf8")) as {
          status: string;
          suspend?: { step: string; imageId: number | null };
        };
      /**
       * Starts serve, submits a fresh build (leaves sleeping `secs`), runs `meanwhile` once it is
       * submitted, and returns the serve and the worker the build ran on once it succeeded.
       */
      const buildOnServe = async (
        secs = 0,
        meanwhile?: (running: () => Promise<string>) => Promise<void>,
      ) => {
        const serve = await startServe(stateDir, ["--no-cache"], ["--inventory", inventory], env);
        serves.push(serve);
        const req = await graphRequest("crash", 2, secs);
        const submitted = await socketRequest(serve.socket, "POST", "/api/builds", JSON.stringify(req));
        assert.equal(submitted.status, 201, submitted.body);
        const { id } = JSON.parse(submitted.body) as { id: string };
        await meanwhile?.(
          async () =>
            (JSON.parse((await socketRequest(serve.socket, "GET", `/api/builds/${id}`)).body) as BuildDetail)
              .status,
        );
        let detail: BuildDetail | undefined;
        await until("the build finished", async () => {
          detail = JSON.parse(
            (await socketRequest(serve.socket, "GET", `/api/builds/${id}`)).body,
          ) as BuildDetail;
          return detail.status === "succeeded" || detail.status === "failed";
        });
        assert.equal(detail?.status, "succeeded", serve.stderr());
        return { serve, worker: detail?.derivations[0]?.builder ?? "" };
      };

      // 1. kill -9 during its gc step: the test holds the worker's GC lock (shared, as builds do)
      //    from while the build runs, so the worker's nix-store --gc waits; killed then.
      let lock: { release: () => Promise<void> } | undefined;
      const a = await buildOnServe(3, async (status) => {
        let host = "";
        await until("the worker's store", async () => {
          const id = (await state()).servers[0]?.id;
          host = join(hostsDir, `server-${id}`, "nix", "var", "nix");
          return (
            id !== undefined &&
            (await access(join(host, "db")).then(
              () => true,
              () => false,
            ))
          );
        });
        lock = await holdGcLock(join(host, "gc.lock"));
        const now = await status();
        assert.ok(
          now === "queued" || now === "running",
          `the lock is held before the suspend begins (${now})`,
        );
      });
      try {
        const lease = a.worker.slice(3);
        await until(
          "the suspend at its gc step",
          async () =>
            /kept \d+ built output/.test(a.serve.stderr()) && (await record(lease)).suspend?.step === "gc",
        );
        await a.serve.stop("SIGKILL");
        assert.match(
          a.serve.stderr(),
          /autoscale: suspending hz-\S+ \(cx23\) into a snapshot, then deleting it: idle/,
        );
        assert.doesNotMatch(a.serve.stderr(), /garbage collected/, "killed while its GC waited");
        const rec1 = await record(lease);
        assert.equal(rec1.status, "suspending");
        assert.deepEqual([rec1.suspend?.step, rec1.suspend?.imageId], ["gc", null]);
        assert.equal((await state()).servers.length, 1, "the kill left the server");
      } finally {
        await lock?.release();
      }
      const gc1 = await gcCli();
      assert.match(gc1.stderr, new RegExp(`finishing the suspend of ${a.worker}`));
      assert.match(gc1.stdout, /finished 1 suspend\(s\)/);
      await assertNothingLeaked(stateDir);
      const after1 = await mySnapshots(stateDir);
      assert.deepEqual(
        after1.map((i) => [i.status, i.labels["nixpool-lease"]]),
        [["available", a.worker.slice(3)]],
      );

      // 2. Killed (kill -9 from outside) while its snapshot is `creating` (the emulator takes 15 s).
      {
        const b = await buildOnServe();
        assert.ok(b.worker !== a.worker);
        await until("the snapshot being created", () =>
          /snapshot \d+ is being created/.test(b.serve.stderr()),
        );
        await b.serve.stop("SIGKILL");
        const creating = Number(/snapshot (\d+) is being created/.exec(b.serve.stderr())?.[1]);
        assert.ok(
          b.serve.stderr().includes(`from snapshot ${after1[0]?.id}`),
          "the second worker woke from the first snapshot",
        );
        const mid = await state();
        assert.equal(mid.images.find((i) => i.id === creating)?.status, "creating", "killed while creating");
        assert.equal(mid.servers.length, 1, "the kill left the server (off)");
        assert.equal(mid.servers[0]?.status, "off");
        const rec2 = await record(b.worker.slice(3));
        assert.deepEqual(
          [rec2.status, rec2.suspend?.step, rec2.suspend?.imageId],
          ["suspending", "image", creating],
        );
        const gc2 = await gcCli();
        assert.match(gc2.stdout, /finished 1 suspend\(s\)/);
        await assertNothingLeaked(stateDir);
        // keepSnapshots = 1: the first snapshot went past retention; the finished one stays.
        const after2 = await mySnapshots(stateDir);
        assert.deepEqual(
          after2.map((i) => [i.id, i.status, i.labels["nixpool-lease"]]),
          [[creating, "available", b.worker.slice(3)]],
        );
      }
    };
  },
);
