import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { Writable } from "node:stream";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { encodeClientHello, encodeRequest, WireWriter } from "../../src/core/nix-serve/index.js";
import { ServeSession } from "../../src/adapters/nix-serve-session.js";
import { isNixpoolError } from "../../src/core/errors.js";
import { CLI, makeKeysCommandDirs } from "../helpers/cli.js";
import { stageCli } from "../helpers/staged-cli.js";
import { killNetns } from "../helpers/processes.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { startTestPostgres } from "../helpers/postgres.js";
import { socketRequest, startServe, type ServeProcess } from "../helpers/serve-process.js";
import {
  startClientMachine,
  startGatewaySshd,
  type ClientMachine,
  type GatewaySshd,
} from "../helpers/gateway.js";

// A client machine (its own network namespace and store) uses the whole pool as one builder:
// its Nix's build hook speaks to `nixpool gateway` through a real sshd whose keys come from
// `nixpool access` (the installed keys command, --protocol gateway), configured only from
// `nixpool config client`'s output.

const FIXTURE = resolve(import.meta.dirname, "../fixtures/dispatch.nix");

interface ApiBuild {
  id: string;
  client: string;
  status: string;
  label: string;
  counts: { running: number };
}

interface GatewayLogLine {
  client: string;
  downloadedBytes: number;
  uploadedBytes: number;
  uploadedPaths: number;
  builds: number;
  error?: { code: string; message: string };
}

/** The gateway's own account (as `ssh://nixpool@coordinator`): created for the test when missing. */
const GATEWAY_USER = "nixpoolgw";

/** The issue's graph: 40 leaves and a root (examples/graph.nix's shape, test/fixtures/dispatch.nix's `graph`). */
const GRAPH_N = 40;

const leafLines = (n: number) => Array.from({ length: n }, (_, i) => `leaf-${i}\n`).join("");

/**
 * Slot use from recorded times: `ready` (waiting for a slot), `start`..`end` (in a slot). Over the
 * moments when every client in `clients` had a derivation waiting, each client's part of the
 * occupied slot time; and the derivations each started while the others had work waiting, with
 * those that went against fair share's rule (the client with the fewest in slots gets the next).
 */
function fairShare(
  held: readonly { client: string; ready: number; start: number; end: number }[],
  clients: readonly string[],
): {
  mostInSlots: number;
  contendedMs: number;
  slotShare: Record<string, number>;
  startsWhileBothWaited: Record<string, number>;
  /** Derivations that started while another client had work waiting and fewer in slots. */
  unfairStarts: { client: string; atMs: number; inSlots: number; othersInSlots: number }[];
} {
  const times = [...new Set(held.flatMap((h) => [h.ready, h.start, h.end]))].sort((a, b) => a - b);
  const slotMs: Record<string, number> = {};
  const starts: Record<string, number> = {};
  let mostInSlots = 0;
  let contendedMs = 0;
  const allWaiting = (t: number) =>
    clients.every((c) => held.some((h) => h.client === c && h.ready <= t && h.start > t));
  for (let i = 0; i + 1 < times.length; i++) {
    const [t, next] = [times[i] as number, times[i + 1] as number];
    const inSlot = held.filter((h) => h.start <= t && h.end > t);
    mostInSlots = Math.max(mostInSlots, inSlot.length);
    if (!allWaiting(t)) continue;
    contendedMs += next - t;
    for (const h of inSlot) slotMs[h.client] = (slotMs[h.client] ?? 0) + (next - t);
  }
  const unfairStarts: { client: string; atMs: number; inSlots: number; othersInSlots: number }[] = [];
  const inSlotsAt = (c: string, t: number, except: object) =>
    held.filter((o) => o !== except && o.client === c && o.start <= t && o.end > t).length;
  for (const h of held) {
    const others = clients.filter((c) => c !== h.client);
    const othersWaited = others.every((c) =>
      held.some((o) => o.client === c && o.ready <= h.start && o.start > h.start),
    );
    if (!othersWaited) continue;
    starts[h.client] = (starts[h.client] ?? 0) + 1;
    const mine = inSlotsAt(h.client, h.start, h);
    const fewest = Math.min(...others.map((c) => inSlotsAt(c, h.start, h)));
    if (mine > fewest)
      unfairStarts.push({ client: h.client, atMs: h.start, inSlots: mine, othersInSlots: fewest });
  }
  const total = Object.values(slotMs).reduce((a, b) => a + b, 0);
  const slotShare = Object.fromEntries(clients.map((c) => [c, total ? (slotMs[c] ?? 0) / total : 0]));
  return { mostInSlots, contendedMs, slotShare, startsWhileBothWaited: starts, unfairStarts };
}

describe(
  "the gateway: a client machine's Nix uses the pool as one builder",
  { timeout: 900_000, concurrency: false },
  () => {
    let pool: TestPool;
    let serve: ServeProcess;
    let dirs: Awaited<ReturnType<typeof makeKeysCommandDirs>>;
    let alice: ClientMachine;
    let bob: ClientMachine | undefined;
    let sshd: GatewaySshd;
    let firstSeed = "";
    let firstOutput = "";
    let cacheDir = "";
    let createdUser = false;

    /** Whether the coordinator machine's own store (this machine's) holds `path`. */
    const inCoordinatorStore = async (path: string) =>
      (await execa("nix-store", ["--check-validity", path], { reject: false })).exitCode === 0;

    const mustCli = async (args: string[]) => {
      const r = await pool.cli(args);
      assert.equal(r.exitCode, 0, `nixpool ${args.join(" ")}: ${r.stderr}`);
      return r;
    };

    /** Configures a client machine from `nixpool config client NAME --json` alone. */
    const configure = async (
      m: ClientMachine,
      name: string,
      gateway: GatewaySshd = sshd,
      /** What config client warns about the member (none for a member with gateway rights). */
      warning?: RegExp,
    ) => {
      const r = await mustCli([
        "config",
        "client",
        name,
        "--host",
        gateway.address,
        "--user",
        "root",
        "--host-key-file",
        gateway.hostKeyPubFile,
        "--identity",
        m.identity,
        "--json",
      ]);
      if (warning) assert.match(r.stderr, warning);
      else assert.doesNotMatch(r.stderr, /warning/);
      await m.configure(
        JSON.parse(r.stdout) as { machinesLine: string; knownHostsLine: string; nixConf: string },
      );
    };

    /** ssh from a client machine to the gateway's account with its key (the host key checked). */
    const sshTo = (m: ClientMachine) => [
      "ssh",
      "-i",
      m.identity,
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      `root@${sshd.address}`,
    ];
    const sshFrom = (m: ClientMachine, command: string[], input: string) =>
      m.exec([...sshTo(m), ...command], { timeout: 60_000, input });

    /** The second client machine. */
    const startBob = async () => {
      const m = await startClientMachine(join(dirs.dir, "bob"), "gw-bob");
      await mustCli(["access", "add", "bob", "--key", m.publicKey, "--gateway", "--vouched-by", "alice"]);
      await configure(m, "bob");
      return m;
    };

    const apiBuilds = async (): Promise<ApiBuild[]> =>
      JSON.parse((await socketRequest(serve.socket, "GET", "/api/builds?limit=1000")).body) as ApiBuild[];
    const apiBuild = async (id: string) =>
      JSON.parse((await socketRequest(serve.socket, "GET", `/api/builds/${id}`)).body) as {
        derivations: { name: string; status: string; builder?: string }[];
      };
    const gatewayLog = async (): Promise<GatewayLogLine[]> =>
      (await readFile(join(pool.stateDir, "serve", "gateway.log"), "utf8").catch(() => ""))
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as GatewayLogLine);

    const nixBuild = (m: ClientMachine, attr: string, seed: string, extra: string[] = []) =>
      m.exec([
        "nix-build",
        FIXTURE,
        "-A",
        attr,
        "--argstr",
        "seed",
        seed,
        ...extra,
        "--max-jobs",
        "0",
        "--no-out-link",
      ]);

    /** sshd's lines that ask nixpool for the gateway's keys. */
    const keysCommand = () => [
      `AuthorizedKeysCommand ${join(dirs.commandPrefix, "keys-command")} --state-dir ${pool.stateDir} --protocol gateway %u`,
      "AuthorizedKeysCommandUser nobody",
    ];

    before(async () => {
      pool = await startTestPool(2, 2);
      dirs = await makeKeysCommandDirs("nixpool-gateway-");
      // The coordinator machine's substituter (a file:// binary cache): what a client's
      // builders-use-substitutes makes it try for paths no store of the pool holds.
      cacheDir = join(dirs.dir, "substituter");
      await mkdir(cacheDir);
      createdUser = (await execa("getent", ["passwd", GATEWAY_USER], { reject: false })).exitCode !== 0;
      if (createdUser) {
        // A system account with a shell (sshd runs the forced command with it), not locked
        // (sshd without PAM refuses locked accounts), no home.
        await execa("useradd", [
          "--system",
          "--shell",
          "/bin/sh",
          "--home-dir",
          "/nonexistent",
          "--no-create-home",
          "--password",
          "*",
          GATEWAY_USER,
        ]);
      }
      alice = await startClientMachine(join(dirs.dir, "alice"), "gw-alice");
      // Also on TCP where the client machines reach this one: remote `nixpool build --coordinator`.
      serve = await startServe(
        pool.stateDir,
        ["--gateway-user", GATEWAY_USER, "--listen", `${alice.rec.hostAddress}:0`],
        [],
        { NIX_CONFIG: `extra-substituters = file://${cacheDir}\nrequire-sigs = false` },
      );
      // sshd runs the keys command as nobody: it traverses the state directory to its answers.
      await chmod(pool.stateDir, 0o711);
      await mustCli(["access", "install-keys-command", "--prefix", dirs.commandPrefix]);
      await mustCli(["access", "add", "alice", "--key", alice.publicKey, "--gateway", "--can-vouch"]);
      sshd = await startGatewaySshd(join(dirs.dir, "sshd"), alice.rec.hostAddress, keysCommand());
      await configure(alice, "alice");
    });
    after(async () => {
      await serve?.stop();
      await sshd?.stop();
      await alice?.stop();
      await bob?.stop();
      await pool?.cleanup();
      await dirs?.cleanup();
      if (createdUser) await execa("userdel", [GATEWAY_USER], { reject: false });
    });

    test("nix-build --max-jobs 0 of the 40-derivation graph with the gateway as the only builder: correct outputs, every derivation recorded as built on a pool builder", async () => {
      const seed = randomBytes(8).toString("hex");
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const r = await nixBuild(alice, "graph", seed, [
        "--arg",
        "n",
        String(GRAPH_N),
        "--argstr",
        "sleep",
        "0.5",
      ]);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}\n${await sshd.log()}`);
      const cat = await alice.exec(["cat", r.stdout.trim()]);
      assert.equal(cat.stdout, leafLines(GRAPH_N));
      // Every derivation of the graph (the leaves and the root) is a build of the coordinator's
      // history, by this client, built (not cached) on one of the pool's builders.
      const builds = (await apiBuilds()).filter((b) => !known.has(b.id));
      assert.equal(builds.length, GRAPH_N + 1, JSON.stringify(builds));
      const names = new Set<string>();
      for (const b of builds) {
        assert.equal(b.client, "gateway:alice");
        assert.equal(b.status, "succeeded");
        const d = await apiBuild(b.id);
        assert.equal(d.derivations.length, 1, JSON.stringify(d));
        assert.ok(
          d.derivations.every((x) => x.status === "built" && /^local\d+$/.test(x.builder ?? "")),
          JSON.stringify(d),
        );
        names.add(d.derivations[0]?.name ?? "");
      }
      assert.deepEqual(
        [...names].sort(),
        ["graph-root", ...Array.from({ length: GRAPH_N }, (_, i) => `leaf-${i}`)].sort(),
      );
      // The outputs stayed on the builders: the client read them there, through the gateway.
      firstOutput = r.stdout.trim();
      assert.equal(
        await inCoordinatorStore(firstOutput),
        false,
        `${firstOutput} was copied to the coordinator`,
      );
      firstSeed = seed;
    });

    test("a path the client built itself, referencing an output only a builder holds, uploads: the reference is copied to the coordinator first", async () => {
      const seed = randomBytes(8).toString("hex");
      const known = new Set((await apiBuilds()).map((b) => b.id));
      // ref-wrapper is built on the client (preferLocalBuild with --max-jobs 1) and references
      // ref-leaf, built in the pool; ref-consumer, built in the pool, needs ref-wrapper uploaded.
      const expr = [
        "let",
        '  mk = name: script: extra: builtins.derivation ({ inherit name; seed = "' + seed + '";',
        '    system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; } // extra);',
        '  leaf = mk "ref-leaf" "echo leaf-' + seed + ' > $out" { };',
        '  wrapper = mk "ref-wrapper" "echo ${leaf} > $out" { preferLocalBuild = true; };',
        'in mk "ref-consumer" "read x < ${wrapper}; read y < $x; echo $y > $out" { }',
      ].join("\n");
      const r = await alice.exec(["nix-build", "-E", expr, "--max-jobs", "1", "--no-out-link"]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal((await alice.exec(["cat", r.stdout.trim()])).stdout, `leaf-${seed}\n`);
      const labels = (await apiBuilds()).filter((b) => !known.has(b.id)).map((b) => b.label);
      assert.ok(
        labels.some((l) => l.includes("ref-leaf")),
        JSON.stringify(labels),
      );
      assert.ok(
        labels.some((l) => l.includes("ref-consumer")),
        JSON.stringify(labels),
      );
      assert.ok(!labels.some((l) => l.includes("ref-wrapper")), "ref-wrapper was built on the client");
    });

    test("a failing derivation: the client's Nix prints the failure and the log tail (its last lines, as Nix prints them)", async () => {
      const seed = randomBytes(8).toString("hex");
      // 15 numbered lines (stdout and stderr), then exit 3.
      const script =
        "for i in $(/usr/bin/seq 1 15); do echo tail-line-$i-" +
        seed +
        "; done; echo the reason is here >&2; exit 3";
      const expr = `derivation { name = "fails-tail"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; }`;
      const lines = [
        ...Array.from({ length: 15 }, (_, i) => `tail-line-${i + 1}-${seed}`),
        "the reason is here",
      ];
      /** Nix's "last N log lines:" block with exactly `tail`, each line as "> LINE". */
      const tailBlock = (tail: string[]) =>
        `last ${tail.length} log lines:\\n${tail.map((l) => `\\s*> ${l}\\n`).join("")}`;
      // nix-build prints the build's log as it comes, then the failure: the builder's status and
      // the last 10 lines of the log (Nix's log-lines default), as the error of the build.
      const r = await alice.exec(["nix-build", "-E", expr, "--max-jobs", "0", "--no-out-link"]);
      assert.notEqual(r.exitCode, 0);
      assert.match(r.stderr, new RegExp(lines.map((l) => `^${l}$`).join("\\n"), "m"));
      assert.match(
        r.stderr,
        /failed in the pool: PermanentFailure on local\d: builder for '\S+-fails-tail\.drv' failed with exit code 3/,
      );
      // The gateway's BuildResult error: the pool's failure and the log's last 10 lines.
      assert.match(r.stderr, new RegExp(`failed with exit code 3\\n\\s*${tailBlock(lines.slice(-10))}`));
      // nix build (no -L: the log is not shown while building) prints its own tail of the log.
      const nix = await alice.exec([
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "build",
        "--impure",
        "--expr",
        expr,
        "--max-jobs",
        "0",
        "--no-link",
      ]);
      assert.notEqual(nix.exitCode, 0);
      assert.match(nix.stderr, /failed in the pool: PermanentFailure on local\d: .* failed with exit code 3/);
      // Nix's own message for a failed hook build: the tail of the log it received from the
      // gateway (the gateway's stderr is the build's log), and where the whole log is.
      const own = new RegExp(
        `error: builder for '(\\S+-fails-tail\\.drv)' failed with exit code 1;\\n\\s*${tailBlock(lines.slice(-10))}\\s*For full logs, run 'nix log \\1'`,
      ).exec(nix.stderr);
      assert.ok(own, nix.stderr);
      const full = await alice.exec([
        "nix",
        "--extra-experimental-features",
        "nix-command",
        "log",
        own[1] ?? "",
      ]);
      assert.equal(full.exitCode, 0, full.stderr);
      for (const l of lines) assert.match(full.stdout, new RegExp(`^${l}$`, "m"));
    });

    test("the build log streams to the client as Nix expects: `nix build -L` prints it while building, `nix log` afterwards", async () => {
      const seed = randomBytes(8).toString("hex");
      const expr = `derivation { name = "log-me"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo unique-log-line-${seed}; echo done > $out" ]; }`;
      const nix = ["nix", "--extra-experimental-features", "nix-command"];
      const drv = (await alice.exec(["nix-instantiate", "-E", expr])).stdout.trim();
      assert.match(drv, /^\/nix\/store\/\S+-log-me\.drv$/);
      const r = await alice.exec([...nix, "build", "-L", drv, "--max-jobs", "0", "--no-link"]);
      assert.equal(r.exitCode, 0, r.stderr);
      // -L prefixes each line of a derivation's log with its name, as it arrives: before the
      // output is copied back from the pool (the build was still going on).
      const printed = r.stderr.search(new RegExp(`^log-me> unique-log-line-${seed}$`, "m"));
      assert.ok(printed >= 0, r.stderr);
      const copiedBack = r.stderr.search(/^copying path '\/nix\/store\/\S+-log-me' from 'ssh:/m);
      assert.ok(copiedBack > printed, r.stderr);
      // The client's Nix kept the log it received (its own log directory: the client has no
      // substituter that could serve one).
      const log = await alice.exec([...nix, "log", drv]);
      assert.equal(log.exitCode, 0, log.stderr);
      assert.match(log.stderr, /got build log for '\S+-log-me\.drv' from 'local'/);
      assert.match(log.stdout, new RegExp(`^unique-log-line-${seed}$`, "m"));
    });

    test("a second client builds the same graph: nothing uploaded, nothing rebuilt, outputs read from the builders", async () => {
      bob ??= await startBob();
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const r = await nixBuild(bob, "graph", firstSeed, [
        "--arg",
        "n",
        String(GRAPH_N),
        "--argstr",
        "sleep",
        "0.5",
      ]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal((await bob.exec(["cat", r.stdout.trim()])).stdout, leafLines(GRAPH_N));
      const builds = (await apiBuilds()).filter((b) => !known.has(b.id));
      assert.equal(builds.length, GRAPH_N + 1);
      for (const b of builds) {
        assert.equal(b.client, "gateway:bob");
        const d = await apiBuild(b.id);
        assert.ok(
          d.derivations.every((x) => x.status === "cached"),
          JSON.stringify(d),
        );
      }
      const byClient = JSON.parse(
        (await socketRequest(serve.socket, "GET", "/api/builds?client=gateway:bob")).body,
      ) as ApiBuild[];
      assert.deepEqual(byClient.map((b) => b.id).sort(), builds.map((b) => b.id).sort());
      // Each session's line is written when it ends, which may be just after the client's nix-build.
      await waitFor(
        async () => (await gatewayLog()).filter((e) => e.client === "bob").length >= GRAPH_N + 1,
        {
          timeoutMs: 30_000,
        },
      );
      const sessions = (await gatewayLog()).filter((e) => e.client === "bob");
      assert.ok(sessions.length >= GRAPH_N + 1, JSON.stringify(sessions));
      assert.equal(
        sessions.reduce((n, e) => n + e.uploadedBytes, 0),
        0,
      );
      assert.ok(sessions.reduce((n, e) => n + e.downloadedBytes, 0) > 0, JSON.stringify(sessions));
      // Neither client's outputs passed through the coordinator machine's store.
      assert.equal(await inCoordinatorStore(firstOutput), false);
    });

    test("two clients at once share the slots fairly: while both have work waiting, the next free slot goes to the one with fewer in slots, and each holds a fair part of them", async (t) => {
      bob ??= await startBob();
      // alice: Nix's hook through the gateway (one derivation per session, at most the machines
      // line's 4 at once). bob: a remote `nixpool build --coordinator` of another graph, which
      // submits all its leaves at once. The pool has 4 slots: both clients have more work
      // than slots, so the dispatcher's fair share (the client with the fewest derivations in
      // slots gets the next free one) is what divides them.
      //
      // Nix's main loop waits while each hook connects (ssh, the keys command, the gateway's
      // greeting: about a second on this shared machine), so the hook keeps several derivations
      // in the pool at once only when each lasts several seconds: 20 leaves of 4 s each.
      const token = (await mustCli(["serve", "token", "--client", "bob-ci"])).stdout.trim();
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const n = 20;
      const sleep = "4";
      const viaHook = nixBuild(alice, "graph", randomBytes(8).toString("hex"), [
        "--arg",
        "n",
        String(n),
        "--argstr",
        "sleep",
        sleep,
      ]);
      // The hook client first, until it holds two slots: the remote build, which submits its
      // leaves all at once, would otherwise take every slot before the hook's first derivations
      // arrive (a running derivation is never taken back), and there is nothing to share yet.
      const inSlots = await waitFor(
        async () => {
          const running = (await apiBuilds()).filter(
            (b) => !known.has(b.id) && b.client === "gateway:alice" && b.counts.running > 0,
          );
          return running.length >= 2 || undefined;
        },
        { timeoutMs: 120_000, intervalMs: 100 },
      );
      assert.ok(inSlots, "the hook client never had two derivations in slots");
      const remote = bob.exec([
        "env",
        `NIXPOOL_COORDINATOR_TOKEN=${token}`,
        "node",
        CLI,
        "--state-dir",
        join(dirs.dir, "bob-ci-state"),
        "build",
        "--coordinator",
        serve.url,
        FIXTURE,
        "-A",
        "graph",
        "--arg",
        "n",
        String(n),
        "--argstr",
        "sleep",
        sleep,
        "--argstr",
        "seed",
        randomBytes(8).toString("hex"),
        "--no-out-link",
        "--json",
      ]);
      const [ra, rb] = await Promise.all([viaHook, remote]);

      assert.equal(ra.exitCode, 0, ra.stderr);
      assert.equal(rb.exitCode, 0, rb.stderr);
      assert.equal((await alice.exec(["cat", ra.stdout.trim()])).stdout, leafLines(n));
      const remoteId = (JSON.parse(rb.stdout) as { buildId: string }).buildId;
      // Each derivation's wait (ready, no slot yet) and its time in a slot (upload and build), from
      // the coordinator's records.
      const held: { client: string; ready: number; start: number; end: number }[] = [];
      const mine = (await apiBuilds()).filter((x) => !known.has(x.id));
      for (const b of mine) {
        const d = JSON.parse((await socketRequest(serve.socket, "GET", `/api/builds/${b.id}`)).body) as {
          report?: {
            startedAtMs: number;
            records: {
              readyMs: number | null;
              spans: { phase: string; startMs: number; endMs: number }[];
            }[];
          };
        };
        const client = b.id === remoteId ? "remote" : b.client === "gateway:alice" ? "gateway" : b.client;
        for (const r of d.report?.records ?? []) {
          const inSlot = r.spans.filter((x) => x.phase !== "download");
          if (inSlot.length === 0 || r.readyMs === null) continue;
          const t0 = d.report?.startedAtMs ?? 0;
          held.push({
            client,
            ready: t0 + r.readyMs,
            start: t0 + Math.min(...inSlot.map((x) => x.startMs)),
            end: t0 + Math.max(...inSlot.map((x) => x.endMs)),
          });
        }
      }
      const clients = ["gateway", "remote"];
      for (const c of clients)
        assert.equal(
          held.filter((h) => h.client === c).length,
          n + 1,
          `${c}: ${JSON.stringify(mine.map((b) => [b.client, b.label]))}`,
        );
      const share = fairShare(held, clients);
      const report = JSON.stringify(share);
      t.diagnostic(`fair share: ${report}`);
      // Never more derivations in slots at once than the pool's 4 slots.
      assert.ok(share.mostInSlots <= 4, report);
      // They really contended: derivations started while the other client had work waiting.
      const contended = Object.values(share.startsWhileBothWaited).reduce((a, b) => a + b, 0);
      assert.ok(contended >= 6, report);
      // Fair share's rule, from the records: a derivation that started while the other client
      // had work waiting went to the client with no more derivations in slots than the other (one
      // exception allowed: recorded times are the builds' spans, not the dispatcher's decisions).
      assert.ok(share.unfairStarts.length <= 1, report);
      // While both had work waiting, each held a good part of the occupied slot time: 2 of 4
      // slots each once fair share has balanced them, but running derivations are never taken
      // back, so whenever the hook (whose derivations arrive one connection at a time) had nothing
      // waiting, the remote build took the free slot, and the hook's next derivation then waits
      // for one to end (measured here: 33–40 % for the hook's client). One client holding every
      // slot is 0 % for the other.
      for (const c of clients) {
        const part = share.slotShare[c] ?? 0;
        assert.ok(
          part >= 0.2 && part <= 0.8,
          `${c} held ${Math.round(part * 100)} % of the slots: ${report}`,
        );
      }
    });

    test("QueryValidPaths with substitute (builders-use-substitutes): the coordinator substitutes what no store of the pool holds", async () => {
      const file = join(dirs.dir, `subst-${randomBytes(4).toString("hex")}.txt`);
      await writeFile(file, `substitutable ${randomBytes(8).toString("hex")}\n`);
      const path = (await execa("nix-store", ["--add", file])).stdout.trim();
      const nix = ["--extra-experimental-features", "nix-command"];
      await execa("nix", [...nix, "copy", "--to", `file://${cacheDir}`, path]);
      await execa("nix-store", ["--delete", path]);
      assert.equal(await inCoordinatorStore(path), false);
      // A serve-protocol client of the gateway, as a client's build hook is.
      const gw = await ServeSession.open({
        argv: ["/usr/bin/node", CLI, "--state-dir", pool.stateDir, "gateway", "--client", "alice"],
        name: "the gateway",
      });
      try {
        assert.deepEqual(await gw.queryValidPaths([path], { substitute: false }), []);
        assert.equal(await inCoordinatorStore(path), false);
        assert.deepEqual(await gw.queryValidPaths([path], { substitute: true }), [path]);
        assert.equal(await inCoordinatorStore(path), true);
      } finally {
        await gw.close();
      }
    });

    test("the gateway runs as its own non-root account: it reaches the coordinator's socket, uploads through the daemon, builds for the client", async () => {
      const gatewayKeys = `AuthorizedKeysCommand ${join(dirs.commandPrefix, "keys-command")} --state-dir ${pool.stateDir} --protocol gateway %u`;
      // The forced command names the nixpool that wrote the keys index: a copy the account can read
      // (the checkout may be 0700), as an installed nixpool is.
      const staged = await stageCli();
      const own = await startGatewaySshd(
        join(dirs.dir, "sshd-own-account"),
        alice.rec.hostAddress,
        [gatewayKeys, "AuthorizedKeysCommandUser nobody"],
        // Non-root sessions reach the store through a daemon that trusts the account (AddToStoreNar).
        { port: 2222, privateDaemon: { nixConfig: `trusted-users = root ${GATEWAY_USER}` } },
      );
      try {
        const sync = await execa(
          "/usr/bin/node",
          [staged.cli, "--state-dir", pool.stateDir, "access", "sync"],
          {
            reject: false,
          },
        );
        assert.equal(sync.exitCode, 0, sync.stderr);
        const cfg = JSON.parse(
          (
            await mustCli([
              "config",
              "client",
              "alice",
              "--host",
              own.address,
              "--user",
              GATEWAY_USER,
              "--host-key-file",
              own.hostKeyPubFile,
              "--identity",
              alice.identity,
              "--json",
            ])
          ).stdout,
        ) as { machinesLine: string };
        assert.match(cfg.machinesLine, new RegExp(`^ssh://${GATEWAY_USER}@`));
        const logged = (await gatewayLog()).length;
        const seed = randomBytes(8).toString("hex");
        // An input only the client has (uploaded through the daemon as the gateway's account).
        const input = 'builtins.toFile "in-' + seed + '" "hello ' + seed + '"';
        const expr =
          'derivation { name = "own-account"; system = builtins.currentSystem; builder = "/bin/sh"; ' +
          'args = [ "-c" "/bin/cat ${' +
          input +
          '} > $out" ]; }';
        const r = await alice.exec([
          "env",
          // Port 2222; the pinned key is the host's (Nix writes it for the bare address).
          `NIX_SSHOPTS=-p 2222 -o HostKeyAlias=${own.address}`,
          "nix-build",
          "-E",
          expr,
          "--max-jobs",
          "0",
          "--no-out-link",
          "--builders",
          cfg.machinesLine,
        ]);
        assert.equal(r.exitCode, 0, `${r.stderr}\n${await own.log()}`);
        assert.equal((await alice.exec(["cat", r.stdout.trim()])).stdout, `hello ${seed}`);
        assert.match(await own.log(), new RegExp(`Accepted publickey for ${GATEWAY_USER} `));
        // The account appended its session line (the log is root:GROUP 0620), upload included. A
        // session's line is written when it ends, which may be just after the client's nix-build.
        const ours = (e: GatewayLogLine) =>
          e.client === "alice" && e.uploadedPaths >= 1 && e.builds === 1 && !e.error;
        await waitFor(async () => (await gatewayLog()).slice(logged).some(ours), { timeoutMs: 30_000 });
        const lines = (await gatewayLog()).slice(logged);
        assert.ok(lines.some(ours), JSON.stringify(lines));
        const builds = (await apiBuilds()).filter((b) => b.label.includes("own-account"));
        assert.deepEqual(
          builds.map((b) => [b.client, b.status]),
          [["gateway:alice", "succeeded"]],
        );
        // The client's max-silent-time through this account: the coordinator accepts the
        // account's cancel of the build it submitted for alice, so the slot is freed at once (not
        // refused as another user's build, left to run its 60 s).
        const before = new Set((await apiBuilds()).map((b) => b.id));
        const silent = await alice.exec([
          "env",
          `NIX_SSHOPTS=-p 2222 -o HostKeyAlias=${own.address}`,
          "nix-build",
          FIXTURE,
          "-A",
          "ok2",
          "--argstr",
          "seed",
          randomBytes(8).toString("hex"),
          "--argstr",
          "sleep",
          "60",
          "--option",
          "max-silent-time",
          "2",
          "--max-jobs",
          "0",
          "--no-out-link",
          "--builders",
          cfg.machinesLine,
        ]);
        assert.notEqual(silent.exitCode, 0);
        assert.match(silent.stderr, /timed out after 2 seconds of silence/);
        assert.deepEqual(
          (await apiBuilds()).filter((b) => !before.has(b.id)).map((b) => [b.client, b.status]),
          [["gateway:alice", "cancelled"]],
        );
      } finally {
        await own.stop();
        // Back to the checkout's nixpool for the other tests.
        await mustCli(["access", "sync"]);
        await staged.cleanup();
      }
    });

    test("a member key without gateway rights is refused; a shell request gets the gateway, never a shell", async () => {
      const mallory = await startClientMachine(join(dirs.dir, "mallory"), "gw-mallory");
      try {
        await mustCli(["access", "add", "mallory", "--key", mallory.publicKey, "--vouched-by", "alice"]);
        await configure(
          mallory,
          "mallory",
          sshd,
          /warning: mallory is not a member with gateway rights yet, so the gateway refuses its key; on this machine: nixpool access add mallory --key "\$\(cat KEY\.pub\)" --gateway/,
        );
        const refused = await sshFrom(mallory, ["nix-store", "--serve", "--write"], "");
        assert.equal(refused.exitCode, 255, refused.stderr);
        assert.match(refused.stderr, /Permission denied/);
      } finally {
        await mallory.stop();
      }
      const shell = await sshFrom(alice, ["/bin/sh", "-c", "echo SHELL-REACHED"], "");
      assert.doesNotMatch(shell.stdout, /SHELL-REACHED/);
      assert.equal(shell.exitCode, 1, shell.stderr);
      assert.match(shell.stderr, /nixpool gateway: .*greeting/);
    });

    test("fuzzed serve-protocol bytes end that session only, with a clear message, and the gateway still builds", async () => {
      const hello = Buffer.from(encodeClientHello(0x207));
      const after = (...parts: Uint8Array[]) => Buffer.concat([hello, ...parts.map((p) => Buffer.from(p))]);
      const cases: [string, Buffer, RegExp][] = [
        ["random bytes", randomBytes(4096), /did not greet/],
        [
          "a truncated request",
          after(encodeRequest({ cmd: "queryPathInfos", paths: [] }, 0x207).subarray(0, 12)),
          /ended after/,
        ],
        [
          "an absurd length",
          after(
            new WireWriter()
              .u64(3)
              .u64(2 ** 40)
              .finish(),
          ),
          /limit is/,
        ],
        ["an unknown command", after(new WireWriter().u64(77).finish()), /command 77/],
        [
          "non-zero padding",
          after(new WireWriter().u64(3).u64(1).finish(), new Uint8Array([0x2f, 1, 0, 0, 0, 0, 0, 0])),
          /non-zero padding/,
        ],
        [
          "a path outside the store",
          after(encodeRequest({ cmd: "dumpStorePath", path: "/etc/shadow" }, 0x207)),
          /not a store path/,
        ],
      ];
      for (let i = 0; i < 20; i++)
        cases.push([`random after the greeting ${i}`, after(randomBytes(64 + i * 37)), /nixpool gateway: /]);
      for (const [what, bytes, message] of cases) {
        const t0 = Date.now();
        const r = await execa(
          "/usr/bin/node",
          [CLI, "--state-dir", pool.stateDir, "gateway", "--client", "alice"],
          {
            reject: false,
            input: bytes,
            timeout: 30_000,
          },
        );
        assert.equal(r.exitCode, 1, `${what}: ${r.stderr}`);
        assert.match(r.stderr, message, what);
        assert.ok(Date.now() - t0 < 20_000, `${what} took ${Date.now() - t0} ms`);
      }
      // Through sshd as well; then the next build works.
      const viaSsh = await sshFrom(alice, [], randomBytes(1024).toString("hex"));
      assert.equal(viaSsh.exitCode, 1, viaSsh.stderr);
      const r = await nixBuild(alice, "ok1", randomBytes(8).toString("hex"));
      assert.equal(r.exitCode, 0, r.stderr);
    });

    /** A file added to a client machine's own store: its path, NAR (dumped there) and path info. */
    const clientPath = async (m: ClientMachine, content: string) => {
      const name = `upload-${randomBytes(6).toString("hex")}`;
      await writeFile(m.etcNix(`${name}.txt`), content);
      const path = (await m.exec(["nix-store", "--add", `/etc/nix/${name}.txt`])).stdout.trim();
      assert.match(path, /^\/nix\/store\//);
      const dumped = await m.exec(["sh", "-c", `nix-store --dump ${path} > /etc/nix/${name}.nar`]);
      assert.equal(dumped.exitCode, 0, dumped.stderr);
      const exported = await m.exec(["sh", "-c", `nix-store --export ${path} > /etc/nix/${name}.export`]);
      assert.equal(exported.exitCode, 0, exported.stderr);
      const nar = await readFile(m.etcNix(`${name}.nar`));
      return {
        path,
        nar,
        exportFile: m.etcNix(`${name}.export`),
        info: {
          path,
          deriver: "",
          narHash: createHash("sha256").update(nar).digest("hex"),
          references: [],
          registrationTime: 0,
          narSize: nar.length,
          ultimate: false,
          sigs: [],
          ca: "",
        },
      };
    };

    /** A serve-protocol session from a client machine through sshd, as its Nix's build hook opens one. */
    const sessionFrom = (m: ClientMachine) =>
      ServeSession.open({
        argv: hostExecArgv(m.rec, sshTo(m)),
        name: "the gateway through sshd",
      });

    test("a wrong-hash AddToStoreNar is refused: nothing imported, the session ends with a clear message, another client's build goes on", async () => {
      const up = await clientPath(alice, `wrong hash ${randomBytes(8).toString("hex")}\n`);
      // Another client machine builds meanwhile, through the same gateway and pool.
      bob ??= await startBob();
      const other = nixBuild(bob, "ok1", randomBytes(8).toString("hex"), ["--argstr", "sleep", "2"]);
      const gw = await sessionFrom(alice);
      const wrong = { ...up.info, narHash: createHash("sha256").update("not this NAR").digest("hex") };
      const logged = (await gatewayLog()).length;
      const refused = await gw.addToStoreNar(wrong, [up.nar]).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(isNixpoolError(refused), "the wrong hash was accepted");
      assert.equal((await gw.closed).exitCode, 1);
      // The client's stderr (its build log) says what was refused and why, naming the path.
      const said = gw.stderrTail().join("\n");
      const path = up.path.replace(/[.]/g, "\\.");
      assert.match(said, new RegExp(`nixpool gateway: .*hash mismatch importing path '${path}'`));
      assert.match(said, /specified: sha256:\S+\n.*got: +sha256:\S+/);
      const line = await waitFor(
        async () => (await gatewayLog()).slice(logged).find((e) => e.error !== undefined),
        { timeoutMs: 30_000 },
      );
      assert.match(
        (line && line.error?.message) || "",
        new RegExp(`AddToStoreNar of ${path}: .*hash mismatch`),
      );
      assert.equal(await inCoordinatorStore(up.path), false, "the path was imported");
      const r = await other;
      assert.equal(r.exitCode, 0, r.stderr);
      // The same NAR with its right hash, in a new session: imported.
      const again = await sessionFrom(alice);
      try {
        await again.addToStoreNar(up.info, [up.nar]);
        assert.equal(await inCoordinatorStore(up.path), true);
      } finally {
        await again.close();
      }
    });

    test("an ImportPaths upload (cmdImportPaths, as pre-2.3 clients send) through the gateway: imported, and the client's next build uploads nothing", async () => {
      const content = `imported ${randomBytes(8).toString("hex")}\n`;
      const up = await clientPath(alice, content);
      const gw = await sessionFrom(alice);
      try {
        const imported = await gw.importPaths(createReadStream(up.exportFile));
        assert.deepEqual(
          imported.map((p) => p.path),
          [up.path],
        );
      } finally {
        await gw.close();
      }
      assert.equal(await inCoordinatorStore(up.path), true);
      assert.equal((await execa("cat", [up.path])).stdout + "\n", content);
      // A derivation reading it: the gateway has it, so the hook sends nothing.
      const logged = (await gatewayLog()).length;
      const expr = `derivation { name = "reads-import"; seed = "${randomBytes(4).toString("hex")}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "/bin/cat \${builtins.storePath "${up.path}"} > $out" ]; }`;
      const r = await alice.exec(["nix-build", "-E", expr, "--max-jobs", "0", "--no-out-link"]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal((await alice.exec(["cat", r.stdout.trim()])).stdout, content);
      // Each session's line is written when it ends, which may be just after the client's nix-build.
      await waitFor(async () => (await gatewayLog()).slice(logged).some((e) => e.builds === 1), {
        timeoutMs: 30_000,
      });
      const sessions = (await gatewayLog()).slice(logged);
      assert.ok(
        sessions.some((e) => e.builds === 1),
        JSON.stringify(sessions),
      );
      assert.equal(
        sessions.reduce((n, e) => n + e.uploadedPaths, 0),
        0,
        JSON.stringify(sessions),
      );
    });

    test("a client that stops reading during a large DumpStorePath stalls neither the gateway nor the builders' sessions: another client's build and downloads go on", async () => {
      // Two outputs on builders: one small enough to come through a builder's transfer session
      // (≤ 4 MiB), one through a session of its own.
      const outputs: string[] = [];
      for (const mib of [3, 32]) {
        const r = await nixBuild(alice, "big", randomBytes(8).toString("hex"), ["--arg", "n", String(mib)]);
        assert.equal(r.exitCode, 0, r.stderr);
        outputs.push(r.stdout.trim());
      }
      for (const o of outputs) assert.equal(await inCoordinatorStore(o), false, `${o} is on the coordinator`);
      // Stalled clients: each asks for a NAR and reads no more than the first bytes of it.
      const stalled = outputs.map((path) => {
        // --stall far beyond this test: the session must still be stalled when the others are done.
        const argv = [CLI, "--state-dir", pool.stateDir, "gateway", "--client", "alice", "--stall", "600"];
        const child = spawn("/usr/bin/node", argv, { stdio: ["pipe", "pipe", "pipe"] });
        let received = 0;
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
        const firstBytes = new Promise<void>((r) =>
          child.stdout.on("data", (d: Buffer) => {
            received += d.length;
            // The greeting (16 bytes) and some of the NAR: then stop reading.
            if (received > 16) {
              child.stdout.pause();
              r();
            }
          }),
        );
        child.stdin.write(
          Buffer.concat([
            Buffer.from(encodeClientHello(0x207)),
            Buffer.from(encodeRequest({ cmd: "dumpStorePath", path }, 0x207)),
          ]),
        );
        let alive = true;
        void exited.then(() => (alive = false));
        return {
          child,
          firstBytes,
          exited,
          received: () => received,
          stderr: () => stderr,
          alive: () => alive,
        };
      });
      try {
        await Promise.all(stalled.map((s) => s.firstBytes));
        // Meanwhile: another client's build (its inputs to builders, outputs read from them) and
        // both NARs read whole by another session.
        bob ??= await startBob();
        const bobBuild = nixBuild(bob, "graph", randomBytes(8).toString("hex"), ["--arg", "n", "4"]);
        const gw = await sessionFrom(alice);
        try {
          for (const path of outputs) {
            let bytes = 0;
            const sink = new Writable({
              write: (chunk: Buffer, _enc, done) => {
                bytes += chunk.length;
                done();
              },
            });
            const nar = await gw.dumpStorePath(path, sink);
            assert.equal(bytes, nar.size);
            const [info] = await gw.queryPathInfos([path]);
            assert.equal(nar.size, info?.narSize);
          }
        } finally {
          await gw.close();
        }
        const r = await bobBuild;
        assert.equal(r.exitCode, 0, r.stderr);
        // All the while, the stalled sessions were still stalled: alive, their NAR not read.
        for (const [i, s] of stalled.entries()) {
          assert.ok(s.alive(), `the stalled session ${i} ended: ${s.stderr()}`);
          assert.ok(s.received() < 3 * 1024 * 1024, `the stalled session ${i} read ${s.received()} bytes`);
        }
      } finally {
        for (const s of stalled) {
          s.child.kill("SIGKILL");
          await s.exited;
        }
      }
    });

    test("nix build of a flake through the gateway", async () => {
      const dir = join(dirs.dir, "flake");
      await cp(resolve(import.meta.dirname, "../../examples/flake"), dir, { recursive: true });
      const r = await alice.exec([
        "nix",
        "--extra-experimental-features",
        "nix-command flakes",
        "build",
        `path:${dir}#graph`,
        "--max-jobs",
        "0",
        "--no-link",
        "--json",
      ]);
      assert.equal(r.exitCode, 0, r.stderr);
      const [built] = JSON.parse(r.stdout) as { outputs: { out: string } }[];
      assert.equal((await alice.exec(["cat", built?.outputs.out ?? "/nonexistent"])).stdout, leafLines(12));
    });

    test("the client's max-silent-time and timeout are enforced by the gateway", async () => {
      const t0 = Date.now();
      const silent = await nixBuild(alice, "ok2", randomBytes(8).toString("hex"), [
        "--argstr",
        "sleep",
        "60",
        "--option",
        "max-silent-time",
        "2",
      ]);
      assert.notEqual(silent.exitCode, 0);
      assert.match(silent.stderr, /timed out after 2 seconds of silence/);
      const long = await nixBuild(alice, "ok2", randomBytes(8).toString("hex"), [
        "--argstr",
        "sleep",
        "60",
        "--option",
        "timeout",
        "3",
      ]);
      assert.notEqual(long.exitCode, 0);
      assert.match(long.stderr, /timed out after 3 seconds/);
      assert.ok(Date.now() - t0 < 40_000, `took ${Date.now() - t0} ms`);
    });

    test("a builder killed in the middle of a gateway build: the client's nix-build still succeeds", async () => {
      const seed = randomBytes(8).toString("hex");
      const building = nixBuild(alice, "graph", seed, ["--arg", "n", "6", "--argstr", "sleep", "3"]);
      const victim = pool.pool.hosts[0]!;
      const running = await waitFor(
        async () => {
          for (const b of (await apiBuilds()).filter((x) => x.status === "running")) {
            if (
              (await apiBuild(b.id)).derivations.some(
                (d) => d.status === "running" && d.builder === victim.name,
              )
            )
              return true;
          }
          return undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      assert.ok(running, "no gateway build ran on the victim");
      assert.ok((await killNetns(victim.netns)) > 0);
      const r = await building;
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal((await alice.exec(["cat", r.stdout.trim()])).stdout, leafLines(6));
    });

    // Last: it replaces the coordinator with two on PostgreSQL (and a builder was killed above).
    test("two coordinators on this machine (PostgreSQL), the first killed with -9 mid-build: the gateway follows the build on the second, and the client's nix-build succeeds", async () => {
      const postgres = await startTestPostgres();
      const sockets = await mkdtemp(join(tmpdir(), "nixpool-gw-coordinators-"));
      const started: ServeProcess[] = [];
      let sshd2: GatewaySshd | undefined;
      try {
        await serve.stop();
        const env = { NIXPOOL_DATABASE_URL: await postgres.createDatabase() };
        for (const name of ["a", "b"])
          started.push(await startServe(pool.stateDir, ["--socket", join(sockets, `${name}.sock`)], [], env));
        const [a, b] = started as [ServeProcess, ServeProcess];
        // The gateway's sessions name both (sshd's SetEnv), the first first; on the first's address.
        await sshd.stop();
        sshd2 = await startGatewaySshd(join(dirs.dir, "sshd-two"), alice.rec.hostAddress, [
          ...keysCommand(),
          `SetEnv NIXPOOL_COORDINATOR=unix:${a.socket},unix:${b.socket}`,
        ]);
        await configure(alice, "alice", sshd2);
        const seed = randomBytes(8).toString("hex");
        const building = nixBuild(alice, "graph", seed, ["--arg", "n", "4", "--argstr", "sleep", "4"]);
        const runningOnA = await waitFor(
          async () => {
            const r = await socketRequest(a.socket, "GET", "/api/builds?status=running");
            return (JSON.parse(r.body) as ApiBuild[]).some((x) => x.counts.running > 0) || undefined;
          },
          { timeoutMs: 120_000, intervalMs: 100 },
        );
        assert.ok(runningOnA, "no gateway build ran on the first coordinator");
        process.kill(a.pid ?? 0, "SIGKILL");
        await a.exited();
        const r = await building;
        assert.equal(r.exitCode, 0, `${r.stderr}\n${b.stderr()}`);
        assert.equal((await alice.exec(["cat", r.stdout.trim()])).stdout, leafLines(4));
        assert.match(b.stderr() + b.stdout(), /adopting build/);
        // The session building when the first died said so in the build's log, and followed it.
        assert.match(r.stderr, /nixpool gateway: coordinator unix:\S+ lost; following build \S+ on unix:/);
      } finally {
        await Promise.all(started.map((p) => p.stop("SIGKILL")));
        await sshd2?.stop();
        await postgres.stop();
        await rm(sockets, { recursive: true, force: true });
      }
    });
  },
);
