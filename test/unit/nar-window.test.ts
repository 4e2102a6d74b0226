import { test } from "node:test";
import assert from "node:assert/strict";
import { NarWindow } from "../../src/serve/cache/nar-window.js";

async function through(
  chunks: Buffer[],
  first: number,
  last: number,
): Promise<{ out: Buffer; counted: number }> {
  let counted = 0;
  const w = new NarWindow(first, last, (n) => (counted += n));
  const got: Buffer[] = [];
  w.on("data", (d: Buffer) => got.push(d));
  const done = new Promise((resolve) => w.on("end", resolve));
  for (const c of chunks) w.write(c);
  w.end();
  await done;
  return { out: Buffer.concat(got), counted };
}

test("a NAR window passes on bytes first…last of what streams through it, whatever the chunks", async () => {
  const whole = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  const cuts = [[100], [1, 99], [10, 10, 80], [33, 33, 34], Array(100).fill(1) as number[]];
  for (const sizes of cuts) {
    let at = 0;
    const chunks = sizes.map((n) => whole.subarray(at, (at += n)));
    for (const [a, b] of [
      [0, 99],
      [10, 99],
      [10, 19],
      [99, 99],
      [0, 0],
    ] as const) {
      const r = await through(chunks, a, b);
      assert.deepEqual(r.out, whole.subarray(a, b + 1), `${sizes.length} chunks, ${a}-${b}`);
      assert.equal(r.counted, b - a + 1);
    }
  }
});

test("a window that ends before the stream does ends its output at its last byte and says so once; later bytes are dropped", async () => {
  let read = 0;
  let full = 0;
  const w = new NarWindow(10, 19, () => undefined, {
    onRead: (n) => (read += n),
    onFull: () => full++,
  });
  const got: Buffer[] = [];
  w.on("data", (d: Buffer) => got.push(d));
  const ended = new Promise((resolve) => w.on("end", resolve));
  const whole = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  for (let at = 0; at < 40; at += 8) w.write(whole.subarray(at, at + 8));
  await ended;
  assert.deepEqual(Buffer.concat(got), whole.subarray(10, 20));
  assert.equal(full, 1);
  assert.equal(read, 40, "every byte written is reported as read, in the window or not");
  w.end();
});
