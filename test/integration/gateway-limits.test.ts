import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import {
  decodeAll,
  decodePathList,
  decodeServerHello,
  encodeClientHello,
  encodeRequest,
  WireWriter,
  type DecodeContext,
} from "../../src/core/nix-serve/index.js";
import { gatewayLogPath } from "../../src/serve/gateway/gateway-log.js";

// A hostile client against the real gateway (dist/, a real `nix-store --serve --write` behind it):
// a request too big to hold is cut while it arrives, and the gateway's memory stays bounded.

const GATEWAY = resolve(import.meta.dirname, "../../dist/serve/gateway/main.js");
const MiB = 1024 * 1024;
/** The budget for the gateway's resident memory. */
const RSS_BOUND = 200 * MiB;

interface Session {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** Bytes of the hostile stream the gateway took before it ended the session. */
  written: number;
}

/**
 * Runs one gateway session: writes the client's greeting, then `chunks` (produced lazily, with
 * backpressure) until they run out or the gateway stops reading; returns once the gateway exited.
 */
async function session(stateDir: string, client: string, chunks: Iterable<Uint8Array>): Promise<Session> {
  const child = spawn("/usr/bin/node", [GATEWAY, "--state-dir", stateDir, "--client", client], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out: Buffer[] = [];
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => out.push(c));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  let broken = false;
  child.stdin.on("error", () => (broken = true));
  let written = 0;
  const write = (b: Uint8Array) =>
    new Promise<void>((r) => {
      written += b.length;
      if (child.stdin.write(b)) r();
      else {
        const done = () => {
          child.stdin.off("drain", done);
          child.stdin.off("close", done);
          r();
        };
        child.stdin.once("drain", done);
        child.stdin.once("close", done);
      }
    });
  await write(encodeClientHello(0x207));
  for (const c of chunks) {
    if (broken || child.stdin.destroyed || child.exitCode !== null) break;
    await write(c);
  }
  if (!child.stdin.destroyed) child.stdin.end();
  const code = await exited;
  return { code, stdout: Buffer.concat(out), stderr, written };
}

interface LogLine {
  client: string;
  maxRssBytes: number;
  error?: { code: string; message: string };
}

/** The last session of `client` in the gateway's log. */
async function lastLogLine(stateDir: string, client: string): Promise<LogLine> {
  const lines = (await readFile(gatewayLogPath(stateDir), "utf8")).trim().split("\n");
  const mine = lines.map((l) => JSON.parse(l) as LogLine).filter((l) => l.client === client);
  assert.ok(mine.length > 0, `no session of ${client} in the gateway log`);
  return mine.at(-1) as LogLine;
}

describe("a hostile client's huge requests against the real gateway", { timeout: 300_000 }, () => {
  let stateDir: string;
  let held: string;

  before(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "nixpool-gw-limits-"));
    // A path this machine's store holds: what a well-behaved client asks about meanwhile.
    const file = join(stateDir, "nixpool-gw-limits-held");
    await writeFile(file, "held\n");
    held = (await execa("nix-store", ["--add", file])).stdout.trim();
  });
  after(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  /** A well-behaved client's QueryValidPaths during the hostile session: answered from the store. */
  async function wellBehaved(): Promise<void> {
    const r = await session(stateDir, "alice", [
      encodeRequest({ cmd: "queryValidPaths", lock: false, substitute: false, paths: [held] }, 0x207),
    ]);
    const answer = decodeAll(
      r.stdout,
      function* (ctx: DecodeContext) {
        yield* decodeServerHello(ctx);
        return yield* decodePathList(ctx);
      },
      "the gateway's answers",
    );
    assert.deepEqual(answer, [held], r.stderr);
    assert.equal(r.code, 0, r.stderr);
  }

  async function expectCut(t: TestContext, chunks: Iterable<Uint8Array>, message: RegExp): Promise<Session> {
    const [r] = await Promise.all([session(stateDir, "mallory", chunks), wellBehaved()]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, message);
    const line = await lastLogLine(stateDir, "mallory");
    assert.equal(line.error?.code, "SERVE_PROTOCOL_ERROR", JSON.stringify(line));
    assert.match(line.error.message, message);
    assert.ok(
      line.maxRssBytes > 0 && line.maxRssBytes < RSS_BOUND,
      `the gateway's peak RSS was ${Math.round(line.maxRssBytes / MiB)} MiB`,
    );
    t.diagnostic(`the gateway's peak RSS: ${Math.round(line.maxRssBytes / MiB)} MiB`);
    return r;
  }

  test("QueryValidPaths with 48 paths of 16 MiB: cut at the first length, before its bytes", async (t) => {
    function* hostile(): Generator<Uint8Array> {
      yield new WireWriter().u64(1).bool(false).bool(false).u64(48).finish();
      const block = new Uint8Array(MiB).fill(0x61);
      for (let i = 0; i < 48; i++) {
        yield new WireWriter().u64(16 * MiB).finish();
        for (let j = 0; j < 16; j++) yield block;
      }
    }
    const r = await expectCut(t, hostile(), /16777216-byte string for paths\[0\].*limit is 255 bytes/);
    assert.ok(r.written < 64 * MiB, `the gateway read on for ${r.written} bytes`);
  });

  test("QueryValidPaths with a million paths, or store-path-sized paths past 16 MiB: cut at the limit", async (t) => {
    await expectCut(
      t,
      [new WireWriter().u64(1).bool(false).bool(false).u64(1_000_000).finish()],
      /list of 1000000 items for paths/,
    );
    function* many(): Generator<Uint8Array> {
      yield new WireWriter().u64(1).bool(false).bool(false).u64(100_000).finish();
      const w = new WireWriter();
      for (let i = 0; i < 4096; i++) w.string(`/nix/store/${"b".repeat(32)}-${"x".repeat(211)}`);
      const batch = w.finish();
      for (let i = 0; i < 25; i++) yield batch;
    }
    const r = await expectCut(t, many(), /grew over 16777216 bytes with a 255-byte string for paths\[\d+\]/);
    assert.ok(r.written < 24 * MiB, `the gateway read on for ${r.written} bytes`);
  });

  test("BuildDerivation with an env of 64 values of 4 MiB: cut at the value that passes 16 MiB", async (t) => {
    function* hostile(): Generator<Uint8Array> {
      const drv = `/nix/store/${"a".repeat(32)}-huge.drv`;
      const head = new WireWriter().u64(8).string(drv).u64(1).string("out");
      head
        .string(`/nix/store/${"c".repeat(32)}-huge`)
        .string("")
        .string("");
      head.strings([]).string("x86_64-linux").string("/bin/sh").strings([]).u64(64);
      yield head.finish();
      const value = new Uint8Array(4 * MiB).fill(0x62);
      for (let i = 0; i < 64; i++) {
        yield new WireWriter().string(`v${i}`).u64(value.length).finish();
        yield value;
      }
    }
    const r = await expectCut(t, hostile(), /4194304-byte string for env v3/);
    assert.ok(r.written < 40 * MiB, `the gateway read on for ${r.written} bytes`);
  });
});
