import { test } from "node:test";
import assert from "node:assert/strict";
import { Context } from "../../src/cli/context.js";
import { progressPrinter } from "../../src/cli/dispatch-output.js";

test("-L without the live view (--json, --quiet): a builder's escape sequences never reach the terminal", () => {
  const err: string[] = [];
  const ctx = new Context({ stateDir: "/nonexistent" }, [], {
    out: () => undefined,
    err: (t) => err.push(t),
    json: () => undefined,
  });
  const p = progressPrinter(ctx, true, false);
  p.onEvent({
    kind: "log",
    drv: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-leaf-1.drv",
    name: "leaf-1",
    builder: "b1",
    line: "\x1b]0;owned\x07\x1b[2Jhello\x1b[31m red\x07",
  });
  p.close();
  assert.deepEqual(err, ["leaf-1> hello red?"]);
});
