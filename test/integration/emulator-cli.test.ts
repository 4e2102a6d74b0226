import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { HcloudClient } from "../../src/providers/hetzner/client.js";
import { CLI, makeTempDir } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";

/** Starts `nixpool emulator hetzner` and resolves once it prints its endpoint. */
function startEmulatorCli(stateDir: string, args: string[]) {
  const child = spawn("node", [CLI, "--state-dir", stateDir, "emulator", "hetzner", "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const endpoint = new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/\S+\/v1)/.exec(stdout);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", () => reject(new Error(`emulator exited: ${stderr}`)));
  });
  return { child, endpoint, exited, stderr: () => stderr };
}

const netnsList = async () => (await run(["ip", "netns", "list"])).stdout;

test("nixpool emulator hetzner serves until SIGTERM; a restart stops machines a killed emulator left", async (t) => {
  const { dir, cleanup } = await makeTempDir("nixpool-emucli-");
  const procs: ReturnType<typeof startEmulatorCli>[] = [];
  t.after(async () => {
    for (const p of procs) p.child.kill("SIGKILL");
    // A last emulator run stops whatever the killed ones left.
    const last = startEmulatorCli(dir, []);
    await last.endpoint.catch(() => undefined);
    last.child.kill("SIGTERM");
    await last.exited;
    await cleanup();
  });

  const first = startEmulatorCli(dir, ["--token", TEST_TOKEN, "--create-ms", "100"]);
  procs.push(first);
  const endpoint = await first.endpoint;
  const noAuth = await fetch(`${endpoint}/server_types`);
  assert.equal(noAuth.status, 401);
  await noAuth.text();
  const client = new HcloudClient({ token: TEST_TOKEN, endpoint });
  assert.ok((await client.listServerTypes()).some((x) => x.name === "cx23"));

  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, "k")]);
  const key = await client.createSshKey({
    name: "k",
    public_key: await readFile(join(dir, "k.pub"), "utf8"),
  });
  const created = await client.createServer({
    name: "left-behind",
    server_type: "cx23",
    image: "debian-12",
    ssh_keys: [String(key.id)],
  });
  await client.waitForAction(created.action, { pollMs: 50 });
  const hostDir = join(dir, "emulator", "hetzner", `server-${created.server.id}`);
  const rec = JSON.parse(await readFile(join(hostDir, "host.json"), "utf8")) as { netns: string };
  assert.match(await netnsList(), new RegExp(`^${rec.netns} `, "m"));

  first.child.kill("SIGKILL");
  await first.exited;
  assert.match(await netnsList(), new RegExp(`^${rec.netns} `, "m"), "a killed emulator leaves its machine");

  const second = startEmulatorCli(dir, []);
  procs.push(second);
  await second.endpoint;
  assert.match(second.stderr(), /Stopped 1 machine\(s\) left by an emulator that was killed/);
  assert.doesNotMatch(await netnsList(), new RegExp(`^${rec.netns} `, "m"));
  second.child.kill("SIGTERM");
  assert.equal(await second.exited, 0);
});
