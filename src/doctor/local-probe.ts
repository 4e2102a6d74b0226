import { readdir, readFile, stat } from "node:fs/promises";
import { homedir, userInfo } from "node:os";
import { loadMachines } from "../adapters/machines-file.js";
import { probeStoreAccess } from "../adapters/nix-store-probe.js";
import { run } from "../adapters/runner.js";
import { effectiveStoreUri } from "../core/nix-store-kind.js";
import { hookSshOptions, type LocalFacts } from "../core/doctor/local-verdicts.js";
import {
  configString,
  configWords,
  parseNixConfig,
  parseNixVersion,
  parseSshResolved,
} from "../core/doctor/parse.js";

const NIX = ["nix", "--extra-experimental-features", "nix-command"];

/** NIX_SSHOPTS of a running nix-daemon (readable as root), or undefined. */
async function readDaemonSshOpts(): Promise<string | undefined> {
  const pids = await readdir("/proc").catch(() => [] as string[]);
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue;
    const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
    if (comm.trim() !== "nix-daemon") continue;
    const env = await readFile(`/proc/${pid}/environ`, "utf8").catch(() => "");
    const v = env
      .split("\0")
      .find((e) => e.startsWith("NIX_SSHOPTS="))
      ?.slice("NIX_SSHOPTS=".length);
    if (v) return v;
  }
  return undefined;
}

/** Follows a `builders` value through its @files exactly as Nix 2.8's build hook does. */
async function readMachines(value: string): Promise<NonNullable<LocalFacts["machines"]>> {
  const parsed = await loadMachines("builders setting", value);
  return { entries: parsed.machines, files: parsed.includes, problems: parsed.diagnostics };
}

async function probeSubstituter(url: string, signal: AbortSignal | undefined) {
  const started = Date.now();
  if (url.startsWith("file://")) {
    const ok = await stat(url.slice("file://".length)).then(
      () => true,
      () => false,
    );
    return { url, ok, ms: Date.now() - started, ...(ok ? {} : { error: "directory missing" }) };
  }
  if (!/^https?:\/\//.test(url)) return { url, ok: true, ms: 0, error: "not checked (not HTTP)" };
  try {
    const timeout = AbortSignal.timeout(3000);
    const res = await fetch(`${url.replace(/\/$/, "")}/nix-cache-info`, {
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    await res.body?.cancel();
    return res.ok
      ? { url, ok: true, ms: Date.now() - started }
      : { url, ok: false, ms: Date.now() - started, error: `HTTP ${res.status}` };
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const error =
      e instanceof Error && e.name === "TimeoutError"
        ? "no answer in 3 s"
        : (cause?.code ?? cause?.message ?? String(e));
    return { url, ok: false, ms: Date.now() - started, error };
  }
}

/** How the hook user's ssh resolves the nixpool-* hosts of the machines file (only when we are that user). */
async function resolveAliases(f: LocalFacts): Promise<{ alias: string; hostname: string }[]> {
  const opts = hookSshOptions(f);
  if (!opts) return [];
  const aliases = [
    ...new Set(
      (f.machines?.entries ?? [])
        .map((e) => /^[a-z-]+:\/\/(?:[^@/]+@)?([^/?]+)/.exec(e.storeUri)?.[1] ?? "")
        .filter((h) => h.startsWith("nixpool-")),
    ),
  ].slice(0, 50);
  return Promise.all(
    aliases.map(async (alias) => {
      const r = await run(["ssh", ...opts, "-G", alias], { reject: false, timeout: 5000 }).catch(
        () => undefined,
      );
      return { alias, hostname: parseSshResolved(r?.stdout ?? "").hostname || alias };
    }),
  );
}

/** The quick part of the local facts: user, Nix version and settings, daemon or not. */
export async function probeLocalNix(o: { poolUris: string[]; signal?: AbortSignal }): Promise<LocalFacts> {
  const info = userInfo();
  const signalOpt = o.signal ? { signal: o.signal } : {};
  const [groups, version, config, daemonSshOpts] = await Promise.all([
    run(["id", "-Gn"], { reject: false, timeout: 5000, ...signalOpt }).then(
      (r) => r.stdout.trim().split(/\s+/).filter(Boolean),
      () => [] as string[],
    ),
    run(["nix", "--version"], { reject: false, timeout: 15000, ...signalOpt }).then(
      (r) => (r.exitCode === 0 ? { version: parseNixVersion(r.stdout) } : { error: r.stderr.trim() }),
      (e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }),
    ),
    run([...NIX, "show-config", "--json"], { reject: false, timeout: 15000, ...signalOpt }).then(
      (r) =>
        r.exitCode === 0
          ? { config: parseNixConfig(r.stdout) }
          : { error: r.stderr.trim().split("\n")[0] ?? `exit ${r.exitCode}` },
      (e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }),
    ),
    readDaemonSshOpts(),
  ]);
  const storeSetting = "config" in config && config.config ? configString(config.config, "store") : "";
  const { daemonSocket, stateWritable } = await probeStoreAccess(
    effectiveStoreUri({ storeSetting, nixRemote: process.env["NIX_REMOTE"] }),
    process.env,
  );
  const facts: LocalFacts = {
    user: info.username,
    uid: info.uid,
    groups,
    home: homedir(),
    nix: Object.fromEntries(Object.entries(version).filter(([, v]) => v !== undefined)),
    daemonSocket,
    stateWritable,
    env: {
      ...(process.env["NIX_REMOTE"] ? { NIX_REMOTE: process.env["NIX_REMOTE"] } : {}),
      ...(process.env["NIX_SSHOPTS"] ? { NIX_SSHOPTS: process.env["NIX_SSHOPTS"] } : {}),
    },
    substituters: [],
    poolUris: o.poolUris,
  };
  if (daemonSshOpts) facts.daemonSshOpts = daemonSshOpts;
  if ("config" in config && config.config) facts.config = config.config;
  else if ("error" in config && config.error) facts.configError = config.error;
  return facts;
}

/** Completes the local facts: the machines Nix reads, substituters, and the hook's ssh aliases. */
export async function completeLocalFacts(base: LocalFacts, signal?: AbortSignal): Promise<LocalFacts> {
  const facts: LocalFacts = { ...base };
  if (facts.config) {
    const builders = facts.config["builders"];
    facts.machines = await readMachines(typeof builders === "string" ? builders : "");
    facts.substituters = await Promise.all(
      configWords(facts.config, "substituters").map((u) => probeSubstituter(u, signal)),
    );
    facts.aliases = await resolveAliases(facts);
  }
  return facts;
}
