import { test } from "node:test";
import assert from "node:assert/strict";
import { escapeXml, renderTimelineSvg } from "../../src/core/timeline-svg.js";
import { allElements, parseXml, type XmlElement } from "../helpers/xml-check.js";
import { attemptSpans, makeRecord, simulateBuild } from "../helpers/build-records.js";

const pool = [
  { name: "local1", slots: 2 },
  { name: "local2", slots: 2 },
];
const spanRects = (svg: XmlElement) =>
  allElements(svg).filter(
    (e) => e.name === "rect" && (e.attributes["class"] ?? "").split(" ").includes("span"),
  );
const rowLabels = (svg: XmlElement) =>
  allElements(svg)
    .filter((e) => e.name === "text" && e.attributes["class"] === "row-label")
    .map((e) => e.text);

test("a small build: well-formed standalone SVG, one row per slot, one rect per span", () => {
  const { records, wallMs } = simulateBuild(5, pool);
  const svg = parseXml(renderTimelineSvg(records, { title: "examples/graph.nix", wallMs, builders: pool }));
  assert.equal(svg.name, "svg");
  assert.equal(svg.attributes["xmlns"], "http://www.w3.org/2000/svg");
  assert.deepEqual(rowLabels(svg), ["local1 #1", "local1 #2", "local2 #1", "local2 #2"]);
  const rects = spanRects(svg);
  assert.equal(
    rects.length,
    records.reduce((n, r) => n + r.spans.length, 0),
  );
  // Each phase has its own colour, and the legend shows all three and the failed style.
  const fills = new Map<string, Set<string>>();
  for (const r of rects) {
    const phase = (r.attributes["class"] ?? "").split(" ")[1] ?? "";
    fills.set(phase, (fills.get(phase) ?? new Set()).add(r.attributes["fill"] ?? ""));
  }
  assert.deepEqual([...fills.keys()].sort(), ["build", "download", "upload"]);
  const colours = [...fills.values()].map((s) => [...s]);
  assert.ok(colours.every((c) => c.length === 1));
  assert.equal(new Set(colours.flat()).size, 3);
  const legend = allElements(svg).filter((e) => (e.attributes["class"] ?? "").startsWith("legend "));
  assert.equal(legend.length, 4);
  // A tooltip on every bar: name, phase, builder slot and seconds.
  const tip = rects.find((r) => r.attributes["class"] === "span build")?.children[0];
  assert.equal(tip?.name, "title");
  assert.match(tip?.text ?? "", /^leaf-\d+: build on local\d #\d, \d+\.\d\ds \(/);
  // Nothing external: no href, no url() other than the chart's own patterns.
  const text = renderTimelineSvg(records, { title: "t", wallMs, builders: pool });
  assert.doesNotMatch(text, /href|https?:\/\/(?!www\.w3\.org\/2000\/svg)|@import/);
  for (const m of text.matchAll(/url\(#([^)]+)\)/g)) assert.match(text, new RegExp(`<pattern id="${m[1]}"`));
});

test("bars sit on their slot's row, at their time", () => {
  const r = makeRecord({
    name: "only",
    builder: "local2",
    slot: 2,
    spans: attemptSpans("local2", 2, 1000, { build: 1000 }),
  });
  const svg = parseXml(renderTimelineSvg([r], { title: "t", wallMs: 4000, builders: pool }));
  const [bar] = spanRects(svg);
  const labels = allElements(svg).filter((e) => e.attributes["class"] === "row-label");
  const rowY = Number(labels[3]?.attributes["y"]);
  const barY = Number(bar?.attributes["y"]) + Number(bar?.attributes["height"]) / 2;
  assert.ok(Math.abs(rowY - barY) < 10, `bar at y=${barY}, row local2 #2 at y=${rowY}`);
  const frame = allElements(svg).find((e) => e.attributes["class"] === "frame");
  const x0 = Number(frame?.attributes["x"]);
  const w = Number(frame?.attributes["width"]);
  assert.ok(Math.abs(Number(bar?.attributes["x"]) - (x0 + w / 4)) < 1);
  assert.ok(Math.abs(Number(bar?.attributes["width"]) - w / 4) < 1);
  // Axis ticks in seconds from 0 to the wall time.
  const ticks = allElements(svg)
    .filter((e) => e.name === "g" && e.attributes["class"] === "axis")
    .flatMap((g) => g.children.filter((c) => c.name === "text").map((c) => c.text));
  assert.equal(ticks[0], "0s");
  assert.ok(ticks.includes("2s") && ticks.includes("4s"), ticks.join(","));
});

test("names with markup are escaped, and the chart stays well-formed", () => {
  const evil = `a<b>&"c'</title><script>alert(1)</script>\u0001`;
  const r = makeRecord({
    name: evil,
    status: "failed",
    error: "builder for '/nix/store/x.drv' failed <&>",
    spans: attemptSpans("lo<cal>&1", 1, 0, { build: 2000 }),
  });
  const text = renderTimelineSvg([r], { title: `graph "<&>"`, wallMs: 2000, builders: [] });
  assert.doesNotMatch(text, /<script/);
  const svg = parseXml(text);
  const rect = spanRects(svg)[0];
  assert.ok(
    rect?.children[0]?.text.startsWith(`a<b>&"c'</title><script>alert(1)</script>?: build on lo<cal>&1 #1`),
  );
  // A slot not listed in the pool still gets its row.
  assert.deepEqual(rowLabels(svg), ["lo<cal>&1 #1"]);
  assert.equal(escapeXml(`<&>"'`), "&lt;&amp;&gt;&quot;&apos;");
  assert.equal(escapeXml("\ud800x"), "?x");
});

test("failed and retried attempts are drawn in red and say why", () => {
  const r = makeRecord({
    name: "leaf-7",
    status: "failed",
    attempts: 2,
    retries: [{ builder: "local2", reason: "builder local2 lost the connection" }],
    error: "builder for 'leaf-7' failed with exit code 1",
    spans: [
      ...attemptSpans("local2", 1, 0, { upload: 100, build: 400 }),
      ...attemptSpans("local1", 1, 600, { build: 900 }),
    ],
  });
  const ok = makeRecord({ name: "leaf-8", spans: attemptSpans("local1", 2, 0, { build: 900 }) });
  const svg = parseXml(renderTimelineSvg([r, ok], { title: "t", wallMs: 1500, builders: pool }));
  const rects = spanRects(svg);
  const failed = rects.filter((e) => (e.attributes["class"] ?? "").includes("failed"));
  assert.equal(failed.length, 3);
  assert.ok(
    failed.every(
      (e) => e.attributes["stroke"] === "#d62728" && e.attributes["fill"]?.startsWith("url(#failed-"),
    ),
  );
  const tips = failed.map((e) => e.children[0]?.text ?? "");
  assert.match(tips[0] ?? "", /attempt 1 of 2, failed: builder local2 lost the connection$/);
  assert.match(tips[2] ?? "", /attempt 2 of 2, failed: builder for 'leaf-7' failed with exit code 1$/);
  const good = rects.find((e) => e.children[0]?.text.startsWith("leaf-8"));
  assert.equal(good?.attributes["stroke"], undefined);
});

test("5,000 derivations: every span drawn, labels only where they fit, size grows with rows", () => {
  const big = Array.from({ length: 8 }, (_, i) => ({ name: `local${i + 1}`, slots: 4 }));
  const { records, wallMs } = simulateBuild(5000, big, { failOn: "local3", cached: 100 });
  // Speed is a benchmark's business, never a test's: this checks size and structure only.
  const text = renderTimelineSvg(records, { title: "5000", wallMs, builders: big });
  const svg = parseXml(text);
  assert.equal(rowLabels(svg).length, 32);
  assert.equal(
    spanRects(svg).length,
    records.reduce((n, r) => n + r.spans.length, 0),
  );
  const barLabels = allElements(svg).filter(
    (e) => e.name === "g" && e.attributes["class"] === "bar-labels",
  )[0];
  assert.ok((barLabels?.children.length ?? 0) < 1000, `${barLabels?.children.length} labels`);
  assert.ok(text.length < 4_000_000, `${text.length} bytes`);
  const small = parseXml(
    renderTimelineSvg(simulateBuild(5, pool).records, { title: "5", wallMs, builders: pool }),
  );
  assert.ok(Number(svg.attributes["height"]) > Number(small.attributes["height"]) + 28 * 15);
  assert.ok(Number(svg.attributes["width"]) > Number(small.attributes["width"]));
});

test("nothing built: an empty chart that says so", () => {
  const svg = parseXml(
    renderTimelineSvg([makeRecord({ name: "c", status: "cached" })], {
      title: "t",
      wallMs: 0,
      builders: pool,
    }),
  );
  assert.equal(spanRects(svg).length, 0);
  assert.ok(allElements(svg).some((e) => e.text.includes("nothing was built")));
});

test("an attempt that failed before its first span: the others keep their numbers and reasons", () => {
  const r = makeRecord({
    name: "leaf-9",
    status: "built",
    attempts: 3,
    retries: [
      { builder: "local2", reason: "could not connect to local2" },
      { builder: "local1", reason: "builder local1 went silent for 20s" },
    ],
    spans: [
      ...attemptSpans("local1", 1, 0, { build: 400 }),
      ...attemptSpans("local2", 2, 500, { build: 400 }),
    ],
  });
  const svg = parseXml(renderTimelineSvg([r], { title: "t", wallMs: 1000, builders: pool }));
  const tips = spanRects(svg).map((e) => e.children[0]?.text ?? "");
  assert.match(tips[0] ?? "", /attempt 2 of 3, failed: builder local1 went silent for 20s$/);
  assert.match(tips[1] ?? "", /attempt 3 of 3$/);
});

test("axis ticks of a long build read in minutes and hours", () => {
  const r = makeRecord({ name: "long", spans: attemptSpans("local1", 1, 0, { build: 2.5 * 3600_000 }) });
  const svg = parseXml(renderTimelineSvg([r], { title: "t", wallMs: 2.5 * 3600_000, builders: pool }));
  const ticks = allElements(svg)
    .filter((e) => e.name === "g" && e.attributes["class"] === "axis")
    .flatMap((g) => g.children.filter((c) => c.name === "text").map((c) => c.text));
  assert.deepEqual(ticks, [
    "0s",
    "15m",
    "30m",
    "45m",
    "1h",
    "1h15m",
    "1h30m",
    "1h45m",
    "2h",
    "2h15m",
    "2h30m",
  ]);
});

test("back-to-back derivations are told apart: a hairline where each wide attempt starts", () => {
  const recs = [0, 1, 2].map((i) =>
    makeRecord({
      name: `leaf-${i}`,
      spans: attemptSpans("local1", 1, i * 1000, { upload: 100, build: 800, download: 100 }),
    }),
  );
  // Too narrow to see a hairline on: none drawn.
  recs.push(makeRecord({ name: "tiny", spans: attemptSpans("local1", 2, 0, { build: 1 }) }));
  const svg = parseXml(renderTimelineSvg(recs, { title: "t", wallMs: 3000, builders: pool }));
  const group = allElements(svg).find((e) => e.attributes["class"] === "separators");
  assert.equal(group?.children.length, 3);
  assert.equal(spanRects(svg).length, 10);
});
