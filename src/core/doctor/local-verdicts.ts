import { failCheck, passCheck, warnCheck, type CheckResult } from "./model.js";
import {
  compareVersions,
  configBool,
  configString,
  configWords,
  matchNixUser,
  type NixConfig,
} from "./parse.js";
import { isDaemonBuilding } from "../nix-store-kind.js";
import { formatMachinesDiagnostic, type MachinesDiagnostic, type ParsedMachine } from "../machines-parse.js";

/** What the local probes found out about this machine's Nix. */
export interface LocalFacts {
  user: string;
  uid: number;
  groups: string[];
  home: string;
  nix: { version?: string; error?: string };
  config?: NixConfig;
  configError?: string;
  daemonSocket: boolean;
  stateWritable: boolean;
  env: { NIX_REMOTE?: string; NIX_SSHOPTS?: string };
  /** NIX_SSHOPTS of the running nix-daemon, when it could be read. */
  daemonSshOpts?: string;
  /**
   * Effective machines, parsed as Nix 2.8's build hook parses them (machines-parse.ts): the
   * entries, the files it looked for, and the problems (errors: Nix refuses the whole setting).
   */
  machines?: {
    entries: ParsedMachine[];
    files: { path: string; exists: boolean }[];
    problems: MachinesDiagnostic[];
  };
  substituters: { url: string; ok: boolean; error?: string; ms: number }[];
  /** How the hook user's ssh resolves the nixpool aliases of the effective machines (`ssh -G`). */
  aliases?: { alias: string; hostname: string }[];
  /** Store URIs of the builders being diagnosed, to compare with the effective machines. */
  poolUris: string[];
}

const MIN_NIX_VERSION = "2.4";

/** The local store kind: "daemon" when a nix-daemon performs builds (its hook runs as root). */
export function localStoreKind(f: LocalFacts): "daemon" | "local" {
  const storeSetting = f.config ? configString(f.config, "store") : "";
  return isDaemonBuilding({ ...f, storeSetting, nixRemote: f.env.NIX_REMOTE }) ? "daemon" : "local";
}

/**
 * The options of the build hook's ssh (NIX_SSHOPTS: the daemon's, or ours in single-user mode),
 * or undefined when this process is not the hook's user and so cannot see its ssh setup.
 */
export function hookSshOptions(f: LocalFacts): string[] | undefined {
  const daemon = localStoreKind(f) === "daemon";
  if (daemon && f.uid !== 0) return undefined;
  return ((daemon ? f.daemonSshOpts : f.env.NIX_SSHOPTS) ?? "").split(/\s+/).filter(Boolean);
}

function judgeNix(f: LocalFacts): CheckResult {
  const id = "local.nix";
  const title = "Nix present";
  if (!f.nix.version) {
    return failCheck(
      id,
      title,
      `Nix is not installed or not on PATH (${f.nix.error ?? "nix --version failed"}).`,
      {
        symptom: "nix: command not found",
        fix: "apt-get install nix-bin (Debian), or install Nix from https://nixos.org/download",
      },
    );
  }
  if (compareVersions(f.nix.version, MIN_NIX_VERSION) < 0) {
    return failCheck(
      id,
      title,
      `Nix ${f.nix.version} is older than ${MIN_NIX_VERSION}, which nixpool needs (nix-command, ssh-ng).`,
      {
        fix: `Upgrade Nix to ${MIN_NIX_VERSION} or later.`,
      },
    );
  }
  return passCheck(id, title, `Nix ${f.nix.version}.`, { data: { version: f.nix.version } });
}

function judgeMode(f: LocalFacts): CheckResult {
  const id = "local.nix-mode";
  const title = "Single-user or daemon";
  if (f.configError) {
    return failCheck(id, title, `nix show-config fails: ${f.configError}`, {
      fix: "Fix /etc/nix/nix.conf (nix show-config names the bad line).",
    });
  }
  const kind = localStoreKind(f);
  if (kind === "daemon") {
    return passCheck(
      id,
      title,
      "A nix-daemon performs builds: its build hook runs as root, with root's SSH setup.",
      {
        data: { mode: "daemon" },
      },
    );
  }
  return passCheck(id, title, `Single-user: builds and the build hook run as ${f.user}.`, {
    data: { mode: "single-user" },
  });
}

function judgeHookSsh(f: LocalFacts): CheckResult {
  const id = "local.hook-ssh";
  const title = "SSH setup the build hook uses";
  const daemon = localStoreKind(f) === "daemon";
  const hookUser = daemon ? "root" : f.user;
  const home = daemon ? "/root" : f.home;
  const sshOpts = daemon ? f.daemonSshOpts : f.env.NIX_SSHOPTS;
  const files = `${home}/.ssh/config, /etc/ssh/ssh_config, known_hosts ${home}/.ssh/known_hosts and /etc/ssh/ssh_known_hosts${sshOpts ? `, plus NIX_SSHOPTS="${sshOpts}"` : ""}`;
  const data = { user: hookUser, home, nixSshOpts: sshOpts ?? null };
  if (daemon && f.env.NIX_SSHOPTS && f.env.NIX_SSHOPTS !== f.daemonSshOpts) {
    return warnCheck(
      id,
      title,
      `The build hook runs as root inside nix-daemon and reads ${files}; your NIX_SSHOPTS="${f.env.NIX_SSHOPTS}" does not reach it.`,
      {
        symptom:
          "Host key verification failed. / Permission denied (publickey). (only in builds, not in your own ssh)",
        fix: "Install the ssh_config and known_hosts where root's ssh reads them: sudo nixpool config apply",
        data,
      },
    );
  }
  const unknown = (f.aliases ?? []).filter((a) => a.hostname === a.alias);
  if (unknown.length > 0) {
    const names = unknown.map((a) => a.alias).join(", ");
    return warnCheck(
      id,
      title,
      `The machines file names ${names}, but ${hookUser}'s ssh has no Host alias for ${unknown.length === 1 ? "it" : "them"}: plain nix-build fails to connect.`,
      {
        symptom: `ssh: Could not resolve hostname ${unknown[0]?.alias ?? ""}: Name or service not known`,
        fix: `${daemon || f.uid !== 0 ? "sudo " : ""}nixpool config apply`,
        data: { ...data, unknownAliases: unknown.map((a) => a.alias) },
      },
    );
  }
  return passCheck(id, title, `The build hook runs as ${hookUser} and reads ${files}.`, { data });
}

function judgeBuilders(f: LocalFacts): CheckResult {
  const id = "local.builders";
  const title = "Effective builders setting";
  const value = f.config ? configString(f.config, "builders") : "";
  const m = f.machines;
  const missingFiles = m?.files.filter((x) => !x.exists) ?? [];
  const entries = m?.entries ?? [];
  const data = { builders: value, machines: entries.map((e) => e.storeUri), files: m?.files ?? [] };
  const refused = m?.problems.filter((d) => d.severity === "error") ?? [];
  if (refused.length > 0) {
    return failCheck(
      id,
      title,
      `Nix 2.8 refuses the machines of builders = ${value} (${refused.length} problem${refused.length > 1 ? "s" : ""}): ${refused.map(formatMachinesDiagnostic).join("; ")}.`,
      {
        symptom: "error: bad machine specification: … (every build that may offload fails)",
        fix: "Fix the lines named above, or rewrite the file from the inventory: nixpool config apply",
        data: { ...data, problems: refused },
      },
    );
  }
  if (missingFiles.length > 0) {
    return warnCheck(
      id,
      title,
      `builders = ${value} names ${missingFiles.map((x) => x.path).join(", ")}, which does not exist; Nix ignores a missing file silently and builds locally.`,
      {
        symptom:
          "error: a 'x86_64-linux' with features {} is required to build …, but I am a … (or: everything builds locally)",
        fix: "Write the machines file: nixpool config apply",
        data,
      },
    );
  }
  const absent = f.poolUris.filter((u) => !entries.some((e) => e.storeUri === u));
  if (f.poolUris.length > 0 && absent.length === f.poolUris.length) {
    return warnCheck(
      id,
      title,
      `Nix's own builders (${entries.length ? entries.map((e) => e.storeUri).join(", ") : "none"}) include none of nixpool's builders: plain nix-build will not offload (nixpool build passes them itself).`,
      {
        fix: "nixpool config apply",
        data,
      },
    );
  }
  if (absent.length > 0) {
    return warnCheck(id, title, `Nix's builders setting lacks ${absent.join(", ")}.`, {
      fix: "nixpool config apply",
      data,
    });
  }
  return passCheck(
    id,
    title,
    `builders = ${value || "(empty)"}: ${entries.length} machine${entries.length === 1 ? "" : "s"}.`,
    { data },
  );
}

function judgeTrusted(f: LocalFacts): CheckResult {
  const id = "local.trusted-user";
  const title = "Local user trusted";
  if (localStoreKind(f) !== "daemon") {
    return passCheck(
      id,
      title,
      `${f.user} opens the store directly, so --builders and --option are honoured.`,
    );
  }
  const trusted = f.config ? configWords(f.config, "trusted-users") : [];
  if (matchNixUser(f.user, f.groups, trusted)) {
    return passCheck(id, title, `${f.user} is in trusted-users (${trusted.join(" ")}).`);
  }
  return warnCheck(
    id,
    title,
    `${f.user} is not in trusted-users (${trusted.join(" ") || "empty"}): the daemon silently ignores --builders and --option builders from you and uses only /etc/nix/machines.`,
    {
      symptom:
        "warning: ignoring the client-specified setting 'builders', because it is a restricted setting and you are not a trusted user",
      fix: `Put the builders where the daemon reads them (nixpool config apply), or add "trusted-users = ${[...new Set([...trusted, f.user])].join(" ")}" to /etc/nix/nix.conf and restart nix-daemon.`,
    },
  );
}

function judgeSubstituters(f: LocalFacts): CheckResult {
  const id = "local.substituters";
  const title = "Substituters reachable";
  if (f.substituters.length === 0) {
    return passCheck(id, title, "No substituters configured: everything is built or copied from builders.");
  }
  const bad = f.substituters.filter((s) => !s.ok);
  const data = { substituters: f.substituters };
  if (bad.length > 0) {
    return warnCheck(
      id,
      title,
      `${bad.map((s) => `${s.url} (${s.error ?? "no answer"})`).join(", ")} unreachable: Nix retries it for every path, which slows builds down by seconds.`,
      {
        symptom: `warning: error: unable to download '${bad[0]?.url.replace(/\/$/, "") ?? ""}/nix-cache-info': Couldn't connect to server (7); retrying in … ms`,
        fix: "When offline, set \"substituters =\" in /etc/nix/nix.conf (or pass --option substituters ''); otherwise restore the network route to the cache.",
        data,
      },
    );
  }
  return passCheck(id, title, `${f.substituters.map((s) => `${s.url} (${s.ms} ms)`).join(", ")} reachable.`, {
    data,
  });
}

function judgeUseSubstitutes(f: LocalFacts): CheckResult {
  const id = "local.builders-use-substitutes";
  const title = "builders-use-substitutes";
  const v = f.config ? configBool(f.config, "builders-use-substitutes") : undefined;
  if (v) {
    return passCheck(
      id,
      title,
      "true: builders fetch inputs from the substituters themselves (they must reach them).",
    );
  }
  return passCheck(
    id,
    title,
    "false: every input travels from this machine to the builder over SSH; set it to true when builders reach a cache faster than they reach you.",
  );
}

/** Turns the local probe results into the local rows of checks. */
export function judgeLocal(f: LocalFacts): CheckResult[] {
  const nix = judgeNix(f);
  if (nix.status === "fail") return [nix];
  return [
    nix,
    judgeMode(f),
    judgeHookSsh(f),
    judgeBuilders(f),
    judgeTrusted(f),
    judgeSubstituters(f),
    judgeUseSubstitutes(f),
  ];
}

/**
 * Why the round trip through this machine's Nix cannot test a builder, if it cannot: under a
 * nix-daemon that does not trust us, --builders is dropped and only the daemon's machines count.
 */
export function roundTripObstacle(f: LocalFacts): string | undefined {
  if (!f.nix.version) return "Nix is missing on this machine (see local.nix)";
  if (localStoreKind(f) !== "daemon" || f.uid === 0) return undefined;
  const trusted = f.config ? matchNixUser(f.user, f.groups, configWords(f.config, "trusted-users")) : false;
  return trusted
    ? undefined
    : `this machine's nix-daemon ignores --builders from ${f.user} (see local.trusted-user); run sudo nixpool doctor for the round trip`;
}
