import type { Builder } from "../builder.js";
import { NixpoolError, ExitCode } from "../errors.js";

/** NixOS's system profile: where `nixos-rebuild` keeps generations. */
export const DEFAULT_PROFILE = "/nix/var/nix/profiles/system";

/** Where a target came from: a `[targets.NAME]` entry, or a builder used as a target. */
export type TargetSource = "inventory" | "builder";

/** A machine nixpool deploys a system to; every default filled in. */
export interface DeployTarget {
  name: string;
  host: string;
  port: number;
  /** Login user; undefined means ssh's own default (the local user's name). */
  user: string | undefined;
  /** The host's pinned public key line; a target is never reached without one. */
  hostKey: string | undefined;
  identityFile: string | undefined;
  /** Run the target's commands through `sudo -n` (a non-root user with a NOPASSWD rule). */
  sudo: boolean;
  /** The Nix profile whose generations are the deployed systems. */
  profile: string;
  source: TargetSource;
}

/** A builder seen as a deploy target: same host, port, user, key; root-less users need a [targets] entry for sudo. */
export function targetFromBuilder(b: Builder): DeployTarget {
  return {
    name: b.name,
    host: b.host,
    port: b.port,
    user: b.user,
    hostKey: b.hostKey,
    identityFile: b.identityFile,
    sudo: false,
    profile: DEFAULT_PROFILE,
    source: "builder",
  };
}

/**
 * Every target by name: the inventory's `[targets.NAME]` entries, then each builder not shadowed
 * by one (a `[targets.NAME]` with a builder's name overrides it for deploys, e.g. to log in as root).
 */
export function mergeTargets(targets: readonly DeployTarget[], builders: readonly Builder[]): DeployTarget[] {
  const named = new Set(targets.map((t) => t.name));
  return [...targets, ...builders.filter((b) => !named.has(b.name)).map(targetFromBuilder)];
}

/** The targets named, in order; TARGET_UNKNOWN for a name that is neither a target nor a builder. */
export function selectTargets(all: readonly DeployTarget[], names: readonly string[]): DeployTarget[] {
  return names.map((n) => {
    const t = all.find((x) => x.name === n);
    if (!t)
      throw new NixpoolError("TARGET_UNKNOWN", `No target or builder is named "${n}".`, {
        hint: "Add a [targets.NAME] entry to nixpool.toml (docs/deploy.md), or list the builders with: nixpool builders",
        exitCode: ExitCode.usage,
      });
    return t;
  });
}

/** The target's pinned host key; TARGET_HOST_KEY_MISSING (before any connection) when it has none. */
export function pinnedHostKey(t: DeployTarget): string {
  if (t.hostKey !== undefined) return t.hostKey;
  throw new NixpoolError(
    "TARGET_HOST_KEY_MISSING",
    `Target ${t.name} (${t.host}) has no pinned host key; nixpool never trusts a key on first use.`,
    {
      hint: `Add hostKey = "ssh-ed25519 AAAA…" (from ${t.host}'s /etc/ssh/ssh_host_ed25519_key.pub, checked out of band) to its [${t.source === "builder" ? "builders" : "targets"}.${t.name}] entry.`,
      exitCode: ExitCode.usage,
    },
  );
}
