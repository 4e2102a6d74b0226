import { test } from "node:test";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { ESLint } from "eslint";

// The layer rules of eslint.config.js, run on snippets placed at real paths of the tree.
const eslint = new ESLint({ cwd: resolve(import.meta.dirname, "../..") });

async function layerErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  assert.ok(result, `eslint returned no result for ${filePath}`);
  return result.messages
    .filter((m) => m.ruleId?.startsWith("no-restricted-"))
    .map((m) => `${m.ruleId}: ${m.message}`);
}

test("src/core refuses effect modules, the process global, the clock and imports from outside core", async () => {
  const fs = await layerErrors(
    "src/core/errors.ts",
    'import { readFile } from "node:fs/promises";\nexport const r = readFile;\n',
  );
  assert.equal(fs.length, 1, fs.join("\n"));
  assert.match(fs[0] ?? "", /no-restricted-imports: .*src\/core is pure/);
  const bare = await layerErrors(
    "src/core/errors.ts",
    'import { spawn } from "child_process";\nexport const s = spawn;\n',
  );
  assert.equal(bare.length, 1, bare.join("\n"));
  const up = await layerErrors(
    "src/core/doctor/model.ts",
    'import { run } from "../../adapters/runner.js";\nexport const r = run;\n',
  );
  assert.equal(up.length, 1, up.join("\n"));
  assert.match(up[0] ?? "", /src\/core imports only src\/core/);
  const env = await layerErrors(
    "src/core/errors.ts",
    "export const home = process.env.HOME;\nexport const t = Date.now();\n",
  );
  assert.deepEqual(
    env.map((m) => m.split(":")[0]),
    ["no-restricted-globals", "no-restricted-properties"],
    env.join("\n"),
  );
});

test("src/core may import within core and pure node modules", async () => {
  const ok = await layerErrors(
    "src/core/doctor/model.ts",
    'import { configError } from "../errors.js";\nimport { createHash } from "node:crypto";\nexport const x = [configError, createHash];\n',
  );
  assert.deepEqual(ok, []);
});

test("a command does not import another command", async () => {
  const sibling = await layerErrors(
    "src/commands/ca.ts",
    'import { registerAccess } from "./access.js";\nexport const r = registerAccess;\n',
  );
  assert.equal(sibling.length, 1, sibling.join("\n"));
  assert.match(sibling[0] ?? "", /Commands do not import other commands/);
  const below = await layerErrors(
    "src/commands/ca.ts",
    'import { renderTable } from "../cli/output.js";\nimport { run } from "../adapters/runner.js";\nexport const r = [renderTable, run];\n',
  );
  assert.deepEqual(below, []);
});

test("adapters, providers and deploy's use cases do not import commands or the CLI", async () => {
  for (const [file, code] of [
    [
      "src/deploy/run-deploy.ts",
      'import { formatSeconds } from "../cli/output.js";\nexport const r = formatSeconds;\n',
    ],
    [
      "src/providers/hetzner/rent.ts",
      'import { renderTable } from "../../cli/output.js";\nexport const r = renderTable;\n',
    ],
    [
      "src/adapters/runner.ts",
      'import { registerBuild } from "../commands/build.js";\nexport const r = registerBuild;\n',
    ],
  ] as const) {
    const errors = await layerErrors(file, code);
    assert.equal(errors.length, 1, `${file}: ${errors.join("\n")}`);
    assert.match(errors[0] ?? "", /do not import commands or the CLI/);
  }
});

test("src/serve imports the layers below it, never commands or the CLI", async () => {
  const below = await layerErrors(
    "src/serve/coordinator-types.ts",
    'import { Scheduler } from "../core/dispatch/scheduler.js";\nimport { statePaths } from "../config/state-paths.js";\nimport { run } from "../adapters/runner.js";\nimport { runDispatch } from "../dispatch/run-dispatch.js";\nexport const x = [Scheduler, statePaths, run, runDispatch];\n',
  );
  assert.deepEqual(below, []);
  for (const [file, code] of [
    [
      "src/serve/coordinator-types.ts",
      'import { registerBuild } from "../commands/build.js";\nexport const r = registerBuild;\n',
    ],
    [
      "src/serve/coordinator-types.ts",
      'import { renderTable } from "../cli/output.js";\nexport const r = renderTable;\n',
    ],
  ] as const) {
    const errors = await layerErrors(file, code);
    assert.equal(errors.length, 1, `${file}: ${errors.join("\n")}`);
    assert.match(errors[0] ?? "", /src\/serve does not import commands or the CLI/);
  }
});

test("only commands and the CLI import src/serve", async () => {
  for (const file of [
    "src/dispatch/run-dispatch.ts",
    "src/deploy/run-deploy.ts",
    "src/adapters/runner.ts",
    "src/providers/hetzner/rent.ts",
    "src/config/load.ts",
    "src/doctor/run-doctor.ts",
    "src/access/sync.ts",
    "src/emulator/hetzner/app.ts",
  ]) {
    const up = "../".repeat(file.split("/").length - 2);
    const errors = await layerErrors(
      file,
      `import { Coordinator } from "${up}serve/coordinator.js";\nexport const c = Coordinator;\n`,
    );
    assert.equal(errors.length, 1, `${file}: ${errors.join("\n")}`);
    assert.match(errors[0] ?? "", /Only commands and the CLI import src\/serve/);
  }
  const allowed = await layerErrors(
    "src/commands/build.ts",
    'import { Coordinator } from "../serve/coordinator.js";\nexport const c = Coordinator;\n',
  );
  assert.deepEqual(allowed, []);
});
