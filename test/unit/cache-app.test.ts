import { test } from "node:test";
import assert from "node:assert/strict";
import { secretKeyFromSeed } from "../../src/core/binary-cache/signing-key.js";
import { createCacheApp } from "../../src/serve/cache/cache-app.js";
import { CacheIndex } from "../../src/serve/cache/cache-index.js";
import { CacheStats } from "../../src/serve/cache/cache-stats.js";
import { CacheStores } from "../../src/serve/cache/cache-stores.js";

// The cache's gate and name checks, on an empty pool (no results, no store that answers):
// what a request without the right token, or with a name that is not a store hash, gets.

const CACHE_TOKEN = "c".repeat(43);
const API_TOKEN = "a".repeat(43);

const CLIENT_TOKEN = "k".repeat(43);

function app(open = false) {
  const stores = new CacheStores({
    builders: () => [],
    openLocal: () => Promise.reject(new Error("no store in a unit test")),
    openBuilder: () => Promise.reject(new Error("no store in a unit test")),
  });
  const index = new CacheIndex({
    resultsFile: "/nonexistent/nixpool-unit/results.jsonl",
    key: secretKeyFromSeed("unit-1", new Uint8Array(32)),
    stores,
    log: () => undefined,
  });
  return createCacheApp({
    index,
    stores,
    stats: new CacheStats(),
    auth: {
      apiToken: API_TOKEN,
      cacheToken: CACHE_TOKEN,
      open,
      clientOf: (t: string) => (t === CLIENT_TOKEN ? "ci" : undefined),
    },
    priority: 30,
    log: () => undefined,
  });
}

const basic = (password: string, login = "nixpool") =>
  `Basic ${Buffer.from(`${login}:${password}`).toString("base64")}`;
const get = (a: ReturnType<typeof app>, path: string, authorization?: string, transport = "tcp") =>
  a.request(path, authorization ? { headers: { Authorization: authorization } } : {}, { transport });

test("over TCP the cache wants its token, the API's or a client's (serve token --client), as Basic (netrc) or Bearer; the socket and --cache-open do not", async () => {
  const a = app();
  const info = "/cache/nix-cache-info";
  for (const ok of [
    basic(CACHE_TOKEN),
    basic(CACHE_TOKEN, "anyone"),
    basic(API_TOKEN),
    `Bearer ${CACHE_TOKEN}`,
    basic(CLIENT_TOKEN),
    `Bearer ${CLIENT_TOKEN}`,
  ]) {
    const r = await get(a, info, ok);
    assert.equal(r.status, 200, ok);
    assert.equal(await r.text(), "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n");
  }
  for (const bad of [
    undefined,
    basic("wrong"),
    basic(""),
    `Bearer wrong`,
    "Basic !!!",
    `Basic ${"A".repeat(5000)}`,
  ]) {
    const r = await get(a, info, bad);
    assert.equal(r.status, 401, String(bad));
    assert.equal(r.headers.get("www-authenticate"), 'Basic realm="nixpool cache"');
    const body = await r.text();
    assert.ok(!body.includes(CACHE_TOKEN) && !body.includes(API_TOKEN));
  }
  assert.equal((await get(a, info, undefined, "socket")).status, 200);
  assert.equal((await get(app(true), info)).status, 200);
});

test("names that are not a store hash are 400, unknown hashes 404, other methods 405, files 404", async () => {
  const a = app();
  const auth = basic(CACHE_TOKEN);
  const cases: [string, number][] = [
    [`/cache/${"0".repeat(32)}.narinfo`, 404],
    ["/cache/hello.narinfo", 400],
    [`/cache/${"0".repeat(31)}.narinfo`, 400],
    [`/cache/nar/${"0".repeat(32)}-${"0".repeat(52)}.nar`, 404],
    [`/cache/nar/${"0".repeat(32)}.nar`, 400],
    ["/cache/nar/%2e%2e%2fetc%2fpasswd", 400],
    ["/cache/nar/a/b", 404],
  ];
  for (const [path, status] of cases) {
    const r = await get(a, path, auth);
    assert.equal(r.status, status, path);
    assert.match(r.headers.get("content-type") ?? "", /json/);
  }
  const put = await a.request(
    "/cache/nix-cache-info",
    { method: "PUT", headers: { Authorization: auth } },
    { transport: "tcp" },
  );
  assert.equal(put.status, 405, "read-only");
  assert.equal(put.headers.get("allow"), "GET, HEAD");
  const withBody = await a.request(
    "/cache/nix-cache-info",
    { method: "GET", headers: { Authorization: auth, "Content-Length": "5" } },
    { transport: "tcp" },
  );
  assert.equal(withBody.status, 413, "a GET with a body");
});
