import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Builder } from "../core/builder.js";
import { judgeBuilder } from "../core/doctor/builder-verdicts.js";
import { hookSshOptions, judgeLocal, roundTripObstacle } from "../core/doctor/local-verdicts.js";
import { assembleBuilderReport, assembleReport, type DoctorReport } from "../core/doctor/model.js";
import { machinesUri } from "../core/machines.js";
import { renderKnownHosts, renderSshConfig } from "../core/ssh-config.js";
import { probeBuilder, PROBE_NIX } from "./builder-probe.js";
import { completeLocalFacts, probeLocalNix } from "./local-probe.js";
import { probeSharedBuilder } from "./shared-builder-probe.js";

export interface DoctorOptions {
  builders: Builder[];
  /** The inventory file fixes should name. */
  inventoryPath?: string;
  /** Per-builder time budget, ms. */
  timeoutMs: number;
  /** Run the checks of this machine too (default true). */
  local?: boolean;
  /** nixpool's state directory: on a shared builder, its keys command is checked too. */
  stateDir?: string;
  signal?: AbortSignal;
}

/**
 * Diagnoses this machine and every builder in parallel, each builder within its own time
 * budget, through an ssh_config and known_hosts rendered from the inventory (pinned keys).
 */
export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const started = Date.now();
  const dir = await mkdtemp(join(tmpdir(), "nixpool-doctor-"));
  try {
    const knownHostsPath = join(dir, "known_hosts");
    const sshConfigPath = join(dir, "ssh_config");
    const probeNixFile = join(dir, "probe.nix");
    const connectTimeout = Math.max(1, Math.min(10, Math.floor(o.timeoutMs / 1000)));
    await writeFile(knownHostsPath, renderKnownHosts(o.builders));
    await writeFile(
      sshConfigPath,
      renderSshConfig(o.builders, { knownHostsFile: knownHostsPath, connectTimeout }),
    );
    await writeFile(probeNixFile, PROBE_NIX);
    // The quick local facts first: they decide whether the round trip can go through this machine's Nix.
    const base = await probeLocalNix({
      poolUris: o.builders.map((b) => machinesUri(b)),
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const obstacle = roundTripObstacle(base);
    const hookSshOpts = hookSshOptions(base);
    const stateDir = o.stateDir;
    const localPromise =
      o.local === false
        ? Promise.resolve([])
        : Promise.all([
            completeLocalFacts(base, o.signal).then(judgeLocal),
            stateDir ? probeSharedBuilder(stateDir) : [],
          ]).then(([nix, shared]) => [...nix, ...shared]);
    const builderReports = Promise.all(
      o.builders.map(async (b) => {
        const t0 = Date.now();
        const probe = await probeBuilder(b, {
          sshConfigPath,
          probeNixFile,
          timeoutMs: o.timeoutMs,
          ...(obstacle ? { roundTripObstacle: obstacle } : {}),
          ...(hookSshOpts ? { hookSshOpts } : {}),
          ...(o.inventoryPath ? { inventoryPath: o.inventoryPath } : {}),
          ...(o.signal ? { signal: o.signal } : {}),
        });
        return assembleBuilderReport(
          { name: b.name, uri: machinesUri(b), address: `${b.user ? `${b.user}@` : ""}${b.host}:${b.port}` },
          judgeBuilder(probe),
          Date.now() - t0,
        );
      }),
    );
    const [local, builders] = await Promise.all([localPromise, builderReports]);
    return assembleReport(local, builders, Date.now() - started);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
