import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { specValidator, TEST_TOKEN } from "../helpers/hetzner-emulator.js";
import { waitFor } from "../../src/adapters/wait-for.js";

interface ImageJson {
  id: number;
  type: string;
  status: string;
  image_size: number | null;
  disk_size: number;
  created_from: { id: number; name: string } | null;
  architecture: string;
  labels: Record<string, string>;
  description: string;
  protection: { delete: boolean };
}

describe(
  "the emulator's images: snapshots, filters, protection, pricing, catalogue",
  { timeout: 60_000 },
  () => {
    let emu: RunningEmulator;
    const validate = specValidator();
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${emu.endpoint}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${TEST_TOKEN}`,
          ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : null };
    };
    /** Calls and checks the answer against the spec's schema for the path template and status class. */
    const checked = async (method: string, path: string, template: string, body?: unknown) => {
      const r = await call(method, path, body);
      const status = r.status >= 400 ? (r.status >= 500 ? "5xx" : "4xx") : String(r.status);
      if (r.status !== 204)
        assert.deepEqual(validate(method, template, status, r.body), [], `${method} ${path}`);
      return r;
    };
    const images = async (query: string) =>
      ((await checked("GET", `/images?${query}`, "/images")).body?.["images"] as ImageJson[]).map(
        (i) => i.id,
      );
    const newServer = async (name: string, type = "cx33") => {
      const r = await call("POST", "/servers", { name, server_type: type, image: "debian-12" });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const id = (r.body?.["server"] as { id: number }).id;
      await waitFor(
        async () =>
          ((await call("GET", `/servers/${id}`)).body?.["server"] as { status: string }).status === "running",
        { timeoutMs: 10_000 },
      );
      return id;
    };
    const snapshot = async (serverId: number, body: unknown) => {
      const r = await checked(
        "POST",
        `/servers/${serverId}/actions/create_image`,
        "/servers/{id}/actions/create_image",
        body,
      );
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body as { image: ImageJson; action: { id: number; command: string } };
    };
    const available = async (id: number) => {
      const ok = await waitFor(
        async () =>
          ((await call("GET", `/images/${id}`)).body?.["image"] as ImageJson).status === "available",
        { timeoutMs: 10_000 },
      );
      assert.ok(ok, `image ${id} never became available`);
      return (await checked("GET", `/images/${id}`, "/images/{id}")).body?.["image"] as ImageJson;
    };

    before(async () => {
      emu = await startHetznerEmulator({
        tokens: [TEST_TOKEN],
        timing: { createMs: 100, bootMs: 20, deleteMs: 50, imageMs: 300 },
      });
    });
    after(async () => emu?.close());

    test("create_image: a snapshot is creating, then available with its size, origin and labels", async () => {
      const server = await newServer("snap-a");
      const off = await checked(
        "POST",
        `/servers/${server}/actions/shutdown`,
        "/servers/{id}/actions/shutdown",
      );
      assert.equal(off.status, 201);
      const { image, action } = await snapshot(server, {
        type: "snapshot",
        description: "first",
        labels: { pool: "p1", arch: "x86" },
      });
      assert.equal(action.command, "create_image");
      assert.deepEqual([image.type, image.status, image.image_size], ["snapshot", "creating", null]);
      assert.deepEqual(image.created_from, { id: server, name: "snap-a" });
      assert.equal(image.disk_size, 80);
      // The server is locked while its disk is copied.
      const locked = await call("DELETE", `/servers/${server}`);
      assert.deepEqual([locked.status, (locked.body?.["error"] as { code: string }).code], [423, "locked"]);
      const done = await available(image.id);
      assert.ok(done.image_size !== null && done.image_size > 0);
      assert.deepEqual(done.labels, { pool: "p1", arch: "x86" });
      assert.equal(done.description, "first");
      assert.equal(done.architecture, "x86");
      const updated = await checked("PUT", `/images/${image.id}`, "/images/{id}", {
        description: "renamed",
        labels: { pool: "p1", keep: "yes" },
      });
      assert.deepEqual((updated.body?.["image"] as ImageJson).labels, { pool: "p1", keep: "yes" });
      assert.equal((await call("DELETE", `/servers/${server}`)).status, 200);
    });

    test("GET /images filters by type, status, label selector and architecture, sorts and pages", async () => {
      const server = await newServer("snap-b");
      const first = await snapshot(server, { labels: { pool: "p2" } });
      await available(first.image.id);
      const second = await snapshot(server, { labels: { pool: "p2", extra: "1" } });
      const creating = await images("type=snapshot&status=creating");
      assert.deepEqual(creating, [second.image.id]);
      await available(second.image.id);
      assert.deepEqual(await images("type=snapshot&label_selector=pool%3Dp2&sort=created:desc"), [
        second.image.id,
        first.image.id,
      ]);
      assert.deepEqual(await images("type=snapshot&label_selector=pool%3Dp2,!extra"), [first.image.id]);
      assert.deepEqual(await images("type=snapshot&architecture=arm"), []);
      assert.ok((await images("type=system&architecture=x86")).length >= 1);
      assert.ok((await images("type=system&type=snapshot")).length >= 4);
      const page = await checked("GET", "/images?type=snapshot&per_page=1&page=2&sort=id", "/images");
      const meta = (page.body?.["meta"] as { pagination: { total_entries: number; page: number } })
        .pagination;
      assert.equal(meta.page, 2);
      assert.ok(meta.total_entries >= 3);
      const bad = await checked("GET", "/images?sort=size", "/images");
      assert.equal(bad.status, 400);
      await call("DELETE", `/servers/${server}`);
    });

    test("delete protection refuses DELETE with `protected`; system images cannot be deleted", async () => {
      const server = await newServer("snap-c");
      const { image } = await snapshot(server, { labels: {} });
      await available(image.id);
      const prot = await checked(
        "POST",
        `/images/${image.id}/actions/change_protection`,
        "/images/{id}/actions/change_protection",
        { delete: true },
      );
      assert.equal(prot.status, 201);
      const refused = await checked("DELETE", `/images/${image.id}`, "/images/{id}");
      assert.deepEqual(
        [refused.status, (refused.body?.["error"] as { code: string }).code],
        [423, "protected"],
      );
      await call("POST", `/images/${image.id}/actions/change_protection`, { delete: false });
      assert.equal((await call("DELETE", `/images/${image.id}`)).status, 204);
      assert.equal((await call("GET", `/images/${image.id}`)).status, 404);
      const system = await call("DELETE", "/images/114690387");
      assert.equal(system.status, 422);
      await call("DELETE", `/servers/${server}`);
    });

    test("a server from a snapshot: needs a disk at least the snapshot's (the API's error otherwise)", async () => {
      const server = await newServer("snap-d", "cx33");
      const { image } = await snapshot(server, { labels: {} });
      await available(image.id);
      const small = await checked("POST", "/servers", "/servers", {
        name: "too-small",
        server_type: "cx23",
        image: String(image.id),
      });
      assert.equal(small.status, 422);
      assert.deepEqual(small.body?.["error"], {
        code: "invalid_input",
        message: "image disk is bigger than server type disk",
        details: { fields: [{ name: "image", messages: ["image disk is bigger than server type disk"] }] },
      });
      const arm = await call("POST", "/servers", { name: "arm", server_type: "cax21", image: image.id });
      assert.equal(arm.status, 400);
      const fits = await checked("POST", "/servers", "/servers", {
        name: "from-snap",
        server_type: "cpx22",
        image: image.id,
      });
      assert.equal(fits.status, 201, JSON.stringify(fits.body));
      const s = fits.body?.["server"] as { id: number; image: ImageJson };
      assert.deepEqual([s.image.id, s.image.type], [image.id, "snapshot"]);
      await call("DELETE", `/servers/${s.id}`);
      await call("DELETE", `/servers/${server}`);
    });

    test("pricing has image prices per GB-month and server prices per location; the 2024 line is phased out", async () => {
      const pricing = (await checked("GET", "/pricing", "/pricing")).body?.["pricing"] as {
        image: { price_per_gb_month: { net: string } };
        server_types: { name: string; prices: { location: string; price_hourly: { net: string } }[] }[];
      };
      assert.equal(pricing.image.price_per_gb_month.net, "0.0110");
      const cpx22 = pricing.server_types.find((t) => t.name === "cpx22");
      const net = (l: string) => Number(cpx22?.prices.find((p) => p.location === l)?.price_hourly.net);
      assert.ok(net("ash") > net("fsn1"), "Ashburn costs more than Falkenstein");
      const types = (await checked("GET", "/server_types", "/server_types")).body?.["server_types"] as {
        name: string;
        deprecated: boolean;
        disk: number;
        locations: { name: string; available: boolean; deprecation: { unavailable_after: string } | null }[];
      }[];
      const byName = (n: string) => types.find((t) => t.name === n);
      assert.deepEqual(
        ["cx23", "cx33", "cx43", "cx53", "cpx12", "cpx62", "cax41", "ccx33"].map(
          (n) => byName(n)?.deprecated,
        ),
        [false, false, false, false, false, false, false, false],
      );
      const cx22 = byName("cx22");
      assert.equal(cx22?.deprecated, true);
      assert.ok(
        cx22?.locations.every(
          (l) => !l.available && l.deprecation?.unavailable_after.startsWith("2025-12-31"),
        ),
      );
      const refused = await call("POST", "/servers", {
        name: "old",
        server_type: "cx22",
        image: "debian-12",
      });
      assert.equal(refused.status, 412);
    });
  },
);
