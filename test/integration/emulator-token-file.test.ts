import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CLI, makeTempDir, runCli, withTempDir } from "../helpers/cli.js";

test("nixpool emulator hetzner --token-file accepts only its tokens and keeps them out of argv", async (t) => {
  const { dir, cleanup } = await makeTempDir("nixpool-emutoken-");
  const token = "emu-secret-token-4f1c9a";
  const tokenFile = join(dir, "tokens");
  await writeFile(tokenFile, `\n${token}\n`, { mode: 0o600 });
  const child = spawn(
    "node",
    [CLI, "--state-dir", dir, "emulator", "hetzner", "--port", "0", "--no-boot", "--token-file", tokenFile],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  t.after(async () => {
    child.kill("SIGTERM");
    await exited;
    await cleanup();
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const endpoint = await new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/\S+\/v1)/.exec(stdout);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", () => reject(new Error(`emulator exited: ${stderr}`)));
  });
  const get = async (auth: string) => {
    const r = await fetch(`${endpoint}/server_types`, { headers: { Authorization: `Bearer ${auth}` } });
    await r.text();
    return r.status;
  };
  assert.equal(await get("some-other-token"), 401);
  assert.equal(await get(token), 200);
  const cmdline = await readFile(`/proc/${child.pid}/cmdline`, "utf8");
  assert.ok(cmdline.includes(tokenFile), "the file is named on the command line");
  assert.ok(!cmdline.includes(token), "the token itself is not");
  assert.ok(!stdout.includes(token) && !stderr.includes(token));
});

test("nixpool emulator hetzner refuses to boot machines for the network without tokens", async () => {
  await withTempDir(async (dir) => {
    const r = await runCli(dir, ["emulator", "hetzner", "--port", "0", "--host", "0.0.0.0"], {
      timeout: 30_000,
    });
    assert.equal(r.exitCode, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /boot machines for any client that reaches 0\.0\.0\.0/);
    assert.doesNotMatch(r.stdout, /listening on/);
  });
});
