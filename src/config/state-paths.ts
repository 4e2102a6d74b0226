import { basename, join } from "node:path";

/**
 * Every path nixpool keeps under its state directory, in one place: code asks this module
 * for a path instead of spelling it out, so the layout (docs/configuration.md#state-directory)
 * can be read, and changed, here alone.
 */

/** The files of one local builder host, inside its directory (STATE/local/hosts/NAME). */
export function localHostPaths(dir: string) {
  return {
    dir,
    /** The host's record: slot, addresses, sshd pid (host.json). */
    record: join(dir, "host.json"),
    /** Bind-mounted over /nix inside the host's mount namespace. */
    storeDir: join(dir, "nix"),
    /** Bind-mounted over /etc/nix inside the host's mount namespace. */
    etcNixDir: join(dir, "etc-nix"),
    nixConf: join(dir, "etc-nix", "nix.conf"),
    /** The pool's binary cache for this host (written by `nixpool serve`, included by nix.conf). */
    cacheConf: join(dir, "etc-nix", "nixpool-cache.conf"),
    /** The cache token for this host's Nix (0600), named by cacheConf's netrc-file. */
    cacheNetrc: join(dir, "etc-nix", "nixpool-cache.netrc"),
    /** Bind-mounted over /root: the host's own root home. */
    rootHome: join(dir, "root-home"),
    sshdConfig: join(dir, "sshd_config"),
    sshdLog: join(dir, "sshd.log"),
    sshdPid: join(dir, "sshd.pid"),
    authorizedKeys: join(dir, "authorized_keys"),
    hostKey: join(dir, "ssh_host_ed25519_key"),
  };
}

/** The files of one rented worker, inside its directory (STATE/hetzner/workers/LEASE). */
export function workerPaths(dir: string) {
  return {
    dir,
    /** The worker record (worker.json, 0600). */
    record: join(dir, "worker.json"),
    loginKey: join(dir, "id_ed25519"),
    hostKey: join(dir, "ssh_host_ed25519_key"),
    sshConfig: join(dir, "ssh_config"),
    knownHosts: join(dir, "known_hosts"),
    /** The bash rc of `worker shell`. */
    shellRc: join(dir, "shellrc"),
  };
}

/** The user CA's files, inside its directory (STATE/ca). */
export function caPaths(dir: string) {
  return {
    dir,
    key: join(dir, "ca_ed25519"),
    pub: join(dir, "ca_ed25519.pub"),
    krl: join(dir, "revoked.krl"),
    serial: join(dir, "serial"),
    issued: join(dir, "issued.jsonl"),
    revoked: join(dir, "revoked.json"),
    lock: join(dir, "lock"),
  };
}

/** The trust records and kept outputs, inside their directory (STATE/trust). */
export function trustPaths(dir: string) {
  return {
    dir,
    /** One line per built output: builder, trust, NAR hash (results.jsonl, appended). */
    resultsFile: join(dir, "results.jsonl"),
    /** Outputs of builds that differed, per derivation: STATE/trust/differ/HASH-NAME/BUILDER/OUTPUT. */
    differDir: (drvPath: string) => join(dir, "differ", basename(drvPath, ".drv")),
  };
}

/** Every path under one state directory. */
export function statePaths(stateDir: string) {
  const local = join(stateDir, "local");
  const client = join(stateDir, "client");
  const hetzner = join(stateDir, "hetzner");
  const access = join(stateDir, "access");
  const emulator = join(stateDir, "emulator", "hetzner");
  const logs = join(stateDir, "logs");
  const dispatch = join(stateDir, "dispatch");
  const serve = join(stateDir, "serve");
  const deploy = join(stateDir, "deploy");
  return {
    root: stateDir,
    /** The local pool (`nixpool local`). */
    localPool: {
      dir: local,
      poolFile: join(local, "pool.json"),
      /** The login key nixpool uses for the pool's builders. */
      clientKey: join(local, "id_ed25519"),
      hostsDir: join(local, "hosts"),
      host: (name: string) => localHostPaths(join(local, "hosts", name)),
    },
    /** What `build` hands to Nix and ssh: machines file, ssh_config, known_hosts. */
    client: {
      dir: client,
      machines: join(client, "machines"),
      sshConfig: join(client, "ssh_config"),
      knownHosts: join(client, "known_hosts"),
    },
    /** Rented Hetzner workers. */
    hetzner: {
      dir: hetzner,
      /** This state directory's owner id, put on every server as a label. */
      ownerFile: join(hetzner, "owner"),
      workersDir: join(hetzner, "workers"),
      worker: (leaseId: string) => workerPaths(join(hetzner, "workers", leaseId)),
    },
    /** Access control (`nixpool access`). */
    access: {
      dir: access,
      usersFile: join(stateDir, "users.toml"),
      /** One precompiled file per member, read by `access keys` at every login. */
      indexDir: join(access, "index"),
      /** What the installed keys command prints: sshd/{ssh-ng,ssh,principals}/USER. */
      sshdDir: join(access, "sshd"),
      githubCache: join(access, "github-keys.json"),
      /** The remembered `access sync --write DIR` target. */
      staticTarget: join(access, "static-files.json"),
      lockFile: join(access, "lock"),
    },
    ca: caPaths(join(stateDir, "ca")),
    /** The Hetzner API emulator's booted servers (`emulator hetzner`). */
    emulator: { hetznerDir: emulator },
    /** Build logs of the dispatcher: one file per derivation. */
    logs: {
      dir: logs,
      /** The log of one derivation: STATE/logs/HASH-NAME.log for /nix/store/HASH-NAME.drv. */
      derivationLog: (drvPath: string) => join(logs, `${basename(drvPath, ".drv")}.log`),
    },
    /** The dispatcher's learned state. */
    dispatch: {
      dir: dispatch,
      /** How long each derivation took, learned from past builds. */
      durationsFile: join(dispatch, "durations.json"),
    },
    /** Who built which output with which NAR hash, and outputs of builds that differed (docs/trust.md). */
    trust: trustPaths(join(stateDir, "trust")),
    /** The coordinator (`nixpool serve`). */
    serve: {
      dir: serve,
      /** Builds, derivations, builders and cloud cost of the coordinator (SQLite, WAL). */
      historyDb: join(serve, "history.sqlite"),
      /** The API's bearer token (0600): `nixpool serve token` prints it, clients read it. */
      tokenFile: join(serve, "token"),
      /** Each remote client's own token, as a SHA-256 digest (0600): `nixpool serve token --client NAME`. */
      clientsFile: join(serve, "clients.json"),
      /** The API's Unix socket, where clients of this state directory find a running serve. */
      socket: join(serve, "api.sock"),
    },
    /** The pool's binary cache (`nixpool cache`, served by `nixpool serve` at /cache). */
    cache: {
      dir: join(stateDir, "cache"),
      /** The Nix signing key (secret, 0600): NAME:base64 of 64 bytes. */
      secretKey: join(stateDir, "cache", "signing-key.sec"),
      /** Its public half: the `trusted-public-keys` entry clients add. */
      publicKey: join(stateDir, "cache", "signing-key.pub"),
      /** The read-only cache token (0600) clients put in their netrc file. */
      tokenFile: join(stateDir, "cache", "token"),
    },
    /** `nixpool deploy`: the targets' pinned keys and the GC roots of deployed systems built here. */
    deploy: {
      dir: deploy,
      knownHosts: join(deploy, "known_hosts"),
      gcrootsDir: join(deploy, "gcroots"),
      /** The GC root of the system last deployed to a target, when it was built on this machine. */
      gcroot: (target: string) => join(deploy, "gcroots", target),
    },
  };
}

export type StatePaths = ReturnType<typeof statePaths>;
