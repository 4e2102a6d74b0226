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
