import { test } from "node:test";
import assert from "node:assert/strict";
import { builtOutputs, parsePathInfoJson } from "../../src/core/path-info.js";

// `nix path-info --json` in both shapes: Nix before 2.19 (an array) and 2.19 on (an object by path).

const OUT = "/nix/store/0c2gc3yljc1zhpd0ah5x1x5f4cq2h0f5-hello-2.12";
const DRV = "/nix/store/1xbk4rbmbnrxr5z8nqwbxk2b0x4vwn3z-hello-2.12.drv";
const SRC = "/nix/store/2ykxyqkzfxhb7ps6xcmjnywvdz8hv7yk-source";

test("Nix 2.8's array: outputs with a deriver, derivations and sources left out", () => {
  const text = JSON.stringify([
    { path: OUT, deriver: DRV, narHash: "sha256-x", narSize: 1, references: [], valid: true },
    { path: DRV, narSize: 2, references: [] },
    { path: SRC, narSize: 3, references: [] },
  ]);
  const entries = parsePathInfoJson(text);
  assert.deepEqual(entries, [
    { path: OUT, deriver: DRV },
    { path: DRV, deriver: undefined },
    { path: SRC, deriver: undefined },
  ]);
  assert.deepEqual(builtOutputs(entries ?? []), [OUT]);
});

test("Nix ≥ 2.19's object keyed by path: the same outputs; null (invalid) and a null deriver skipped", () => {
  const text = JSON.stringify({
    [OUT]: { deriver: DRV, narHash: "sha256-x", narSize: 1, references: [] },
    [DRV]: { deriver: null, narSize: 2, references: [] },
    [SRC]: null,
  });
  const entries = parsePathInfoJson(text);
  assert.deepEqual(entries, [
    { path: OUT, deriver: DRV },
    { path: DRV, deriver: undefined },
  ]);
  assert.deepEqual(builtOutputs(entries ?? []), [OUT]);
});

test("anything else is refused (undefined), not read as an empty store", () => {
  assert.equal(parsePathInfoJson("not json"), undefined);
  assert.equal(parsePathInfoJson('"a string"'), undefined);
  assert.equal(parsePathInfoJson(JSON.stringify([{ deriver: DRV }])), undefined, "an entry without a path");
  assert.deepEqual(parsePathInfoJson("[]"), []);
});
