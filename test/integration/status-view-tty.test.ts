import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { run } from "../../src/adapters/runner.js";
import { withTempDir } from "../helpers/cli.js";
import { screen } from "../helpers/terminal-screen.js";

// The built module, as it ships (npm test builds dist/ first).
const MODULE = pathToFileURL(resolve(import.meta.dirname, "../../dist/cli/build-status.js")).href;

/**
 * A program that drives a status view on its real stderr: 10 bursts of 20 updates, 10 ms apart,
 * with a log line every other burst.
 */
const DRIVER = `
import { createStatusView } from ${JSON.stringify(MODULE)};
const view = createStatusView(process.stderr, { intervalMs: 50 });
const names = ["leaf-with-a-rather-long-name-0", "leaf-1\\u001b[2J", "leaf-2"];
for (let burst = 0; burst < 10; burst++) {
  for (let j = 0; j < 20; j++) {
    const i = burst * 20 + j;
    view.update({
      elapsedMs: i * 10, total: 200, done: i, running: 2, queued: 200 - i, failed: 0,
      builders: [
        { name: "local1", slots: 2, state: "up", running: [{ slot: 1, name: names[i % 3] }, { slot: 2, name: names[(i + 1) % 3] }] },
        { name: "local2", slots: 2, state: burst < 2 ? "connecting" : "up", running: [] },
      ],
    });
  }
  if (burst % 2 === 0) view.line("log line " + burst);
  await new Promise((r) => setTimeout(r, 10));
}
view.close();
process.stderr.write("finished\\n");
`;

const LOG = ["log line 0", "log line 2", "log line 4", "log line 6", "log line 8", "finished", ""];

test("on a real terminal (a pty from script(1)) the block redraws in place and ends erased", async () => {
  await withTempDir(async (dir) => {
    const driver = join(dir, "driver.mjs");
    await writeFile(driver, DRIVER);
    // script runs the driver on a new pty; stty gives it a known size.
    const r = await run(["script", "-qfec", `stty cols 40 rows 20; exec node ${driver}`, "/dev/null"], {
      timeout: 60_000,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    const raw = r.stdout;
    assert.ok(raw.includes("\u001b[3A\u001b[J"), "moves up over the 3-line block and erases it");
    const redraws = raw.split("\u001b[J").length - 1;
    // Each burst of 20 updates draws at most twice (now, and once when the interval has passed),
    // whatever the load; plus 5 log lines and the final erase.
    assert.ok(redraws >= 6 && redraws <= 10 * 2 + 5 + 1, `${redraws} redraws`);
    assert.deepEqual(screen([raw]), LOG);
    // Every block drawn fits the 40 columns (39 characters and no wrap), and no name moved the cursor.
    const blocks = raw.split("\u001b[J");
    for (const b of blocks) {
      for (const line of b.split("\r\n")) {
        assert.ok(!line.includes("\u001b[2J"), JSON.stringify(line));
        if (line.startsWith("  local") || line.startsWith("["))
          assert.ok(line.length <= 39, JSON.stringify(line));
      }
    }
    assert.ok(
      blocks.some((b) => b.includes("  local1  up          2/2  leaf-with-a…")),
      raw,
    );
  });
});

test("when stderr is a pipe: only the log lines, no escape byte", async () => {
  await withTempDir(async (dir) => {
    const driver = join(dir, "driver.mjs");
    await writeFile(driver, DRIVER);
    const r = await run(["node", driver], { timeout: 60_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stderr, LOG.join("\n"));
  });
});
