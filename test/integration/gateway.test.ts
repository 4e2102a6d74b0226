import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { encodeClientHello, encodeRequest, WireWriter } from "../../src/core/nix-serve/index.js";
import { ServeSession } from "../../src/adapters/nix-serve-session.js";
import { CLI, makeKeysCommandDirs } from "../helpers/cli.js";
import { stageCli } from "../helpers/staged-cli.js";
import { killNetns } from "../helpers/processes.js";
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

const leafLines = (n: number) => Array.from({ length: n }, (_, i) => `leaf-${i}\n`).join("");

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
    const configure = async (m: ClientMachine, name: string, gateway: GatewaySshd = sshd) => {
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
      await m.configure(
        JSON.parse(r.stdout) as { machinesLine: string; knownHostsLine: string; nixConf: string },
      );
    };

    /** ssh from a client machine to the gateway's account with its key (the host key checked). */
    const sshFrom = (m: ClientMachine, command: string[], input: string) =>
      m.exec(
        [
          "ssh",
          "-i",
          m.identity,
          "-o",
          "BatchMode=yes",
          "-o",
          "StrictHostKeyChecking=yes",
          `root@${sshd.address}`,
          ...command,
        ],
        { timeout: 60_000, input },
      );

    const apiBuilds = async (): Promise<ApiBuild[]> =>
      JSON.parse((await socketRequest(serve.socket, "GET", "/api/builds?limit=1000")).body) as ApiBuild[];
    const apiBuild = async (id: string) =>
      JSON.parse((await socketRequest(serve.socket, "GET", `/api/builds/${id}`)).body) as {
        derivations: { status: string; builder?: string }[];
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
      serve = await startServe(pool.stateDir, ["--gateway-user", GATEWAY_USER], [], {
        NIX_CONFIG: `extra-substituters = file://${cacheDir}\nrequire-sigs = false`,
      });
      // sshd runs the keys command as nobody: it traverses the state directory to its answers.
      await chmod(pool.stateDir, 0o711);
      await mustCli(["access", "install-keys-command", "--prefix", dirs.commandPrefix]);
      alice = await startClientMachine(join(dirs.dir, "alice"), "gw-alice");
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

    test("nix-build --max-jobs 0 with the gateway as the only builder: correct outputs, every derivation built in the pool", async () => {
      const seed = randomBytes(8).toString("hex");
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const r = await nixBuild(alice, "graph", seed, ["--arg", "n", "8", "--argstr", "sleep", "0.5"]);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}\n${await sshd.log()}`);
      const cat = await alice.exec(["cat", r.stdout.trim()]);
      assert.equal(cat.stdout, leafLines(8));
      const builds = (await apiBuilds()).filter((b) => !known.has(b.id));
      assert.equal(builds.length, 9, JSON.stringify(builds));
      for (const b of builds) {
        assert.equal(b.client, "gateway:alice");
        assert.equal(b.status, "succeeded");
        const d = await apiBuild(b.id);
        assert.ok(
          d.derivations.every((x) => x.status === "built" && /^local\d+$/.test(x.builder ?? "")),
          JSON.stringify(d),
        );
      }
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

    test("a failing derivation: the client's Nix prints the failure and the log tail", async () => {
      const r = await nixBuild(alice, "fails", randomBytes(8).toString("hex"));
      assert.notEqual(r.exitCode, 0);
      assert.match(r.stderr, /the reason is here/);
      assert.match(r.stderr, /failed/);
    });

    test("a second client builds the same graph: nothing uploaded, nothing rebuilt, outputs read from the builders", async () => {
      bob = await startClientMachine(join(dirs.dir, "bob"), "gw-bob");
      await mustCli(["access", "add", "bob", "--key", bob.publicKey, "--gateway", "--vouched-by", "alice"]);
      await configure(bob, "bob");
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const r = await nixBuild(bob, "graph", firstSeed, ["--arg", "n", "8", "--argstr", "sleep", "0.5"]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal((await bob.exec(["cat", r.stdout.trim()])).stdout, leafLines(8));
      const builds = (await apiBuilds()).filter((b) => !known.has(b.id));
      assert.equal(builds.length, 9);
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
      const sessions = (await gatewayLog()).filter((e) => e.client === "bob");
      assert.ok(sessions.length >= 9, JSON.stringify(sessions));
      assert.equal(
        sessions.reduce((n, e) => n + e.uploadedBytes, 0),
        0,
      );
      assert.ok(sessions.reduce((n, e) => n + e.downloadedBytes, 0) > 0, JSON.stringify(sessions));
      // Neither client's outputs passed through the coordinator machine's store.
      assert.equal(await inCoordinatorStore(firstOutput), false);
    });

    test("two clients at once share the slots fairly: both progress, never more running than slots", async () => {
      assert.ok(bob, "the second client machine runs");
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const [ra, rb] = await Promise.all(
        [alice, bob].map((m) =>
          nixBuild(m, "graph", randomBytes(8).toString("hex"), ["--arg", "n", "8", "--argstr", "sleep", "3"]),
        ),
      );
      assert.equal(ra?.exitCode, 0, ra?.stderr);
      assert.equal(rb?.exitCode, 0, rb?.stderr);
      // Each derivation's time in a slot (upload and build), from the coordinator's records.
      const held: { client: string; start: number; end: number }[] = [];
      for (const b of (await apiBuilds()).filter((x) => !known.has(x.id))) {
        const d = JSON.parse((await socketRequest(serve.socket, "GET", `/api/builds/${b.id}`)).body) as {
          report?: {
            startedAtMs: number;
            records: { spans: { phase: string; startMs: number; endMs: number }[] }[];
          };
        };
        for (const r of d.report?.records ?? []) {
          const inSlot = r.spans.filter((x) => x.phase !== "download");
          if (inSlot.length === 0) continue;
          const t0 = d.report?.startedAtMs ?? 0;
          held.push({
            client: b.client,
            start: t0 + Math.min(...inSlot.map((x) => x.startMs)),
            end: t0 + Math.max(...inSlot.map((x) => x.endMs)),
          });
        }
      }
      const clients = ["gateway:alice", "gateway:bob"];
      for (const c of clients)
        assert.equal(held.filter((h) => h.client === c).length, 9, JSON.stringify(held));
      // Never more derivations in slots at once than the pool's 4 slots.
      const events = held.flatMap((h) => [
        { t: h.start, d: 1 },
        { t: h.end, d: -1 },
      ]);
      events.sort((a, b) => a.t - b.t || a.d - b.d);
      let now = 0;
      let most = 0;
      for (const e of events) most = Math.max(most, (now += e.d));
      assert.ok(most <= 4, `${most} derivations held slots at once`);
      // Neither starves: each client has at least a quarter of the first half of the starts, and
      // while both have work (from the later first start to the earlier last end) both start more.
      const starts = [...held].sort((a, b) => a.start - b.start);
      const firstHalf = starts.slice(0, starts.length / 2);
      for (const c of clients) {
        const share = firstHalf.filter((h) => h.client === c).length;
        assert.ok(share >= firstHalf.length / 4, `${c} had ${share} of the first ${firstHalf.length} starts`);
      }
      const from = Math.max(
        ...clients.map((c) => Math.min(...held.filter((h) => h.client === c).map((h) => h.start))),
      );
      const until = Math.min(
        ...clients.map((c) => Math.max(...held.filter((h) => h.client === c).map((h) => h.end))),
      );
      for (const c of clients) {
        const during = held.filter((h) => h.client === c && h.start >= from && h.start <= until).length;
        assert.ok(during >= 2, `${c} started ${during} derivations while both clients had work`);
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
        // The account appended its session line (the log is root:GROUP 0620), upload included.
        const lines = (await gatewayLog()).slice(logged);
        assert.ok(
          lines.some((e) => e.client === "alice" && e.uploadedPaths >= 1 && e.builds === 1 && !e.error),
          JSON.stringify(lines),
        );
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
        await configure(mallory, "mallory");
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
