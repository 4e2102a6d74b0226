import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");
const LIMIT = 600;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    // Generated code (src/providers/hetzner/generated/) is exempt: nobody edits it by hand.
    if (e.isDirectory()) return e.name === "generated" ? [] : sourceFiles(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

test(`no hand-written source file under src/ is over ${LIMIT} lines`, () => {
  const sizes = sourceFiles(join(root, "src")).map((f) => ({
    file: relative(root, f),
    lines: readFileSync(f, "utf8").split("\n").length,
  }));
  assert.ok(sizes.length > 50, `only ${sizes.length} files found`);
  const over = sizes.filter((s) => s.lines > LIMIT);
  assert.deepEqual(over, [], "split these by concept");
});
