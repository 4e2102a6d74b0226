import type { Builder } from "./builder.js";
import { configError } from "./errors.js";
import { renderMachinesLine } from "./machines.js";
import { renderNixConfFragment } from "./nix-conf.js";
import { renderNixosModule } from "./nixos.js";
import { publicKeyProblem } from "./public-key.js";
import { renderKnownHosts } from "./ssh-config.js";

/** What a client machine needs to reach the pool through the gateway. */
export interface GatewayClientInput {
  /** The member the client's key belongs to. */
  client: string;
  /** How client machines reach the coordinator's sshd (host name or address). */
  host: string;
  port: number;
  /** The account the gateway's keys are installed for (default "nixpool"). */
  user: string;
  /** The coordinator sshd's host key line ("ssh-ed25519 AAAA…"). */
  hostKey: string;
  /** The client's private key, as a path on the client machine. */
  identityFile: string;
  /** The pool's builders: the gateway offers their systems, features and slots. */
  builders: readonly Builder[];
  machinesFile: string;
}

/** The client's files, each ready to paste: machines line, known_hosts line, nix.conf, NixOS module. */
export interface GatewayClientConfig {
  machinesLine: string;
  knownHostsLine: string;
  nixConf: string;
  nixos: string;
  /** For a port other than 22 (Nix 2.8 URIs take no port): the ssh_config Host block. */
  sshConfig: string | undefined;
}

const union = (lists: readonly (readonly string[])[]) => [...new Set(lists.flat())].sort();

/**
 * The whole pool as one builder seen from a client: the gateway's systems are every builder's,
 * its slots the sum of theirs (the coordinator shares them fairly), its features the union;
 * features a builder makes mandatory stay optional here (the dispatcher places them).
 */
export function gatewayAsBuilder(i: GatewayClientInput): Builder {
  const problem = publicKeyProblem(i.hostKey);
  if (problem !== undefined) {
    throw configError("FLAG_INVALID", `The coordinator's host key is not a public key line: ${problem}.`, {
      hint: "Give --host-key-file /etc/ssh/ssh_host_ed25519_key.pub (the sshd that runs the gateway).",
    });
  }
  const pinned = i.builders.filter((b) => b.hostKey);
  if (pinned.length === 0) {
    throw configError("NO_BUILDERS", "The pool has no builders to offer through the gateway.", {
      hint: "Add builders first: nixpool builders lists them (docs/configuration.md).",
    });
  }
  return {
    name: "pool",
    host: i.host,
    port: i.port,
    user: i.user,
    protocol: "ssh",
    systems: union(pinned.map((b) => b.systems)),
    maxJobs: pinned.reduce((n, b) => n + b.maxJobs, 0),
    speedFactor: 1,
    supportedFeatures: union(pinned.map((b) => [...b.supportedFeatures, ...b.mandatoryFeatures])),
    mandatoryFeatures: [],
    hostKey: i.hostKey,
    identityFile: i.identityFile,
    tags: [],
    trust: "trusted",
    source: "inventory",
  };
}

/** Renders the client's configuration with the renderers the pool's own builders use. */
export function renderGatewayClientConfig(i: GatewayClientInput): GatewayClientConfig {
  const b = gatewayAsBuilder(i);
  const knownHosts = renderKnownHosts([b])
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"));
  const direct = b.port === 22;
  const [type, blob] = b.hostKey!.trim().split(/\s+/);
  return {
    machinesLine: renderMachinesLine(b, { uriStyle: "direct" }),
    // On port 22 the line names the host itself; otherwise the alias the ssh_config block defines.
    knownHostsLine: direct ? `${b.host} ${type} ${blob}` : (knownHosts[0] ?? ""),
    nixConf: renderNixConfFragment({ machinesFile: i.machinesFile }),
    nixos: renderNixosModule([b]),
    sshConfig: direct
      ? undefined
      : [
          `Host nixpool-${b.name}`,
          `  HostName ${b.host}`,
          `  Port ${b.port}`,
          `  User ${b.user}`,
          `  HostKeyAlias nixpool-${b.name}`,
          "  StrictHostKeyChecking yes",
          "",
        ].join("\n"),
  };
}
