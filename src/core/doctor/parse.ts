import type { PublicKey } from "../public-key.js";

/** The version in `nix --version` / `nix-store --version` output ("nix (Nix) 2.8.0" → "2.8.0"). */
export function parseNixVersion(text: string): string | undefined {
  return /\(Nix\)\s+(\d+\.\d+(?:\.\d+)?[^\s]*)/.exec(text)?.[1];
}

/** Compares dotted versions numerically: negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Nix settings by name, as `nix show-config` reports them. */
export type NixConfig = Record<string, unknown>;

/** Parses `nix show-config --json` ({"name": {"value": …}}) or the plain `name = value` form. */
export function parseNixConfig(text: string): NixConfig {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    const raw = JSON.parse(trimmed) as unknown;
    if (typeof raw !== "object" || raw === null) return {};
    const out: NixConfig = {};
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      out[k] = typeof v === "object" && v !== null && "value" in v ? v.value : v;
    }
    return out;
  }
  const out: NixConfig = {};
  for (const line of trimmed.split("\n")) {
    const m = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined) out[m[1]] = m[2] ?? "";
  }
  return out;
}

function scalar(v: unknown): string {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return v === null || v === undefined ? "" : JSON.stringify(v);
}

/** A setting as a word list (lists, space-separated strings, scalars). */
export function configWords(config: NixConfig, name: string): string[] {
  const v = config[name];
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map((x) => scalar(x)).filter((s) => s.length > 0);
  return scalar(v)
    .split(/\s+/)
    .filter((s) => s.length > 0);
}

/** A setting as one string ("" when absent). */
export function configString(config: NixConfig, name: string): string {
  const v = config[name];
  if (v === undefined || v === null) return "";
  return Array.isArray(v) ? v.map((x) => scalar(x)).join(" ") : scalar(v);
}

/** A boolean setting (Nix writes true/false). */
export function configBool(config: NixConfig, name: string): boolean | undefined {
  const v = config[name];
  if (typeof v === "boolean") return v;
  if (v === "true") return true;
  if (v === "false") return false;
  return undefined;
}

export interface StorePing {
  url?: string;
  version?: string;
  /** Only newer Nix (2.15+) prints "Trusted: 1". */
  trusted?: boolean;
}

/** Parses `nix store ping` output ("Store URL: …", "Version: …", "Trusted: …"). */
export function parseStorePing(text: string): StorePing {
  const out: StorePing = {};
  const url = /^Store URL:\s*(\S+)/m.exec(text)?.[1];
  const version = /^Version:\s*(\S+)/m.exec(text)?.[1];
  const trusted = /^Trusted:\s*(\S+)/m.exec(text)?.[1];
  if (url) out.url = url;
  if (version) out.version = version;
  if (trusted !== undefined) out.trusted = trusted === "1" || trusted === "true";
  return out;
}

export interface OfferedKey {
  path: string;
  /** "ED25519", "RSA", "ECDSA", … as ssh -v prints it. */
  type: string;
  fingerprint: string;
}

/** What `ssh -v` says about a connection attempt. */
export interface SshTrace {
  /** connect(2) failure, e.g. "Connection refused", "No route to host", "Connection timed out". */
  connectError?: string;
  resolveError?: string;
  serverHostKey?: { type: string; fingerprint: string };
  hostKeyChanged: boolean;
  hostKeyUnknown: boolean;
  offered: OfferedKey[];
  accepted?: OfferedKey;
  authenticated: boolean;
  /** Methods the server still allows after the last attempt. */
  methodsCanContinue: string[];
  permissionDenied: boolean;
  /** Private keys ssh ignored because others can read them. */
  badPermissions: string[];
  /** Identity files ssh could not read, with the reason. */
  notAccessible: { path: string; reason: string }[];
  /** Keys refused client-side because no signature algorithm is shared (RSA/SHA-1 with new OpenSSH). */
  noMutualSignature: boolean;
  /** Lines that are not ssh debug output (remote stderr, ssh's own errors). */
  otherLines: string[];
}

function parseOffered(rest: string): OfferedKey {
  const parts = rest.trim().split(/\s+/);
  // "PATH TYPE SHA256:FP [explicit] [agent]"; PATH may contain no spaces in nixpool's configs.
  const fpIndex = parts.findIndex((p) => p.startsWith("SHA256:") || p.startsWith("MD5:"));
  if (fpIndex >= 2) {
    return {
      path: parts.slice(0, fpIndex - 1).join(" "),
      type: parts[fpIndex - 1] ?? "",
      fingerprint: parts[fpIndex] ?? "",
    };
  }
  return { path: parts[0] ?? "", type: "", fingerprint: "" };
}

/** Parses the stderr of `ssh -v` into what the doctor needs. */
export function parseSshVerbose(stderr: string): SshTrace {
  const t: SshTrace = {
    hostKeyChanged: false,
    hostKeyUnknown: false,
    offered: [],
    authenticated: false,
    methodsCanContinue: [],
    permissionDenied: false,
    badPermissions: [],
    notAccessible: [],
    noMutualSignature: false,
    otherLines: [],
  };
  for (const raw of stderr.split("\n")) {
    const line = raw.replace(/\r$/, "");
    let m: RegExpExecArray | null;
    if ((m = /^ssh: connect to host \S+ port \d+: (.*)$/.exec(line))) t.connectError = m[1] ?? "";
    else if ((m = /^ssh: Could not resolve hostname [^:]+: (.*)$/.exec(line))) t.resolveError = m[1] ?? "";
    else if ((m = /^debug1: Server host key: (\S+) (\S+)/.exec(line)))
      t.serverHostKey = { type: m[1] ?? "", fingerprint: m[2] ?? "" };
    else if (
      /REMOTE HOST IDENTIFICATION HAS CHANGED|has changed and you have requested strict checking/.test(line)
    )
      t.hostKeyChanged = true;
    else if (/^No \S+ host key is known for .* and you have requested strict checking/.test(line))
      t.hostKeyUnknown = true;
    else if ((m = /^debug1: Offering public key: (.*)$/.exec(line))) t.offered.push(parseOffered(m[1] ?? ""));
    else if ((m = /^debug1: Server accepts key: (.*)$/.exec(line))) t.accepted = parseOffered(m[1] ?? "");
    else if ((m = /^debug1: Authentications that can continue: (.*)$/.exec(line)))
      t.methodsCanContinue = (m[1] ?? "").split(",").filter(Boolean);
    else if (
      /^Authenticated to .* using "publickey"/.test(line) ||
      /^debug1: Authentication succeeded/.test(line)
    )
      t.authenticated = true;
    else if (/Permission denied \(/.test(line)) t.permissionDenied = true;
    else if ((m = /^Load key "(.*)": bad permissions/.exec(line))) t.badPermissions.push(m[1] ?? "");
    else if ((m = /^Warning: Identity file (.*) not accessible: (.*)\.$/.exec(line)))
      t.notAccessible.push({ path: m[1] ?? "", reason: m[2] ?? "" });
    else if (/send_pubkey_test: no mutual signature algorithm/.test(line)) t.noMutualSignature = true;
    else if (!line.startsWith("debug") && !line.startsWith("OpenSSH_") && line.trim() !== "")
      t.otherLines.push(line);
  }
  return t;
}

/** The keys of known_hosts lines ("host type blob"), as `ssh-keyscan` and `ssh-keygen -F` print them; comments and @markers skipped. */
export function parseKeyscan(stdout: string): PublicKey<string>[] {
  const keys: PublicKey<string>[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.trim() || line.startsWith("#") || line.startsWith("@")) continue;
    const [, type, blob] = line.trim().split(/\s+/);
    if (type && blob) keys.push({ type, blob, comment: "" });
  }
  return keys;
}

/** What one SSH session on a builder reports about itself (see remote-script.ts). */
export interface RemoteFacts {
  user?: string;
  uid?: number;
  groups: string[];
  nproc?: number;
  /** Builder's clock, seconds since the epoch. */
  epochSeconds?: number;
  nixRemote: string;
  path: string;
  which: Record<string, string>;
  nixVersion?: string;
  daemonSocket: boolean;
  stateWritable: boolean;
  storeOwner?: string;
  /** Free bytes of the filesystem holding /nix/store. */
  storeFreeBytes?: number;
  storeSizeBytes?: number;
  config?: NixConfig;
  configError?: string;
}

/** Parses the output of REMOTE_FACTS_SCRIPT ("@@key value" lines and a config block). */
export function parseRemoteFacts(stdout: string): RemoteFacts {
  const f: RemoteFacts = {
    groups: [],
    nixRemote: "",
    path: "",
    which: {},
    daemonSocket: false,
    stateWritable: false,
  };
  const lines = stdout.split("\n");
  let inConfig = false;
  const config: string[] = [];
  for (const line of lines) {
    if (line === "@@config-begin") {
      inConfig = true;
      continue;
    }
    if (line === "@@config-end") {
      inConfig = false;
      continue;
    }
    if (inConfig) {
      config.push(line);
      continue;
    }
    const m = /^@@(\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1] ?? "";
    const value = (m[2] ?? "").trim();
    const int = /^-?\d+$/.test(value) ? Number.parseInt(value, 10) : undefined;
    switch (key) {
      case "user":
        if (value) f.user = value;
        break;
      case "groups":
        f.groups = value.split(/\s+/).filter(Boolean);
        break;
      case "uid":
      case "nproc":
      case "date":
        if (int !== undefined) f[key === "date" ? "epochSeconds" : key] = int;
        break;
      case "nix-remote":
        f.nixRemote = value;
        break;
      case "path":
        f.path = value;
        break;
      case "which": {
        const [name, ...rest] = value.split(" ");
        if (name && rest.join(" ").trim()) f.which[name] = rest.join(" ").trim();
        break;
      }
      case "nix-version": {
        const v = parseNixVersion(value);
        if (v) f.nixVersion = v;
        break;
      }
      case "daemon-socket":
        f.daemonSocket = value === "yes";
        break;
      case "state-writable":
        f.stateWritable = value === "yes";
        break;
      case "store-owner":
        if (value) f.storeOwner = value;
        break;
      case "df": {
        const df = parseDfLine(value);
        if (df) {
          f.storeFreeBytes = df.availableBytes;
          f.storeSizeBytes = df.sizeBytes;
        }
        break;
      }
    }
  }
  const configText = config.join("\n").trim();
  if (configText) {
    try {
      f.config = parseNixConfig(configText);
    } catch (e) {
      f.configError = e instanceof Error ? e.message : String(e);
    }
  }
  return f;
}

/** Parses one data line of `df -Pk` ("fs 1024-blocks used available capacity mount"). */
export function parseDfLine(line: string): { sizeBytes: number; availableBytes: number } | undefined {
  const parts = line.trim().split(/\s+/);
  const size = Number(parts[1]);
  const avail = Number(parts[3]);
  if (parts.length < 6 || !Number.isFinite(size) || !Number.isFinite(avail)) return undefined;
  return { sizeBytes: size * 1024, availableBytes: avail * 1024 };
}

/** Whether Nix's user list (trusted-users, allowed-users) matches a user: names, "@group", "*". */
export function matchNixUser(user: string, groups: readonly string[], list: readonly string[]): boolean {
  return list.some((e) => e === "*" || e === user || (e.startsWith("@") && groups.includes(e.slice(1))));
}

/** What `ssh -G ALIAS` says ssh would use for a host: the real host and the known_hosts files. */
export interface SshResolved {
  hostname: string;
  port: number;
  /** The name ssh looks up in known_hosts: HostKeyAlias, else "host" or "[host]:port". */
  knownHostsName: string;
  knownHostsFiles: string[];
}

/** Parses `ssh -G` output ("keyword value" lines, keywords lower-case). */
export function parseSshResolved(stdout: string): SshResolved {
  const get = (k: string) => new RegExp(`^${k} (.*)$`, "m").exec(stdout)?.[1]?.trim() ?? "";
  const hostname = get("hostname");
  const port = Number(get("port")) || 22;
  const alias = get("hostkeyalias");
  const files = [...get("userknownhostsfile").split(/\s+/), ...get("globalknownhostsfile").split(/\s+/)];
  return {
    hostname,
    port,
    knownHostsName: alias && alias !== "none" ? alias : port === 22 ? hostname : `[${hostname}]:${port}`,
    knownHostsFiles: [...new Set(files.filter((x) => x && x !== "/dev/null" && x !== "none"))],
  };
}
