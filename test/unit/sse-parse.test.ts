import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser } from "../../src/core/sse-parse.js";

test("events in any chunks, with LF, CRLF and CR line ends, comments and multi-line data", () => {
  const text =
    ': keep-alive\n\nevent: build\ndata: {"a":1}\nid: 1\n\r\ndata: one\r\ndata: two\r\rdata:x\n\nevent: end\ndata: {}\n\n';
  for (const size of [1, 2, 3, 7, text.length]) {
    const p = new SseParser();
    const got = [];
    for (let i = 0; i < text.length; i += size) got.push(...p.push(text.slice(i, i + size)));
    assert.deepEqual(
      got,
      [
        { event: "build", data: '{"a":1}', id: "1" },
        { event: "message", data: "one\ntwo", id: "1" },
        { event: "message", data: "x", id: "1" },
        { event: "end", data: "{}", id: "1" },
      ],
      `chunks of ${size}`,
    );
  }
});

test("an event without data is dropped; an unfinished event is not returned", () => {
  const p = new SseParser();
  assert.deepEqual(p.push("event: lonely\n\ndata: half"), []);
  assert.deepEqual(p.push("\n"), []);
  assert.deepEqual(p.push("\n"), [{ event: "message", data: "half" }]);
});

test("an oversized event is refused, not buffered without end", () => {
  const p = new SseParser(100);
  assert.throws(() => p.push(`data: ${"x".repeat(200)}\n`), RangeError);
  assert.throws(() => new SseParser(100).push("x".repeat(200)), RangeError);
});
