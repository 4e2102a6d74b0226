import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openBrowser, waitForText, type BrowserSession } from "../helpers/browser.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { freshSeed } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";

// The dashboard in a real Chromium against a real `nixpool serve` on a real local pool: the token
// opens a cookie session, a build submitted meanwhile by `nixpool build --coordinator` shows up, its
// status and log lines arrive over the event stream without a reload, its timeline is drawn, and
// nothing fails in the browser. NIXPOOL_SCREENSHOTS=1 saves the docs' screenshots (docs/img/).

/** Three derivations that talk while they build (a line every 0.4 s), and a root over them. */
const TALKING_NIX = `{ seed }:
let
  mk = name: script: extra: builtins.derivation ({
    inherit name seed;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  } // extra);
  talk = i: mk "talk-\${toString i}" ''
    for n in 1 2 3 4 5 6 7 8; do echo "talk-\${toString i} line $n <b>&amp;</b>"; /bin/sleep 0.4; done
    echo ok > $out
  '' { };
in
mk "talk-root" ''
  echo "root over the talkers"
  for d in $deps; do read x < "$d"; done
  echo ok > $out
'' { deps = builtins.genList talk 3; }
`;

describe("dashboard against a real nixpool serve", { timeout: 600_000 }, () => {
  let pool: TestPool;
  let serve: ServeProcess | undefined;
  let base: string;
  let token: string;
  let browser: BrowserSession;
  let work: { dir: string; cleanup: () => Promise<void> };

  before(async () => {
    pool = await startTestPool(2, 2);
    work = await makeTempDir("nixpool-dash-");
    await writeFile(join(work.dir, "talking.nix"), TALKING_NIX);
    serve = await startServe(pool.stateDir);
    base = serve.url;
    const printed = await pool.cli(["serve", "token"]);
    assert.equal(printed.exitCode, 0, printed.stderr);
    token = printed.stdout.trim();
    browser = await openBrowser();
  });

  after(async () => {
    await browser?.close();
    if (serve) assert.equal(await serve.stop(), 0, "nixpool serve stops cleanly on SIGTERM");
    await pool?.cleanup();
    await work?.cleanup();
  });

  test("without the cookie every page is refused with 401", async () => {
    for (const path of ["/", "/history", "/builds/x"]) {
      const res = await fetch(`${base}${path}`, { redirect: "manual" });
      assert.equal(res.status, 401, path);
      await res.body?.cancel();
    }
    // In the browser too, on a page of its own (its refusal, and its icon's, are expected there).
    const other = await browser.context.newPage();
    const refused = await other.goto(`${base}/`);
    assert.equal(refused?.status(), 401);
    await other.close();
  });

  test("the token opens a session; a build submitted meanwhile arrives live with logs and timeline", async () => {
    const { page } = browser;
    await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
    assert.equal(page.url(), `${base}/`, "the token left the address bar");
    const cookies = await browser.context.cookies(base);
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]?.httpOnly, true);
    assert.notEqual(cookies[0]?.value, token, "the cookie does not carry the token itself");
    await waitForText(page, "#live", "live");
    await page.evaluate("window.notReloaded = true");
    const builders = await page.locator("#builders td.name").allTextContents();
    assert.deepEqual(builders.sort(), pool.pool.hosts.map((h) => h.name).sort());

    // Submit a build through the coordinator, as a user would, while the overview is open.
    const file = join(work.dir, "talking.nix");
    const client = runCli(pool.stateDir, [
      "build",
      "--coordinator",
      base,
      file,
      "--argstr",
      "seed",
      freshSeed(),
      "--no-out-link",
    ]);
    const row = await waitForText(page, "#running-builds", /talking\.nix/, 60_000);
    assert.ok(row);
    await waitForText(page, '[data-count="slots-in-use"]', /^[1-9]/);
    await waitForText(page, "#builders", /talk-\d/);
    await browser.screenshot("dashboard-overview");
    await page.evaluate("window.notReloaded === true").then((v) => assert.equal(v, true));

    // Its page: log lines arrive while it builds, then its end and its timeline.
    const id = await page.locator("#running-builds tr[data-build-id]").first().getAttribute("data-build-id");
    assert.ok(id);
    await page.goto(`${base}/builds/${id}`);
    await waitForText(page, "#live", "live");
    await page.evaluate("window.notReloaded = true");
    await waitForText(page, "#logs", /talk-\d line \d <b>&amp;<\/b>/);
    const status = await page.locator("#build-status").textContent();
    assert.match(status ?? "", /queued|running/, "the log lines arrived while the build ran");
    await waitForText(page, "#build-status", "succeeded", 120_000);
    await waitForText(page, '[data-build-count="done"]', "4");
    const statuses = await page.locator('#derivations [data-field="status"]').allTextContents();
    assert.deepEqual(statuses.map((s) => s.trim()).sort(), ["built", "built", "built", "built"]);
    await waitForText(page, "#timeline svg .row-label", /^local\d #\d$/);
    assert.ok((await page.locator("#timeline svg rect.span.build").count()) >= 4);
    // Every talker's lines, as text (the markup in them is not markup here).
    const logText = (await page.locator("#logs").textContent()) ?? "";
    for (const i of [0, 1, 2]) assert.match(logText, new RegExp(`talk-${i} line 8 <b>&amp;</b>`));
    assert.equal(await page.locator("#logs b").count(), 0);
    assert.equal(await page.evaluate("window.notReloaded"), true, "the build page was reloaded");
    await browser.screenshot("dashboard-build");

    const done = await client;
    assert.equal(done.exitCode, 0, done.stderr);

    await page.goto(`${base}/history`);
    await waitForText(page, `#history-builds tr[data-build-id="${id}"] [data-field="status"]`, "succeeded");
    await browser.screenshot("dashboard-history");
    assert.deepEqual(browser.problems, []);
    assert.deepEqual(browser.failedRequests, []);
  });
});
