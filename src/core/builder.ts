import { NixpoolError } from "./errors.js";

/** Where a builder came from: the inventory file, the local pool, or a rented cloud worker. */
export type BuilderSource = "inventory" | "local" | "hetzner";

export type Protocol = "ssh" | "ssh-ng";
export type Trust = "trusted" | "untrusted";

/** A normalised builder: every default filled in, as every renderer expects it. */
export interface Builder {
  name: string;
  host: string;
  port: number;
  /** Remote login user; undefined means ssh's own default. */
  user: string | undefined;
  protocol: Protocol;
  systems: string[];
  maxJobs: number;
  speedFactor: number;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  /** The host's public key line, e.g. "ssh-ed25519 AAAA... comment"; pinned. */
  hostKey: string | undefined;
  identityFile: string | undefined;
  tags: string[];
  trust: Trust;
  source: BuilderSource;
}

/** The ssh_config alias nixpool uses for a builder (Nix 2.8 store URIs cannot carry a port). */
export function sshAlias(b: Pick<Builder, "name">): string {
  return `nixpool-${b.name}`;
}

/** Store URI through the ssh_config alias. */
export function storeUri(b: Pick<Builder, "name" | "protocol">): string {
  return `${b.protocol}://${sshAlias(b)}`;
}

export const BUILDER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const HOST_CHARS = /^[A-Za-z0-9_[:][A-Za-z0-9_.:[\]-]*$/;
const USER_CHARS = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const WORD_CHARS = /^[A-Za-z0-9_.+-]+$/;
const KEY_WORD_CHARS = /^[A-Za-z0-9@.+/=_-]+$/;

/**
 * Why a builder cannot be written into ssh_config, known_hosts, a machines file or a NixOS
 * module (a field that could add a directive, a line or a machine), or undefined when it can.
 */
export function unsafeBuilderField(b: Builder): string | undefined {
  if (!BUILDER_NAME_PATTERN.test(b.name)) return `name ${JSON.stringify(b.name)}`;
  if (!HOST_CHARS.test(b.host)) return `host ${JSON.stringify(b.host)}`;
  if (!Number.isInteger(b.port) || b.port < 1 || b.port > 65535) return `port ${JSON.stringify(b.port)}`;
  if (b.user !== undefined && !USER_CHARS.test(b.user)) return `user ${JSON.stringify(b.user)}`;
  if (b.identityFile !== undefined && (b.identityFile === "" || /[\s\p{Cc}#;"]/u.test(b.identityFile)))
    return `identityFile ${JSON.stringify(b.identityFile)}`;
  for (const [what, xs] of [
    ["systems", b.systems],
    ["supportedFeatures", b.supportedFeatures],
    ["mandatoryFeatures", b.mandatoryFeatures],
  ] as const) {
    const bad = xs.find((x) => !WORD_CHARS.test(x));
    if (bad !== undefined) return `${what} item ${JSON.stringify(bad)}`;
  }
  if (!Number.isInteger(b.maxJobs) || b.maxJobs < 0) return `maxJobs ${JSON.stringify(b.maxJobs)}`;
  if (!Number.isInteger(b.speedFactor) || b.speedFactor < 0)
    return `speedFactor ${JSON.stringify(b.speedFactor)}`;
  if (b.hostKey !== undefined) {
    const [type = "", blob = ""] = b.hostKey.trim().split(/\s+/);
    if (/\p{Cc}/u.test(b.hostKey.trim()) || !KEY_WORD_CHARS.test(type) || !KEY_WORD_CHARS.test(blob))
      return `hostKey ${JSON.stringify(b.hostKey)}`;
  }
  return undefined;
}

/** Throws BUILDER_UNSAFE_FIELD when a builder field could inject into a rendered file (see unsafeBuilderField). */
export function assertRenderableBuilder(b: Builder): void {
  const why = unsafeBuilderField(b);
  if (why === undefined) return;
  throw new NixpoolError(
    "BUILDER_UNSAFE_FIELD",
    `Builder ${JSON.stringify(b.name)} (from ${b.source}) has an unsafe ${why}; nixpool refuses to write it into ssh or Nix configuration.`,
    {
      hint:
        b.source === "inventory"
          ? "Fix the builder in nixpool.toml; check with: nixpool builders"
          : `Remove the ${b.source} builder's state (nixpool ${b.source === "local" ? "local down" : "worker gc"}) and start it again.`,
    },
  );
}
