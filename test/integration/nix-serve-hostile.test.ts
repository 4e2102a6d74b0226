import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ServeSession } from "../../src/adapters/nix-serve-session.js";
import { isNixpoolError } from "../../src/core/errors.js";
import { Collect, expectCode, within } from "../helpers/serve.js";

// A peer that replays hostile bytes the real nix-store cannot be made to send: it greets
// properly (unless told not to), then answers the first request as `mode` says.
const FAKE_PEER = String.raw`
const mode = process.argv[1];
const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
const str = (s) => { const b = Buffer.from(s); return Buffer.concat([u64(b.length), b, Buffer.alloc((8 - (b.length % 8)) % 8)]); };
let buf = Buffer.alloc(0);
let greeted = false;
process.stdin.on("data", (c) => {
  buf = Buffer.concat([buf, c]);
  if (!greeted) {
    if (mode === "garbage-greeting") return void process.stdout.write("HTTP/1.1 400 Bad Request\r\n\r\n");
    if (mode === "old-major") return void process.stdout.write(Buffer.concat([u64(0x5452eecb), u64(0x107)]));
    if (buf.length < 16) return;
    buf = buf.subarray(16);
    greeted = true;
    process.stdout.write(Buffer.concat([u64(0x5452eecb), u64(0x207)]));
    if (mode === "unsolicited") setTimeout(() => process.stdout.write(u64(42)), 100);
    if (buf.length === 0) return;
  }
  buf = Buffer.alloc(0);
  const answers = {
    "huge-string": () => Buffer.concat([u64(1), u64(2 ** 40)]),
    "huge-list": () => u64(2 ** 40),
    "bad-padding": () => Buffer.concat([u64(1), u64(3), Buffer.from("abc"), Buffer.from([0, 0, 0, 0, 7])]),
    "bad-nar": () => Buffer.concat([u64(1), str("nix-archive-1"), str("("), str("type"), str("fifo"), str(")")]),
    "extra-bytes": () => Buffer.concat([u64(0), u64(7)]),
    "die-midway": () => Buffer.concat([u64(2), str("/nix/store/00000000000000000000000000000000-a")]),
    silent: () => Buffer.alloc(0),
    unsolicited: () => u64(0),
    "endless-stderr": () => u64(0),
  };
  if (mode === "endless-stderr") {
    // 64 MiB of log without a newline before the answer.
    const block = Buffer.alloc(1 << 20, 97);
    let left = 64;
    const more = () => (left-- > 0 ? process.stderr.write(block, more) : process.stdout.write(answers[mode]()));
    return void more();
  }
  const answer = answers[mode]();
  process.stdout.write(answer, () => { if (mode === "die-midway") process.exit(3); });
});
process.stdin.on("end", () => process.exit(0));
setInterval(() => {}, 60000);
`;

describe("hostile peers: clean errors, never a hang", { timeout: 120_000 }, () => {
  const fake = (mode: string) => ({
    argv: [process.execPath, "-e", FAKE_PEER, mode],
    name: `fake peer (${mode})`,
  });

  test("a peer that does not greet as nix-store --serve", async () => {
    await within(
      5000,
      expectCode(ServeSession.open(fake("garbage-greeting")), "SERVE_PROTOCOL_ERROR", /did not greet/),
    );
    await within(
      5000,
      expectCode(ServeSession.open(fake("old-major")), "SERVE_PROTOCOL_ERROR", /version 0x107/),
    );
    await within(
      5000,
      expectCode(
        ServeSession.open({ argv: ["/nonexistent/nix-store"] }),
        "SERVE_CONNECTION_LOST",
        /could not be started/,
      ),
    );
  });

  for (const [mode, code, pattern] of [
    ["huge-string", "SERVE_PROTOCOL_ERROR", /1099511627776-byte string/],
    ["huge-list", "SERVE_PROTOCOL_ERROR", /list of 1099511627776 items/],
    ["bad-padding", "SERVE_PROTOCOL_ERROR", /non-zero padding/],
    ["extra-bytes", "SERVE_PROTOCOL_ERROR", /sent 8 bytes after its answer to QueryValidPaths/],
    ["die-midway", "SERVE_CONNECTION_LOST", /lost during QueryValidPaths: its process exited with 3/],
  ] as const) {
    test(`a peer answering with ${mode} → ${code}`, async () => {
      const s = await ServeSession.open(fake(mode));
      try {
        await within(5000, expectCode(s.queryValidPaths([`/nix/store/${"1".repeat(32)}-x`]), code, pattern));
        const reason = await within(5000, s.closed);
        assert.equal(reason.kind, mode === "die-midway" ? "eof" : "protocol-error");
        await expectCode(
          s.queryValidPaths([]),
          code === "SERVE_PROTOCOL_ERROR" ? "SERVE_CONNECTION_LOST" : code,
        );
      } finally {
        s.kill();
      }
    });
  }

  test("a peer sending bytes nobody asked for is dropped", async () => {
    // The stray bytes follow the greeting by 100 ms; on a loaded machine both may still arrive
    // in one read, and then the greeting itself is refused. Either way: a clean protocol error.
    let opened: ServeSession;
    try {
      opened = await ServeSession.open(fake("unsolicited"));
    } catch (e) {
      assert.ok(isNixpoolError(e), String(e));
      assert.equal(e.code, "SERVE_PROTOCOL_ERROR");
      assert.match(e.message, /8 bytes after its answer to the greeting/);
      return;
    }
    const reason = await within(5000, opened.closed);
    assert.equal(reason.kind, "protocol-error");
    assert.match(reason.message, /sent 8 bytes nobody asked for/);
    await expectCode(opened.queryValidPaths([]), "SERVE_CONNECTION_LOST", /sent 8 bytes nobody asked for/);
  });

  test("a peer that goes silent fails the request at its timeout and is closed", async () => {
    const s = await ServeSession.open(fake("silent"));
    const t = performance.now();
    await within(
      5000,
      expectCode(s.queryValidPaths([], { timeoutMs: 300 }), "SERVE_TIMEOUT", /within 300 ms/),
    );
    assert.ok(performance.now() - t >= 290);
    assert.equal((await within(5000, s.closed)).kind, "timeout");
  });

  test("a peer that logs without end (no newline) is cut into bounded lines, and still answers", async () => {
    let longest = 0;
    let total = 0;
    const s = await ServeSession.open({
      ...fake("endless-stderr"),
      onStderrLine: (line) => {
        longest = Math.max(longest, line.length);
        total += line.length;
      },
    });
    try {
      assert.deepEqual(await within(20_000, s.queryValidPaths([`/nix/store/${"1".repeat(32)}-x`])), []);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(longest <= 64 * 1024, `a line of ${longest} characters`);
      assert.ok(total >= 63 * 1024 * 1024, `only ${total} characters arrived`);
    } finally {
      s.kill();
    }
  });

  test("a malformed NAR in an export is refused and never passed on whole", async () => {
    const s = await ServeSession.open(fake("bad-nar"));
    const sink = new Collect();
    await within(
      5000,
      expectCode(
        s.exportPaths([`/nix/store/${"1".repeat(32)}-x`], sink),
        "SERVE_PROTOCOL_ERROR",
        /unknown node type "fifo"/,
      ),
    );
    assert.equal(sink.bytes().length, 0, "the chunk holding the bad bytes was not passed on");
    s.kill();
  });
});
