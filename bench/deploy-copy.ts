/**
 * Copying a deploy closure to a target: builder → target directly (the builder's export piped
 * into ssh to the target) against through this machine (two serve sessions piped here), on one
 * local pool in the same run. The closure: a root referencing `small` tiny paths, `large` paths
 * of `largeMiB` MiB and a lib (test/fixtures/nix/closure.nix). Each round builds a fresh closure,
 * puts it on the builder (local1), then copies it to local2 by one route and to local3 by the
 * other (which target and which route go first alternate between rounds).
 *
 *   npm run build && node --import tsx bench/deploy-copy.ts [--small 200] [--large 4] [--large-mib 16] [--rounds 3] [--json]
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeClientFiles } from "../src/adapters/nix-build.js";
import { run } from "../src/adapters/runner.js";
import { statePaths } from "../src/config/state-paths.js";
import type { TargetSsh } from "../src/core/deploy/target-ssh-argv.js";
import { copyClosure, type CopyClosureResult, type CopyRoute } from "../src/deploy/closure-copy.js";
import { writeTargetKnownHosts, type TargetLink } from "../src/deploy/target-ssh.js";
import { poolDown, poolUp } from "../src/providers/local/pool.js";
import { poolBuilders } from "../src/providers/local/records.js";

const { values } = parseArgs({
  options: {
    small: { type: "string", default: "200" },
    large: { type: "string", default: "4" },
    "large-mib": { type: "string", default: "16" },
    rounds: { type: "string", default: "3" },
    json: { type: "boolean", default: false },
  },
});
const small = Number(values.small);
const large = Number(values.large);
const largeMiB = Number(values["large-mib"]);
const rounds = Number(values.rounds);
const fixture = resolve(import.meta.dirname, "../test/fixtures/nix/closure.nix");
const NIX_CONFIG = "substituters =\nsandbox = false\nbuild-users-group =";
const log = (s: string) => {
  if (!values.json) console.error(s);
};

const stateDir = await mkdtemp(join(tmpdir(), "nixpool-bench-copy-"));
const rows: (Pick<CopyClosureResult, "route" | "closure" | "narBytes" | "durationMs" | "phases"> & {
  round: number;
  target: string;
  sent: number;
})[] = [];
try {
  const pool = await poolUp(stateDir, { builders: 3, jobs: 1 });
  const builders = poolBuilders(pool);
  const files = await writeClientFiles(stateDir, builders);
  const clientKey = statePaths(stateDir).localPool.clientKey;
  const asTarget = (i: number): TargetSsh => {
    const h = pool.hosts[i]!;
    return {
      name: h.name,
      host: h.address,
      port: 22,
      user: "root",
      hostKey: h.hostKeyPub,
      identityFile: clientKey,
      sudo: false,
    };
  };
  const knownHostsFile = await writeTargetKnownHosts(
    join(stateDir, "targets", "known_hosts"),
    [0, 1, 2].map(asTarget),
  );
  const link = (i: number): TargetLink => ({ target: asTarget(i), knownHostsFile });
  const from = { kind: "builder" as const, builder: builders[0]!, sshConfig: files.sshConfig };
  for (let round = 1; round <= rounds; round++) {
    const salt = randomBytes(6).toString("hex");
    const t0 = Date.now();
    const root = (
      await run(
        [
          "nix-build",
          fixture,
          "-A",
          "root",
          "--argstr",
          "salt",
          salt,
          "--arg",
          "small",
          String(small),
          "--arg",
          "large",
          String(large),
          "--arg",
          "largeMiB",
          String(largeMiB),
          "--no-out-link",
        ],
        { env: { NIX_CONFIG }, timeout: 1_800_000 },
      )
    ).stdout.trim();
    const put = await copyClosure({ paths: [root], from: { kind: "local" }, to: link(0) });
    log(
      `round ${round}: built in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${put.sent.length} paths (${(put.narBytes / 1048576).toFixed(1)} MiB) put on local1 in ${(put.durationMs / 1000).toFixed(2)} s`,
    );
    const order: [CopyRoute, number][] =
      round % 2 === 1
        ? [
            ["direct", 1],
            ["via-here", 2],
          ]
        : [
            ["via-here", 1],
            ["direct", 2],
          ];
    for (const [route, i] of order) {
      const r = await copyClosure({ paths: [root], from, to: link(i), route });
      if (r.sent.length !== put.sent.length)
        throw new Error(`${route}: sent ${r.sent.length} of ${put.sent.length} paths`);
      const again = await copyClosure({ paths: [root], from, to: link(i), route });
      if (again.sent.length !== 0) throw new Error(`${route}: a second copy sent ${again.sent.length} paths`);
      rows.push({
        round,
        target: asTarget(i).name,
        route,
        closure: r.closure,
        sent: r.sent.length,
        narBytes: r.narBytes,
        durationMs: r.durationMs,
        phases: r.phases,
      });
      log(
        `  ${route.padEnd(8)} → ${asTarget(i).name}: ${(r.durationMs / 1000).toFixed(2)} s (connect ${r.phases.connectMs} ms, plan ${r.phases.planMs} ms, send ${r.phases.sendMs} ms); nothing-to-send check ${again.durationMs} ms`,
      );
    }
  }
} finally {
  await poolDown(stateDir).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
};
const summary = (route: CopyRoute) => {
  const rs = rows.filter((r) => r.route === route);
  return {
    route,
    medianS: median(rs.map((r) => r.durationMs)) / 1000,
    medianSendS: median(rs.map((r) => r.phases.sendMs)) / 1000,
  };
};
const direct = summary("direct");
const via = summary("via-here");
if (values.json)
  console.log(JSON.stringify({ small, large, largeMiB, rounds, rows, direct, viaHere: via }, null, 2));
else
  console.log(
    `closure of ${small + large + 2} paths (${small} small, ${large} × ${largeMiB} MiB): direct ${direct.medianS.toFixed(2)} s, through this machine ${via.medianS.toFixed(2)} s (median of ${rounds}; ratio ${(via.medianS / direct.medianS).toFixed(2)})`,
  );
