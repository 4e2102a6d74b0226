import { mkdir, readFile, stat, writeFile, appendFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { run, type RunResult } from "../../src/adapters/runner.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { localHostPaths } from "../../src/config/state-paths.js";
import { canConnect, hostExecArgv, startHost, stopHost } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";

/**
 * The coordinator machine's sshd for gateway clients: a real sshd in this machine's own
 * namespaces (so a session sees the coordinator's store), listening where a client host reaches
 * this machine, with its own host key and authorized keys file.
 */
export interface GatewaySshd {
  dir: string;
  address: string;
  hostKeyPub: string;
  hostKeyPubFile: string;
  authorizedKeysFile: string;
  log: () => Promise<string>;
  stop: () => Promise<void>;
}

export interface GatewaySshdOptions {
  /** Default 22. */
  port?: number;
  /**
   * Sessions of non-root accounts reach this machine's store through a nix-daemon: sshd then runs
   * in a mount namespace of its own where a private nix-daemon (with this NIX_CONFIG, e.g. its
   * trusted-users) answers on the daemon socket, leaving every other test's store untouched.
   */
  privateDaemon?: { nixConfig: string };
}

/** Starts sshd on ADDRESS:PORT with `extra` lines first (e.g. an AuthorizedKeysCommand). */
export async function startGatewaySshd(
  dir: string,
  address: string,
  extra: string[] = [],
  o: GatewaySshdOptions = {},
): Promise<GatewaySshd> {
  const port = o.port ?? 22;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = join(dir, "host_ed25519");
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nixpool-gateway", "-f", hostKey]);
  const authorizedKeysFile = join(dir, "authorized_keys");
  await writeFile(authorizedKeysFile, "", { mode: 0o600 });
  const config = join(dir, "sshd_config");
  const logFile = join(dir, "sshd.log");
  await writeFile(
    config,
    [
      ...extra,
      `ListenAddress ${address}:${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${authorizedKeysFile}`,
      "UsePAM no",
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "StrictModes no",
      "LogLevel VERBOSE",
      "MaxStartups 100:30:200",
      "",
    ].join("\n"),
  );
  const sshd = ["/usr/sbin/sshd", "-D", "-E", logFile, "-f", config];
  const daemonPid = join(dir, "daemon.pid");
  let argv = sshd;
  if (o.privateDaemon) {
    const script = join(dir, "private-daemon.sh");
    await mkdir(join(dir, "daemon-socket"), { recursive: true });
    await mkdir("/nix/var/nix/daemon-socket", { recursive: true });
    await writeFile(
      script,
      [
        "set -e",
        `mount --bind ${join(dir, "daemon-socket")} /nix/var/nix/daemon-socket`,
        `nix-daemon >${join(dir, "daemon.log")} 2>&1 &`,
        `echo $! >${daemonPid}`,
        'exec "$@"',
        "",
      ].join("\n"),
    );
    argv = [
      "unshare",
      "-m",
      "--propagation",
      "private",
      "env",
      `NIX_CONFIG=${o.privateDaemon.nixConfig}`,
      "sh",
      script,
      ...sshd,
    ];
  }
  const [cmd, ...args] = argv as [string, ...string[]];
  const proc = execa(cmd, args, {
    reject: false,
    stdin: "ignore",
  });
  let exited = false;
  void proc.then(() => (exited = true));
  const socketUp = async () =>
    !o.privateDaemon ||
    (await stat(join(dir, "daemon-socket", "socket")).then(
      () => true,
      () => false,
    ));
  const up = await waitFor(
    async () => (exited ? "dead" : ((await canConnect(address, port)) && (await socketUp())) || undefined),
    { timeoutMs: 10_000 },
  );
  if (up !== true)
    throw new Error(`gateway sshd did not start:\n${await readFile(logFile, "utf8").catch(() => "")}`);
  return {
    dir,
    address,
    hostKeyPub: (await readFile(`${hostKey}.pub`, "utf8")).trim(),
    hostKeyPubFile: `${hostKey}.pub`,
    authorizedKeysFile,
    log: () => readFile(logFile, "utf8").catch(() => ""),
    stop: async () => {
      if (!exited) proc.kill("SIGTERM");
      await proc;
      const pid = Number(await readFile(daemonPid, "utf8").catch(() => ""));
      if (pid > 0) {
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // Gone already.
        }
      }
    },
  };
}

/** A client machine: a pool-style host (own network and mount namespaces, own store), with a login key for the gateway. */
export interface ClientMachine {
  rec: HostRecord;
  /** The key's path inside the client (its /etc/nix). */
  identity: string;
  publicKey: string;
  /** Runs a command inside the client machine. */
  exec: (argv: readonly string[], options?: { timeout?: number; input?: string }) => Promise<RunResult>;
  /** Applies `nixpool config client --json` output: machines file, nix.conf, root's known_hosts. */
  configure: (cfg: { machinesLine: string; knownHostsLine: string; nixConf: string }) => Promise<void>;
  /** Writes a file into the client's /etc/nix. */
  etcNix: (name: string) => string;
  stop: () => Promise<void>;
}

export async function startClientMachine(
  dir: string,
  name: string,
  keyName = "nixpool-gateway_ed25519",
): Promise<ClientMachine> {
  const rec = await startHost({ name, dir, jobs: 1, authorizedKeys: [] });
  const files = localHostPaths(dir);
  const keyOutside = join(files.etcNixDir, keyName);
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `client-${name}`, "-f", keyOutside]);
  const publicKey = (await readFile(`${keyOutside}.pub`, "utf8")).trim().split(/\s+/).slice(0, 2).join(" ");
  return {
    rec,
    identity: `/etc/nix/${keyName}`,
    publicKey,
    exec: (argv, o = {}) =>
      run(hostExecArgv(rec, argv), {
        reject: false,
        timeout: o.timeout ?? 300_000,
        ...(o.input !== undefined ? { input: o.input } : {}),
      }),
    configure: async (cfg) => {
      await writeFile(join(files.etcNixDir, "machines"), `${cfg.machinesLine}\n`);
      await appendFile(join(files.etcNixDir, "nix.conf"), `\n${cfg.nixConf}\n`);
      await mkdir(join(files.rootHome, ".ssh"), { recursive: true, mode: 0o700 });
      await writeFile(join(files.rootHome, ".ssh", "known_hosts"), `${cfg.knownHostsLine}\n`);
    },
    etcNix: (n) => join(files.etcNixDir, n),
    stop: () => stopHost(rec),
  };
}
