import { readFile, realpath } from "node:fs/promises";
import type { Builder } from "../core/builder.js";
import type { BuildCheck } from "../core/build-record.js";
import { outputPaths, parseDerivation } from "../core/derivation.js";
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from "../core/dispatch/trust-policy.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { isDerivationPath, STORE_DIR } from "../core/store-path.js";
import { run } from "../adapters/runner.js";
import { statePaths } from "../config/state-paths.js";
import { dispatchBuild } from "./dispatch-build.js";
import { readResultRecords, type ResultRecord } from "./result-records.js";
import type { DispatchEvent } from "./run-dispatch.js";

export interface VerifyOutputsRequest {
  /** Output paths, or links to them (./result). */
  paths: readonly string[];
  builders: Builder[];
  stateDir: string;
  trust?: TrustPolicy;
  signal?: AbortSignal;
  onEvent?: (e: DispatchEvent) => void;
}

/** One checked output: who built the copy it was compared with, where it was built again, both hashes. */
export interface VerifiedOutput {
  path: string;
  drv: string;
  output: string;
  builtBy: string;
  narHash: string;
  rebuiltOn: string;
  rebuiltTrust: string;
  rebuiltNarHash: string;
}

/**
 * nixpool verify PATH…: builds the derivation of each output again on a builder other than the one
 * recorded as its builder (STATE/trust/results.jsonl) and other than any that holds it, and
 * compares the NAR hash with this machine's copy (or, when it is not here, the recorded hash).
 * A difference is NOT_REPRODUCIBLE with both outputs kept, as for `build --verify`.
 */
export async function verifyOutputs(req: VerifyOutputsRequest): Promise<VerifiedOutput[]> {
  const records = await readResultRecords(statePaths(req.stateDir).trust.resultsFile);
  const targets = await Promise.all(req.paths.map((p) => resolveTarget(p, records)));
  const references = new Map<string, BuildCheck>();
  const rebuild = new Map<string, Set<string>>();
  for (const t of targets) {
    const ref = references.get(t.drv) ?? { builder: t.builtBy, trust: t.builtTrust, narHashes: {} };
    ref.narHashes[t.output] = t.narHash;
    references.set(t.drv, ref);
    const barred = rebuild.get(t.drv) ?? new Set<string>();
    for (const r of records) if (r.drv === t.drv) barred.add(r.builder);
    rebuild.set(t.drv, barred);
  }
  for (const t of targets) {
    const barred = rebuild.get(t.drv) as Set<string>;
    if (!req.builders.some((b) => !barred.has(b.name))) {
      throw new NixpoolError(
        "VERIFY_TOO_FEW_BUILDERS",
        `No builder other than ${[...barred].join(", ")} (which built it) can build ${t.path} again.`,
        {
          hint: "Add a builder to nixpool.toml, or start a local pool: nixpool local up",
          exitCode: ExitCode.usage,
        },
      );
    }
  }
  const roots = [...new Map(targets.map((t) => [t.drv, { drv: t.drv, output: t.output }])).values()];
  const result = await dispatchBuild({
    builders: req.builders,
    stateDir: req.stateDir,
    source: { roots },
    rebuild,
    references,
    outLink: null,
    trust: { ...(req.trust ?? DEFAULT_TRUST_POLICY), verifyRounds: 1, verifyOnly: [] },
    ...(req.signal ? { signal: req.signal } : {}),
    ...(req.onEvent ? { onEvent: req.onEvent } : {}),
  });
  return targets.map((t) => {
    const rec = result.records.find((r) => r.drv === t.drv);
    const last = rec?.builds?.[rec.builds.length - 1];
    return {
      path: t.path,
      drv: t.drv,
      output: t.output,
      builtBy: t.builtBy,
      narHash: t.narHash,
      rebuiltOn: last?.builder ?? "-",
      rebuiltTrust: last?.trust ?? "-",
      rebuiltNarHash: last?.narHashes[t.output] ?? "-",
    };
  });
}

interface Target {
  path: string;
  drv: string;
  output: string;
  builtBy: string;
  builtTrust: "trusted" | "untrusted";
  narHash: string;
}

/** The store path behind `arg`, its derivation and output name, and the copy to compare with. */
async function resolveTarget(arg: string, records: readonly ResultRecord[]): Promise<Target> {
  const real = await realpath(arg).catch(() => arg);
  const path = real.startsWith(`${STORE_DIR}/`) ? real.split("/").slice(0, 4).join("/") : undefined;
  if (!path) {
    throw new NixpoolError("USAGE", `${arg} is not a store path (nor a link to one).`, {
      hint: "Give output paths or result links, e.g.: nixpool verify ./result",
      exitCode: ExitCode.usage,
    });
  }
  const recs = records.filter((r) => r.output === path);
  const last = recs[recs.length - 1];
  const deriver =
    last?.drv ?? (await run(["nix-store", "-q", "--deriver", path], { reject: false })).stdout.trim();
  const text = isDerivationPath(deriver) ? await readFile(deriver, "utf8").catch(() => undefined) : undefined;
  const output = text
    ? [...outputPaths(parseDerivation(text, deriver))].find(([, p]) => p === path)?.[0]
    : undefined;
  if (!text || output === undefined) {
    throw new NixpoolError(
      "VERIFY_NO_DERIVER",
      `${path} has no derivation on this machine to build it again from (${last ? `recorded: ${last.drv}` : "no record, and Nix knows no deriver"}).`,
      {
        hint: "Build it through nixpool first (nixpool build keeps the .drv and records who built it), then run nixpool verify again.",
        exitCode: ExitCode.usage,
      },
    );
  }
  const valid = (await run(["nix-store", "--check-validity", path], { reject: false })).exitCode === 0;
  const localHash = valid ? (await run(["nix-store", "-q", "--hash", path])).stdout.trim() : undefined;
  const narHash = localHash ?? last?.narHash;
  if (narHash === undefined) {
    throw new NixpoolError(
      "VERIFY_NO_DERIVER",
      `${path} is neither in this machine's store nor recorded as built.`,
      {
        hint: "Build it first: nixpool build FILE.nix",
        exitCode: ExitCode.usage,
      },
    );
  }
  return {
    path,
    drv: deriver,
    output,
    builtBy: last?.builder ?? "this-machine",
    builtTrust: last?.trust ?? "trusted",
    narHash,
  };
}
