import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { waitFor } from "../../src/adapters/wait-for.js";
import type { RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { hetznerAutoscaleProvider } from "../../src/providers/hetzner/autoscale-provider.js";
import { readRecords } from "../../src/providers/hetzner/records.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import type { AutoscaleView } from "../../src/serve/coordinator-types.js";
import { startCoordinators, type TestCoordinator, type TestCoordinators } from "../helpers/coordinators.js";
import { graphRequest } from "../helpers/example-builds.js";
import { testClock } from "../helpers/test-clock.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { emulatorEnv, startBootingEmulator, testAutoscaleConfig } from "../helpers/autoscale.js";
import { socketRequest } from "../helpers/serve-process.js";

// The autoscaler with several coordinators (#21 × #22): two real `nixpool serve` processes on one
// PostgreSQL and one state directory with no static builder, autoscaling against the Hetzner
// emulator (whose servers boot as real builder hosts). A build submitted to the coordinator that
// does not lead gets a worker rented by the leader and finishes on it; the leader killed with -9,
// the other takes the lead, deletes the dead leader's worker, rents for its own queue, and
// `worker gc` finds nothing left. And a coordinator that lost the lead still deletes its own idle
// workers before their next billed hour.

const MIN = 60_000;

const BuildSchema = z.looseObject({
  id: z.string(),
  status: z.enum(["queued", "running", "succeeded", "failed", "cancelled"]),
  derivations: z.array(z.looseObject({ name: z.string(), builder: z.string().optional() })),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
const ViewSchema = z.looseObject({
  leader: z.boolean(),
  decisions: z.array(
    z.looseObject({ action: z.string(), worker: z.string().optional(), reason: z.string() }),
  ),
  workers: z.array(z.looseObject({ name: z.string() })),
});

interface EmulatorState {
  servers: { id: number; name: string; status: string }[];
}

describe(
  "autoscaling with several coordinators (emulator, real hosts, PostgreSQL)",
  { timeout: 900_000, concurrency: false },
  () => {
    let emu: RunningEmulator;
    let root: string;
    let cleanupRoot: () => Promise<void>;
    let env: Record<string, string>;
    let h: TestCoordinators | undefined;

    const servers = async () =>
      ((await (await fetch(`${emu.adminUrl}/state`)).json()) as EmulatorState).servers.length;
    const until = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 180_000) => {
      if (!(await waitFor(cond, { timeoutMs, intervalMs: 200 })))
        assert.fail(`timed out waiting for ${what}`);
    };
    const view = async (c: TestCoordinator) => {
      const r = await socketRequest(c.socket, "GET", "/api/autoscale");
      assert.equal(r.status, 200, r.body);
      return ViewSchema.parse(JSON.parse(r.body));
    };
    const submit = async (c: TestCoordinator, label: string, n: number) => {
      const r = await socketRequest(
        c.socket,
        "POST",
        "/api/builds",
        JSON.stringify(await graphRequest(label, n)),
      );
      assert.equal(r.status, 201, r.body);
      return z.object({ id: z.string() }).parse(JSON.parse(r.body)).id;
    };
    const ended = async (c: TestCoordinator, id: string) => {
      let last: z.infer<typeof BuildSchema> | undefined;
      const done = await waitFor(
        async () => {
          const r = await socketRequest(c.socket, "GET", `/api/builds/${id}`).catch(() => undefined);
          if (r?.status === 200) last = BuildSchema.parse(JSON.parse(r.body));
          return last && last.status !== "queued" && last.status !== "running" ? last : undefined;
        },
        { timeoutMs: 240_000, intervalMs: 200 },
      );
      assert.ok(done, `build ${id} did not end on coordinator ${c.index} (${last?.status})\n${c.log()}`);
      return done;
    };

    before(async () => {
      ({ dir: root, cleanup: cleanupRoot } = await makeTempDir("nixpool-autoscale-coordinators-"));
      emu = await startBootingEmulator(join(root, "emulator-hosts"));
      env = emulatorEnv(emu);
    });

    after(async () => {
      await h?.stop();
      await emu?.close();
      await cleanupRoot?.();
    });

    test("a build submitted to the coordinator that does not lead: the leader rents, the build finishes on its worker; the leader killed -9: the other leads, deletes its worker, rents for itself, worker gc finds nothing", async () => {
      const stateDir = join(root, "coordinators");
      const inventory = join(root, "nixpool.toml");
      await writeFile(
        inventory,
        '[autoscale.hetzner]\nmaxWorkers = 1\nscaleUpAfter = "0s"\ninterval = "300ms"\nbootTimeout = "120s"\n',
      );
      await mkdir(stateDir, { recursive: true });
      h = await startCoordinators({
        count: 2,
        builders: 1,
        jobs: 1,
        stateDir,
        globalArgs: ["--inventory", inventory],
        serveArgs: ["--no-cache"],
        env,
      });
      const cs = h.coordinators;
      const logs = () => cs.map((c) => `--- coordinator ${c.index}:\n${c.log().slice(-5000)}`).join("\n");
      // The first one took the lead at its start; the second found it held.
      let leader: TestCoordinator | undefined;
      await until("one leader", async () => {
        const views = await Promise.all(cs.map(view));
        leader =
          views.filter((v) => v.leader).length === 1 ? cs[views.findIndex((v) => v.leader)] : undefined;
        return leader !== undefined;
      });
      const follower = cs.find((c) => c !== leader);
      assert.ok(leader && follower);
      assert.equal(await servers(), 0, "no static builder and no queue: nothing rented");

      const id = await submit(follower, "to the follower", 3);
      const done = await ended(follower, id);
      assert.equal(done.status, "succeeded", `${JSON.stringify(done.error)}\n${logs()}`);
      const led = await view(leader);
      const rents = led.decisions.filter((d) => d.action === "rent");
      assert.equal(rents.length, 1, JSON.stringify(led.decisions));
      assert.match(rents[0]?.reason ?? "", /^rented \S+: \d x86_64-linux derivations? waited > 0ms/);
      const worker = led.workers[0]?.name;
      assert.ok(worker, JSON.stringify(led));
      assert.deepEqual(
        [...new Set(done.derivations.map((d) => d.builder))],
        [worker],
        "built on the leader's worker",
      );
      const followed = await view(follower);
      assert.equal(followed.leader, false);
      assert.deepEqual(followed.decisions, [], "the follower rented nothing and decided nothing");
      assert.match(
        follower.log(),
        new RegExp(`${worker} \\(rented by another coordinator\\) joined the pool`),
      );

      // kill -9 of the leader: its worker stays, renewed by nobody, until the other takes the lead.
      await leader.stop("SIGKILL");
      assert.equal(await servers(), 1);
      await until("the follower leads", async () => (await view(follower)).leader, 90_000);
      await until("the dead leader's worker deleted", async () => (await servers()) === 0, 60_000);
      await until(
        "its worker gone from the survivor's pool",
        async () => !(await socketRequest(follower.socket, "GET", "/api/builders")).body.includes(worker),
        30_000,
      );
      assert.match(follower.log(), /this coordinator leads now; reaping what a stopped leader left/);

      // Now the leader, it rents for its own queue.
      const id2 = await submit(follower, "after the failover", 2);
      const done2 = await ended(follower, id2);
      assert.equal(done2.status, "succeeded", `${JSON.stringify(done2.error)}\n${logs()}`);
      const now = await view(follower);
      assert.equal(now.decisions.filter((d) => d.action === "rent").length, 1, JSON.stringify(now.decisions));
      const second = now.workers[0]?.name;
      assert.ok(second && second !== worker);
      assert.deepEqual([...new Set(done2.derivations.map((d) => d.builder))], [second]);

      // A clean stop deletes what it rented; worker gc then finds nothing.
      assert.equal(await follower.stop(), 0, follower.log());
      assert.equal(await servers(), 0);
      const gc = await runCli(stateDir, ["--inventory", inventory, "worker", "gc"], {
        env,
        cwd: stateDir,
        timeout: 120_000,
      });
      assert.equal(gc.exitCode, 0, gc.stderr);
      assert.equal(await servers(), 0);
      assert.deepEqual(await readRecords(stateDir), [], "no worker record left");
    });

    test("a coordinator that lost the lead still deletes its own idle worker before its next billed hour", async () => {
      const { dir: stateDir, cleanup } = await makeTempDir("nixpool-autoscale-follower-");
      const { now: clock, jump } = testClock();
      let leads = true;
      const config = testAutoscaleConfig();
      const c = await Coordinator.open({
        stateDir,
        builders: [],
        autoscale: {
          config,
          provider: hetznerAutoscaleProvider({ stateDir, env, config, log: () => undefined }),
          clock,
          // The lease taken and lost as another coordinator would take it (pool-lease.ts).
          leadership: { acquire: () => Promise.resolve(leads), release: () => Promise.resolve() },
        },
      });
      try {
        const before = await servers();
        const done = await c.waitFor(
          c.submit(await graphRequest("while leading", 2), { user: "t", via: "local" }),
        );
        assert.equal(done.status, "succeeded", JSON.stringify(done.error));
        const worker = (c.autoscale() as AutoscaleView).workers[0]?.name;
        assert.ok(worker);
        leads = false;
        await until("no longer the leader", () => (c.autoscale() as AutoscaleView).leader === false);
        // Idle, most of its paid hour left: kept.
        assert.equal(await servers(), before + 1);
        assert.equal((c.autoscale() as AutoscaleView).workers.length, 1);
        // 56 minutes later: 4 minutes of the paid hour left, under the 5-minute margin.
        jump(56 * MIN);
        await until("its worker deleted", async () => (await servers()) === before);
        const v = c.autoscale() as AutoscaleView;
        assert.equal(v.leader, false);
        const deletes = v.decisions.filter((d) => d.action === "delete");
        assert.deepEqual(
          deletes.map((d) => d.worker),
          [worker],
        );
        assert.match(deletes[0]?.reason ?? "", /: idle, \d+ min left of its paid hour 1; lived 5\d min$/);
        assert.equal(v.decisions.filter((d) => d.action === "rent").length, 1, "a follower rents nothing");
      } finally {
        await c.close();
        await cleanup();
      }
    });
  },
);
