import { test } from "node:test";
import assert from "node:assert/strict";
import { CacheStats } from "../../src/serve/cache/cache-stats.js";
import { formatSize } from "../../src/serve/dashboard/format.js";
import { renderOverviewPage } from "../../src/serve/dashboard/overview-page.js";

const empty = { builders: [], queued: [], running: [], recent: [], workers: [], nowMs: 0 };

test("the cache's counters: hits, misses, bytes per path, the most requested first", () => {
  const s = new CacheStats();
  s.narinfo(true);
  s.narinfo(true);
  s.narinfo(false);
  const a = "/nix/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a";
  const b = "/nix/store/1bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-<b>";
  s.narStarted(a)(100);
  const sendB = s.narStarted(b);
  sendB(10);
  sendB(20);
  s.narStarted(b)(5);
  s.narsServed = 3;
  const v = s.view(7);
  assert.deepEqual(
    { ...v, topPaths: undefined },
    {
      servable: 7,
      narinfoRequests: 3,
      narinfoHits: 2,
      narinfoMisses: 1,
      narsServed: 3,
      bytesServed: 135,
      narsCut: 0,
      rangeRequests: 0,
      topPaths: undefined,
    },
  );
  assert.deepEqual(v.topPaths, [
    { path: b, nars: 2, bytes: 35 },
    { path: a, nars: 1, bytes: 100 },
  ]);
  const page = renderOverviewPage({ ...empty, cache: v }).markup;
  assert.match(page, /<span data-count="cache-hits">2<\/span> hits/);
  assert.match(page, /<span data-count="cache-nars">3<\/span> NARs served/);
  assert.ok(page.includes("&lt;b&gt;") && !page.includes("-<b>"), "path names are escaped");
  assert.match(renderOverviewPage(empty).markup, /Not served \(nixpool serve --no-cache\)/);
});

test("the cache's watchers hear of changes once per interval, with the numbers of its end", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const s = new CacheStats(500);
  const seen: number[] = [];
  const stop = s.watch(() => seen.push(s.view(0).narinfoRequests));
  s.narinfo(true);
  s.narinfo(false);
  s.narStarted("/nix/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a")(10);
  t.mock.timers.tick(499);
  assert.deepEqual(seen, [], "not before the interval ends");
  t.mock.timers.tick(1);
  assert.deepEqual(seen, [2], "one notice for three changes");
  stop();
  s.narinfo(true);
  t.mock.timers.tick(1000);
  assert.deepEqual(seen, [2], "none after unsubscribing");
  s.close();
});

test("the dashboard's byte counts: bytes, then KiB, MiB, GiB with one decimal", () => {
  assert.deepEqual([0, 1023, 1024, 1536, 5 * 1024 ** 2, 3 * 1024 ** 3].map(formatSize), [
    "0 B",
    "1023 B",
    "1.0 KiB",
    "1.5 KiB",
    "5.0 MiB",
    "3.0 GiB",
  ]);
});
