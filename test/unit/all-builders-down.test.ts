import { test } from "node:test";
import assert from "node:assert/strict";
import type { BuilderLink } from "../../src/dispatch/builder-link.js";
import { allBuildersDown } from "../../src/dispatch/dispatch-errors.js";

// Only the fields the message reads: a link's name and why it was lost (none while connected).
const link = (name: string, lostReason?: string) => ({ name, lostReason }) as unknown as BuilderLink;

test("every builder lost: each named with its reason", () => {
  const e = allBuildersDown([link("local1", "connection lost"), link("local2", "killed")]);
  assert.equal(e.code, "ALL_BUILDERS_DOWN");
  assert.equal(e.message, "No capable builder is reachable: local1 (connection lost), local2 (killed).");
});

test("a connected builder the rest may not go to is named as connected, with what is stuck", () => {
  const e = allBuildersDown([link("local1", "connection lost"), link("local2")], ["secret-a", "secret-b"]);
  assert.match(
    e.message,
    /local1 \(connection lost\); local2 is connected but may not build secret-a, secret-b/,
  );
  assert.doesNotMatch(e.message, /not connected/);
  assert.match(e.hint ?? "", /docs\/trust\.md/);
});
