import { stringify } from "yaml";

/** What a worker's first boot must set up. */
export interface CloudInitSpec {
  hostname: string;
  /** The host key nixpool generated and pinned (OpenSSH private key text) and its public line. */
  hostKeyPrivate: string;
  hostKeyPublic: string;
  /** Lines for root's authorized_keys (nixpool's login key for this worker). */
  authorizedKeys: string[];
  maxJobs: number;
  systemFeatures: string[];
}

/**
 * The worker's system (nixpool's configuration of it, a store path holding its nix.conf) is
 * this profile; the nix.conf cloud-init writes includes the profile's, so switching the profile
 * (a worker woken from an older snapshot) reconfigures Nix.
 */
export const WORKER_SYSTEM_PROFILE = "/nix/var/nix/profiles/nixpool-worker";

/** The nix.conf of a worker: trusted root, max-jobs = cores, no substituters beyond the default. */
export function renderWorkerNixConf(spec: Pick<CloudInitSpec, "maxJobs" | "systemFeatures">): string {
  return [
    "# Written by nixpool (cloud-init) for a temporary builder.",
    "trusted-users = root",
    `max-jobs = ${spec.maxJobs}`,
    "cores = 0",
    `system-features = ${spec.systemFeatures.join(" ")}`,
    "experimental-features = nix-command",
    "",
  ].join("\n");
}

/**
 * The #cloud-config user_data that turns a fresh Debian server into a Nix builder: it presets
 * the pinned host key (so the first connection is already verified), authorizes the login key
 * for root, installs Nix (Debian's nix-bin) with root trusted and max-jobs = cores.
 */
export function renderCloudInit(spec: CloudInitSpec): string {
  const doc = {
    hostname: spec.hostname,
    disable_root: false,
    ssh_pwauth: false,
    // Replace the image's host keys with the one nixpool pinned (ed25519 is then present, so none is generated).
    ssh_deletekeys: true,
    ssh_genkeytypes: ["ed25519"],
    ssh_keys: {
      ed25519_private: spec.hostKeyPrivate.endsWith("\n") ? spec.hostKeyPrivate : `${spec.hostKeyPrivate}\n`,
      ed25519_public: spec.hostKeyPublic.trim(),
    },
    users: [{ name: "root", lock_passwd: true, ssh_authorized_keys: spec.authorizedKeys }],
    package_update: true,
    // Debian's Nix; nix-setup-systemd brings the daemon unit and the nixbld build users.
    packages: ["nix-bin", "nix-setup-systemd"],
    write_files: [
      {
        path: "/etc/nix/nix.conf",
        owner: "root:root",
        permissions: "0644",
        content: `${renderWorkerNixConf(spec)}!include ${WORKER_SYSTEM_PROFILE}/nix.conf\n`,
        // Appended after package installation: Debian's own lines (sandbox = false) stay, ours win.
        append: true,
        defer: true,
      },
    ],
    runcmd: [["systemctl", "restart", "nix-daemon"]],
  };
  return `#cloud-config\n${stringify(doc, { lineWidth: 0 })}`;
}
