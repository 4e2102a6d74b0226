import { randomBytes } from "node:crypto";
import { isIPv4 } from "node:net";
import { readFile, rm } from "node:fs/promises";
import { statePaths } from "../../config/state-paths.js";
import { run } from "../../adapters/runner.js";
import { writeFileAtomic } from "../../adapters/fs.js";
import { waitFor } from "../../adapters/wait-for.js";
import { sshAlias } from "../../core/builder.js";
import { renderCloudInit } from "../../core/cloud-init.js";
import {
  chooseServerType,
  FALLBACK_PRICES,
  pricesFromApi,
  type PriceTable,
  type Rate,
  type TypeRequirements,
} from "../../core/cost.js";
import { ExitCode, isNixpoolError, NixpoolError } from "../../core/errors.js";
import { LABELS, leaseLabels, newLease, type Lease, type LeaseHolder } from "../../core/lease.js";
import { renderKnownHosts, renderSshConfig } from "../../core/ssh-config.js";
import { classifySshFailure } from "../../core/ssh-errors.js";
import type { HcloudClient } from "./client.js";
import { saveRecord, systemFor, workerBuilder, type Log, type WorkerRecord } from "./records.js";
import { findLeaseServer, type HetznerSession } from "./session.js";
import { ensureWorkerSystem } from "./worker-system.js";
import type { Server, ServerType } from "./types.js";

// Renting a worker: the lease and its server type, then the server, its keys, SSH and Nix.

export interface WorkerRequest {
  /** A server type name, or "auto". */
  type: string;
  requirements: Omit<TypeRequirements, "architecture"> & { architecture?: TypeRequirements["architecture"] };
  location: string;
  image: string;
  ttlMs: number;
  holder: LeaseHolder;
  /** Time allowed for creation, boot, SSH and Nix to answer; default 10 min. */
  bootTimeoutMs?: number;
  /** Wake from this snapshot (snapshots.ts snapshotRequest sets it with image and requirements). */
  snapshot?: { id: number; diskSize: number };
}

/** Reads prices from the API, else the bundled table (with a warning). */
export async function loadPrices(client: HcloudClient, log: Log): Promise<PriceTable> {
  try {
    // Prices are not worth a long wait: the bundled table is the fallback.
    return pricesFromApi(await client.getPricing({ attempts: 3 }), new Date().toISOString().slice(0, 10));
  } catch (e) {
    if (isNixpoolError(e) && e.code === "INTERRUPTED") throw e;
    log(
      `warning: could not read prices from the API (${e instanceof Error ? e.message : String(e)}); using the bundled table of ${FALLBACK_PRICES.date}.`,
    );
    return FALLBACK_PRICES;
  }
}

/** Picks the server type: the named one (checked), or the cheapest fitting one for "auto". */
export function pickServerType(
  types: readonly ServerType[],
  req: WorkerRequest,
  prices: PriceTable,
): { type: ServerType; why: string } {
  const architecture = req.requirements.architecture ?? "x86";
  if (req.type !== "auto") {
    const t = types.find((x) => x.name === req.type);
    if (!t) {
      throw new NixpoolError("HCLOUD_TYPE_UNKNOWN", `Hetzner Cloud has no server type "${req.type}".`, {
        hint: "List the types with: hcloud server-type list (or use --type auto --min-cores C --min-memory G)",
        exitCode: ExitCode.usage,
      });
    }
    const at = t.locations.find((l) => l.name === req.location);
    if (at?.deprecation) {
      throw new NixpoolError(
        "HCLOUD_TYPE_UNAVAILABLE",
        `Server type ${t.name} is phased out in ${req.location} (not orderable after ${at.deprecation.unavailable_after.slice(0, 10)}).`,
        {
          hint: "Use a current type (hcloud server-type list), e.g. --type cx23, or --type auto.",
          exitCode: ExitCode.usage,
        },
      );
    }
    if (!at?.available) {
      const where = t.locations.filter((l) => l.available).map((l) => l.name);
      throw new NixpoolError(
        "HCLOUD_TYPE_UNAVAILABLE",
        `Server type ${t.name} is ${at ? "sold out" : "not offered"} in ${req.location}.`,
        {
          hint:
            where.length > 0
              ? `Rent it where it is available (${where.join(", ")}), e.g. nixpool worker up --type ${t.name} --location LOCATION; or use --type auto.`
              : "It is available nowhere now; use --type auto, or another type (hcloud server-type list).",
          exitCode: ExitCode.usage,
        },
      );
    }
    if (req.requirements.minDisk !== undefined && t.disk < req.requirements.minDisk) {
      throw new NixpoolError(
        "SNAPSHOT_TOO_BIG",
        `Server type ${t.name} has a ${t.disk} GB disk; the snapshot needs ${req.requirements.minDisk} GB.`,
        {
          hint: `Wake it on a type with at least ${req.requirements.minDisk} GB of disk, or with --type auto (the cheapest that fits).`,
          exitCode: ExitCode.usage,
        },
      );
    }
    return { type: t, why: "requested" };
  }
  const choice = chooseServerType(types, req.location, { ...req.requirements, architecture }, prices);
  if (!choice) {
    throw new NixpoolError(
      "HCLOUD_NO_FITTING_TYPE",
      `No available ${architecture} server type in ${req.location} has ${req.requirements.minCores}+ cores and ${req.requirements.minMemory}+ GB memory${req.requirements.minDisk !== undefined ? ` and ${req.requirements.minDisk}+ GB disk` : ""}.`,
      {
        hint: "Lower --min-cores/--min-memory or pass another --location; the types: hcloud server-type list",
        exitCode: ExitCode.usage,
      },
    );
  }
  return {
    type: choice.type,
    why: `cheapest fitting type at €${choice.hourly.net.toFixed(4)}/h net${
      choice.alternatives[0]
        ? `; next: ${choice.alternatives[0].name} at €${choice.alternatives[0].hourly.toFixed(4)}/h`
        : ""
    }`,
  };
}

/**
 * Writes the lease (the worker record, status "creating") before anything is created: from
 * here on, a crash leaves a record that the reaper can act on.
 */
export async function createLease(s: HetznerSession, req: WorkerRequest, log: Log): Promise<WorkerRecord> {
  const [types, prices] = await Promise.all([s.client.listServerTypes(), loadPrices(s.client, log)]);
  const { type, why } = pickServerType(types, req, prices);
  const lease: Lease = newLease({
    id: randomBytes(5).toString("hex"),
    owner: s.owner,
    nowMs: Date.now(),
    ttlMs: req.ttlMs,
    holder: req.holder,
  });
  const rec: WorkerRecord = {
    version: 1,
    lease,
    endpoint: s.endpoint,
    type: type.name,
    location: req.location,
    image: req.image,
    cores: type.cores,
    memory: type.memory,
    system: systemFor(type.architecture),
    prices: {
      source: prices.source,
      date: prices.date,
      currency: prices.currency,
      server: prices.serverTypes[type.name]?.[req.location] ?? zeroRate(),
      ipv4: prices.primaryIpv4[req.location] ?? null,
    },
    serverId: null,
    serverCreatedAt: null,
    ipv4: null,
    sshKeyId: null,
    hostKeyPub: "",
    loginKeyPath: statePaths(s.stateDir).hetzner.worker(lease.id).loginKey,
    status: "creating",
    readyAt: null,
    systemPath: null,
    fromSnapshot: req.snapshot?.id ?? null,
  };
  await saveRecord(s.stateDir, rec);
  log(
    `worker ${lease.name}: ${type.name} (${type.cores} cores, ${type.memory} GB) in ${req.location} — ${why}` +
      (req.snapshot ? `; from snapshot ${req.snapshot.id}` : ""),
  );
  return rec;
}

function zeroRate(): Rate {
  return { hourly: { net: 0, gross: 0 }, monthly: { net: 0, gross: 0 } };
}

async function keygen(path: string, comment: string): Promise<string> {
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]);
  return (await readFile(`${path}.pub`, "utf8")).trim();
}

/**
 * A server's public IPv4 address from an API answer, or null; anything else is refused, so a
 * bad answer never reaches the worker record, ssh_config or known_hosts.
 */
export function serverIpv4(server: Pick<Server, "name" | "public_net">): string | null {
  const ip = server.public_net.ipv4?.ip;
  if (ip === undefined || ip === null) return null;
  if (!isIPv4(ip)) {
    throw new NixpoolError(
      "HCLOUD_BAD_RESPONSE",
      `Hetzner Cloud answered that server ${JSON.stringify(server.name)} has the public IPv4 address ${JSON.stringify(ip)}, which is not an IPv4 address.`,
      {
        hint: "Check that HCLOUD_ENDPOINT points at the Hetzner Cloud API; the server is deleted, run the same command again.",
      },
    );
  }
  return ip;
}

/** Files for ssh and Nix to reach one worker with its pinned key. */
export async function writeWorkerSshFiles(
  stateDir: string,
  rec: WorkerRecord,
): Promise<{ sshConfig: string; knownHosts: string }> {
  const { knownHosts, sshConfig } = statePaths(stateDir).hetzner.worker(rec.lease.id);
  const b = workerBuilder(rec);
  await writeFileAtomic(knownHosts, renderKnownHosts([b]));
  await writeFileAtomic(sshConfig, renderSshConfig([b], { knownHostsFile: knownHosts, connectTimeout: 5 }));
  return { sshConfig, knownHosts };
}

/**
 * Rents the server of a lease and makes it a builder: keys, temporary API SSH key, create
 * (idempotent by name), wait for the action, for SSH with the pinned key, for `nix store ping`.
 * Updates and saves `rec` as it goes; on failure the caller destroys the worker.
 */
export async function provisionWorker(
  s: HetznerSession,
  rec: WorkerRecord,
  o: { bootTimeoutMs?: number; signal?: AbortSignal },
  log: Log,
): Promise<WorkerRecord> {
  const deadline = Date.now() + (o.bootTimeoutMs ?? 600_000);
  const loginPub = await keygen(rec.loginKeyPath, `nixpool-${rec.lease.name}`);
  const hostKeyPath = statePaths(s.stateDir).hetzner.worker(rec.lease.id).hostKey;
  const hostPub = await keygen(hostKeyPath, `${rec.lease.serverName}`);
  const hostPrivate = await readFile(hostKeyPath, "utf8");
  // The private host key only travels in user_data; nixpool keeps the public half.
  await rm(hostKeyPath, { force: true });
  rec.hostKeyPub = hostPub.split(/\s+/).slice(0, 2).join(" ");
  await saveRecord(s.stateDir, rec);

  const labels = leaseLabels(rec.lease);
  let sshKey;
  try {
    sshKey = await s.client.createSshKey({ name: rec.lease.serverName, public_key: loginPub, labels });
  } catch (e) {
    if (!(isNixpoolError(e) && e.code === "HCLOUD_NOT_UNIQUE")) throw e;
    // A retried create whose first attempt got through.
    sshKey = (await s.client.listSshKeys({ name: rec.lease.serverName })).find(
      (k) => k.labels[LABELS.lease] === rec.lease.id,
    );
    if (!sshKey) throw e;
  }
  rec.sshKeyId = sshKey.id;
  await saveRecord(s.stateDir, rec);

  const userData = renderCloudInit({
    hostname: rec.lease.serverName,
    hostKeyPrivate: hostPrivate,
    hostKeyPublic: hostPub,
    authorizedKeys: [loginPub],
    maxJobs: rec.cores,
    systemFeatures: workerBuilder(rec).supportedFeatures,
  });
  log(`worker ${rec.lease.name}: creating server ${rec.lease.serverName}`);
  let server: Server;
  let action;
  try {
    const created = await s.client.createServer({
      name: rec.lease.serverName,
      server_type: rec.type,
      image: rec.image,
      location: rec.location,
      ssh_keys: [String(sshKey.id)],
      user_data: userData,
      labels,
      start_after_create: true,
    });
    server = created.server;
    action = created.action;
  } catch (e) {
    if (!(isNixpoolError(e) && e.code === "HCLOUD_NOT_UNIQUE")) throw e;
    const existing = await findLeaseServer(s, rec.lease);
    if (!existing) throw e;
    log(`worker ${rec.lease.name}: the server was created by an earlier attempt; using it`);
    server = existing;
  }
  rec.serverId = server.id;
  rec.serverCreatedAt = server.created;
  rec.ipv4 = serverIpv4(server);
  rec.status = "booting";
  await saveRecord(s.stateDir, rec);

  if (action) {
    await s.client.waitForAction(action, { timeoutMs: Math.max(1000, deadline - Date.now()) });
  }
  const fresh = await s.client.getServer(server.id);
  if (!fresh) {
    throw new NixpoolError(
      "HCLOUD_SERVER_VANISHED",
      `Server ${rec.lease.serverName} disappeared while booting.`,
      {
        hint: "Check with: hcloud server list; then retry.",
      },
    );
  }
  rec.ipv4 = serverIpv4(fresh) ?? rec.ipv4;
  if (!rec.ipv4) {
    throw new NixpoolError("HCLOUD_NO_IPV4", `Server ${rec.lease.serverName} has no public IPv4 address.`, {
      hint: "nixpool needs IPv4 to reach workers; the server is deleted, run the same command again and report this if it repeats.",
    });
  }
  await saveRecord(s.stateDir, rec);
  log(
    `worker ${rec.lease.name}: server ${server.id} running at ${rec.ipv4}; waiting for SSH with the pinned host key`,
  );

  const files = await writeWorkerSshFiles(s.stateDir, rec);
  await waitForSsh(rec, files.sshConfig, deadline, o.signal);
  log(`worker ${rec.lease.name}: SSH answers; waiting for Nix`);
  await waitForNix(rec, files.sshConfig, deadline, o.signal);
  await ensureWorkerSystem(s.stateDir, rec, log, o.signal);

  // The key was needed for the first boot only.
  if (await s.client.deleteSshKey(sshKey.id).catch(() => false)) rec.sshKeyId = null;
  rec.status = "ready";
  rec.readyAt = new Date().toISOString();
  await saveRecord(s.stateDir, rec);
  log(`worker ${rec.lease.name}: ready (${rec.cores} jobs, ${rec.system})`);
  return rec;
}

/**
 * Retries `attempt` until it returns true or `deadline` passes (false); an abort of `signal`
 * during the wait becomes INTERRUPTED.
 */
async function retryUntil(
  attempt: () => Promise<boolean>,
  deadline: number,
  intervalMs: number,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  try {
    return await waitFor(attempt, {
      timeoutMs: Math.max(0, deadline - Date.now()),
      intervalMs,
      ...(signal ? { signal } : {}),
    });
  } catch (e) {
    if (!signal?.aborted) throw e;
    throw new NixpoolError("INTERRUPTED", "Interrupted while waiting for the worker.", {
      exitCode: ExitCode.interrupted,
    });
  }
}

/** Retries `ssh true` until it succeeds; a wrong host key ends it at once. */
async function waitForSsh(rec: WorkerRecord, sshConfig: string, deadline: number, signal?: AbortSignal) {
  let last = "";
  const up = await retryUntil(
    async () => {
      const r = await run(["ssh", "-F", sshConfig, sshAlias(workerBuilder(rec)), "true"], {
        reject: false,
        timeout: 30_000,
        ...(signal ? { signal } : {}),
      });
      if (r.exitCode === 0) return true;
      last = r.stderr.trim().split("\n").slice(-1)[0] ?? "";
      const kind = classifySshFailure(r.stderr);
      if (kind === "host-key-mismatch" || kind === "host-key-unknown") {
        throw new NixpoolError(
          "HOST_KEY_MISMATCH",
          `Worker ${rec.lease.name} (${rec.ipv4 ?? "?"}) presented a host key other than the one nixpool gave it; nixpool refused to connect.`,
          {
            hint: "Something else answers at that address; the worker is deleted, run the same command again and report this if it repeats.",
          },
        );
      }
      return false;
    },
    deadline,
    1000,
    signal,
  );
  if (up) return;
  throw new NixpoolError(
    "WORKER_BOOT_TIMEOUT",
    `Worker ${rec.lease.name} (${rec.ipv4 ?? "?"}) never answered on SSH${last ? ` (last: ${last})` : ""}.`,
    {
      hint: "The server is deleted. Run the same command with a longer --boot-timeout (e.g. --boot-timeout 20m) or another --location; see https://status.hetzner.com",
    },
  );
}

/** Retries `nix store ping` over ssh-ng until Nix answers (cloud-init may still be installing it). */
async function waitForNix(rec: WorkerRecord, sshConfig: string, deadline: number, signal?: AbortSignal) {
  let last = "";
  const answers = await retryUntil(
    async () => {
      const r = await run(
        [
          "nix",
          "--extra-experimental-features",
          "nix-command",
          "store",
          "ping",
          "--store",
          `ssh-ng://${sshAlias(workerBuilder(rec))}`,
        ],
        {
          reject: false,
          timeout: 60_000,
          env: { NIX_SSHOPTS: `-F ${sshConfig}` },
          ...(signal ? { signal } : {}),
        },
      );
      if (r.exitCode === 0) return true;
      last = r.stderr.trim().split("\n").slice(-1)[0] ?? "";
      return false;
    },
    deadline,
    2000,
    signal,
  );
  if (answers) return;
  throw new NixpoolError(
    "WORKER_NIX_TIMEOUT",
    `Worker ${rec.lease.name} answers on SSH but Nix never did${last ? ` (last: ${last})` : ""}.`,
    {
      hint: "The server is deleted. Cloud-init may have failed to install nix-bin; run the same command with another --image (hcloud image list --type system).",
    },
  );
}
