import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { HcloudClient } from "../../src/providers/hetzner/client.js";
import { leaseLabels, newLease } from "../../src/core/lease.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";

// Worker commands against an API-only emulator (no machines boot): what needs no SSH or Nix.

const GRAPH = resolve(import.meta.dirname, "../../examples/graph.nix");

/** An emulator and a state directory, both removed after the test. */
async function setUp(t: { after: (fn: () => Promise<void>) => void }, tokens = [TEST_TOKEN]) {
  const requests: string[] = [];
  const emu = await startHetznerEmulator({
    tokens,
    timing: { createMs: 50, deleteMs: 50 },
    log: (l) => requests.push(l),
  });
  const { dir, cleanup } = await makeTempDir("nixpool-worker-api-");
  t.after(async () => {
    await emu.close();
    await cleanup();
  });
  return { emu, dir, requests };
}

async function injectFault(emu: RunningEmulator, f: unknown): Promise<void> {
  const r = await fetch(`${emu.adminUrl}/faults`, { method: "POST", body: JSON.stringify(f) });
  assert.equal(r.status, 200, await r.text());
}

/** Every file below dir, as text. */
async function readTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(await readFile(join(e.parentPath, e.name), "utf8"));
  }
  return out;
}

describe("worker gc by labels (API only)", { timeout: 120_000 }, () => {
  test("deletes expired leases of any owner and this owner's orphans; leaves other owners' live servers", async (t) => {
    const emu = await startHetznerEmulator({ tokens: [TEST_TOKEN], timing: { createMs: 50, deleteMs: 50 } });
    const { dir, cleanup } = await makeTempDir("nixpool-gc-");
    t.after(async () => {
      await emu.close();
      await cleanup();
    });
    await mkdir(join(dir, "hetzner"), { recursive: true });
    await writeFile(join(dir, "hetzner", "owner"), "aaaaaaaaaaaa\n");
    const client = new HcloudClient({ token: TEST_TOKEN, endpoint: emu.endpoint });
    const make = async (id: string, owner: string, ttlMs: number) => {
      const l = newLease({ id, owner, nowMs: Date.now(), ttlMs, holder: { kind: "user" } });
      await client.createServer({
        name: l.serverName,
        server_type: "cx23",
        image: "debian-12",
        labels: leaseLabels(l),
      });
    };
    await make("00000000a1", "aaaaaaaaaaaa", 3_600_000); // mine, no record
    await make("00000000b1", "bbbbbbbbbbbb", -1000); // someone's, expired
    await make("00000000b2", "bbbbbbbbbbbb", 3_600_000); // someone's, live
    await client.createServer({ name: "not-nixpool", server_type: "cx23", image: "debian-12" });
    const r = await runCli(dir, ["worker", "gc", "--json"], {
      env: { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: TEST_TOKEN },
    });
    assert.equal(r.exitCode, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { deleted: { name: string; reason: string }[] };
    assert.deepEqual(res.deleted.map((d) => [d.name, d.reason]).sort(), [
      ["nixpool-00000000a1", "owner record gone"],
      ["nixpool-00000000b1", "lease expired"],
    ]);
    assert.deepEqual((await client.listServers()).map((s) => s.name).sort(), [
      "nixpool-00000000b2",
      "not-nixpool",
    ]);
    const all = await runCli(dir, ["worker", "list", "--all", "--json"], {
      env: { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: TEST_TOKEN },
    });
    assert.equal(all.exitCode, 0, all.stderr);
    assert.deepEqual(
      (JSON.parse(all.stdout) as { servers: { name: string; owner: string }[] }).servers.map((x) => [
        x.name,
        x.owner,
      ]),
      [["nixpool-00000000b2", "bbbbbbbbbbbb"]],
    );
    const offline = await runCli(dir, ["worker", "list", "--json"], { env: { HCLOUD_TOKEN: "" } });
    assert.equal(offline.exitCode, 0, offline.stderr);
    assert.match(offline.stderr, /no Hetzner Cloud token; showing local records only/);
    assert.deepEqual(JSON.parse(offline.stdout), { workers: [] });
    const noToken = await runCli(dir, ["worker", "gc"], {
      env: { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: "" },
    });
    assert.equal(noToken.exitCode, 2);
    assert.match(noToken.stderr, /No Hetzner Cloud API token is set/);
  });
});

describe(
  "worker commands run gc in passing and clean up after a refused create",
  { timeout: 180_000 },
  () => {
    test("list, down, up, shell and build --on each delete an expired server first", async (t) => {
      const { emu, dir } = await setUp(t);
      const env = { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: TEST_TOKEN };
      const client = new HcloudClient({ token: TEST_TOKEN, endpoint: emu.endpoint });
      const commands: { args: string[]; refusedCreate: boolean }[] = [
        { args: ["worker", "list", "--json"], refusedCreate: false },
        { args: ["worker", "down", "hz-0000000000"], refusedCreate: false },
        { args: ["worker", "up", "--type", "cx23"], refusedCreate: true },
        { args: ["worker", "shell", "--type", "cx23", "-c", "true"], refusedCreate: true },
        { args: ["build", "--on", "hetzner:cx23", GRAPH, "--arg", "n", "1"], refusedCreate: true },
      ];
      for (const [i, { args, refusedCreate }] of commands.entries()) {
        const expired = newLease({
          id: `00000000c${i}`,
          owner: "cccccccccccc",
          nowMs: Date.now(),
          ttlMs: -1000,
          holder: { kind: "user" },
        });
        await client.createServer({
          name: expired.serverName,
          server_type: "cx23",
          image: "debian-12",
          labels: leaseLabels(expired),
        });
        if (refusedCreate) await injectFault(emu, { kind: "resource_limit", count: 1 });
        const r = await runCli(dir, args, { env });
        const what = args.join(" ");
        assert.match(
          r.stderr,
          new RegExp(`gc: deleting server ${expired.serverName} \\(\\d+\\): lease expired`),
          `${what}: ${r.stderr}`,
        );
        assert.deepEqual(await client.listServers(), [], what);
        if (refusedCreate) {
          // The project's server limit: a clear error naming the request, a hint, nothing left behind.
          assert.equal(r.exitCode, 1, `${what}: ${r.stderr}`);
          assert.match(
            r.stderr,
            /error: Hetzner Cloud refused POST \/servers: server limit exceeded \(resource_limit_exceeded, HTTP 403\)\./,
          );
          assert.match(r.stderr, /hint: Delete servers you no longer need \(nixpool worker gc/);
          assert.match(r.stderr, /deleted; cost: /, what);
          assert.deepEqual(await client.listSshKeys(), [], what);
          assert.deepEqual(await readdir(join(dir, "hetzner", "workers")), [], what);
        }
      }
    });
  },
);

describe("the API token never shows", { timeout: 180_000 }, () => {
  test("not in stdout, stderr, --json, errors, retry lines or state files, from any token source", async (t) => {
    const token = `tok${randomBytes(30).toString("hex")}`;
    const refused = `bad${randomBytes(30).toString("hex")}`;
    const { emu, dir, requests } = await setUp(t, [token]);
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    const outputs: string[] = [];
    const cli = async (args: string[], env: Record<string, string>, exitCode: number) => {
      const r = await runCli(dir, args, { env: { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: "", ...env } });
      outputs.push(r.stdout, r.stderr);
      assert.equal(r.exitCode, exitCode, `${args.join(" ")}: ${r.stderr}`);
      return r;
    };
    const withToken = { HCLOUD_TOKEN: token };

    // Retries print one line each; the answers and the errors quote requests, never headers.
    await injectFault(emu, [
      { kind: "rate_limit", count: 2 },
      { kind: "server_error", count: 1, status: 502 },
    ]);
    const listed = await cli(["worker", "list", "--all", "--json"], withToken, 0);
    assert.match(listed.stderr, /→ 429 rate_limit_exceeded; retry 1/);
    assert.deepEqual(JSON.parse(listed.stdout), { servers: [] });
    await cli(["worker", "gc"], withToken, 0);
    await injectFault(emu, { kind: "resource_limit", count: 1 });
    const up = await cli(["worker", "up", "--type", "cx23", "--json"], withToken, 1);
    assert.equal((JSON.parse(up.stdout) as { error: { code: string } }).error.code, "HCLOUD_RESOURCE_LIMIT");
    await cli(["worker", "gc", "--json", "--token-file", tokenFile], {}, 0);
    await cli(["worker", "gc"], { NIXPOOL_HCLOUD_TOKEN_FILE: tokenFile }, 0);
    await cli(["worker", "gc"], { NIXPOOL_HCLOUD_TOKEN_COMMAND: `cat ${tokenFile}` }, 0);

    // A token the API refuses, and one that cannot be a token, are usage errors that do not quote it.
    const unauthorized = await cli(["worker", "gc", "--json"], { HCLOUD_TOKEN: refused }, 2);
    assert.equal(
      (JSON.parse(unauthorized.stdout) as { error: { code: string } }).error.code,
      "HCLOUD_UNAUTHORIZED",
    );
    const invalid = await cli(["worker", "list"], { HCLOUD_TOKEN: `${token}€` }, 2);
    assert.match(invalid.stderr, /token from HCLOUD_TOKEN is empty or has spaces or non-ASCII characters/);

    // The token was really used: the emulator accepts nothing else.
    assert.ok(
      requests.some((l) => /^GET \/v1\/servers 200$/.test(l)),
      requests.join("\n"),
    );
    assert.ok(requests.some((l) => / 401$/.test(l)));
    const seen = [...outputs, ...(await readTree(join(dir, "hetzner"))), ...requests].join("\n");
    assert.ok(seen.length > 1000);
    assert.equal(seen.includes(token), false, "the token leaked");
    assert.equal(seen.includes(refused), false, "the refused token leaked");
  });
});
