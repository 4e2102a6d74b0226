import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { execa } from "execa";
import {
  decodeAck,
  decodeAll,
  decodeBuildResult,
  decodePathInfos,
  decodePathList,
  decodeServerHello,
  scanNar,
  WireWriter,
  type DecodeContext,
} from "../../src/core/nix-serve/index.js";
import { CLI } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startServe, type ServeProcess } from "../helpers/serve-process.js";

// A Nix 2.3 client, from a byte transcript written from its source (test/fixtures/serve/), against
// the real gateway, coordinator and pool; the answers are read exactly as 2.3 reads them.

const TRANSCRIPT = resolve(import.meta.dirname, "../fixtures/serve/nix-2.3-hook.transcript");
const OUT = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-nixpool-fixture-2.3";

/** Turns the transcript's directives into bytes (with its own writer's framing: u64 LE, padded strings). */
function parseTranscript(text: string): Uint8Array {
  const w = new WireWriter();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const sp = line.indexOf(" ");
    const [op, arg] = [line.slice(0, sp), line.slice(sp + 1)];
    if (op === "u64") w.u64(BigInt(arg));
    else if (op === "str") w.string(JSON.parse(arg) as string);
    else if (op === "strs") w.strings(JSON.parse(arg) as string[]);
    else throw new Error(`transcript line ${i + 1}: unknown directive ${op}`);
  }
  return w.finish();
}

/** Every answer, in order, as Nix 2.3's LegacySSHStore reads them (it never reads DrvOutputs). */
function* readAs23(ctx: DecodeContext) {
  const hello = yield* decodeServerHello(ctx);
  const valid = yield* decodePathList(ctx);
  const inputInfo = yield* decodePathInfos(ctx);
  yield* decodeAck(ctx, "AddToStoreNar");
  // 2.3 reads status, errorMsg and, from a server of minor >= 3, the four times; nothing more.
  const result = yield* decodeBuildResult(ctx, 0x205);
  const outInfo = yield* decodePathInfos(ctx);
  const nar = yield* scanNar(ctx);
  return { hello, valid, inputInfo, result, outInfo, nar };
}

describe(
  "a Nix 2.3 client (a transcript from its source) against the real gateway",
  { timeout: 300_000 },
  () => {
    let pool: TestPool;
    let serve: ServeProcess;
    before(async () => {
      pool = await startTestPool(1, 1);
      serve = await startServe(pool.stateDir);
    });
    after(async () => {
      await serve?.stop();
      await pool?.cleanup();
    });

    test("upload with AddToStoreNar, BuildDerivation without keepFailed, a BuildResult without DrvOutputs, the output back", async () => {
      const input = parseTranscript(await readFile(TRANSCRIPT, "utf8"));
      const r = await execa(
        "/usr/bin/node",
        [CLI, "--state-dir", pool.stateDir, "gateway", "--client", "legacy"],
        {
          reject: false,
          input,
          encoding: "buffer",
          timeout: 120_000,
        },
      );
      assert.equal(r.exitCode, 0, Buffer.from(r.stderr).toString());
      const got = decodeAll(new Uint8Array(r.stdout), readAs23, "answers to 2.3");
      assert.equal(got.hello.version, 0x207);
      assert.ok(got.valid.length <= 1);
      // Built now, or already valid from an earlier run on this machine's store.
      assert.ok(["Built", "AlreadyValid"].includes(got.result.statusName), JSON.stringify(got.result));
      assert.equal(got.result.errorMsg, "");
      assert.ok(got.result.stopTime >= got.result.startTime && got.result.startTime > 1_600_000_000);
      assert.equal(got.outInfo.length, 1);
      assert.equal(got.outInfo[0]?.path, OUT);
      assert.match(got.outInfo[0]?.narHash ?? "", /^sha256:[0-9a-z]{52}$/);
      assert.equal(got.outInfo[0]?.narSize, got.nar.size);
      // The output's NAR came back (from the builder that holds it, or this store after an earlier run).
      assert.ok(Buffer.from(r.stdout).includes("hello from nix 2.3, built"), "the output's contents");
    });
  },
);
