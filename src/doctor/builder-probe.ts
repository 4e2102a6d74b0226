import { constants } from "node:fs";
import { access, readdir, readFile, stat } from "node:fs/promises";
import { lookup } from "node:dns/promises";
import { connect, isIP } from "node:net";
import { homedir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { run, type RunResult } from "../adapters/runner.js";
import { sshAlias, storeUri, type Builder } from "../core/builder.js";
import type { BuilderProbe, IdentityFacts } from "../core/doctor/builder-verdicts.js";
import { parseKeyscan, parseRemoteFacts, parseSshResolved, parseSshVerbose } from "../core/doctor/parse.js";
import { REMOTE_FACTS_SCRIPT } from "../core/doctor/remote-script.js";
import { renderMachinesLine } from "../core/machines.js";

/** Files the builder probes share: the rendered ssh_config and the probe derivation. */
export interface ProbeContext {
  sshConfigPath: string;
  probeNixFile: string;
  inventoryPath?: string;
  /** Per-builder time budget in ms. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Set when this machine's Nix cannot run the round trip; the reason is reported. */
  roundTripObstacle?: string;
  /** Options of the build hook's ssh, when this process can act as the hook's user. */
  hookSshOpts?: string[];
}

/** The Nix file of the round-trip probe: one derivation that needs nothing but /bin/sh. */
export const PROBE_NIX = `{ nonce, system }:
derivation {
  name = "nixpool-doctor-probe";
  inherit system;
  builder = "/bin/sh";
  args = [ "-c" "echo \${nonce} > $out" ];
}
`;

class Budget {
  private readonly deadline: number;
  constructor(ms: number) {
    this.deadline = Date.now() + ms;
  }
  remaining(): number {
    return Math.max(0, this.deadline - Date.now());
  }
  expired(): boolean {
    return this.remaining() <= 0;
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

async function probeResolve(b: Builder, budget: Budget): Promise<NonNullable<BuilderProbe["resolve"]>> {
  const started = Date.now();
  if (isIP(b.host.replace(/^\[|\]$/g, ""))) return { ok: true, addresses: [b.host], ms: 0 };
  try {
    const res = await withTimeout(lookup(b.host, { all: true }), Math.min(budget.remaining(), 10_000), "DNS");
    return { ok: true, addresses: res.map((r) => r.address), ms: Date.now() - started };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    return { ok: false, error: code, ms: Date.now() - started };
  }
}

/** Connects to the SSH port and reads the server's banner line. */
async function probeTcp(
  address: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<NonNullable<BuilderProbe["tcp"]>> {
  const started = Date.now();
  return new Promise((resolve) => {
    let settled = false;
    let connectedAt = 0;
    let banner = "";
    const socket = connect({ host: address, port });
    const finish = (r: NonNullable<BuilderProbe["tcp"]>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      // A connection without a banner is not an sshd: a proxy, a firewall or a hung server.
      if (connectedAt)
        finish({ ok: false, error: "NO_BANNER", ms: Date.now() - started, timedOut: true, connected: true });
      else finish({ ok: false, error: "ETIMEDOUT", ms: Date.now() - started, timedOut: true });
    }, timeoutMs);
    signal?.addEventListener("abort", () =>
      finish({ ok: false, error: "interrupted", ms: Date.now() - started, timedOut: false }),
    );
    socket.once("connect", () => {
      connectedAt = Date.now();
    });
    socket.on("data", (chunk: Buffer) => {
      banner += chunk.toString("latin1");
      const nl = banner.indexOf("\n");
      if (nl >= 0 || banner.length > 255) {
        finish({
          ok: true,
          address,
          ms: connectedAt - started,
          banner: banner.slice(0, nl >= 0 ? nl : 255).trim(),
        });
      }
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      if (connectedAt) finish({ ok: true, address, ms: connectedAt - started });
      else finish({ ok: false, error: e.code ?? e.message, ms: Date.now() - started, timedOut: false });
    });
  });
}

async function probeIdentity(path: string, budget: Budget): Promise<IdentityFacts> {
  const runner = userInfo().username;
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => e);
  if (st instanceof Error) {
    return { path, runner, exists: st.code !== "ENOENT", readable: false, error: st.code ?? st.message };
  }
  const mode = st.mode & 0o777;
  const readable = await access(path, constants.R_OK).then(
    () => true,
    () => false,
  );
  const facts: IdentityFacts = {
    path,
    exists: true,
    readable,
    mode,
    runner,
  };
  if (!readable) return facts;
  // -P "" never prompts: an encrypted key fails instead.
  const r = await run(["ssh-keygen", "-y", "-P", "", "-f", path], {
    reject: false,
    timeout: Math.max(1, Math.min(budget.remaining(), 10_000)),
  }).catch(() => undefined);
  if (r?.exitCode === 0) facts.publicKey = r.stdout.trim();
  else if (r && /passphrase/i.test(r.stderr)) facts.encrypted = true;
  else if (r) {
    // Keys that ssh-keygen refuses for their mode still have a readable .pub next to them.
    const pub = await readFile(`${path}.pub`, "utf8").catch(() => undefined);
    if (pub) facts.publicKey = pub.trim();
  }
  return facts;
}

/** Private keys near the configured one and in ~/.ssh, to learn which key the builder would accept. */
async function candidateKeys(identityFile: string | undefined): Promise<string[]> {
  const dirs = [...new Set([...(identityFile ? [dirname(identityFile)] : []), join(homedir(), ".ssh")])];
  const out: string[] = [];
  for (const d of dirs) {
    const names = await readdir(d).catch(() => [] as string[]);
    for (const n of names) {
      if (n.endsWith(".pub") || !names.includes(`${n}.pub`)) continue;
      const p = join(d, n);
      if (p !== identityFile) out.push(p);
    }
  }
  return out.slice(0, 5);
}

/** The keys the build hook's own ssh (its NIX_SSHOPTS, ssh_config and known_hosts) records for the builder. */
async function probeHookKnownHosts(
  b: Builder,
  opts: string[],
  budget: Budget,
  signal: AbortSignal | undefined,
): Promise<BuilderProbe["hookKnownHosts"]> {
  const alias = sshAlias(b);
  const runOpts = {
    reject: false,
    timeout: Math.max(1, Math.min(budget.remaining(), 5000)),
    ...(signal ? { signal } : {}),
  };
  const g = await run(["ssh", ...opts, "-G", alias], runOpts);
  const r = parseSshResolved(g.stdout);
  // An alias the hook's ssh does not know is reported by local.hook-ssh; nothing to compare here.
  if (g.exitCode !== 0 || r.hostname === alias) return undefined;
  const entries: NonNullable<BuilderProbe["hookKnownHosts"]>["entries"] = [];
  for (const file of r.knownHostsFiles.map((f) => f.replace(/^~(?=\/)/, homedir()))) {
    const k = await run(["ssh-keygen", "-F", r.knownHostsName, "-f", file], runOpts);
    for (const key of parseKeyscan(k.stdout)) entries.push({ file, key });
  }
  return { name: r.knownHostsName, entries };
}

async function runBudgeted(
  argv: string[],
  budget: Budget,
  ctx: ProbeContext,
  extra: { input?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  return run(argv, {
    reject: false,
    timeout: Math.max(1, budget.remaining()),
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(extra.input !== undefined ? { input: extra.input } : {}),
    ...(extra.env ? { env: extra.env } : {}),
  });
}

type Step = <T>(name: string, f: () => Promise<T>) => Promise<T | undefined>;

/** nix store ping and the round trip through Nix's build hook, run concurrently. */
function startNixSteps(
  b: Builder,
  ctx: ProbeContext,
  step: Step,
  budget: Budget,
): Promise<[BuilderProbe["ping"] | undefined, BuilderProbe["roundTrip"] | undefined]> {
  const env = { NIX_SSHOPTS: `-F ${ctx.sshConfigPath}` };
  const ping = step("nix store ping", async () => {
    const r = await runBudgeted(
      ["nix", "--extra-experimental-features", "nix-command", "store", "ping", "--store", storeUri(b)],
      budget,
      ctx,
      { env },
    );
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, ms: r.durationMs };
  });
  if (ctx.roundTripObstacle) return Promise.all([ping, Promise.resolve(undefined)]);
  const roundTrip = step("round trip", async () => {
    const nonce = `${b.name}-${Date.now()}-${randomBytes(4).toString("hex")}`;
    const r = await runBudgeted(
      [
        "nix-build",
        ctx.probeNixFile,
        "--argstr",
        "nonce",
        nonce,
        "--argstr",
        "system",
        b.systems[0] ?? "x86_64-linux",
        "--no-out-link",
        "--max-jobs",
        "0",
        "--builders",
        renderMachinesLine(b),
        "--option",
        "substituters",
        "",
        "--option",
        "builders-use-substitutes",
        "false",
      ],
      budget,
      ctx,
      { env },
    );
    const outPath = r.stdout.trim().split("\n").at(-1) ?? "";
    const content = r.exitCode === 0 && outPath ? await readFile(outPath, "utf8").catch(() => "") : "";
    const ok = r.exitCode === 0 && content.trim() === nonce;
    return {
      ok,
      stderr:
        ok || r.exitCode !== 0
          ? r.stderr
          : `${r.stderr}\nerror: the copied result does not hold the expected content`,
      ms: r.durationMs,
      ...(outPath.startsWith("/nix/store/") ? { outPath } : {}),
    };
  });
  return Promise.all([ping, roundTrip]);
}

/** Probes one builder step by step within its time budget; never throws for the builder's faults. */
export async function probeBuilder(b: Builder, ctx: ProbeContext): Promise<BuilderProbe> {
  const budget = new Budget(ctx.timeoutMs);
  const p: BuilderProbe = {
    builder: b,
    sshConfigPath: ctx.sshConfigPath,
    budgetMs: ctx.timeoutMs,
    ...(ctx.roundTripObstacle ? { roundTripSkipped: ctx.roundTripObstacle } : {}),
    ...(ctx.inventoryPath ? { inventoryPath: ctx.inventoryPath } : {}),
  };
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T | undefined> => {
    if (budget.expired()) {
      (p.unfinished ??= {})[name] = "the time budget ran out before it started";
      return undefined;
    }
    try {
      return await f();
    } catch (e) {
      if ((e as { code?: string }).code === "INTERRUPTED") throw e;
      (p.unfinished ??= {})[name] = e instanceof Error ? e.message : String(e);
      return undefined;
    }
  };

  const identityPromise = b.identityFile ? probeIdentity(b.identityFile, budget) : Promise.resolve(undefined);

  const hookPromise = ctx.hookSshOpts
    ? step("hook known_hosts", () => probeHookKnownHosts(b, ctx.hookSshOpts ?? [], budget, ctx.signal))
    : Promise.resolve(undefined);

  p.resolve = await probeResolve(b, budget);
  if (p.resolve.ok) {
    const address = p.resolve.addresses[0] ?? b.host;
    p.tcp = await probeTcp(address, b.port, Math.max(1, Math.min(budget.remaining(), 10_000)), ctx.signal);
  }
  const [identity, hook] = await Promise.all([identityPromise, hookPromise]);
  if (identity) p.identity = identity;
  if (hook) p.hookKnownHosts = hook;
  if (!p.tcp?.ok) return p;

  const alias = sshAlias(b);
  const keyscan = () =>
    step("ssh-keyscan", async () => {
      const secs = Math.max(1, Math.min(10, Math.floor(budget.remaining() / 1000)));
      const r = await runBudgeted(
        ["ssh-keyscan", "-T", String(secs), "-p", String(b.port), b.host],
        budget,
        ctx,
      );
      const keys = parseKeyscan(r.stdout);
      return keys.length
        ? { keys }
        : {
            keys,
            error:
              r.stderr
                .trim()
                .split("\n")
                .filter((l) => !l.startsWith("#"))
                .at(-1) ?? "no key",
          };
    });
  const session = step("ssh session", async () => {
    const before = Date.now();
    const r = await runBudgeted(["ssh", "-F", ctx.sshConfigPath, "-v", alias, "sh", "-s"], budget, ctx, {
      input: REMOTE_FACTS_SCRIPT,
    });
    const after = Date.now();
    const trace = parseSshVerbose(r.stderr);
    const facts = trace.authenticated && r.stdout.includes("@@user") ? parseRemoteFacts(r.stdout) : undefined;
    const mid = Math.round((before + after) / 2000);
    return {
      exitCode: r.exitCode,
      trace,
      ms: r.durationMs,
      ...(facts ? { facts } : {}),
      ...(facts?.epochSeconds !== undefined ? { skewSeconds: facts.epochSeconds - mid } : {}),
    };
  });
  // Nix's own path, started with the session: judged only when the login works.
  const nixSteps = startNixSteps(b, ctx, step, budget);
  const s = await session;
  // The session's ssh already checked the pinned key; ask the builder for its keys only when that failed.
  const ks =
    s && !s.trace.hostKeyChanged && !s.trace.hostKeyUnknown && s.trace.serverHostKey
      ? undefined
      : await keyscan();
  if (ks) p.keyscan = ks;
  if (s) p.session = s;
  if (!s?.trace.authenticated) {
    if (s && s.trace.permissionDenied && s.trace.badPermissions.length === 0) {
      const candidates = await candidateKeys(b.identityFile);
      const alt = candidates.length
        ? await step("alternative keys", async () => {
            const r = await runBudgeted(
              [
                "ssh",
                "-F",
                ctx.sshConfigPath,
                "-v",
                "-o",
                "IdentitiesOnly=yes",
                ...candidates.flatMap((c) => ["-i", c]),
                alias,
                "true",
              ],
              budget,
              ctx,
            );
            return parseSshVerbose(r.stderr);
          })
        : undefined;
      p.alternatives = {
        tried: candidates,
        ...(alt?.authenticated && alt.accepted && alt.accepted.path !== b.identityFile
          ? { accepted: alt.accepted }
          : {}),
      };
    }
    // Nix's steps fail fast without a login; wait so that no process outlives the doctor.
    await nixSteps.catch(() => undefined);
    return p;
  }

  const [pg, rt] = await nixSteps;
  if (pg) p.ping = pg;
  if (rt) p.roundTrip = rt;
  return p;
}
