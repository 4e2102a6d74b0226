import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { isProcessAlive } from "../../src/adapters/process-alive.js";
import { waitFor } from "../../src/adapters/wait-for.js";

const stateOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
};

test("a zombie counts as dead; its live parent as alive; both dead once reaped", async () => {
  // sh forks a short sleep, then execs a long one, which never waits: the short one, once it
  // exits, stays a zombie (it outlives the exec, so sh cannot reap it first).
  const parent = spawn("sh", ["-c", "sleep 0.2 & echo $!; exec sleep 30"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const zombie = await new Promise<number>((resolve, reject) => {
      parent.stdout.once("data", (b: Buffer) => resolve(Number(b.toString().trim())));
      parent.once("error", reject);
    });
    assert.ok(Number.isInteger(zombie) && zombie > 0, `pid ${zombie}`);
    const becameZombie = await waitFor(() => stateOf(zombie) === "Z", { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(becameZombie, true, "the child never became a zombie");
    // Signal 0 still succeeds for a zombie: only the zombie check tells it apart.
    assert.doesNotThrow(() => process.kill(zombie, 0));
    assert.equal(isProcessAlive(zombie), false);
    assert.equal(isProcessAlive(parent.pid ?? -1), true);
  } finally {
    parent.kill("SIGKILL");
  }
  await new Promise((r) => parent.once("exit", r));
  assert.equal(isProcessAlive(parent.pid ?? -1), false);
});

test("this process is alive; nonsense pids are not", () => {
  assert.equal(isProcessAlive(process.pid), true);
  for (const pid of [0, -1, 1.5, Number.NaN, 2 ** 40]) assert.equal(isProcessAlive(pid), false, String(pid));
});

test("waitFor returns the first truthy value, or false at the timeout after trying at least once", async () => {
  let n = 0;
  assert.equal(await waitFor(() => ++n >= 3 && "ready", { timeoutMs: 2000, intervalMs: 1 }), "ready");
  assert.equal(n, 3);
  let tries = 0;
  const start = Date.now();
  assert.equal(
    await waitFor(
      () => {
        tries++;
        return false;
      },
      { timeoutMs: 100, intervalMs: 20 },
    ),
    false,
  );
  assert.ok(Date.now() - start >= 100, "gave up early");
  assert.ok(tries >= 2, `tried ${tries} times`);
  assert.equal(await waitFor(() => true, { timeoutMs: 0 }), true);
});

test("waitFor stops when its signal aborts", async () => {
  const c = new AbortController();
  setTimeout(() => c.abort(new Error("stop")), 30);
  await assert.rejects(
    waitFor(() => false, { timeoutMs: 10_000, intervalMs: 5, signal: c.signal }),
    /stop/,
  );
});
