import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, readlink, realpath, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import { execa } from "execa";
import { readDerivationClosure } from "../../src/adapters/derivation-closure.js";
import { writeClientFiles, type ClientFiles } from "../../src/adapters/nix-build.js";
import {
  ServeSession,
  transferPaths,
  type ServeSessionOptions,
} from "../../src/adapters/nix-serve-session.js";
import { sshAlias } from "../../src/core/builder.js";
import { toBasicDerivation, type Derivation } from "../../src/core/derivation.js";
import { isNixpoolError } from "../../src/core/errors.js";
import { encodeNar, isBuildSuccess, type BuildResult } from "../../src/core/nix-serve/index.js";
import { poolBuilders } from "../../src/providers/local/pool.js";
import { makeTempDir } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";

const SERVE_NIX = resolve(import.meta.dirname, "../fixtures/nix/serve.nix");
const NIX_CONFIG = "substituters =\nsandbox = false\nbuild-users-group =";
const LOCAL_ARGV = ["nix-store", "--serve", "--write"];

/** Collects what a session streams into it. */
class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void) {
    this.chunks.push(chunk);
    cb();
  }
  bytes() {
    return Buffer.concat(this.chunks);
  }
}

async function expectCode(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<Error> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    assert.ok(isNixpoolError(e), String(e));
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
  return caught as Error;
}

describe("nix-store --serve sessions, local and on pool builders", { timeout: 600_000 }, () => {
  const salt = randomBytes(6).toString("hex");
  let tp: TestPool;
  let files: ClientFiles;
  let tmp: { dir: string; cleanup: () => Promise<void> };
  const drvPaths = new Map<string, string>();
  let drvs: Map<string, Derivation>;
  const sessions: ServeSession[] = [];
  const timings: string[] = [];

  const openSession = async (options: Partial<ServeSessionOptions> & { argv: readonly string[] }) => {
    const s = await ServeSession.open({ env: { NIX_CONFIG }, ...options });
    sessions.push(s);
    return s;
  };
  const builderArgv = (name: string, sshConfig = files.sshConfig) => [
    "ssh",
    "-F",
    sshConfig,
    sshAlias({ name }),
    "nix-store",
    "--serve",
    "--write",
  ];
  const drvOf = (attr: string) => {
    const d = drvs.get(drvPaths.get(attr)!);
    assert.ok(d, attr);
    return d;
  };
  const outOf = (attr: string, output = "out") => drvOf(attr).outputs.get(output)!.path;
  const basic = (attr: string) => toBasicDerivation(drvOf(attr), (p, o) => drvs.get(p)!.outputs.get(o)!.path);
  const build = (s: ServeSession, attr: string, onLog?: (line: string) => void): Promise<BuildResult> =>
    s.buildDerivation(drvPaths.get(attr)!, basic(attr), onLog ? { onLog } : {});

  before(async () => {
    tmp = await makeTempDir("nixpool-serve-");
    for (const attr of ["dep", "multi", "fixed", "failing", "withSrc", "slow"]) {
      const r = await execa(
        "nix-instantiate",
        [SERVE_NIX, "-A", attr, "--argstr", "salt", salt, "--add-root", join(tmp.dir, attr), "--indirect"],
        {
          env: { NIX_CONFIG },
        },
      );
      // With --add-root, nix-instantiate prints the root (a symlink to the .drv).
      drvPaths.set(attr, await realpath(r.stdout.trim()));
    }
    drvs = await readDerivationClosure([...drvPaths.values()]);
    tp = await startTestPool(2, 1);
    files = await writeClientFiles(tp.stateDir, poolBuilders(tp.pool));
  });

  after(async () => {
    await Promise.all(sessions.map((s) => s.close()));
    await tp?.cleanup();
    await tmp?.cleanup();
    if (timings.length) console.log(`# serve timings:\n#   ${timings.join("\n#   ")}`);
  });

  test("the local store: greeting, queries, and a NAR byte-identical to nix-store --dump", async () => {
    let t = performance.now();
    const local = await openSession({ argv: LOCAL_ARGV, name: "the local store" });
    timings.push(`local greeting: ${(performance.now() - t).toFixed(1)} ms`);
    assert.equal(local.serverVersion, 0x207);
    const dep = drvPaths.get("dep")!;
    const multi = drvPaths.get("multi")!;
    const fake = `/nix/store/${"0".repeat(32)}-not-there`;
    assert.deepEqual(await local.queryValidPaths([fake, multi, dep]), [dep, multi].sort());

    const [info, ...rest] = await local.queryPathInfos([multi, fake]);
    assert.equal(rest.length, 0);
    assert.ok(info);
    assert.equal(info.path, multi);
    assert.deepEqual(info.references, [dep]);
    assert.equal(info.downloadSize, info.narSize);
    assert.match(info.ca, /^text:sha256:/);
    const nixHash = (await execa("nix-store", ["--query", "--hash", multi])).stdout.trim();
    assert.equal(info.narHash, nixHash);

    assert.deepEqual(await local.queryClosure([multi], false), [dep, multi].sort());

    const dump = new Collect();
    const summary = await local.dumpStorePath(dep, dump);
    const real = (await execa("nix-store", ["--dump", dep], { encoding: "buffer" })).stdout;
    assert.ok(dump.bytes().equals(Buffer.from(real)));
    assert.equal(summary.size, real.length);
    // Our own NAR encoder writes the same bytes as Nix for the same file.
    assert.ok(
      Buffer.from(encodeNar({ type: "regular", contents: readFileSync(dep) })).equals(Buffer.from(real)),
    );

    // Requests made together are answered in order, each with its own answer.
    const answers = await Promise.all([dep, multi, fake, dep, multi].map((p) => local.queryValidPaths([p])));
    assert.deepEqual(answers, [[dep], [multi], [], [dep], [multi]]);

    const n = 200;
    t = performance.now();
    for (let i = 0; i < n; i++) await local.queryValidPaths([dep]);
    timings.push(`local QueryValidPaths round trip: ${((performance.now() - t) / n).toFixed(3)} ms`);
  });

  test("builders over ssh: inputs sent, builds, outputs back, builder to builder", async () => {
    const local = await openSession({ argv: LOCAL_ARGV, name: "the local store" });
    let t = performance.now();
    const [b1, b2] = await Promise.all(
      ["local1", "local2"].map((name) => openSession({ argv: builderArgv(name), name: `builder ${name}` })),
    );
    assert.ok(b1 && b2);
    timings.push(`two ssh sessions opened together: ${(performance.now() - t).toFixed(0)} ms`);
    assert.equal(b1.serverVersion, 0x207);
    t = performance.now();
    for (let i = 0; i < 50; i++) await b1.queryValidPaths([outOf("dep")]);
    timings.push(`ssh QueryValidPaths round trip: ${((performance.now() - t) / 50).toFixed(2)} ms`);

    // An input source that exists only here goes local → builder, then the build uses it.
    const src = drvOf("withSrc").inputSrcs[0]!;
    assert.deepEqual(await b1.queryValidPaths([src]), []);
    t = performance.now();
    const sent = await transferPaths(local, b1, [src]);
    timings.push(`transfer of one small path local → builder: ${(performance.now() - t).toFixed(1)} ms`);
    assert.deepEqual(
      sent.map((p) => p.path),
      [src],
    );
    assert.deepEqual(await b1.queryValidPaths([src]), [src]);
    t = performance.now();
    const withSrc = await build(b1, "withSrc");
    timings.push(`BuildDerivation of a trivial derivation: ${(performance.now() - t).toFixed(1)} ms`);
    assert.equal(withSrc.statusName, "Built", withSrc.errorMsg);
    assert.deepEqual(
      withSrc.builtOutputs.map((o) => [o.outputName, `/nix/store/${o.outPath}`]),
      [["out", outOf("withSrc")]],
    );
    await transferPaths(b1, local, [outOf("withSrc")]);
    assert.deepEqual(await local.queryValidPaths([outOf("withSrc")]), [outOf("withSrc")]);
    assert.equal(await readFile(outOf("withSrc"), "utf8"), `input ${salt}\n`);

    // dep builds on b1, goes straight to b2, where multi (two outputs) builds on it.
    assert.equal((await build(b1, "dep")).statusName, "Built");
    await transferPaths(b1, b2, [outOf("dep")]);
    const log: string[] = [];
    const multi = await build(b2, "multi", (line) => log.push(line));
    assert.equal(multi.statusName, "Built", multi.errorMsg);
    assert.ok(isBuildSuccess(multi));
    assert.deepEqual(multi.builtOutputs.map((o) => o.outputName).sort(), ["dev", "out"]);
    assert.ok(log.includes("building multi"), log.join("\n"));
    assert.ok(multi.stopTime >= multi.startTime && multi.startTime > 1_700_000_000);
    const outputs = [outOf("multi"), outOf("multi", "dev")];
    const closure = await b2.queryClosure(outputs, false);
    await transferPaths(b2, local, closure);
    assert.deepEqual(await local.queryValidPaths(outputs), [...outputs].sort());
    assert.equal(await readFile(join(outOf("multi"), "share/dep"), "utf8"), `dep-${salt}\n`);
    assert.equal(await readlink(join(outOf("multi"), "link")), "share/dep");
    assert.equal(await readFile(outOf("multi", "dev"), "utf8"), 'escapes: q"t tab\tend\n');
    const [localInfo] = await local.queryPathInfos([outOf("multi")]);
    const [remoteInfo] = await b2.queryPathInfos([outOf("multi")]);
    assert.equal(localInfo?.narHash, remoteInfo?.narHash);
    assert.equal(localInfo?.deriver, drvPaths.get("multi"));

    // A fixed-output derivation: its path is fixed by the declared hash.
    const fixed = await build(b2, "fixed");
    assert.equal(fixed.statusName, "Built", fixed.errorMsg);
    await transferPaths(b2, local, [outOf("fixed")]);
    assert.equal(await readFile(outOf("fixed"), "utf8"), "fixed\n");

    // A failing build is a result, not a broken connection; its log is attributed to it.
    const failLog: string[] = [];
    const other: string[] = [];
    b1.setLogSink((line) => other.push(line));
    const failing = await build(b1, "failing", (line) => failLog.push(line));
    assert.equal(failing.statusName, "PermanentFailure");
    assert.equal(failing.status, 3);
    assert.match(failing.errorMsg, /failed with exit code 3/);
    assert.ok(failLog.includes(`about to fail-${salt}`), failLog.join("\n"));
    assert.ok(failLog.includes("the error is here"), failLog.join("\n"));
    assert.deepEqual(other, []);
    assert.deepEqual(await b1.queryValidPaths([src]), [src], "the session is still usable");
  });

  test("a large path streams local → builder without a temporary file", async () => {
    const local = await openSession({ argv: LOCAL_ARGV });
    const b1 = await openSession({ argv: builderArgv("local1") });
    const file = join(tmp.dir, `blob-${salt}`);
    await writeFile(file, randomBytes(32 << 20));
    const path = (await execa("nix-store", ["--add", file], { env: { NIX_CONFIG } })).stdout.trim();
    const t = performance.now();
    const [sent] = await transferPaths(local, b1, [path]);
    const ms = performance.now() - t;
    timings.push(
      `transfer of 32 MiB local → builder over ssh: ${ms.toFixed(0)} ms (${((32 / ms) * 1000).toFixed(0)} MiB/s)`,
    );
    assert.equal(sent?.nar.contentBytes, 32 << 20);
    const [mine] = await local.queryPathInfos([path]);
    const [theirs] = await b1.queryPathInfos([path]);
    assert.ok(mine && theirs);
    assert.equal(theirs.narHash, mine.narHash);
  });

  test("a builder whose nix-store dies mid-build fails the build with SERVE_CONNECTION_LOST at once", async () => {
    const b1 = await openSession({ argv: builderArgv("local1"), name: "builder local1" });
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const pending = build(b1, "slow", (line) => {
      if (line.includes(`slow-${salt} started`)) started();
    });
    await running;
    // The build's shell is a child of the remote nix-store: kill that nix-store.
    const shPid = Number((await execa("pgrep", ["-f", `slow-${salt} started`])).stdout.trim().split("\n")[0]);
    const stat = readFileSync(`/proc/${shPid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const serverPid = Number(stat[1]);
    const pgrp = Number(stat[2]);
    assert.match(
      readFileSync(`/proc/${serverPid}/cmdline`, "utf8").replaceAll("\0", " "),
      /nix-store --serve --write/,
    );
    const t = performance.now();
    process.kill(serverPid, "SIGKILL");
    try {
      await expectCode(pending, "SERVE_CONNECTION_LOST", /builder local1 was lost during BuildDerivation/);
      const ms = performance.now() - t;
      timings.push(`remote nix-store killed → request rejected in ${ms.toFixed(0)} ms`);
      assert.ok(ms < 5000, `${ms} ms`);
      const reason = await b1.closed;
      assert.equal(reason.kind, "eof");
      await expectCode(b1.queryValidPaths([]), "SERVE_CONNECTION_LOST");
    } finally {
      // The orphaned builder (its own process group) is ours to clean up.
      if (pgrp === shPid) process.kill(-pgrp, "SIGKILL");
    }
  });

  test("close() aborts a running local build; an AbortSignal kills the session", async () => {
    const local = await openSession({ argv: LOCAL_ARGV });
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const pending = build(local, "slow", (line) => {
      if (line.includes(`slow-${salt} started`)) started();
    });
    await running;
    const shPid = Number((await execa("pgrep", ["-f", `slow-${salt} started`])).stdout.trim().split("\n")[0]);
    const reason = await local.close(5000);
    await expectCode(pending, "SERVE_CONNECTION_LOST", /nixpool closed the connection/);
    assert.equal(reason.kind, "closed");
    // nix-store noticed its stdin closing and killed its builder.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && alive(shPid)) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(shPid), false, "the builder still runs after close()");

    const ac = new AbortController();
    const s = await openSession({ argv: LOCAL_ARGV, signal: ac.signal });
    ac.abort();
    assert.equal((await s.closed).kind, "aborted");
    await expectCode(s.queryValidPaths([]), "INTERRUPTED");
  });

  test("ssh that cannot connect reports why, with ssh's stderr", async () => {
    const config = join(tmp.dir, "ssh_config_no_keys");
    const text = await readFile(files.sshConfig, "utf8");
    await writeFile(join(tmp.dir, "empty_known_hosts"), "");
    await writeFile(config, text.replaceAll(files.knownHosts, join(tmp.dir, "empty_known_hosts")));
    const e = await expectCode(
      ServeSession.open({ argv: builderArgv("local1", config), name: "builder local1" }),
      "SERVE_CONNECTION_LOST",
      /builder local1 was lost during the greeting: its process exited with 255/,
    );
    assert.equal(
      (e as unknown as { details: { sshFailure?: string } }).details.sshFailure,
      "host-key-unknown",
    );
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

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
    if (mode === "unsolicited") process.stdout.write(u64(42));
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
  };
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
  const within = async <T>(ms: number, p: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: the session hangs`)), ms);
    });
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

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
    ["unsolicited", "SERVE_CONNECTION_LOST", /sent 8 bytes nobody asked for/],
  ] as const) {
    test(`a peer answering with ${mode} → ${code}`, async () => {
      const s = await ServeSession.open(fake(mode));
      try {
        if (mode === "unsolicited") await s.closed;
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
