import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { appendResultRecords, readResultRecords } from "../../src/dispatch/result-records.js";
import { withTempDir } from "../helpers/cli.js";

const rec = (builder: string) => ({
  v: 1 as const,
  output: `/nix/store/${"b".repeat(32)}-hello`,
  outputName: "out",
  drv: `/nix/store/${"a".repeat(32)}-hello.drv`,
  builder,
  trust: "untrusted" as const,
  narHash: `sha256:${"0".repeat(52)}`,
  builtAt: "2026-11-30T15:00:00.000Z",
});

test("results records: appended lines read back, validated, a bad line named by file:line", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "trust", "results.jsonl");
    assert.deepEqual(await readResultRecords(file), [], "no file: no records");
    await appendResultRecords(file, [rec("u1")]);
    await appendResultRecords(file, [rec("t1")]);
    assert.deepEqual(
      (await readResultRecords(file)).map((r) => r.builder),
      ["u1", "t1"],
    );
    await writeFile(
      file,
      `${JSON.stringify(rec("u1"))}\n${JSON.stringify({ ...rec("t1"), narHash: "md5:x" })}\n`,
    );
    await assert.rejects(readResultRecords(file), (e: Error & { code?: string }) => {
      assert.equal(e.code, "STATE_RECORD_INVALID");
      assert.match(e.message, /results\.jsonl:2 is not valid \(narHash: must be sha256:<base32>\)/);
      return true;
    });
    await writeFile(file, "{not json\n");
    await assert.rejects(readResultRecords(file), /results\.jsonl:1 is not valid/);
  });
});
