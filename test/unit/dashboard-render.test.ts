import { test } from "node:test";
import assert from "node:assert/strict";
import { renderTimelineSvg } from "../../src/core/timeline-svg.js";
import { pickLogDerivations, renderBuildPage } from "../../src/serve/dashboard/build-page.js";
import { cleanLogLine, logTail } from "../../src/serve/dashboard/format.js";
import { renderHistoryPage, summariseDurations } from "../../src/serve/dashboard/history-page.js";
import { markup, trustedMarkup } from "../../src/serve/dashboard/html.js";
import { renderOverviewPage } from "../../src/serve/dashboard/overview-page.js";
import { simulateBuild } from "../helpers/build-records.js";
import type { DerivationView } from "../../src/serve/coordinator-types.js";
import {
  HOSTILE,
  T0,
  iso,
  sampleBuilder,
  sampleDerivation,
  sampleDetail,
  sampleSummary,
  sampleWorker,
} from "../helpers/dashboard-fixtures.js";

/** Every <script …> tag of a page: only the layout's, which loads the served file. */
const scriptTags = (page: string) => page.match(/<script\b[^>]*>/g) ?? [];
/** The text of the element with this id (its first line), tags removed. */
const textOf = (page: string, pattern: RegExp) => (pattern.exec(page)?.[1] ?? "").replace(/<[^>]*>/g, "");

test("markup escapes every value, keeps nested Html, flattens lists and drops null/undefined/false", () => {
  const name = `a<b>&"c"'d`;
  const out = markup`<p title="${name}">${name}${[markup`<i>${1}</i>`, null, undefined, false, "x"]}</p>`
    .markup;
  assert.equal(
    out,
    `<p title="a&lt;b&gt;&amp;&quot;c&quot;&apos;d">a&lt;b&gt;&amp;&quot;c&quot;&apos;d<i>1</i>x</p>`,
  );
  assert.equal(markup`${trustedMarkup("<svg/>")}`.markup, "<svg/>");
  // A plain string is never markup, even one that looks like it.
  assert.equal(markup`${"<svg/>"}`.markup, "&lt;svg/&gt;");
});

test("overview: builders with slots, health, speed, trust and current derivations; queue; running; workers with cost", () => {
  const page = renderOverviewPage({
    builders: [
      sampleBuilder(),
      sampleBuilder({
        name: "local2",
        inUse: 0,
        health: "backoff",
        speedFactor: 2.5,
        trust: "untrusted",
        current: [],
        lastError: "ssh: connection refused",
        nextProbeAt: iso(30_000),
      }),
    ],
    queued: [sampleSummary({ id: "q1", status: "queued", label: "small.nix" })],
    running: [sampleSummary()],
    recent: [sampleSummary({ id: "old", status: "succeeded", finishedAt: iso(65_500) })],
    workers: [sampleWorker(), sampleWorker({ name: "nixpool-w2", costSoFar: 0.0132 })],
    nowMs: T0 + 10_500,
  }).markup;
  assert.match(page, /^<!doctype html>/);
  assert.deepEqual(scriptTags(page), ['<script src="/assets/dashboard.js" defer>']);
  assert.match(page, /<body data-page="overview">/);
  // Builders: 1/2 slots, one running derivation linked to its build; the other one idle, in backoff.
  assert.match(page, /<tr data-builder="local1">[\s\S]*?<span data-field="slots-text">1\/2<\/span>/);
  assert.match(page, /<a href="\/builds\/b1" title="\/nix\/store\/aaaa-step-1\.drv">step-1<\/a>/);
  assert.match(
    page,
    /<tr data-builder="local2">[\s\S]*?health-backoff" title="ssh: connection refused; next probe 2026-11-30T14:00:30.000Z">backoff[\s\S]*?<td data-field="speed">2\.5<\/td>\s*<td data-field="trust">untrusted<\/td>\s*<td data-field="current"><span class="none">idle/,
  );
  assert.equal(textOf(page, /<h2>Builders <small>(.*?)<\/small>/), "1 of 2 up, 1/4 slots in use");
  // The queue and running tables hold their builds; counts above them.
  assert.match(page, /<tbody id="queued-builds"[^>]*>\s*<tr data-build-id="q1" data-status="queued">/);
  assert.match(page, /<tbody id="running-builds"[^>]*>\s*<tr data-build-id="b1" data-status="running">/);
  assert.equal(textOf(page, /<p class="summary">(.*?)<\/p>/), "1 queued, 1 running.");
  // Running for 10.0s (from startedAt to now), ticking; the finished one took 65.0s.
  assert.match(page, /data-build-id="b1"[\s\S]*?data-since="2026-11-30T14:00:00.500Z">10.0s</);
  assert.match(page, /data-build-id="old"[\s\S]*?<td data-field="duration"><span class="duration">65.0s</);
  // Workers: each cost, and the total.
  assert.match(page, /<tr data-worker="nixpool-w1">[\s\S]*?€0\.0068/);
  assert.equal(textOf(page, /<h2>Cloud workers <small>(.*?)<\/small>/), "2 rented, €0.0200 so far");
  // The template the script clones for a new build is there, once.
  assert.equal(page.match(/<template id="build-row-template">/g)?.length, 1);
});

test("overview: empty pool, no builds, no workers say so", () => {
  const page = renderOverviewPage({
    builders: [],
    queued: [],
    running: [],
    recent: [],
    workers: [],
    nowMs: T0,
  }).markup;
  assert.match(page, /no builders: start some with nixpool local up/);
  assert.match(page, /Nothing waits\./);
  assert.match(page, /Nothing runs\./);
  assert.match(page, /No rented cloud workers\./);
});

test("every external value is escaped on every page: builder, build, derivation, log line, error", () => {
  const overview = renderOverviewPage({
    builders: [
      sampleBuilder({
        name: HOSTILE,
        trust: HOSTILE,
        systems: [HOSTILE],
        health: "down",
        lastError: HOSTILE,
        current: [{ buildId: HOSTILE, drv: HOSTILE, name: HOSTILE }],
      }),
    ],
    queued: [sampleSummary({ id: HOSTILE, label: HOSTILE, client: HOSTILE, status: "queued" })],
    running: [],
    recent: [],
    workers: [sampleWorker({ name: HOSTILE, serverType: HOSTILE })],
    nowMs: T0,
  }).markup;
  const build = renderBuildPage({
    build: sampleDetail({
      id: HOSTILE,
      label: HOSTILE,
      client: HOSTILE,
      error: { code: "BUILD_FAILED", message: HOSTILE },
      outputs: [HOSTILE],
      derivations: [sampleDerivation({ drv: HOSTILE, name: HOSTILE, builder: HOSTILE, error: HOSTILE })],
    }),
    logs: [{ drv: HOSTILE, name: HOSTILE, lines: [HOSTILE, `</pre>${HOSTILE}`] }],
    nowMs: T0,
  }).markup;
  const history = renderHistoryPage({
    builds: [sampleSummary({ id: HOSTILE, label: HOSTILE, client: HOSTILE })],
    status: "all",
    limit: 10,
    nowMs: T0,
  }).markup;
  for (const page of [overview, build, history]) {
    assert.deepEqual(scriptTags(page), ['<script src="/assets/dashboard.js" defer>']);
    assert.doesNotMatch(page, /<img/);
    // With attribute values blanked (escaped text holds no raw quote), no tag has an event handler.
    assert.doesNotMatch(page.replace(/"[^"]*"/g, '""'), /<[^>]*\sonerror=/i);
    assert.match(
      page,
      /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;&lt;img src=x onerror=alert\(1\)&gt;&apos;&amp;&quot;/,
    );
  }
  // In a link the build id is URL-encoded as well as escaped.
  assert.match(overview, /href="\/builds\/%3Cscript%3Ealert/);
  assert.equal(build.match(/<\/pre>/g)?.length, 2, "one log pane and its template, each closing once");
});

test("build page: derivations with drv, name, builder, status, times; log tails; timeline inline", () => {
  const { records, wallMs } = simulateBuild(4, [{ name: "local1", slots: 2 }]);
  const svg = renderTimelineSvg(records, {
    title: "graph",
    wallMs,
    builders: [{ name: "local1", slots: 2 }],
  });
  const page = renderBuildPage({
    build: sampleDetail({ status: "succeeded", finishedAt: iso(5_000), outputs: ["/nix/store/zzzz-all"] }),
    logs: [{ drv: "/nix/store/aaaa-step-1.drv", name: "step-1", lines: ["building step-1", "done"] }],
    timelineSvg: svg,
    nowMs: T0 + 9_000,
  }).markup;
  assert.match(page, /<body data-page="build" data-build-id="b1">/);
  const row =
    /<tr data-drv="\/nix\/store\/aaaa-step-1\.drv" data-status="built">([\s\S]*?)<\/tr>/.exec(page)?.[1] ??
    "";
  assert.match(row, /href="\/builds\/b1\/log\?drv=%2Fnix%2Fstore%2Faaaa-step-1\.drv"[^>]*>step-1</);
  assert.match(row, /<code>\/nix\/store\/aaaa-step-1\.drv<\/code>/);
  assert.match(row, /<td data-field="builder">local1<\/td>/);
  assert.match(row, /status-built">built</);
  assert.match(row, /<td data-field="started"><time datetime="2026-11-30T14:00:00.600Z"[^>]*>14:00:00</);
  assert.match(row, /<td data-field="finished"><time datetime="2026-11-30T14:00:02.100Z"[^>]*>14:00:02</);
  assert.match(row, /<td data-field="duration"><span class="duration">1\.50s</);
  // The running derivation has no finish time and a ticking duration.
  assert.match(
    page,
    /data-drv="\/nix\/store\/bbbb-step-2\.drv"[\s\S]*?data-since="2026-11-30T14:00:00.600Z">8\.40s</,
  );
  assert.match(
    page,
    /<section class="log" data-log-drv="\/nix\/store\/aaaa-step-1\.drv">[\s\S]*?<pre>building step-1\ndone\n<\/pre>/,
  );
  assert.match(page, /<div id="timeline" class="timeline"><svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(page, /<a href="\/builds\/b1\/timeline\.svg">the chart alone \(SVG\)<\/a>/);
  assert.equal(textOf(page, /<dd id="build-status">(.*?)<\/dd>/), "succeeded");
  assert.match(page, /<code>\/nix\/store\/zzzz-all<\/code>/);
});

test("build page without a timeline or logs says why", () => {
  const running = renderBuildPage({ build: sampleDetail(), logs: [], nowMs: T0 }).markup;
  assert.match(running, /The timeline is drawn when the build has finished\./);
  assert.match(running, /<p class="none" id="no-logs">No log lines yet\.<\/p>/);
  const done = renderBuildPage({
    build: sampleDetail({ status: "failed", finishedAt: iso(1) }),
    logs: [],
    nowMs: T0,
  }).markup;
  assert.match(done, /No timeline was recorded for this build\./);
});

test("history: newest first with durations, the median and longest of the finished, the filter marked", () => {
  const builds = [
    sampleSummary({ id: "h3", status: "running" }),
    sampleSummary({ id: "h2", status: "failed", startedAt: iso(0), finishedAt: iso(3_000) }),
    sampleSummary({ id: "h1", status: "succeeded", startedAt: iso(0), finishedAt: iso(1_000) }),
    sampleSummary({ id: "h0", status: "succeeded", startedAt: iso(0), finishedAt: iso(10_000) }),
  ];
  assert.deepEqual(summariseDurations(builds), { count: 3, medianMs: 3_000, maxMs: 10_000 });
  assert.deepEqual(summariseDurations(builds.slice(0, 3)), { count: 2, medianMs: 2_000, maxMs: 3_000 });
  assert.deepEqual(summariseDurations([]), { count: 0, medianMs: 0, maxMs: 0 });
  const page = renderHistoryPage({ builds, status: "all", limit: 200, nowMs: T0 + 5_000 }).markup;
  assert.deepEqual(
    [...page.matchAll(/<tr data-build-id="(\w*)"/g)].map((m) => m[1]),
    ["h3", "h2", "h1", "h0", ""],
    "the rows in order, then the empty template",
  );
  assert.equal(
    textOf(page, /<p class="summary">(.*?)<\/p>/),
    "4 builds shown (at most 200); of the 3 finished: median 3.00s, longest 10.0s.",
  );
  assert.match(page, /<a href="\/history" aria-current="true">all<\/a>/);
  const failed = renderHistoryPage({ builds: [], status: "failed", limit: 5, nowMs: T0 }).markup;
  assert.match(failed, /<a href="\/history\?status=failed" aria-current="true">failed<\/a>/);
  assert.match(failed, /No builds yet\./);
});

test("log lines lose colour codes and secrets; a tail keeps the last lines", () => {
  assert.equal(cleanLogLine("\x1b[31;1merror:\x1b[0m boom\r"), "error: boom");
  assert.equal(
    cleanLogLine("-----BEGIN OPENSSH PRIVATE KEY-----abc-----END OPENSSH PRIVATE KEY-----"),
    "[private key redacted]",
  );
  assert.deepEqual(logTail("a\nb\nc\n", 2), ["b", "c"]);
  assert.deepEqual(logTail("", 5), []);
});

test("a build page shows the logs of running, then failed, then the latest finished derivations", () => {
  const d = (name: string, status: DerivationView["status"], finished?: number) => {
    const v = sampleDerivation({ drv: `/nix/store/x-${name}.drv`, name, status });
    const { finishedAt: _f, ...running } = v;
    return finished === undefined ? running : { ...v, finishedAt: iso(finished) };
  };
  const { startedAt: _s, ...queued } = d("queued", "queued");
  const all = [
    d("old", "built", 1),
    d("new", "built", 9),
    d("broke", "failed", 5),
    d("busy", "running"),
    queued,
  ];
  assert.deepEqual(
    pickLogDerivations(all).map((x) => x.name),
    ["busy", "broke", "new", "old"],
  );
  assert.deepEqual(
    pickLogDerivations(all, 2).map((x) => x.name),
    ["busy", "broke"],
  );
});
