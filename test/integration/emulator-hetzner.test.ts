import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { specValidator, TEST_TOKEN } from "../helpers/hetzner-emulator.js";
import { waitFor } from "../../src/adapters/wait-for.js";

const PUBKEY = (n: number) =>
  `ssh-ed25519 ${Buffer.concat([Buffer.from("\0\0\0\x0bssh-ed25519\0\0\0\x20"), Buffer.alloc(32, n)]).toString("base64")} k${n}`;

describe("Hetzner Cloud API emulator over HTTP", { timeout: 60_000 }, () => {
  let emu: RunningEmulator;
  const validate = specValidator();
  const call = async (method: string, path: string, body?: unknown, token: string | null = TEST_TOKEN) => {
    const res = await fetch(`${emu.endpoint}${path}`, {
      method,
      headers: {
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      body: text ? (JSON.parse(text) as Record<string, unknown>) : null,
    };
  };
  /** Calls and checks the answer against the spec's schema for PATH_TEMPLATE and the status class. */
  const checked = async (method: string, path: string, template: string, body?: unknown) => {
    const r = await call(method, path, body);
    const status = r.status >= 400 ? (r.status >= 500 ? "5xx" : "4xx") : String(r.status);
    if (r.status !== 204)
      assert.deepEqual(validate(method, template, status, r.body), [], `${method} ${path}`);
    return r;
  };
  const fault = async (f: unknown) => {
    const r = await fetch(`${emu.adminUrl}/faults`, { method: "POST", body: JSON.stringify(f) });
    assert.equal(r.status, 200, await r.text());
  };

  before(async () => {
    emu = await startHetznerEmulator({
      tokens: [TEST_TOKEN],
      timing: { createMs: 400, bootMs: 50, deleteMs: 100 },
    });
  });
  after(async () => emu?.close());

  test("catalogue endpoints answer with the spec's shapes", async () => {
    const types = await checked("GET", "/server_types", "/server_types");
    assert.ok((types.body?.["server_types"] as unknown[]).length > 0);
    await checked("GET", "/server_types?name=cx23", "/server_types");
    await checked("GET", "/server_types/114", "/server_types/{id}");
    await checked("GET", "/locations", "/locations");
    await checked("GET", "/locations/1", "/locations/{id}");
    await checked("GET", "/datacenters", "/datacenters");
    await checked("GET", "/datacenters/4", "/datacenters/{id}");
    await checked("GET", "/images?name=debian-12&architecture=x86", "/images");
    await checked("GET", "/images/114690387", "/images/{id}");
    const pricing = await checked("GET", "/pricing", "/pricing");
    assert.equal((pricing.body?.["pricing"] as { currency: string }).currency, "EUR");
  });

  test("errors use the API's format and codes", async () => {
    const unauth = await call("GET", "/servers", undefined, null);
    assert.equal(unauth.status, 401);
    assert.deepEqual(validate("GET", "/servers", "4xx", unauth.body), []);
    assert.equal((unauth.body?.["error"] as { code: string }).code, "unauthorized");
    const wrong = await call("GET", "/servers", undefined, "x".repeat(64));
    assert.equal(wrong.status, 401);
    const missing = await checked("GET", "/servers/999999", "/servers/{id}");
    assert.equal(missing.status, 404);
    assert.equal((missing.body?.["error"] as { code: string }).code, "not_found");
    const bad = await checked("POST", "/servers", "/servers", {
      name: "bad_name!",
      server_type: "cx23",
      image: "debian-12",
    });
    assert.equal(bad.status, 400);
    assert.equal((bad.body?.["error"] as { code: string }).code, "invalid_input");
    const badSel = await call("GET", "/servers?label_selector=a%20in%20(b");
    assert.equal(badSel.status, 400);
  });

  test("servers: create with an action that progresses, list, label selectors, uniqueness, delete", async () => {
    const key = await checked("POST", "/ssh_keys", "/ssh_keys", { name: "srv-key", public_key: PUBKEY(1) });
    assert.equal(key.status, 201);
    const keyId = (key.body?.["ssh_key"] as { id: number }).id;
    await checked("GET", `/ssh_keys/${keyId}`, "/ssh_keys/{id}");
    const relabelledKey = await checked("PUT", `/ssh_keys/${keyId}`, "/ssh_keys/{id}", {
      labels: { nixpool: "1" },
    });
    assert.deepEqual((relabelledKey.body?.["ssh_key"] as { labels: unknown }).labels, { nixpool: "1" });
    const created = await checked("POST", "/servers", "/servers", {
      name: "web-1",
      server_type: "cx23",
      image: "debian-12",
      location: "nbg1",
      ssh_keys: ["srv-key"],
      labels: { nixpool: "1", role: "web" },
    });
    assert.equal(created.status, 201);
    const server = created.body?.["server"] as { id: number; status: string };
    const action = created.body?.["action"] as { id: number; status: string; progress: number };
    assert.equal(server.status, "initializing");
    assert.equal(action.status, "running");
    assert.ok(action.progress < 100);
    assert.equal(created.body?.["root_password"], null);

    await checked("POST", "/servers", "/servers", {
      name: "db-1",
      server_type: 115,
      image: 114690387,
      location: "fsn1",
      labels: { nixpool: "1", role: "db", owner: "alice" },
    });
    const dup = await checked("POST", "/servers", "/servers", {
      name: "web-1",
      server_type: "cx23",
      image: "debian-12",
    });
    assert.equal(dup.status, 409);
    assert.equal((dup.body?.["error"] as { code: string }).code, "uniqueness_error");

    const names = async (sel: string) =>
      (
        (await checked("GET", `/servers?label_selector=${encodeURIComponent(sel)}`, "/servers")).body?.[
          "servers"
        ] as { name: string }[]
      )
        .map((s) => s.name)
        .sort();
    assert.deepEqual(await names("nixpool=1"), ["db-1", "web-1"]);
    assert.deepEqual(await names("nixpool==1,role!=web"), ["db-1"]);
    assert.deepEqual(await names("role in (web,cache)"), ["web-1"]);
    assert.deepEqual(await names("owner"), ["db-1"]);
    assert.deepEqual(await names("!owner"), ["web-1"]);
    assert.deepEqual(await names("role notin (web,db)"), []);

    const done = await waitFor(
      async () => {
        const a = (await checked("GET", `/actions/${action.id}`, "/actions/{id}")).body?.["action"] as
          { status: string; progress: number } | undefined;
        return a?.status !== "running" && a;
      },
      { timeoutMs: 5000 },
    );
    assert.ok(done, "the action is still running");
    assert.equal(done?.status, "success");
    assert.equal(done?.progress, 100);
    await checked("GET", `/actions?id=${action.id}`, "/actions");
    const serverActions = await checked("GET", `/servers/${server.id}/actions`, "/servers/{id}/actions");
    assert.deepEqual(
      (serverActions.body?.["actions"] as { command: string }[]).map((x) => x.command),
      ["create_server", "start_server"],
    );
    const running = (await checked("GET", `/servers/${server.id}`, "/servers/{id}")).body?.["server"] as {
      status: string;
    };
    assert.equal(running.status, "running");
    const relabelled = await checked("PUT", `/servers/${server.id}`, "/servers/{id}", {
      labels: { nixpool: "1", role: "web", "nixpool-expires": "1999999999" },
    });
    assert.deepEqual((relabelled.body?.["server"] as { labels: Record<string, string> }).labels, {
      nixpool: "1",
      role: "web",
      "nixpool-expires": "1999999999",
    });
    const badLabel = await checked("PUT", `/servers/${server.id}`, "/servers/{id}", {
      labels: { "bad key": "x" },
    });
    assert.equal(badLabel.status, 400);

    const del = await checked("DELETE", `/servers/${server.id}`, "/servers/{id}");
    const delAction = del.body?.["action"] as { id: number; command: string };
    assert.equal(delAction.command, "delete_server");
    await waitFor(async () => (await call("GET", `/servers/${server.id}`)).status === 404, {
      timeoutMs: 5000,
    });
    assert.equal((await call("GET", `/servers/${server.id}`)).status, 404);
  });

  test("pagination meta follows page and per_page", async () => {
    for (let i = 10; i < 13; i++)
      await checked("POST", "/ssh_keys", "/ssh_keys", { name: `page-${i}`, public_key: PUBKEY(i) });
    const p1 = await checked("GET", "/ssh_keys?label_selector=&per_page=2&name=page-10", "/ssh_keys");
    assert.equal((p1.body?.["ssh_keys"] as unknown[]).length, 1);
    const all = await checked("GET", "/ssh_keys?per_page=2&page=1", "/ssh_keys");
    const meta = (all.body?.["meta"] as { pagination: Record<string, number | null> }).pagination;
    const total = meta["total_entries"] ?? 0;
    assert.ok(total >= 3);
    assert.equal(meta["next_page"], 2);
    assert.equal(meta["previous_page"], null);
    assert.equal(meta["last_page"], Math.ceil(total / 2));
    const last = await checked("GET", `/ssh_keys?per_page=2&page=${meta["last_page"]}`, "/ssh_keys");
    assert.equal((last.body?.["meta"] as { pagination: { next_page: null } }).pagination.next_page, null);
    const dupKey = await checked("POST", "/ssh_keys", "/ssh_keys", { name: "other", public_key: PUBKEY(10) });
    assert.equal(dupKey.status, 409);
  });

  test("rate-limit headers on every answer; injected faults hit the next requests", async () => {
    const ok = await call("GET", "/locations");
    assert.equal(ok.headers.get("ratelimit-limit"), "3600");
    assert.match(ok.headers.get("ratelimit-remaining") ?? "", /^\d+$/);
    assert.ok(Number(ok.headers.get("ratelimit-reset")) >= Math.floor(Date.now() / 1000));

    await fault({ kind: "rate_limit", count: 2 });
    for (let i = 0; i < 2; i++) {
      const r = await checked("GET", "/locations", "/locations");
      assert.equal(r.status, 429);
      assert.equal((r.body?.["error"] as { code: string }).code, "rate_limit_exceeded");
      assert.equal(r.headers.get("ratelimit-remaining"), "0");
    }
    assert.equal((await call("GET", "/locations")).status, 200);

    await fault({ kind: "server_error", count: 1, status: 502, path: "/pricing" });
    assert.equal((await call("GET", "/locations")).status, 200);
    const e502 = await checked("GET", "/pricing", "/pricing");
    assert.equal(e502.status, 502);

    await fault({ kind: "drop", count: 1 });
    await assert.rejects(call("GET", "/locations"));
    assert.equal((await call("GET", "/locations")).status, 200);

    await fault({ kind: "resource_limit", count: 1 });
    const limited = await checked("POST", "/servers", "/servers", {
      name: "limited",
      server_type: "cx23",
      image: "debian-12",
    });
    assert.equal(limited.status, 403);
    assert.equal((limited.body?.["error"] as { code: string }).code, "resource_limit_exceeded");

    await fault({ kind: "boot", mode: "fail" });
    const failing = await call("POST", "/servers", {
      name: "failing",
      server_type: "cx23",
      image: "debian-12",
    });
    const act = failing.body?.["action"] as { id: number };
    const a = await waitFor(
      async () => {
        const x = (await call("GET", `/actions/${act.id}`)).body?.["action"] as
          { status: string; error: { code: string } | null } | undefined;
        return x?.status !== "running" && x;
      },
      { timeoutMs: 5000 },
    );
    assert.ok(a, "the action is still running");
    assert.equal(a?.status, "error");
    assert.equal(a?.error?.code, "server_create_failed");

    const badFault = await fetch(`${emu.adminUrl}/faults`, {
      method: "POST",
      body: JSON.stringify({ kind: "nope" }),
    });
    assert.equal(badFault.status, 400);
  });

  test("a small hourly limit is enforced with 429", async () => {
    const small = await startHetznerEmulator({ rateLimit: 3 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${small.endpoint}/locations`, {
          headers: { Authorization: `Bearer ${TEST_TOKEN}` },
        });
        statuses.push(r.status);
        await r.text();
      }
      assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
      assert.equal(statuses[4], 429);
    } finally {
      await small.close();
    }
  });
});
