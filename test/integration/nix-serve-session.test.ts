import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { readFile, readlink, realpath, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { readDerivationClosure } from "../../src/adapters/derivation-closure.js";
import { isProcessAlive } from "../../src/adapters/process-alive.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { writeClientFiles, type ClientFiles } from "../../src/adapters/nix-build.js";
import {
  ServeSession,
  transferPaths,
  type ServeSessionOptions,
} from "../../src/adapters/nix-serve-session.js";
import { sshAlias } from "../../src/core/builder.js";
import { toBasicDerivation, type Derivation } from "../../src/core/derivation.js";
import {
  builtOutputsOf,
  encodeNar,
  isBuildSuccess,
  type BuildResult,
} from "../../src/core/nix-serve/index.js";
import { setLinkUp } from "../../src/providers/local/host.js";
import { poolBuilders } from "../../src/providers/local/records.js";
import { makeTempDir } from "../helpers/cli.js";
import { Collect, expectCode } from "../helpers/serve.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";

const SERVE_NIX = resolve(import.meta.dirname, "../fixtures/nix/serve.nix");
const NIX_CONFIG = "substituters =\nsandbox = false\nbuild-users-group =";
const LOCAL_ARGV = ["nix-store", "--serve", "--write"];

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

  /** Big test files go into this machine's store; they are deleted again after the tests. */
  const added: string[] = [];
  const addToLocalStore = async (file: string) => {
    const path = (await execa("nix-store", ["--add", file], { env: { NIX_CONFIG } })).stdout.trim();
    added.push(path);
    return path;
  };

  after(async () => {
    await Promise.all(sessions.map((s) => s.close()));
    if (added.length)
      await execa("nix-store", ["--delete", ...added], { env: { NIX_CONFIG }, reject: false });
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
    // The gateway computes the same DrvOutputs (hash modulo of the BasicDerivation) as the builder.
    assert.deepEqual(withSrc.builtOutputs, builtOutputsOf(basic("withSrc")));
    const again = await build(b1, "withSrc");
    assert.equal(again.statusName, "AlreadyValid");
    assert.deepEqual(again.builtOutputs, builtOutputsOf(basic("withSrc")));
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
    // Escapes in env (tab, newline, backslash, quote, CR) and two outputs: the same ids as Nix's.
    assert.deepEqual(
      [...multi.builtOutputs].sort((a, b) => a.id.localeCompare(b.id)),
      builtOutputsOf(basic("multi")).sort((a, b) => a.id.localeCompare(b.id)),
    );
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
    assert.deepEqual(fixed.builtOutputs, builtOutputsOf(basic("fixed")));
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
    // The log travels on stderr, unordered with the result on stdout: its last lines may come later.
    await waitFor(() => failLog.includes("the error is here"), { timeoutMs: 10_000, intervalMs: 10 });
    assert.ok(failLog.includes(`about to fail-${salt}`), failLog.join("\n"));
    assert.ok(failLog.includes("the error is here"), failLog.join("\n"));
    assert.deepEqual(other, []);
    assert.deepEqual(await b1.queryValidPaths([src]), [src], "the session is still usable");
  });

  test("build options reach nix-store in wire order, for 0x206 and 0x207 clients", async () => {
    for (const version of [0x206, 0x207]) {
      const log: string[] = [];
      const local = await openSession({ argv: LOCAL_ARGV, version, onStderrLine: (l) => log.push(l) });
      const v = version.toString(16);
      const t = performance.now();
      const timedOut = await local.buildDerivation(drvPaths.get("slow")!, basic("slow"), {
        build: { buildTimeout: 1 },
      });
      assert.equal(timedOut.statusName, "TimedOut", `${v}: ${timedOut.errorMsg}`);
      assert.ok(performance.now() - t < 20_000);
      const silent = await local.buildDerivation(drvPaths.get("slow")!, basic("slow"), {
        build: { maxSilentTime: 1 },
      });
      assert.equal(silent.statusName, "TimedOut", v);
      assert.match(silent.errorMsg, /of silence/);
      const chatty = await local.buildDerivation(drvPaths.get("failing")!, basic("failing"), {
        build: { maxLogSize: 5 },
      });
      assert.equal(chatty.statusName, "LogLimitExceeded", v);
      // keepFailed exists only from 0x207: a 0x206 client cannot ask for it.
      log.length = 0;
      const kept = await local.buildDerivation(drvPaths.get("failing")!, basic("failing"), {
        build: { keepFailed: true },
      });
      assert.equal(kept.statusName, "PermanentFailure", v);
      const keeping = log
        .map((l) => /keeping build directory '([^']+)'/.exec(l)?.[1])
        .find((d) => d !== undefined);
      if (keeping) await rm(keeping, { recursive: true, force: true });
      assert.equal(keeping !== undefined, version === 0x207, `${v}: ${log.join(" / ")}`);
      // A missing input is a failed build (MiscFailure), and the session goes on.
      const missing = { ...basic("slow"), inputSrcs: [`/nix/store/${"2".repeat(32)}-missing-${salt}`] };
      const r = await local.buildDerivation(drvPaths.get("slow")!, missing);
      assert.equal(r.statusName, "MiscFailure", v);
      assert.match(r.errorMsg, /does not exist/);
      assert.deepEqual(await local.queryValidPaths([drvPaths.get("dep")!]), [drvPaths.get("dep")!]);
    }
  });

  test("a transfer cut midway imports nothing and leaves the healthy side usable", async () => {
    const file = join(tmp.dir, `cut-${salt}`);
    await writeFile(file, randomBytes(16 << 20));
    const blob = await addToLocalStore(file);
    const after1MiB = (kill: () => void) => {
      let n = 0;
      return (bytes: number) => {
        n += bytes;
        if (n >= 1 << 20 && n - bytes < 1 << 20) kill();
      };
    };
    // The importer dies: the exporter reads its answer to the end and stays usable.
    const local = await openSession({ argv: LOCAL_ARGV });
    let b2 = await openSession({ argv: builderArgv("local2"), name: "builder local2" });
    const importer = b2;
    await expectCode(
      transferPaths(local, importer, [blob], { onBytes: after1MiB(() => importer.kill()) }),
      "SERVE_CONNECTION_LOST",
      /builder local2 was lost during ImportPaths/,
    );
    assert.equal(local.isClosed, false);
    assert.deepEqual(await local.queryValidPaths([blob]), [blob]);
    b2 = await openSession({ argv: builderArgv("local2"), name: "builder local2" });
    assert.deepEqual(await b2.queryValidPaths([blob]), []);
    // The exporter dies: the importer got half a stream, so it is killed too.
    const doomed = await openSession({ argv: LOCAL_ARGV, name: "the local store" });
    await expectCode(
      transferPaths(doomed, b2, [blob], { onBytes: after1MiB(() => doomed.kill()) }),
      "SERVE_CONNECTION_LOST",
      /the local store was lost during ExportPaths/,
    );
    assert.equal((await b2.closed).kind, "killed");
    const b2again = await openSession({ argv: builderArgv("local2") });
    assert.deepEqual(await b2again.queryValidPaths([blob]), []);
  });

  test("AddToStoreNar adds a path from a NAR of exactly the declared size", async () => {
    const b1 = await openSession({ argv: builderArgv("local1"), name: "builder local1" });
    const nar = encodeNar({
      type: "directory",
      entries: {
        hello: { type: "regular", contents: `hello ${salt}\n` },
        link: { type: "symlink", target: "hello" },
      },
    });
    const alphabet = "0123456789abcdfghijklmnpqrsvwxyz";
    const path = `/nix/store/${[...randomBytes(32)].map((b) => alphabet[b % 32]).join("")}-serve-added-${salt}`;
    const info = {
      path,
      deriver: "",
      narHash: createHash("sha256").update(nar).digest("hex"),
      references: [],
      registrationTime: 0,
      narSize: nar.length,
      ultimate: false,
      sigs: [],
      ca: "",
    };
    const summary = await b1.addToStoreNar(info, [nar.subarray(0, 100), nar.subarray(100)]);
    assert.equal(summary.files, 1);
    assert.deepEqual(await b1.queryValidPaths([path]), [path]);
    const back = new Collect();
    await b1.dumpStorePath(path, back);
    assert.ok(back.bytes().equals(Buffer.from(nar)));
    // A NAR shorter than declared would leave nix-store waiting: the session is closed instead.
    const short = { ...info, path: path.replace("serve-added", "serve-short"), narSize: nar.length + 8 };
    await expectCode(b1.addToStoreNar(short, [nar]), "SERVE_REQUEST_FAILED", /not the \d+ bytes declared/);
    assert.equal((await b1.closed).kind, "killed");
    const again = await openSession({ argv: builderArgv("local1") });
    assert.deepEqual(await again.queryValidPaths([short.path]), []);
  });

  test("a request nix-store refuses (an invalid path to export) ends the connection, with its reason", async () => {
    const local = await openSession({ argv: LOCAL_ARGV, name: "the local store" });
    const nope = `/nix/store/${"3".repeat(32)}-not-valid-${salt}`;
    await expectCode(
      local.exportPaths([nope], new Collect()),
      "SERVE_CONNECTION_LOST",
      new RegExp(
        `lost during ExportPaths: its process exited with 1 \\(error: path '${nope}' is not valid\\)`,
      ),
    );
    assert.equal((await local.closed).kind, "eof");
  });

  test("a large path streams local → builder without a temporary file", async () => {
    const local = await openSession({ argv: LOCAL_ARGV });
    const b1 = await openSession({ argv: builderArgv("local1") });
    const file = join(tmp.dir, `blob-${salt}`);
    await writeFile(file, randomBytes(32 << 20));
    const path = await addToLocalStore(file);
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

  /** Starts the 60 s "slow" build on `s`, waits for its first log line, and finds its processes. */
  const startSlowBuild = async (s: ServeSession) => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const pending = build(s, "slow", (line) => {
      if (line.includes(`slow-${salt} started`)) started();
    });
    pending.catch(() => undefined);
    await running;
    // The build's shell is a child of the (remote) nix-store, in a process group of its own.
    const shPid = Number((await execa("pgrep", ["-f", `slow-${salt} started`])).stdout.trim().split("\n")[0]);
    const stat = readFileSync(`/proc/${shPid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const serverPid = Number(stat[1]);
    const pgrp = Number(stat[2]);
    const buildDir = readlinkSync(`/proc/${shPid}/cwd`);
    assert.match(
      readFileSync(`/proc/${serverPid}/cmdline`, "utf8").replaceAll("\0", " "),
      /nix-store --serve --write/,
    );
    // What a test that kills nix-store leaves behind is ours to clean up: the builder and its directory.
    const cleanup = async () => {
      if (isProcessAlive(serverPid)) process.kill(serverPid, "SIGKILL");
      if (pgrp === shPid && isProcessAlive(shPid)) process.kill(-pgrp, "SIGKILL");
      await waitFor(() => !isProcessAlive(shPid), { timeoutMs: 5000 });
      if (buildDir.startsWith("/tmp/nix-build-slow.drv-"))
        await rm(buildDir, { recursive: true, force: true });
    };
    return { pending, shPid, serverPid, cleanup };
  };

  test("a builder whose nix-store dies mid-build fails the build with SERVE_CONNECTION_LOST at once", async () => {
    const b1 = await openSession({ argv: builderArgv("local1"), name: "builder local1" });
    const slow = await startSlowBuild(b1);
    const t = performance.now();
    process.kill(slow.serverPid, "SIGKILL");
    try {
      await expectCode(
        slow.pending,
        "SERVE_CONNECTION_LOST",
        /builder local1 was lost during BuildDerivation/,
      );
      const ms = performance.now() - t;
      timings.push(`remote nix-store killed → request rejected in ${ms.toFixed(0)} ms`);
      assert.ok(ms < 5000, `${ms} ms`);
      const reason = await b1.closed;
      assert.equal(reason.kind, "eof");
      await expectCode(b1.queryValidPaths([]), "SERVE_CONNECTION_LOST");
    } finally {
      await slow.cleanup();
    }
  });

  test("a builder whose link is cut mid-build is given up by ssh's keepalive, in seconds", async () => {
    const host = tp.pool.hosts.find((h) => h.name === "local2")!;
    const argv = builderArgv("local2");
    // ServerAlive options on the command line win over the ssh_config's (first value wins).
    argv.splice(3, 0, "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=2");
    const b2 = await openSession({ argv, name: "builder local2" });
    const slow = await startSlowBuild(b2);
    const t = performance.now();
    await setLinkUp(host, false);
    try {
      await expectCode(
        slow.pending,
        "SERVE_CONNECTION_LOST",
        /builder local2 was lost during BuildDerivation/,
      );
      const ms = performance.now() - t;
      timings.push(
        `builder link cut → request rejected in ${ms.toFixed(0)} ms (ServerAliveInterval=2, CountMax=2)`,
      );
      assert.ok(ms < 15_000, `${ms} ms`);
      const reason = await b2.closed;
      assert.equal(reason.exitCode, 255);
      assert.match(reason.stderrTail.join("\n"), /Timeout, server \S+ not responding/);
      // The dispatcher names this case itself (it went silent); ssh-errors leaves it "unknown".
      assert.equal(reason.sshFailure, undefined);
    } finally {
      await setLinkUp(host, true);
      await slow.cleanup();
    }
  });

  test("close() aborts a running local build; an AbortSignal kills the session", async () => {
    const local = await openSession({ argv: LOCAL_ARGV });
    const { pending, shPid } = await startSlowBuild(local);
    const reason = await local.close(5000);
    await expectCode(pending, "SERVE_CONNECTION_LOST", /nixpool closed the connection/);
    assert.equal(reason.kind, "closed");
    // nix-store noticed its stdin closing and killed its builder.
    assert.ok(
      await waitFor(() => !isProcessAlive(shPid), { timeoutMs: 5000 }),
      "the builder still runs after close()",
    );

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
