import { afterEach, test, mock } from "node:test";
import assert from "node:assert/strict";
import { createHetznerEmulator } from "../../src/emulator/hetzner/app.js";
import type { ServerBooter } from "../../src/emulator/hetzner/booter.js";
import type { ServerRecord } from "../../src/emulator/hetzner/state.js";

// The emulator's boot timing on a mocked clock: a server from a snapshot stays initializing /
// starting for its own create time; a fresh one for createMs, then installs its packages
// (Nix hidden) for provisionMs once it answers. Times are the mocked clock's, so exact.

const USER_DATA = "#cloud-config\npackages: [nix-bin, nix-setup-systemd]\n";

afterEach(() => mock.timers.reset());

/** A booter that records, on the mocked clock, when each machine's network and Nix change. */
function recordingBooter(clock: () => number) {
  const events: string[] = [];
  const booter: ServerBooter = (req) =>
    Promise.resolve({
      address: `203.0.113.${(req.serverId % 250) + 1}`,
      setReachable: (up) => {
        events.push(`${clock()} ${req.name} ${up ? "reachable" : "unreachable"}`);
        return Promise.resolve();
      },
      setNixInstalled: (installed) => {
        events.push(`${clock()} ${req.name} nix ${installed ? "installed" : "absent"}`);
        return Promise.resolve();
      },
      stop: () => Promise.resolve(),
    });
  return { booter, events };
}

function setUp(timing: {
  createMs: number;
  bootMs: number;
  snapshotCreateMs?: number;
  provisionMs?: number;
}) {
  mock.timers.enable({ apis: ["setTimeout"] });
  let now = 0;
  const clock = () => now;
  const { booter, events } = recordingBooter(clock);
  const emu = createHetznerEmulator({
    booter,
    now: clock,
    timing: { imageMs: 100, deleteMs: 100, ...timing },
  });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await emu.app.request(`/v1${path}`, {
      method,
      headers: { Authorization: "Bearer unit", "Content-Type": "application/json" },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = (await res.json()) as Record<string, unknown>;
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  /** Moves the mocked clock to `t` in 100 ms steps, letting promise callbacks run at each step. */
  const advanceTo = async (t: number) => {
    while (now < t) {
      now += 100;
      mock.timers.tick(100);
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    }
  };
  const server = (id: number): ServerRecord => {
    const s = emu.state.servers.get(id);
    assert.ok(s, `server ${id}`);
    return s;
  };
  const create = async (name: string, image: string | number) =>
    (
      (await call("POST", "/servers", { name, server_type: "cx33", image, user_data: USER_DATA })) as {
        server: { id: number };
      }
    ).server.id;
  return { emu, call, advanceTo, server, create, events, clock };
}

/** Takes a snapshot of a fresh server; returns the image id and the clock when it is available. */
async function snapshotOf(env: ReturnType<typeof setUp>, until: number): Promise<number> {
  const id = await env.create("origin", "debian-12");
  await env.advanceTo(until);
  assert.equal(env.server(id).status, "running");
  const r = (await env.call("POST", `/servers/${id}/actions/create_image`, { type: "snapshot" })) as {
    image: { id: number };
  };
  await env.advanceTo(env.clock() + 100);
  assert.equal(env.emu.state.images.get(r.image.id)?.status, "available");
  return r.image.id;
}

test("a server from a snapshot is initializing/starting for snapshotCreateMs, a fresh one for createMs", async () => {
  const env = setUp({ createMs: 1000, snapshotCreateMs: 4000, bootMs: 500 });
  const image = await snapshotOf(env, 2000);
  const t0 = env.clock();
  const fresh = await env.create("fresh", "debian-12");
  const woken = await env.create("woken", image);
  /** The status of the woken server's create_server action, as the API reports it. */
  const createAction = async () =>
    (
      (await env.call("GET", `/servers/${woken}/actions`)) as {
        actions: { command: string; status: string }[];
      }
    ).actions.find((a) => a.command === "create_server")?.status;
  assert.equal(await createAction(), "running");

  await env.advanceTo(t0 + 900);
  assert.deepEqual([env.server(fresh).status, env.server(woken).status], ["starting", "initializing"]);
  await env.advanceTo(t0 + 1000);
  assert.deepEqual([env.server(fresh).status, env.server(woken).status], ["running", "initializing"]);
  await env.advanceTo(t0 + 2000);
  assert.equal(env.server(woken).status, "starting");
  await env.advanceTo(t0 + 3900);
  assert.equal(env.server(woken).status, "starting");
  assert.equal(await createAction(), "running");
  await env.advanceTo(t0 + 4000);
  assert.equal(env.server(woken).status, "running");
  assert.equal(await createAction(), "success");
  await env.advanceTo(t0 + 4500);
  assert.equal(env.server(woken).boot, "booted");
  // Without provisionMs nobody hides Nix; each answers bootMs after its create action.
  assert.deepEqual(
    env.events.filter((e) => !e.includes("origin")),
    [
      `${t0} fresh unreachable`,
      `${t0} woken unreachable`,
      `${t0 + 1500} fresh reachable`,
      `${t0 + 4500} woken reachable`,
    ],
  );
});

test("a fresh server installs its packages for provisionMs after it answers (Nix absent); one from a snapshot does not", async () => {
  const env = setUp({ createMs: 1000, snapshotCreateMs: 3000, bootMs: 500, provisionMs: 2000 });
  const image = await snapshotOf(env, 4000);
  const t0 = env.clock();
  const fresh = await env.create("fresh", "debian-12");
  const woken = await env.create("woken", image);

  await env.advanceTo(t0 + 1500);
  assert.equal(env.server(fresh).boot, "provisioning");
  await env.advanceTo(t0 + 3400);
  assert.deepEqual([env.server(fresh).boot, env.server(woken).status], ["provisioning", "running"]);
  await env.advanceTo(t0 + 3500);
  assert.deepEqual([env.server(fresh).boot, env.server(woken).boot], ["booted", "booted"]);
  assert.deepEqual(
    env.events.filter((e) => !e.includes("origin")),
    [
      `${t0} fresh unreachable`,
      `${t0} fresh nix absent`,
      `${t0} woken unreachable`,
      `${t0 + 1500} fresh reachable`,
      `${t0 + 3500} fresh nix installed`,
      `${t0 + 3500} woken reachable`,
    ],
  );
});

test("without packages in user_data there is nothing to provision", async () => {
  const env = setUp({ createMs: 1000, bootMs: 500, provisionMs: 2000 });
  const r = (await env.call("POST", "/servers", {
    name: "plain",
    server_type: "cx33",
    image: "debian-12",
  })) as {
    server: { id: number };
  };
  await env.advanceTo(1500);
  assert.equal(env.server(r.server.id).boot, "booted");
  assert.deepEqual(env.events, ["0 plain unreachable", "1500 plain reachable"]);
});
