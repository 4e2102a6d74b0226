import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseDispatcher } from "../../src/core/dispatch/choose-dispatcher.js";

test("nixpool's dispatcher by default; the hook when asked, or when a daemon owns the store for a non-root user", () => {
  assert.deepEqual(chooseDispatcher(undefined, false, 1000), { kind: "nixpool", reason: "the default" });
  assert.deepEqual(chooseDispatcher(undefined, true, 0), { kind: "nixpool", reason: "the default" });
  assert.equal(chooseDispatcher("nixpool", false, 0).reason, "--dispatcher nixpool");
  const hook = chooseDispatcher("hook", false, 0);
  assert.equal(hook.kind, "hook");
  assert.match(hook.reason, /--dispatcher hook/);
  const daemon = chooseDispatcher(undefined, true, 1000);
  assert.equal(daemon.kind, "hook");
  assert.match(daemon.reason, /daemon owns the store.*config apply/);
});

test("insisting on the dispatcher where it cannot import, or naming an unknown one, is a usage error", () => {
  assert.throws(
    () => chooseDispatcher("nixpool", true, 1000),
    (e: Error & { code?: string; exitCode?: number; hint?: string }) =>
      e.code === "DISPATCHER_NEEDS_STORE" && e.exitCode === 2 && /--dispatcher hook/.test(e.hint ?? ""),
  );
  assert.throws(
    () => chooseDispatcher("fast", false, 0),
    (e: Error & { code?: string }) => e.code === "USAGE" && /"nixpool" or "hook"/.test(e.message),
  );
});
