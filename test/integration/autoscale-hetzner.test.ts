import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { waitFor } from "../../src/adapters/wait-for.js";
import { pickType } from "../../src/core/autoscale/plan.js";
import type { RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import {
  hetznerAutoscaleProvider,
  readAutoscaleCatalog,
} from "../../src/providers/hetzner/autoscale-provider.js";
import { openSession } from "../../src/providers/hetzner/session.js";
import { statePaths } from "../../src/config/state-paths.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import { HistoryStore } from "../../src/serve/history-store.js";
import type { AutoscaleView, BuildDetail } from "../../src/serve/coordinator-types.js";
import { graphRequest } from "../helpers/example-builds.js";
import { testClock } from "../helpers/test-clock.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";
import { emulatorEnv, startBootingEmulator, testAutoscaleConfig } from "../helpers/autoscale.js";
import { socketRequest, startServe, type ServeProcess } from "../helpers/serve-process.js";

// The coordinator's autoscaler against the Hetzner Cloud emulator, whose servers boot as real
// builder hosts (sshd, nix): rentals up to maxWorkers for a queue, builds on them, deletion at the
// billing-hour boundary (an injected clock), a budget cap, and worker gc after a kill -9.

const MIN = 60_000;
const me = { user: "test", via: "local" } as const;

interface EmulatorState {
  servers: { id: number; name: string; status: string; labels: Record<string, string> }[];
  ssh_keys: { id: number; name: string }[];
  images: { id: number; status: string; labels: Record<string, string> }[];
  servers_created: number;
}

describe(
  "autoscaling Hetzner workers on the coordinator (emulator, real hosts)",
  { timeout: 900_000, concurrency: false },
  () => {
    let emu: RunningEmulator;
    let root: string;
    let cleanupRoot: () => Promise<void>;
    let env: Record<string, string>;
    const serves: ServeProcess[] = [];

    const state = async (): Promise<EmulatorState> =>
      (await (await fetch(`${emu.adminUrl}/state`)).json()) as EmulatorState;
    const servers = async () => (await state()).servers.length;
    const until = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 180_000) => {
      if (!(await waitFor(cond, { timeoutMs, intervalMs: 200 })))
        assert.fail(`timed out waiting for ${what}`);
    };
    /** After worker gc: no server, no SSH key, no unlabelled or unfinished (orphaned) snapshot left. */
    const assertNothingLeaked = async () => {
      const s = await state();
      assert.deepEqual(s.servers, [], "no server left");
      assert.deepEqual(s.ssh_keys, [], "no SSH key left");
      for (const i of s.images) {
        assert.equal(i.labels["nixpool"], "1", `snapshot ${i.id} is labelled`);
        assert.ok(
          i.labels["nixpool-owner"] && i.labels["nixpool-expires"],
          `snapshot ${i.id} has owner and expiry`,
        );
        assert.equal(i.status, "available", `snapshot ${i.id} is not an orphan of an abandoned suspend`);
      }
    };
    const gc = async (stateDir: string, args: string[] = []) => {
      const r = await runCli(stateDir, [...args, "worker", "gc"], { env, cwd: stateDir, timeout: 120_000 });
      assert.equal(r.exitCode, 0, r.stderr);
      return r;
    };
    const newStateDir = async (name: string) => {
      const dir = join(root, `${name}-${randomBytes(4).toString("hex")}`);
      await mkdir(dir, { recursive: true });
      return dir;
    };

    before(async () => {
      ({ dir: root, cleanup: cleanupRoot } = await makeTempDir("nixpool-autoscale-"));
      emu = await startBootingEmulator(join(root, "emulator-hosts"));
      env = emulatorEnv(emu);
    });

    after(async () => {
      for (const s of serves) await s.stop("SIGKILL");
      await emu?.close();
      await cleanupRoot?.();
    });

    test("60 queued derivations and no builder: workers rented up to maxWorkers, the builds finish on them, idle workers deleted before their next billed hour", async () => {
      const stateDir = await newStateDir("sixty");
      const { now: clock, jump } = testClock();
      const config = testAutoscaleConfig({
        maxWorkers: 2,
        derivationsPerWorker: 10,
        scaleUpAfterMs: 1000,
        budget: { day: 5 },
      });
      const lines: string[] = [];
      const log = (l: string) => lines.push(l);
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: { config, provider: hetznerAutoscaleProvider({ stateDir, env, config, log }), clock, log },
      });
      try {
        const id = c.submit(await graphRequest("sixty", 60), me);
        const done: BuildDetail = await c.waitFor(id);
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        assert.equal(done.derivations.length, 61);
        const view = c.autoscale() as AutoscaleView;
        const rents = view.decisions.filter((d) => d.action === "rent");
        assert.equal(rents.length, 2, lines.join("\n"));
        for (const r of rents) {
          assert.match(
            r.reason,
            /^rented \S+: 60 x86_64-linux derivations waited > 1s; today 0\.\d\d of 5\.00 EUR$/,
          );
        }
        assert.ok(
          view.decisions.some((d) => d.action === "blocked" && /maxWorkers 2 reached/.test(d.reason)),
          JSON.stringify(view.decisions),
        );
        const names = view.workers.map((w) => w.name).sort();
        assert.equal(names.length, 2);
        assert.deepEqual(
          [...new Set(done.derivations.map((d) => d.builder))].sort(),
          names,
          "every derivation built on the rented workers",
        );
        assert.ok(view.workers.every((w) => w.status === "ready" && w.running === 0));
        // Idle, but most of their paid hour is left: kept.
        assert.equal(await servers(), 2);
        assert.ok(view.spent.day > 0);
        // 56 minutes later (by the autoscaler's clock): 4 minutes of the paid hour left, under the 5-minute margin.
        jump(56 * MIN);
        await until("both workers deleted", async () => (await servers()) === 0);
        await until("no autoscaled worker left", () => c.autoscale()?.workers.length === 0);
        const deletes = (c.autoscale() as AutoscaleView).decisions.filter((d) => d.action === "delete");
        assert.deepEqual(deletes.map((d) => d.worker).sort(), names);
        for (const d of deletes)
          assert.match(d.reason, /: idle, \d+ min left of its paid hour 1; lived 5\d min$/);
      } finally {
        await c.close();
      }
      assert.equal(await servers(), 0);
    });

    test("API faults and a failed boot during scale-up: no leak, the build still finishes", async () => {
      const stateDir = await newStateDir("faults");
      // A rental hit by these faults is given up (and deleted) after bootTimeout, which the test
      // waits for; the healthy rental must be up within it too, on a loaded machine.
      const config = testAutoscaleConfig({ bootTimeoutMs: 40_000 });
      const before = (await (await fetch(`${emu.adminUrl}/state`)).json()) as { servers_created: number };
      const faults = await fetch(`${emu.adminUrl}/faults`, {
        method: "POST",
        body: JSON.stringify([
          { kind: "rate_limit", count: 2 },
          { kind: "server_error", count: 2, status: 503 },
          { kind: "drop", count: 1, after: true, method: "POST", path: "/servers" },
          { kind: "boot", mode: "fail", count: 1 },
        ]),
      });
      assert.equal(faults.status, 200);
      const lines: string[] = [];
      const log = (l: string) => lines.push(l);
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: { config, provider: hetznerAutoscaleProvider({ stateDir, env, config, log }), log },
      });
      try {
        const done = await c.waitFor(c.submit(await graphRequest("faults", 3), me));
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        const view = c.autoscale() as AutoscaleView;
        const failed = view.decisions.filter((d) => d.action === "failed");
        assert.equal(failed.length, 1, lines.join("\n"));
        assert.match(
          failed[0]?.reason ?? "",
          /^renting \S+ failed: .* \(deleted; nixpool worker gc reaps anything left\)$/,
        );
        assert.equal(view.decisions.filter((d) => d.action === "rent").length, 2);
        assert.ok(
          lines.some((l) => /→ 429 rate_limit_exceeded; retry/.test(l)),
          lines.join("\n"),
        );
        assert.ok(
          lines.some((l) => /→ 503 unavailable; retry/.test(l)),
          lines.join("\n"),
        );
        assert.equal(await servers(), 1, "the failed boot's server is gone, the second rental builds");
      } finally {
        await c.close();
      }
      assert.equal(await servers(), 0);
      const after = (await (await fetch(`${emu.adminUrl}/state`)).json()) as { servers_created: number };
      assert.equal(
        after.servers_created - before.servers_created,
        2,
        "a dropped answer made no second server",
      );
      await gc(stateDir);
      await assertNothingLeaked();
    });

    /**
     * A worker that cannot be deleted while every DELETE /servers/ answers 503: a coordinator
     * autoscaling at most one worker (injected clock, a 30 s lease renewed every 10 s, short API
     * retries). `failDeletion` brings it to its failed deletion with the faults in place and returns
     * it. Then: it stays counted (maxWorkers, its second billed hour) and retried; once the API
     * answers it is deleted at a retry and the waiting build finishes on a new worker; worker gc
     * finds nothing.
     */
    const undeletableWorker = async (
      name: string,
      bootTimeoutMs: number,
      failDeletion: (o: {
        c: Coordinator;
        view: () => AutoscaleView;
        jump: (ms: number) => void;
        injectDeleteFaults: (extra?: unknown[]) => Promise<void>;
      }) => Promise<{ worker: string; waiting: string }>,
    ) => {
      const stateDir = await newStateDir(name);
      const { now: clock, jump } = testClock();
      const config = testAutoscaleConfig({ bootTimeoutMs, budget: { day: 5 } });
      const lines: string[] = [];
      const log = (l: string) => lines.push(l);
      const provider = hetznerAutoscaleProvider({
        stateDir,
        env,
        config,
        log,
        ttlMs: 30_000,
        retry: { attempts: 2, baseMs: 50, maxMs: 200 },
      });
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: { config, provider, clock, log },
      });
      const view = () => c.autoscale() as AutoscaleView;
      const injectDeleteFaults = async (extra: unknown[] = []) => {
        const r = await fetch(`${emu.adminUrl}/faults`, {
          method: "POST",
          body: JSON.stringify([
            ...extra,
            { kind: "server_error", count: 100_000, status: 503, method: "DELETE", path: "/servers/" },
          ]),
        });
        assert.equal(r.status, 200);
      };
      try {
        const { worker, waiting } = await failDeletion({ c, view, jump, injectDeleteFaults });
        const serverOf = async () =>
          (await state()).servers.find((x) => x.labels["nixpool-lease"] === worker.slice(3));
        assert.deepEqual(
          view().workers.map((w) => [w.name, w.status]),
          [[worker, "deleting"]],
        );
        const failedAt = Date.now();
        await until("a retry", () => lines.some((l) => l.includes(`deleting ${worker} failed again`)));
        assert.ok(await serverOf(), "the server is still there");
        // Its lease stays renewed while it is retried (no gc reaps it as expired meanwhile).
        await until(
          "its lease renewed after the failed deletion",
          async () =>
            Number((await serverOf())?.labels["nixpool-expires"]) > Math.floor(failedAt / 1000) + 30,
          30_000,
        );
        // Still billed: its second hour counts once it begins (its budget row stays open).
        const oneHour = view().spent.day;
        assert.ok(oneHour > 0);
        jump(61 * MIN);
        await until("the second hour counted", () => Math.abs(view().spent.day - 2 * oneHour) < 0.006);
        assert.match(view().summary, /1 of 1 workers \(1 being deleted\)/);
        // And it counts towards maxWorkers: the waiting work does not rent a second worker.
        const created = (await state()).servers_created;
        await until("maxWorkers stops a rental", () =>
          view().decisions.some((d) => d.action === "blocked" && /maxWorkers 1 reached/.test(d.reason)),
        );
        assert.equal((await state()).servers_created, created, "nothing rented while it is being deleted");
        assert.equal(view().decisions.filter((d) => d.action === "rent").length, 1);
        // The API answers again: deleted at a retry, then a new worker takes the work.
        assert.equal((await fetch(`${emu.adminUrl}/faults`, { method: "DELETE" })).status, 200);
        await until("deleted at a retry", async () => (await serverOf()) === undefined);
        await until("its deletion recorded", () =>
          view().decisions.some(
            (d) => d.action === "delete" && d.worker === worker && /at attempt \d+$/.test(d.reason),
          ),
        );
        const done = await c.waitFor(waiting);
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        assert.equal(view().decisions.filter((d) => d.action === "rent").length, 2);
      } finally {
        // Cleared even when the test failed, without hiding why it failed.
        await fetch(`${emu.adminUrl}/faults`, { method: "DELETE" }).catch((e: unknown) =>
          console.error("clearing the emulator's faults failed:", e),
        );
        await c.close();
      }
      await gc(stateDir);
      await assertNothingLeaked();
    };

    test("a deletion failing past the retries (5xx): the worker still counts towards maxWorkers and the budget, its lease is renewed, and it is deleted once the API answers", () =>
      undeletableWorker("failed-delete", 120_000, async ({ c, view, jump, injectDeleteFaults }) => {
        const first = await c.waitFor(c.submit(await graphRequest("failed-delete-a", 2), me));
        assert.equal(first.status, "succeeded", JSON.stringify(first.error));
        const worker = view().workers[0]?.name;
        assert.ok(worker);
        await injectDeleteFaults();
        // 4 minutes of its paid hour left: deleted, but every DELETE answers 503.
        jump(56 * MIN);
        await until("the deletion failed", () =>
          view().decisions.some((d) => d.action === "failed" && d.worker === worker),
        );
        assert.match(
          view().decisions.find((d) => d.action === "failed")?.reason ?? "",
          /^deleting hz-\S+ failed: .*; it still counts towards maxWorkers and the budget, and is retried at later ticks$/,
        );
        return { worker, waiting: c.submit(await graphRequest("failed-delete-b", 2), me) };
      }));

    test("a failed rental whose deletion fails too (5xx): it still counts towards maxWorkers and the budget, its deletion is retried, then the build finishes on a new worker", () =>
      undeletableWorker("failed-rental-delete", 60_000, async ({ c, view, injectDeleteFaults }) => {
        await injectDeleteFaults([{ kind: "boot", mode: "fail", count: 1 }]);
        const waiting = c.submit(await graphRequest("failed-rental-delete", 2), me);
        await until("the rental failed", () => view().decisions.some((d) => d.action === "failed"));
        const failed = view().decisions.find((d) => d.action === "failed");
        assert.match(
          failed?.reason ?? "",
          /^renting \S+ failed: .*; deleting hz-\S+ failed too \(.*\); it still counts towards maxWorkers and the budget, and is retried at later ticks$/,
        );
        const worker = failed?.worker ?? "";
        assert.match(worker, /^hz-/);
        return { worker, waiting };
      }));

    test("a budget cap stops a rental: said in /api/autoscale and the dashboard; the build finishes on the worker it has", async () => {
      const stateDir = await newStateDir("budget");
      // The cap is per calendar hour of the real clock (this coordinator is a process of its own):
      // a test begun in an hour's last 5 minutes waits for the next, so its rentals share one hour.
      const toHourEnd = 3_600_000 - (Date.now() % 3_600_000);
      if (toHourEnd < 300_000) await new Promise((r) => setTimeout(r, toHourEnd + 1000));
      // The cap: one worker's first hour fits, a second's does not.
      const session = await openSession({ stateDir, env });
      const catalog = await readAutoscaleCatalog(session);
      const one = pickType(testAutoscaleConfig({ maxWorkers: 3 }), catalog.offers, catalog.prices, "x86");
      assert.ok(one);
      const cap = Math.round(one.hourly * 1.5 * 10_000) / 10_000;
      const inventory = join(stateDir, "nixpool.toml");
      await writeFile(
        inventory,
        [
          "[autoscale.hetzner]",
          "maxWorkers = 3",
          "derivationsPerWorker = 4",
          'scaleUpAfter = "1s"',
          'interval = "300ms"',
          'bootTimeout = "2m"',
          `budget = { hour = ${cap} }`,
          "",
        ].join("\n"),
      );
      const serve = await startServe(stateDir, ["--no-cache"], ["--inventory", inventory], env);
      serves.push(serve);
      assert.match(serve.stdout(), /autoscaling 0–3 Hetzner workers in fsn1/);
      const req = await graphRequest("budget", 12);
      const submitted = await socketRequest(serve.socket, "POST", "/api/builds", JSON.stringify(req));
      assert.equal(submitted.status, 201, submitted.body);
      const { id } = JSON.parse(submitted.body) as { id: string };
      const api = async () => {
        const r = await socketRequest(serve.socket, "GET", "/api/autoscale");
        assert.equal(r.status, 200, r.body);
        return JSON.parse(r.body) as AutoscaleView;
      };
      const capText = `this hour's budget of ${cap.toFixed(2)} EUR would be exceeded`;
      await until("the build finished", async () => {
        const r = await socketRequest(serve.socket, "GET", `/api/builds/${id}`);
        const s = (JSON.parse(r.body) as BuildDetail).status;
        return s === "succeeded" || s === "failed";
      });
      const build = JSON.parse(
        (await socketRequest(serve.socket, "GET", `/api/builds/${id}`)).body,
      ) as BuildDetail;
      assert.equal(build.status, "succeeded", JSON.stringify(build.error));
      const view = await api();
      assert.equal(
        view.decisions.filter((d) => d.action === "rent").length,
        1,
        JSON.stringify(view.decisions),
      );
      const blocked = view.decisions.filter((d) => d.action === "blocked");
      assert.ok(
        blocked.some((d) => d.reason.includes(capText)),
        JSON.stringify(view.decisions),
      );
      assert.equal(blocked.length, 1, "said once while the cause lasts");
      assert.deepEqual(view.budget, { hour: cap });
      const worker = view.workers[0]?.name;
      assert.ok(worker);
      assert.deepEqual([...new Set(build.derivations.map((d) => d.builder))], [worker]);
      const page = await socketRequest(serve.socket, "GET", "/");
      assert.equal(page.status, 200);
      assert.match(page.body, /id="autoscale-section"/);
      assert.ok(
        page.body.includes(`budget of ${cap.toFixed(2)} EUR would be exceeded`),
        "the dashboard says why",
      );
      // SIGTERM: the coordinator deletes what it rented.
      assert.equal(await serve.stop(), 0, serve.stderr());
      assert.equal(await servers(), 0);
    });

    test("kill -9 of the coordinator while it rents: worker gc deletes what it rented", async () => {
      const stateDir = await newStateDir("crash");
      const inventory = join(stateDir, "nixpool.toml");
      await writeFile(inventory, '[autoscale.hetzner]\nminWorkers = 1\nmaxWorkers = 1\ninterval = "300ms"\n');
      const serve = await startServe(stateDir, ["--no-cache"], ["--inventory", inventory], env);
      serves.push(serve);
      await until("a server being rented", async () => (await servers()) === 1);
      assert.match(serve.stderr(), /autoscale: rented \S+: minWorkers is 1, 0 running/);
      await serve.stop("SIGKILL");
      assert.equal(await servers(), 1, "the kill left the server behind");
      const reaped = await gc(stateDir, ["--inventory", inventory]);
      assert.match(reaped.stderr + reaped.stdout, /holder process gone|Deleted 1 server/);
      await until("zero servers", async () => (await servers()) === 0, 30_000);
      await assertNothingLeaked();
    });
    test("auto with the pool's newest snapshot from a bigger type: the rental is that type, woken from the snapshot, and the decision says so", async () => {
      const stateDir = await newStateDir("wake-type");
      const cli = async (args: string[]) => {
        const r = await runCli(stateDir, args, { env, cwd: stateDir, timeout: 300_000 });
        assert.equal(r.exitCode, 0, `nixpool ${args.join(" ")}: ${r.stderr}`);
        return r;
      };
      const up = await cli(["worker", "up", "--type", "cx33", "--ttl", "30m", "--json"]);
      const name = (JSON.parse(up.stdout) as { worker: { name: string } }).worker.name;
      const suspended = await cli(["worker", "suspend", name, "--json"]);
      const snapshot = (JSON.parse(suspended.stdout) as { snapshot: { id: number; diskSizeGb: number } })
        .snapshot;
      assert.equal(snapshot.diskSizeGb, 80);
      const config = testAutoscaleConfig();
      const lines: string[] = [];
      const log = (l: string) => lines.push(l);
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: { config, provider: hetznerAutoscaleProvider({ stateDir, env, config, log }), log },
      });
      try {
        const done = await c.waitFor(c.submit(await graphRequest("wake-type", 2), me));
        assert.equal(done.status, "succeeded", `${JSON.stringify(done.error)}\n${lines.join("\n")}`);
        const rents = (c.autoscale() as AutoscaleView).decisions.filter((d) => d.action === "rent");
        assert.equal(rents.length, 1, lines.join("\n"));
        assert.equal(rents[0]?.serverType, "cx33");
        assert.match(
          rents[0]?.reason ?? "",
          new RegExp(
            `^rented cx33: .*; woken from snapshot ${snapshot.id} \\(snapshot ${snapshot.id} needs a 80 GB disk: cx33, not cx23\\)$`,
          ),
        );
        const booted = (await state()).servers.filter((x) => x.labels["nixpool-owner"] !== undefined);
        assert.equal(booted.length, 1);
        const listed = (await (
          await fetch(`${emu.endpoint}/servers`, { headers: { Authorization: `Bearer ${TEST_TOKEN}` } })
        ).json()) as { servers: { image: { id: number } | null; server_type: { name: string } }[] };
        assert.deepEqual(
          listed.servers.map((x) => [x.server_type.name, x.image?.id]),
          [["cx33", snapshot.id]],
          "the rented server boots the snapshot",
        );
      } finally {
        await c.close();
      }
      await gc(stateDir);
      await until("zero servers", async () => (await servers()) === 0, 30_000);
      const s = await state();
      assert.deepEqual(s.ssh_keys, []);
    });

    test("another coordinator holds the autoscaler's lease: this one rents nothing until the lease is free, then rents", async () => {
      const stateDir = await newStateDir("lease");
      const historyPath = statePaths(stateDir).serve.historyDb;
      await mkdir(dirname(historyPath), { recursive: true });
      const other = await HistoryStore.open({ engine: "sqlite", path: historyPath, display: historyPath });
      assert.equal(await other.tryLease("autoscaler", "another-coordinator", 600_000), true);
      const config = testAutoscaleConfig();
      const created = (await state()).servers.length;
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: {
          config,
          provider: hetznerAutoscaleProvider({ stateDir, env, config, log: () => undefined }),
        },
      });
      try {
        const id = c.submit(await graphRequest("lease", 3), me);
        // Several ticks while the other coordinator leads.
        await new Promise((r) => setTimeout(r, 1_500));
        const view = c.autoscale() as AutoscaleView;
        assert.equal(view.leader, false);
        assert.deepEqual(view.decisions, [], "a coordinator that does not lead decides nothing");
        assert.equal((await state()).servers.length, created, "nothing rented");
        const releasedAt = new Date().toISOString();
        await other.releaseLease("autoscaler", "another-coordinator");
        const done = await c.waitFor(id);
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        const after = c.autoscale() as AutoscaleView;
        assert.equal(after.leader, true);
        const rents = after.decisions.filter((d) => d.action === "rent");
        assert.equal(rents.length, 1);
        assert.ok((rents[0]?.at ?? "") >= releasedAt, "rented only once the lease was free");
      } finally {
        await c.close();
        await other.close();
      }
      await until("zero servers", async () => (await servers()) === 0, 60_000);
    });
  },
);
