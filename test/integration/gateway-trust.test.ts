import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { run } from "../../src/adapters/runner.js";
import {
  decodePathInfos,
  decodePathList,
  decodeServerHello,
  encodeClientHello,
  encodeRequest,
  IncrementalDecoder,
  scanNar,
  type DecodeContext,
  type ServeRequest,
} from "../../src/core/nix-serve/index.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import { asNobody, makeTempDir } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { socketRequestScript, startServe, type ServeProcess } from "../helpers/serve-process.js";
import { writeTrustInventory } from "../helpers/trust-pool.js";

// The gateway reads the pool's stores through the coordinator (/api/pool/*): a path only an
// untrusted builder holds, and no trusted builder built to the same NAR hash, is not the pool's
// (the binary cache's rule), so a gateway client never gets its bytes. The routes that write into
// the coordinator machine's store answer only root and the gateway's account.

const GATEWAY = resolve(import.meta.dirname, "../../dist/serve/gateway/main.js");

describe("the gateway and [policy] trust, the pool routes' writers", { timeout: 600_000 }, () => {
  let pool: TestPool;
  let serve: ServeProcess;
  let work: { dir: string; cleanup: () => Promise<void> };
  let sockDir: string;
  /** The coordinator's own state directory: its builders are the inventory's alone (not the pool's local1, local2). */
  let stateDir: string;
  let socket: string;
  /** Planted on the untrusted builder only. */
  let tampered: string;
  /** Planted on the trusted builder only. */
  let honest: string;

  /** Adds a file of `content` to a pool host's store (only there). */
  const plant = async (host: string, name: string, content: string): Promise<string> => {
    const h = pool.pool.hosts.find((x) => x.name === host);
    if (!h) throw new Error(`no pool host ${host}`);
    const file = join(work.dir, name);
    await writeFile(file, content);
    return (await run(hostExecArgv(h, ["nix-store", "--add", file]))).stdout.trim();
  };

  before(async () => {
    pool = await startTestPool(2, 1);
    work = await makeTempDir("nixpool-gw-trust-");
    const inventory = await writeTrustInventory(
      pool,
      work.dir,
      [
        { host: "local1", name: "t1", trust: "trusted", maxJobs: 1 },
        { host: "local2", name: "u1", trust: "untrusted", maxJobs: 1 },
      ],
      "",
    );
    const nonce = randomBytes(8).toString("hex");
    tampered = await plant("local2", "evil-input", `tampered ${nonce}\n`);
    honest = await plant("local1", "honest-input", `honest ${nonce}\n`);
    // A socket another account can reach (the state directory is 0700 in tests).
    sockDir = await mkdtemp(join(tmpdir(), "nixpool-gw-trust-sock-"));
    await chmod(sockDir, 0o755);
    socket = join(sockDir, "api.sock");
    stateDir = join(work.dir, "state");
    serve = await startServe(stateDir, ["--socket", socket], ["--inventory", inventory]);
  });
  after(async () => {
    await serve?.stop();
    await pool?.cleanup();
    await work?.cleanup();
    if (sockDir) await rm(sockDir, { recursive: true, force: true });
  });

  /** One gateway session (as root) sending `requests`; returns its stdout and stderr once it exited. */
  const gatewaySession = async (requests: ServeRequest[]) => {
    const child = spawn(
      "/usr/bin/node",
      [GATEWAY, "--state-dir", stateDir, "--client", "alice", "--coordinator", `unix:${socket}`],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.stdin.on("error", () => undefined);
    const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    child.stdin.end(
      Buffer.concat([encodeClientHello(0x207), ...requests.map((r) => encodeRequest(r, 0x207))]),
    );
    const code = await exited;
    return { code, stdout: Buffer.concat(out), stderr };
  };

  test("a path only an untrusted builder holds is not the pool's: QueryValidPaths and QueryPathInfos leave it out, DumpStorePath never serves it", async () => {
    for (const p of [tampered, honest]) {
      const here = await execa("nix-store", ["--check-validity", p], { reject: false });
      assert.notEqual(here.exitCode, 0, `${p} is not in the coordinator machine's store`);
    }
    const r = await gatewaySession([
      { cmd: "queryValidPaths", lock: false, substitute: false, paths: [tampered, honest] },
      { cmd: "queryPathInfos", paths: [tampered, honest] },
      { cmd: "dumpStorePath", path: honest },
    ]);
    assert.equal(r.code, 0, r.stderr);
    const d = new IncrementalDecoder(function* (ctx: DecodeContext) {
      yield* decodeServerHello(ctx);
      const valid = yield* decodePathList(ctx);
      const infos = yield* decodePathInfos(ctx);
      const nar = yield* scanNar(ctx);
      return { valid, infos, nar };
    }, "the gateway's answers");
    d.push(r.stdout);
    const { valid, infos, nar } = d.finish();
    // The trusted builder's path is the pool's (a control: the pool answers for builders at all).
    assert.deepEqual(valid, [honest]);
    assert.deepEqual(
      infos.map((i) => i.path),
      [honest],
    );
    assert.ok(nar.size > 0);
    assert.match(r.stdout.toString("latin1"), /honest/);
    // Asked for its bytes anyway: the session ends, none of them sent.
    const dump = await gatewaySession([{ cmd: "dumpStorePath", path: tampered }]);
    assert.equal(dump.code, 1, dump.stderr);
    assert.match(dump.stderr, new RegExp(`asked for ${tampered}, which the pool does not hold`));
    assert.doesNotMatch(dump.stdout.toString("latin1"), /tampered/);
  });

  test("as nobody on the socket: /api/pool/fetch and substitute are 403 with a hint; the read-only routes answer", async () => {
    const asUser = async (path: string, body: unknown) => {
      const [cmd = "", ...argv] = asNobody(socketRequestScript(socket, "POST", path, JSON.stringify(body)));
      const r = await execa(cmd, argv);
      return JSON.parse(r.stdout) as { status: number; body: string };
    };
    const fetched = await asUser("/api/pool/fetch", { paths: [honest] });
    assert.equal(fetched.status, 403, fetched.body);
    const e = JSON.parse(fetched.body) as { code: string; message: string; hint: string };
    assert.equal(e.code, "API_FORBIDDEN");
    assert.match(e.message, /nobody may not copy paths into the coordinator machine's store/);
    assert.match(e.hint, /--gateway-user/);
    const substituted = await asUser("/api/pool/valid", { paths: [honest], substitute: true });
    assert.equal(substituted.status, 403, substituted.body);
    // Nothing was copied here for nobody.
    assert.notEqual((await execa("nix-store", ["--check-validity", honest], { reject: false })).exitCode, 0);
    const read = await asUser("/api/pool/valid", { paths: [honest, tampered] });
    assert.equal(read.status, 200, read.body);
    assert.deepEqual(JSON.parse(read.body), { valid: [honest] });
  });
});
