import { test } from "node:test";
import assert from "node:assert/strict";
import { Hono } from "hono";
import { CONTENT_SECURITY_POLICY, mountDashboard } from "../../src/serve/dashboard/routes.js";
import { FixtureSource, HOSTILE, sampleDetail, iso } from "../helpers/dashboard-fixtures.js";

function appWith(source: FixtureSource) {
  const app = new Hono();
  mountDashboard(app, source);
  return app;
}

test("pages answer 200 HTML with the strict CSP; the script and style sheet are served as files", async () => {
  const app = appWith(new FixtureSource());
  for (const path of ["/", "/history", "/history?status=failed&limit=5", "/builds/b1"]) {
    const res = await app.request(path);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/, path);
    assert.equal(res.headers.get("content-security-policy"), CONTENT_SECURITY_POLICY, path);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.match(await res.text(), /<script src="\/assets\/dashboard\.js" defer><\/script>/);
  }
  assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-inline|unsafe-eval|\*/);
  const js = await app.request("/assets/dashboard.js");
  assert.equal(js.status, 200);
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.match(await js.text(), /new EventSource\("\/api\/events"\)/);
  const css = await app.request("/assets/dashboard.css");
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
});

test("the overview lists the coordinator's queue, running and finished builds where each belongs", async () => {
  const source = new FixtureSource();
  source.details.set("q1", sampleDetail({ id: "q1", status: "queued", submittedAt: iso(100) }));
  source.details.set(
    "f1",
    sampleDetail({ id: "f1", status: "failed", submittedAt: iso(-100), finishedAt: iso(50) }),
  );
  const page = await (await appWith(source).request("/")).text();
  const rowsOf = (tbody: string) =>
    [
      ...(new RegExp(`<tbody id="${tbody}"[^>]*>([\\s\\S]*?)</tbody>`).exec(page)?.[1] ?? "").matchAll(
        /data-build-id="(\w+)"/g,
      ),
    ].map((m) => m[1]);
  assert.deepEqual(rowsOf("queued-builds"), ["q1"]);
  assert.deepEqual(rowsOf("running-builds"), ["b1"]);
  assert.deepEqual(rowsOf("recent-builds"), ["f1"]);
});

test("a derivation's whole log as text (colours removed); the timeline as SVG", async () => {
  const source = new FixtureSource();
  source.svg.set("b1", '<svg xmlns="http://www.w3.org/2000/svg"></svg>\n');
  const app = appWith(source);
  const log = await app.request(`/builds/b1/log?drv=${encodeURIComponent("/nix/store/aaaa-step-1.drv")}`);
  assert.equal(log.status, 200);
  assert.equal(log.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(await log.text(), "building step-1\nred line\n");
  // The timeline box for the page's script: 200 with or without a chart, 404 for no build.
  const box = await app.request("/builds/b1/timeline");
  assert.equal(box.status, 200);
  assert.match(await box.text(), /^<svg [\s\S]*the chart alone \(SVG\)/);
  const none = await appWith(new FixtureSource()).request("/builds/b1/timeline");
  assert.equal(none.status, 200);
  assert.equal(await none.text(), '<p class="none">The timeline is drawn when the build has finished.</p>');
  assert.equal((await app.request("/builds/nope/timeline")).status, 404);
  const svg = await app.request("/builds/b1/timeline.svg");
  assert.equal(svg.headers.get("content-type"), "image/svg+xml; charset=utf-8");
  assert.equal(svg.headers.get("content-security-policy"), CONTENT_SECURITY_POLICY);
  assert.match(await svg.text(), /^<svg /);
  // The build page shows it inline.
  assert.match(await (await app.request("/builds/b1")).text(), /<div id="timeline" class="timeline"><svg /);
});

test("unknown builds, logs, timelines and bad queries get 4xx pages that name them, escaped", async () => {
  const app = appWith(new FixtureSource());
  const cases: [string, number, RegExp][] = [
    [`/builds/${encodeURIComponent(HOSTILE)}`, 404, /knows no build &lt;script&gt;/],
    ["/builds/nope/timeline.svg", 404, /knows no build nope/],
    ["/builds/b1/timeline.svg", 404, /Build b1 has no timeline yet/],
    ["/builds/b1/log?drv=/nix/store/other.drv", 404, /Build b1 has no log for \/nix\/store\/other\.drv/],
    ["/builds/b1/log", 404, /no drv given/],
    [
      "/history?status=bogus",
      400,
      /status must be one of all, queued, running, succeeded, failed, cancelled/,
    ],
    ["/history?limit=0", 400, /limit must be a whole number from 1 to 5000/],
    ["/history?limit=1e3", 400, /limit must be a whole number/],
  ];
  for (const [path, status, pattern] of cases) {
    const res = await app.request(path);
    assert.equal(res.status, status, path);
    const text = await res.text();
    assert.match(text, pattern, path);
    assert.doesNotMatch(text, /<script>/, path);
  }
});
