import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { HcloudClient, type RetryEvent } from "../../src/providers/hetzner/client.js";
import { resolveToken } from "../../src/providers/hetzner/token.js";
import { loadPrices } from "../../src/providers/hetzner/provision.js";
import { findLatestSnapshot } from "../../src/providers/hetzner/snapshots.js";
import { snapshotLabels } from "../../src/core/snapshots.js";
import { FALLBACK_PRICES } from "../../src/core/cost.js";
import { isNixpoolError, type NixpoolError } from "../../src/core/errors.js";
import { redact } from "../../src/core/redact.js";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { makeTempDir } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";

const PUBKEY = (n: number) =>
  `ssh-ed25519 ${Buffer.concat([Buffer.from("\0\0\0\x0bssh-ed25519\0\0\0\x20"), Buffer.alloc(32, n)]).toString("base64")}`;

describe("Hetzner Cloud client against the emulator", { timeout: 120_000 }, () => {
  let emu: RunningEmulator;
  const retries: RetryEvent[] = [];
  const client = (o: Partial<ConstructorParameters<typeof HcloudClient>[0]> = {}) =>
    new HcloudClient({
      token: TEST_TOKEN,
      endpoint: emu.endpoint,
      retry: { baseMs: 20, maxMs: 200 },
      onRetry: (e) => retries.push(e),
      ...o,
    });
  const fault = async (f: unknown) => {
    await fetch(`${emu.adminUrl}/faults`, { method: "DELETE" });
    const r = await fetch(`${emu.adminUrl}/faults`, { method: "POST", body: JSON.stringify(f) });
    assert.equal(r.status, 200);
  };
  const rejectsWith = async (p: Promise<unknown>, code: string): Promise<NixpoolError> => {
    try {
      await p;
    } catch (e) {
      assert.ok(isNixpoolError(e), String(e));
      assert.equal(e.code, code, e.message);
      return e;
    }
    assert.fail(`expected ${code}`);
  };

  before(async () => {
    // 36000/h: after a 429 the client waits 0.1 s (one refill), not a full second.
    emu = await startHetznerEmulator({
      tokens: [TEST_TOKEN],
      rateLimit: 36_000,
      timing: { createMs: 300, deleteMs: 50 },
    });
  });
  after(async () => emu?.close());

  test("lists every page and filters by label selector", async () => {
    const c = client();
    for (let i = 0; i < 55; i++) {
      await c.createSshKey({
        name: `k${i}`,
        public_key: PUBKEY(i),
        labels: { batch: i % 2 ? "odd" : "even" },
      });
    }
    const all = await c.listSshKeys();
    assert.equal(all.length, 55);
    assert.equal(new Set(all.map((k) => k.id)).size, 55);
    assert.equal((await c.listSshKeys({ labelSelector: "batch=odd" })).length, 27);
    assert.equal((await c.listSshKeys({ name: "k7" }))[0]?.name, "k7");
    for (const k of all) await c.deleteSshKey(k.id);
    assert.equal(await c.deleteSshKey(all[0]?.id ?? 0), false);
  });

  test("429 and 5xx storms, conflicts, dropped connections and timeouts are absorbed", async () => {
    retries.length = 0;
    const c = client({ requestTimeoutMs: 1000 });
    await fault([
      { kind: "rate_limit", count: 3 },
      { kind: "server_error", count: 2, status: 503 },
      { kind: "server_error", count: 1, status: 500 },
      { kind: "conflict", count: 1 },
      { kind: "drop", count: 1 },
      { kind: "delay", count: 1, ms: 3000 },
    ]);
    const types = await c.listServerTypes();
    assert.ok(types.length > 5);
    const reasons = retries.map((r) => r.reason);
    assert.equal(reasons.length, 9, reasons.join(", "));
    assert.equal(reasons.filter((r) => r.startsWith("429")).length, 3);
    assert.equal(reasons.filter((r) => r.startsWith("503")).length, 2);
    assert.ok(reasons.some((r) => r.startsWith("409 conflict")));
    assert.ok(reasons.some((r) => /timed out/.test(r)));
    assert.ok(
      reasons.some((r) => /socket|ECONNRESET|other side closed|fetch failed/i.test(r)),
      reasons.join(", "),
    );
    // 429 waits cover one refill interval (3600/limit s = 0.1 s) even though the backoff is shorter.
    assert.ok(retries.filter((r) => r.reason.startsWith("429")).every((r) => r.delayMs >= 100));
  });

  test("a storm longer than the retry budget ends in a clear error", async () => {
    const c = client({ retry: { attempts: 3, baseMs: 10, maxMs: 20 } });
    await fault({ kind: "server_error", count: 3, status: 502 });
    const e = await rejectsWith(c.listLocations(), "HCLOUD_SERVER_ERROR");
    assert.match(e.message, /GET \/locations/);
  });

  test("API errors map to nixpool errors; the token never shows", async () => {
    const bad = new HcloudClient({ token: "wrong-token-0123456789", endpoint: emu.endpoint });
    const e = await rejectsWith(bad.listServers(), "HCLOUD_UNAUTHORIZED");
    assert.equal(e.exitCode, 2);
    assert.ok(!JSON.stringify({ m: e.message, h: e.hint, d: e.details }).includes("wrong-token-0123456789"));
    assert.equal(redact("token wrong-token-0123456789"), "token [redacted]");

    const c = client();
    await rejectsWith(
      c.createServer({ name: "x", server_type: "nope", image: "debian-12" }),
      "HCLOUD_INVALID_INPUT",
    );
    await fault({ kind: "resource_limit", count: 1 });
    await rejectsWith(
      c.createServer({ name: "lim", server_type: "cx23", image: "debian-12" }),
      "HCLOUD_RESOURCE_LIMIT",
    );
    const s = await c.createServer({
      name: "uniq",
      server_type: "cx23",
      image: "debian-12",
      labels: { t: "1" },
    });
    await rejectsWith(
      c.createServer({ name: "uniq", server_type: "cx23", image: "debian-12" }),
      "HCLOUD_NOT_UNIQUE",
    );
    await rejectsWith(
      c.createServer({ name: "soldout", server_type: "cx33", image: "debian-12", location: "hel1" }),
      "HCLOUD_RESOURCE_UNAVAILABLE",
    );
    const done = await c.waitForAction(s.action, { pollMs: 50 });
    assert.equal(done.status, "success");
    assert.deepEqual((await c.updateServerLabels(s.server.id, { t: "2" })).labels, { t: "2" });
    await rejectsWith(c.updateServerLabels(s.server.id, { "bad key": "x" }), "HCLOUD_INVALID_INPUT");
    assert.equal((await c.getServer(s.server.id))?.status, "running");
    const del = await c.deleteServer(s.server.id);
    assert.ok(del);
    await c.waitForAction(del, { pollMs: 20 });
    assert.equal(await c.getServer(s.server.id), undefined);
    assert.equal(await c.deleteServer(s.server.id), undefined);
  });

  test("a failed action is an error naming the action", async () => {
    const c = client();
    await fault({ kind: "boot", mode: "fail" });
    const s = await c.createServer({ name: "will-fail", server_type: "cx23", image: "debian-12" });
    const e = await rejectsWith(c.waitForAction(s.action, { pollMs: 50 }), "HCLOUD_ACTION_FAILED");
    assert.match(e.message, /create_server/);
    await c.deleteServer(s.server.id);
  });

  test("prices come from the API, else from the bundled dated table with a warning", async () => {
    const c = client();
    const lines: string[] = [];
    const api = await loadPrices(c, (l) => lines.push(l));
    assert.equal(api.source, "api");
    assert.equal(api.serverTypes["cx23"]?.["fsn1"]?.hourly.net, 0.006);
    assert.equal(api.primaryIpv4["fsn1"]?.monthly.net, 0.5);
    assert.equal(lines.length, 0);
    await fault({ kind: "server_error", count: 3, status: 503, path: "/pricing" });
    const fallback = await loadPrices(c, (l) => lines.push(l));
    assert.equal(fallback, FALLBACK_PRICES);
    assert.match(
      lines.join("\n"),
      /could not read prices from the API .*; using the bundled table of 2026-12-01/,
    );
  });

  test("catalogue: server types with per-location availability, pricing with primary IPv4, images", async () => {
    const c = client();
    const cx33 = (await c.listServerTypes()).find((t) => t.name === "cx33");
    assert.equal(cx33?.locations.find((l) => l.name === "hel1")?.available, false);
    const pricing = await c.getPricing();
    assert.ok(pricing.primary_ips.find((p) => p.type === "ipv4")?.prices.some((p) => p.location === "fsn1"));
    assert.ok((await c.listImages({ name: "debian-12", architecture: "x86" })).length === 1);
    assert.deepEqual(await c.listImages({ type: "snapshot", labelSelector: "nixpool=1" }), []);
    assert.ok((await c.listLocations()).some((l) => l.name === "nbg1"));
  });
});

describe("snapshots through the client", { timeout: 60_000 }, () => {
  test("shutdown, create_image, get, list by label, the latest, disk too big, delete: answers validated", async () => {
    const emu = await startHetznerEmulator({
      tokens: [TEST_TOKEN],
      timing: { createMs: 100, bootMs: 20, deleteMs: 20, imageMs: 200 },
    });
    try {
      const c = new HcloudClient({ token: TEST_TOKEN, endpoint: emu.endpoint });
      const { server, action } = await c.createServer({
        name: "src",
        server_type: "cx33",
        image: "debian-12",
      });
      await c.waitForAction(action, { pollMs: 20 });
      await c.waitForAction(await c.shutdownServer(server.id), { pollMs: 20 });
      assert.equal((await c.getServer(server.id))?.status, "off");
      const labels = snapshotLabels({
        owner: "0123456789ab",
        leaseId: "abcdef0123",
        expiresMs: Date.now() + 3_600_000,
        architecture: "x86",
        systemPath: null,
        version: "0.1.0",
        type: "cx33",
      });
      const created = await c.createImage(server.id, { description: "d", labels });
      assert.equal(created.image?.status, "creating");
      assert.ok(created.action);
      await c.waitForAction(created.action, { pollMs: 20 });
      const id = created.image?.id ?? 0;
      assert.equal((await c.getImage(id))?.status, "available");
      const latest = await findLatestSnapshot(c, { owner: "0123456789ab", architecture: "x86" });
      assert.equal(latest?.id, id);
      assert.equal(await findLatestSnapshot(c, { owner: "0123456789ab", architecture: "arm" }), undefined);
      const e = await c.createServer({ name: "small", server_type: "cx23", image: String(id) }).then(
        () => undefined,
        (x: unknown) => x,
      );
      assert.ok(isNixpoolError(e) && e.code === "SNAPSHOT_TOO_BIG", String(e));
      assert.equal(await c.deleteImage(id), true);
      assert.equal(await c.getImage(id), undefined);
      assert.equal(await c.deleteImage(id), false);
      await c.deleteServer(server.id);
    } finally {
      await emu.close();
    }
  });
});

describe("answers that do not match the spec", () => {
  test("are refused with HCLOUD_BAD_RESPONSE", async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ servers: [{ id: "not-a-number" }], meta: { pagination: {} } }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const c = new HcloudClient({ token: TEST_TOKEN, endpoint: `http://127.0.0.1:${port}/v1` });
      await assert.rejects(
        c.listServers(),
        (e: unknown) => isNixpoolError(e) && e.code === "HCLOUD_BAD_RESPONSE",
      );
    } finally {
      server.close();
    }
  });
});

describe("token sources", () => {
  test("--token-file, HCLOUD_TOKEN, a token file and a token command, in that order", async () => {
    const { dir, cleanup } = await makeTempDir("nixpool-token-");
    try {
      await writeFile(join(dir, "tok"), "file-token-abcdef\n", { mode: 0o600 });
      await writeFile(join(dir, "cmd.sh"), "#!/bin/sh\necho cmd-token-abcdef\n", { mode: 0o700 });
      assert.deepEqual(
        await resolveToken({ tokenFile: join(dir, "tok"), env: { HCLOUD_TOKEN: "env-token-abc" } }),
        {
          token: "file-token-abcdef",
          source: `--token-file ${join(dir, "tok")}`,
        },
      );
      assert.equal((await resolveToken({ env: { HCLOUD_TOKEN: "env-token-abc" } })).token, "env-token-abc");
      assert.equal(
        (await resolveToken({ env: { NIXPOOL_HCLOUD_TOKEN_FILE: join(dir, "tok") } })).token,
        "file-token-abcdef",
      );
      assert.equal(
        (await resolveToken({ env: { NIXPOOL_HCLOUD_TOKEN_COMMAND: `/bin/sh ${join(dir, "cmd.sh")}` } }))
          .token,
        "cmd-token-abcdef",
      );
      assert.equal(redact("x cmd-token-abcdef y"), "x [redacted] y");
      for (const bad of ["two words-abc", "tökén-abc", "tab\tinside-abc"]) {
        await assert.rejects(
          resolveToken({ env: { HCLOUD_TOKEN: bad } }),
          (e: unknown) => isNixpoolError(e) && e.code === "HCLOUD_TOKEN_INVALID" && !e.message.includes(bad),
        );
      }
      await assert.rejects(
        resolveToken({ env: {} }),
        (e: unknown) => isNixpoolError(e) && e.code === "HCLOUD_TOKEN_MISSING",
      );
      await assert.rejects(
        resolveToken({ env: { NIXPOOL_HCLOUD_TOKEN_COMMAND: "/bin/false" } }),
        (e: unknown) => isNixpoolError(e) && e.code === "HCLOUD_TOKEN_COMMAND_FAILED",
      );
      await assert.rejects(
        resolveToken({ tokenFile: join(dir, "missing"), env: {} }),
        (e: unknown) => isNixpoolError(e) && e.code === "HCLOUD_TOKEN_FILE_UNREADABLE" && e.exitCode === 2,
      );
    } finally {
      await cleanup();
    }
  });
});
