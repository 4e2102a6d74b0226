import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseInventory } from "../../src/config/inventory-parse.js";
import { normaliseBuilders } from "../../src/config/schema.js";
import { renderInventoryToml } from "../../src/core/inventory-render.js";
import { renderMachinesFile } from "../../src/core/machines.js";
import { planImport } from "../../src/core/machines-import-plan.js";
import { effectiveMachine, parseMachinesFile } from "../../src/core/machines-parse.js";
import { memoryReader } from "../helpers/machines-files.js";
import { MACHINES_CORPUS, randomMachinesFile } from "../helpers/machines-corpus.js";

const SYSTEM = "x86_64-linux";
const DIR = "/corpus";

describe("import then render gives back an equivalent machines file", () => {
  for (const c of MACHINES_CORPUS) {
    it(c.name, async () => {
      const sub = (s: string) => s.replaceAll("${DIR}", DIR);
      const files = Object.fromEntries(
        Object.entries(c.files ?? {}).map(([k, v]) => [`${DIR}/${k}`, sub(v)]),
      );
      const original = await parseMachinesFile(`${DIR}/machines`, sub(c.text), { read: memoryReader(files) });
      assert.deepEqual(
        original.diagnostics.filter((d) => d.severity === "error"),
        [],
      );
      const plan = planImport(original);
      const toml = renderInventoryToml(plan.builders, ["test"]);
      const builders = normaliseBuilders(parseInventory(toml, "nixpool.toml"), SYSTEM);
      const rendered = renderMachinesFile(builders, { uriStyle: "direct" });
      const again = await parseMachinesFile("/rendered", rendered, { read: memoryReader({}) });
      assert.deepEqual(again.diagnostics, []);

      const kept = plan.builders.map((b) => effectiveMachine(b.machine, SYSTEM));
      assert.deepEqual(
        again.machines.map((m) => effectiveMachine(m, SYSTEM)),
        kept,
      );
      // Nothing is lost silently: every entry is either imported or reported.
      assert.equal(plan.builders.length + plan.skipped.length, original.machines.length);
      // Rendering the imported inventory again is stable.
      const second = planImport(again);
      assert.equal(
        renderMachinesFile(
          normaliseBuilders(parseInventory(renderInventoryToml(second.builders), "x.toml"), SYSTEM),
          { uriStyle: "direct" },
        ),
        rendered,
      );
    });
  }
});

describe("import then render, on 300 generated machines files", () => {
  it("is equivalent every time", async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const text = randomMachinesFile(seed, { invalid: false });
      const original = await parseMachinesFile("/m", text, { read: memoryReader({}) });
      const errors = original.diagnostics.filter((d) => d.severity === "error");
      assert.deepEqual(errors, [], `seed ${seed}: ${JSON.stringify(text)}`);
      const plan = planImport(original);
      const builders = normaliseBuilders(
        parseInventory(renderInventoryToml(plan.builders), "nixpool.toml"),
        SYSTEM,
      );
      const again = await parseMachinesFile("/r", renderMachinesFile(builders, { uriStyle: "direct" }), {
        read: memoryReader({}),
      });
      assert.deepEqual(
        again.machines.map((m) => effectiveMachine(m, SYSTEM)),
        plan.builders.map((b) => effectiveMachine(b.machine, SYSTEM)),
        `seed ${seed}: ${JSON.stringify(text)}`,
      );
      assert.equal(plan.builders.length + plan.skipped.length, original.machines.length);
    }
  });
});
