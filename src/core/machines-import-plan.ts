import type { InventoryBuilderEntry, NamedInventoryEntry } from "./inventory-render.js";
import type {
  MachinesDiagnostic,
  MachinesLocation,
  ParsedMachine,
  ParseMachinesResult,
} from "./machines-parse.js";

/**
 * Import planning: which machines of a parsed machines file nixpool can manage, and the
 * inventory entries that render back to equivalent lines (the parsing itself is machines-parse.ts).
 */

/** What an ssh or ssh-ng store URI names, or why nixpool cannot manage it as a builder. */
export type BuilderUri =
  | { kind: "ssh"; protocol: "ssh" | "ssh-ng"; user: string | undefined; host: string }
  | { kind: "unsupported"; reason: string };

/** Splits a store URI (after the scheme rule) into protocol, user and host. */
export function analyseStoreUri(storeUri: string): BuilderUri {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/.exec(storeUri);
  if (!m) {
    return {
      kind: "unsupported",
      reason: `"${storeUri}" is a local store, not a remote builder; nixpool manages ssh:// and ssh-ng:// builders only`,
    };
  }
  const scheme = m[1] ?? "";
  const rest = m[2] ?? "";
  if (scheme !== "ssh" && scheme !== "ssh-ng") {
    return {
      kind: "unsupported",
      reason: `${scheme}:// stores are not supported; nixpool manages ssh:// and ssh-ng:// builders only`,
    };
  }
  if (rest.includes("?")) {
    return {
      kind: "unsupported",
      reason: `store parameters ("${rest.slice(rest.indexOf("?"))}") cannot be expressed in nixpool.toml`,
    };
  }
  if (rest.includes("/")) {
    return {
      kind: "unsupported",
      reason: `"${rest}" holds a "/"; Nix 2.8 would hand it to ssh as a host name`,
    };
  }
  const at = rest.lastIndexOf("@");
  const user = at >= 0 ? rest.slice(0, at) : undefined;
  const host = at >= 0 ? rest.slice(at + 1) : rest;
  if (host === "") return { kind: "unsupported", reason: `"${storeUri}" names no host` };
  const colons = (host.match(/:/g) ?? []).length;
  if (colons === 1 || (colons > 1 && !/^\[?[0-9A-Fa-f:.]+\]?$/.test(host))) {
    return {
      kind: "unsupported",
      reason: `"${host}" looks like host:port; Nix 2.8 takes no port in a store URI (set "port" in nixpool.toml instead and nixpool routes it through ssh_config)`,
    };
  }
  if (user === "") return { kind: "unsupported", reason: `"${storeUri}" has an empty user name` };
  return { kind: "ssh", protocol: scheme, user, host };
}

/** A machine nixpool can manage, as the inventory entry that renders back to an equivalent line. */
export interface ImportedBuilder extends NamedInventoryEntry {
  at: MachinesLocation;
  machine: ParsedMachine;
}

/** A machine entry Nix accepts but nixpool cannot manage (local stores, store parameters, ports…). */
export interface SkippedMachine {
  at: MachinesLocation;
  uri: string;
  reason: string;
}

export interface ImportPlan {
  builders: ImportedBuilder[];
  skipped: SkippedMachine[];
  diagnostics: MachinesDiagnostic[];
}

export interface PlanImportOptions {
  /** Names already used (merging into an inventory); new names avoid them. */
  takenNames?: readonly string[];
  /**
   * Written as `systems` where the machines file says "-". Leave unset to omit the field,
   * so the inventory default (this machine's system, like Nix's) applies.
   */
  defaultSystems?: string[];
}

const IPV4 = /^[0-9]+(\.[0-9]+){3}$/;

/** A valid builder name derived from a host: its first label, or the whole host when labels clash. */
export function deriveBuilderName(host: string, full: boolean): string {
  const bare = host.replace(/^\[|\]$/g, "");
  let base: string;
  if (IPV4.test(bare) || bare.includes(":")) base = bare.replace(/[.:]+/g, "-");
  else base = full ? bare : (bare.split(".")[0] ?? bare);
  base = base
    .replace(/[^A-Za-z0-9_.-]+/g, "-")
    .replace(/^[^A-Za-z0-9]+/, "")
    .replace(/[-.]+$/, "")
    .slice(0, 56);
  return base || "builder";
}

/**
 * Turns parsed machines into inventory entries: ssh/ssh-ng machines become builders with
 * unique names; every other entry is skipped with its location and reason. Mandatory
 * features are added to the supported ones (Nix treats them as supported anyway).
 */
export function planImport(parsed: ParseMachinesResult, options: PlanImportOptions = {}): ImportPlan {
  const plan: ImportPlan = { builders: [], skipped: [], diagnostics: [] };
  const usable: { m: ParsedMachine; uri: Extract<BuilderUri, { kind: "ssh" }> }[] = [];
  for (const m of parsed.machines) {
    const uri = analyseStoreUri(m.storeUri);
    if (uri.kind === "unsupported") {
      plan.skipped.push({ at: m.at, uri: m.uri, reason: uri.reason });
      continue;
    }
    if (m.maxJobs === 0) {
      plan.skipped.push({
        at: m.at,
        uri: m.uri,
        reason: "maxJobs 0: Nix never sends this machine a build (nixpool.toml needs maxJobs ≥ 1)",
      });
      continue;
    }
    if (m.hostKeyBase64 !== undefined && m.hostKey === undefined) {
      plan.skipped.push({ at: m.at, uri: m.uri, reason: "its host key is not a public key line" });
      continue;
    }
    usable.push({ m, uri });
  }
  // First labels shared by different hosts would clash: use the whole host name for those.
  const hostsByLabel = new Map<string, Set<string>>();
  for (const { uri } of usable) {
    const label = deriveBuilderName(uri.host, false);
    hostsByLabel.set(label, (hostsByLabel.get(label) ?? new Set()).add(uri.host));
  }
  const taken = new Set(options.takenNames ?? []);
  for (const { m, uri } of usable) {
    const short = deriveBuilderName(uri.host, false);
    let name = (hostsByLabel.get(short)?.size ?? 0) > 1 ? deriveBuilderName(uri.host, true) : short;
    if (taken.has(name)) {
      let i = 2;
      while (taken.has(`${name}-${i}`)) i++;
      name = `${name}-${i}`;
    }
    taken.add(name);
    const entry: InventoryBuilderEntry = { host: uri.host };
    if (uri.user !== undefined) entry.user = uri.user;
    entry.protocol = uri.protocol;
    if (m.systems !== undefined) entry.systems = [...m.systems];
    else if (options.defaultSystems) entry.systems = [...options.defaultSystems];
    if (m.maxJobs !== 1) entry.maxJobs = m.maxJobs;
    if (m.speedFactor === 0) {
      plan.diagnostics.push({
        at: m.at,
        severity: "warning",
        code: "MACHINES_SPEED_ZERO",
        message: "speedFactor 0 is raised to 1 by Nix; imported as 1",
      });
    } else if (m.speedFactor !== 1) entry.speedFactor = m.speedFactor;
    const supported = [...new Set([...m.supportedFeatures, ...m.mandatoryFeatures])].sort();
    if (supported.length) entry.supportedFeatures = supported;
    if (m.mandatoryFeatures.length) entry.mandatoryFeatures = [...m.mandatoryFeatures];
    if (m.sshKey !== undefined) entry.identityFile = m.sshKey;
    if (m.hostKey !== undefined) entry.hostKey = m.hostKey;
    if (m.extraFields.length) {
      plan.diagnostics.push({
        at: m.at,
        severity: "warning",
        code: "MACHINES_EXTRA_FIELDS",
        message: `fields after the 8th (${m.extraFields.join(" ")}) are ignored by Nix and not imported`,
      });
    }
    plan.builders.push({
      name,
      entry,
      at: m.at,
      machine: m,
      comments: [`imported from ${m.at.file}:${m.at.line}`],
    });
  }
  return plan;
}
