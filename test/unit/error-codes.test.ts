import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ERROR_CODES, ExitCode, NixpoolError, configError } from "../../src/core/errors.js";

const root = resolve(import.meta.dirname, "../..");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === "generated" ? [] : sourceFiles(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

test("every error code is documented in docs/exit-codes.md", () => {
  const doc = readFileSync(join(root, "docs/exit-codes.md"), "utf8");
  const missing = ERROR_CODES.filter((c) => !doc.includes(`\`${c}\``));
  assert.deepEqual(missing, [], `add these codes to docs/exit-codes.md: ${missing.join(", ")}`);
});

test("every listed error code is raised somewhere in src/ (no stale entries)", () => {
  const text = sourceFiles(join(root, "src"))
    .filter((f) => !f.endsWith(join("core", "errors.ts")))
    .map((f) => readFileSync(f, "utf8"))
    .join("\n");
  const unused = ERROR_CODES.filter((c) => !text.includes(`"${c}"`));
  assert.deepEqual(unused, [], `remove these codes from ERROR_CODES or use them: ${unused.join(", ")}`);
});

test("codes are unique, and configError exits 2 while NixpoolError defaults to 1", () => {
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
  assert.equal(new NixpoolError("PROCESS_FAILED", "x").exitCode, ExitCode.failed);
  assert.equal(configError("USAGE", "x").exitCode, ExitCode.usage);
});

test("no literal exit codes in src/: ExitCode names them", () => {
  const offenders: string[] = [];
  for (const f of sourceFiles(join(root, "src"))) {
    if (f.endsWith(join("core", "errors.ts"))) continue;
    readFileSync(f, "utf8")
      .split("\n")
      .forEach((line, i) => {
        if (/\bexitCode:\s*\d|process\.exitCode\s*=\s*\d|process\.exit\(\s*\d/.test(line)) {
          offenders.push(`${f.slice(root.length + 1)}:${i + 1}: ${line.trim()}`);
        }
      });
  }
  assert.deepEqual(offenders, []);
});
