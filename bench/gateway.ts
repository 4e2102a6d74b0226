/**
 * The gateway from a client machine (its own network namespace and store): the 40 × 0.5 s graph
 * of examples/graph.nix (+ a root) built by the client's nix-build with --max-jobs 0, in the same
 * run: (1) Nix's hook straight to the pool's 2 builders × 2 jobs, (2) Nix's hook through the
 * gateway (one machines line, 4 slots), first with the greeting written by node (the forced
 * command without greet.sh), then as installed (greet.sh writes it before node starts), (3) remote `nixpool build --coordinator URL` from the
 * client machine (it evaluates, uploads the .drv closure, the coordinator schedules the whole
 * graph, the outputs come back), (4) a second client machine building the gateway's graph
 * through the gateway (nothing to upload, nothing to build: the outputs are on the builders). With --big N: a client uploads an
 * N MiB input and downloads an N MiB output through the gateway; the gateway's and the
 * coordinator's peak RSS are reported.
 *
 *   npm run build && node --import tsx bench/gateway.ts [--n 40] [--sleep 0.5] [--big 1024] [--only-big] [--json]
 */
import { parseArgs } from "node:util";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { startClientMachine, startGatewaySshd, type ClientMachine } from "../test/helpers/gateway.js";
import { CLI, makeTempDir, runCli } from "../test/helpers/cli.js";
import { startServe } from "../test/helpers/serve-process.js";
import { poolDown, poolUp } from "../src/providers/local/pool.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "40" },
    sleep: { type: "string", default: "0.5" },
    big: { type: "string", default: "0" },
    json: { type: "boolean", default: false },
    "only-big": { type: "boolean", default: false },
  },
});
const n = Number(values.n);
const sleep = Number(values.sleep);
const bigMiB = Number(values.big);
const ideal = (n * sleep) / 4;
const GRAPH = resolve(import.meta.dirname, "../examples/graph.nix");
const log = (s: string) => {
  if (!values.json) console.error(s);
};

/** Peak RSS (kB) of processes whose command line matches, sampled every 50 ms until stopped. */
function watchRss(match: RegExp): { stop: () => number } {
  let peak = 0;
  let on = true;
  const tick = async () => {
    while (on) {
      for (const pid of (await readdir("/proc")).filter((p) => /^\d+$/.test(p))) {
        const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
        if (!match.test(cmd.split("\0").join(" "))) continue;
        const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
        const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
        peak = Math.max(peak, hwm);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  void tick();
  return {
    stop: () => {
      on = false;
      return peak;
    },
  };
}

const tmp = await makeTempDir("nixpool-bench-gateway-");
const stateDir = join(tmp.dir, "state");
const cli = async (args: string[]) => {
  const r = await runCli(stateDir, args);
  if (r.exitCode !== 0) throw new Error(`nixpool ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};
const machines: ClientMachine[] = [];
let stopServe: (() => Promise<unknown>) | undefined;
let stopSshd: (() => Promise<void>) | undefined;
const result: Record<string, unknown> = { n, sleep, idealS: ideal, load: loadavg()[0] };
try {
  await poolUp(stateDir, { builders: 2, jobs: 2 });
  const a = await startClientMachine(join(tmp.dir, "a"), "bench-a");
  const b = await startClientMachine(join(tmp.dir, "b"), "bench-b");
  machines.push(a, b);
  // The API listens where the client machine reaches this one (remote nixpool build).
  const serve = await startServe(stateDir, ["--listen", `${a.rec.hostAddress}:0`]);
  stopServe = serve.stop;
  const token = (await cli(["serve", "token"])).trim();
  await cli(["access", "add", "alice", "--key", a.publicKey, "--gateway", "--can-vouch"]);
  await cli(["access", "add", "bob", "--key", b.publicKey, "--gateway", "--vouched-by", "alice"]);
  const sshd = await startGatewaySshd(join(tmp.dir, "sshd"), a.rec.hostAddress);
  stopSshd = sshd.stop;
  await writeFile(sshd.authorizedKeysFile, `${await cli(["access", "keys", "root", "--gateway"])}\n`);
  for (const [m, name] of [
    [a, "alice"],
    [b, "bob"],
  ] as const) {
    const cfg = JSON.parse(
      await cli([
        "config",
        "client",
        name,
        "--host",
        sshd.address,
        "--user",
        "root",
        "--host-key-file",
        sshd.hostKeyPubFile,
        "--identity",
        m.identity,
        "--json",
      ]),
    ) as { machinesLine: string; knownHostsLine: string; nixConf: string };
    await m.configure(cfg);
  }
  // The pool's builders straight, as `nixpool config machines --direct` renders them (the
  // identity file is in the state directory, which the client machine sees).
  await writeFile(a.etcNix("machines-direct"), await cli(["config", "machines", "--direct"]));

  const build = async (m: ClientMachine, seed: string, builders: string) => {
    const t0 = Date.now();
    const r = await m.exec(
      [
        "nix-build",
        GRAPH,
        "--arg",
        "n",
        String(n),
        "--argstr",
        "sleep",
        String(sleep),
        "--argstr",
        "seed",
        seed,
        "--max-jobs",
        "0",
        "--builders",
        builders,
        "--no-out-link",
      ],
      { timeout: 900_000 },
    );
    if (r.exitCode !== 0) throw new Error(`nix-build failed:\n${r.stderr.slice(-3000)}`);
    return (Date.now() - t0) / 1000;
  };
  const gatewaySessions = async () =>
    (await readFile(join(stateDir, "serve", "gateway.log"), "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as {
            client: string;
            uploadedBytes: number;
            downloadedBytes: number;
            ms: number;
            startMs: number;
            requestMs: Record<string, number>;
          },
      );

  if (!values["only-big"]) {
    const direct = await build(a, randomBytes(8).toString("hex"), "@/etc/nix/machines-direct");
    log(`hook straight to the builders: ${direct.toFixed(2)} s (${(direct / ideal).toFixed(2)}× ideal)`);
    // Paired: the forced command without greet.sh (node writes the greeting once it runs).
    const keysWithGreet = await readFile(sshd.authorizedKeysFile, "utf8");
    const nodeGreets = keysWithGreet.replace(/command="\S+\/greet\.sh /g, 'command="');
    if (nodeGreets === keysWithGreet) throw new Error("the gateway's forced command has no greet.sh");
    await writeFile(sshd.authorizedKeysFile, nodeGreets);
    const viaNodeGreeting = await build(a, randomBytes(8).toString("hex"), "@/etc/nix/machines");
    await writeFile(sshd.authorizedKeysFile, keysWithGreet);
    log(
      `hook through the gateway, greeting from node: ${viaNodeGreeting.toFixed(2)} s (${(viaNodeGreeting / ideal).toFixed(2)}× ideal)`,
    );
    result["gatewayNodeGreetingS"] = viaNodeGreeting;
    const seed = randomBytes(8).toString("hex");
    const greetFrom = (await gatewaySessions()).length;
    const viaGateway = await build(a, seed, "@/etc/nix/machines");
    log(`hook through the gateway: ${viaGateway.toFixed(2)} s (${(viaGateway / ideal).toFixed(2)}× ideal)`);
    const before = (await gatewaySessions()).length;
    // Where a session's time goes (means over the gateway run's sessions, greet.sh's).
    const phases: Record<string, number> = {};
    const aliceSessions = (await gatewaySessions()).slice(greetFrom);
    for (const e of aliceSessions) {
      phases["session"] = (phases["session"] ?? 0) + e.ms / aliceSessions.length;
      phases["start"] = (phases["start"] ?? 0) + e.startMs / aliceSessions.length;
      for (const [k, v] of Object.entries(e.requestMs))
        phases[k] = (phases[k] ?? 0) + v / aliceSessions.length;
    }
    log(
      `gateway session, mean ms: ${Object.entries(phases)
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join(", ")}`,
    );
    result["gatewaySessionMeanMs"] = phases;
    // Remote nixpool build from the same client machine: its own store, the coordinator by URL.
    const t0 = Date.now();
    const remote = await a.exec(
      [
        "env",
        `NIXPOOL_COORDINATOR_TOKEN=${token}`,
        process.execPath,
        CLI,
        "--state-dir",
        join(tmp.dir, "client-state"),
        "build",
        "--coordinator",
        serve.url,
        GRAPH,
        "--arg",
        "n",
        String(n),
        "--argstr",
        "sleep",
        String(sleep),
        "--argstr",
        "seed",
        randomBytes(8).toString("hex"),
        "--no-out-link",
        "--json",
      ],
      { timeout: 900_000 },
    );
    const remoteS = (Date.now() - t0) / 1000;
    if (remote.exitCode !== 0) throw new Error(`remote nixpool build failed:\n${remote.stderr.slice(-3000)}`);
    const remoteJson = JSON.parse(remote.stdout) as { stats?: Record<string, number>; wallMs?: number };
    log(
      `remote nixpool build --coordinator: ${remoteS.toFixed(2)} s (${(remoteS / ideal).toFixed(2)}× ideal; the coordinator's build ${((remoteJson.wallMs ?? 0) / 1000).toFixed(2)} s)`,
    );
    result["remoteS"] = remoteS;
    result["remoteCoordinatorWallS"] = (remoteJson.wallMs ?? 0) / 1000;
    const second = await build(b, seed, "@/etc/nix/machines");
    const bobSessions = (await gatewaySessions()).slice(before);
    const up = bobSessions.reduce((s, e) => s + e.uploadedBytes, 0);
    const down = bobSessions.reduce((s, e) => s + e.downloadedBytes, 0);
    log(
      `second client, same graph: ${second.toFixed(2)} s, ${bobSessions.length} sessions, ${up} bytes up, ${down} bytes down`,
    );
    const sessionMs = bobSessions.map((e) => e.ms).sort((x, y) => x - y);
    Object.assign(result, {
      directS: direct,
      gatewayS: viaGateway,
      secondClientS: second,
      secondClientUploadedBytes: up,
      secondClientDownloadedBytes: down,
      secondClientSessionMsMedian: sessionMs[Math.floor(sessionMs.length / 2)] ?? 0,
    });
  }

  if (bigMiB > 0) {
    // A big input made on the client, a derivation that copies it: N MiB up, N MiB down.
    const big = `/root/big-${randomBytes(4).toString("hex")}`;
    await a.exec(["dd", "if=/dev/urandom", `of=${big}`, "bs=1M", `count=${bigMiB}`, "status=none"], {
      timeout: 600_000,
    });
    const expr = `derivation { name = "big-copy"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "/bin/cp \${builtins.path { path = ${big}; name = "big-input"; }} $out" ]; }`;
    // Either entry: the lean one (serve/gateway/main.js) or `nixpool gateway`.
    const gw = watchRss(/gateway(\/main\.js)? .*--client /);
    const coordinatorRss = watchRss(new RegExp(` --state-dir ${stateDir} serve `));
    const t0 = Date.now();
    const r = await a.exec(["nix-build", "-E", expr, "--max-jobs", "0", "--no-out-link"], {
      timeout: 1_800_000,
    });
    const bigS = (Date.now() - t0) / 1000;
    const gwPeak = gw.stop();
    const coPeak = coordinatorRss.stop();
    if (r.exitCode !== 0) throw new Error(`big build failed:\n${r.stderr.slice(-3000)}`);
    log(
      `${bigMiB} MiB up and down through the gateway: ${bigS.toFixed(1)} s; peak RSS gateway ${(gwPeak / 1024).toFixed(0)} MB, coordinator ${(coPeak / 1024).toFixed(0)} MB`,
    );
    Object.assign(result, {
      bigMiB,
      bigS,
      gatewayPeakRssMb: gwPeak / 1024,
      coordinatorPeakRssMb: coPeak / 1024,
    });
  }
  if (values.json) console.log(JSON.stringify(result, null, 2));
} finally {
  await stopServe?.().catch(() => undefined);
  await stopSshd?.().catch(() => undefined);
  for (const m of machines) await m.stop().catch(() => undefined);
  await poolDown(stateDir).catch(() => undefined);
  await tmp.cleanup();
}
