import { randomBytes } from "node:crypto";
import { isIPv4 } from "node:net";
import { hostname } from "node:os";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { run } from "../../adapters/runner.js";
import { writeFileAtomic } from "../../adapters/fs.js";
import { isProcessAlive } from "../../adapters/process-alive.js";
import { sshAlias, type Builder } from "../../core/builder.js";
import { renderCloudInit } from "../../core/cloud-init.js";
import {
  chooseServerType,
  FALLBACK_PRICES,
  formatCostShort,
  pricesFromApi,
  workerCost,
  type PriceTable,
  type Rate,
  type TypeRequirements,
  type WorkerCost,
} from "../../core/cost.js";
import { NixpoolError, isNixpoolError } from "../../core/errors.js";
import {
  LABELS,
  leaseLabels,
  MANAGED_SELECTOR,
  newLease,
  planReap,
  type Lease,
  type LeaseHolder,
} from "../../core/lease.js";
import { renderKnownHosts, renderSshConfig } from "../../core/ssh-config.js";
import { classifySshFailure } from "../../core/ssh-errors.js";
import { HcloudClient, type RetryEvent } from "./client.js";
import { resolveEndpoint, resolveToken } from "./token.js";
import type { Server, ServerType } from "./types.js";
import { statePaths } from "../../config/state-paths.js";

const rateSchema = z.object({
  hourly: z.object({ net: z.number(), gross: z.number() }),
  monthly: z.object({ net: z.number(), gross: z.number() }),
});

const workerRecordSchema = z.object({
  version: z.literal(1),
  lease: z.object({
    id: z.string().regex(/^[0-9a-f]{10}$/),
    name: z.string(),
    serverName: z.string(),
    owner: z.string(),
    provider: z.literal("hetzner"),
    createdAt: z.string(),
    expiresAt: z.string(),
    holder: z.union([
      z.object({ kind: z.literal("process"), pid: z.number(), host: z.string() }),
      z.object({ kind: z.literal("user") }),
    ]),
  }),
  endpoint: z.string(),
  type: z.string(),
  location: z.string(),
  image: z.string(),
  cores: z.number(),
  memory: z.number(),
  system: z.string(),
  prices: z.object({
    source: z.enum(["api", "fallback"]),
    date: z.string(),
    currency: z.string(),
    server: rateSchema,
    ipv4: rateSchema.nullable(),
  }),
  serverId: z.number().nullable(),
  serverCreatedAt: z.string().nullable(),
  ipv4: z.ipv4().nullable(),
  sshKeyId: z.number().nullable(),
  hostKeyPub: z.string(),
  loginKeyPath: z.string(),
  status: z.enum(["creating", "booting", "ready", "deleting"]),
  readyAt: z.string().nullable(),
});

/** A worker as recorded in STATE/hetzner/workers/LEASE/worker.json: the lease plus what was rented. */
export type WorkerRecord = z.infer<typeof workerRecordSchema>;

/** Progress and warnings for the user (stderr). */
export type Log = (line: string) => void;

export interface HetznerSession {
  stateDir: string;
  client: HcloudClient;
  owner: string;
  endpoint: string;
}

export interface SessionOptions {
  stateDir: string;
  env: Record<string, string | undefined>;
  tokenFile?: string | undefined;
  signal?: AbortSignal;
  onRetry?: (e: RetryEvent) => void;
}

const hetznerDir = (stateDir: string) => statePaths(stateDir).hetzner.dir;
const workersDir = (stateDir: string) => statePaths(stateDir).hetzner.workersDir;
/** The directory of one worker: its record, login key, ssh_config and known_hosts. */
export const workerDir = (stateDir: string, leaseId: string) =>
  statePaths(stateDir).hetzner.worker(leaseId).dir;
const recordPath = (stateDir: string, leaseId: string) => statePaths(stateDir).hetzner.worker(leaseId).record;

/** This state directory's owner id (random, created once), put on every server as a label. */
export async function ensureOwner(stateDir: string): Promise<string> {
  const path = statePaths(stateDir).hetzner.ownerFile;
  const existing = (await readFile(path, "utf8").catch(() => "")).trim();
  if (/^[0-9a-f]{12}$/.test(existing)) return existing;
  const owner = randomBytes(6).toString("hex");
  await mkdir(hetznerDir(stateDir), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${owner}\n`, { mode: 0o600 });
  return owner;
}

/** Opens a session: token (never printed), endpoint (HCLOUD_ENDPOINT), owner id. */
export async function openSession(o: SessionOptions): Promise<HetznerSession> {
  const { token } = await resolveToken({ tokenFile: o.tokenFile, env: o.env });
  const endpoint = resolveEndpoint(o.env);
  const client = new HcloudClient({
    token,
    endpoint,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onRetry ? { onRetry: o.onRetry } : {}),
  });
  return { stateDir: o.stateDir, client, owner: await ensureOwner(o.stateDir), endpoint };
}

/** Saves a worker record atomically (0600: it names the login key). */
export async function saveRecord(stateDir: string, rec: WorkerRecord): Promise<void> {
  await mkdir(workerDir(stateDir, rec.lease.id), { recursive: true, mode: 0o700 });
  await writeFileAtomic(recordPath(stateDir, rec.lease.id), `${JSON.stringify(rec, null, 2)}\n`, {
    mode: 0o600,
  });
}

/** Every worker record in the state directory; unreadable ones are reported, not fatal. */
export async function readRecords(stateDir: string, log?: Log): Promise<WorkerRecord[]> {
  const ids = await readdir(workersDir(stateDir)).catch(() => [] as string[]);
  const out: WorkerRecord[] = [];
  for (const id of ids.sort()) {
    const path = recordPath(stateDir, id);
    const text = await readFile(path, "utf8").catch(() => undefined);
    if (text === undefined) continue;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const r = workerRecordSchema.safeParse(json);
    if (r.success) out.push(r.data);
    else
      log?.(
        `warning: ignoring the unreadable worker record ${path}; nixpool worker gc deletes its server by label.`,
      );
  }
  return out;
}

/** Removes a worker's local record and keys. */
export async function dropRecord(stateDir: string, leaseId: string): Promise<void> {
  await rm(workerDir(stateDir, leaseId), { recursive: true, force: true });
}

/** The nix system a server architecture builds for. */
export function systemFor(architecture: string): string {
  return architecture === "arm" ? "aarch64-linux" : "x86_64-linux";
}

/** A ready worker as a builder of the pool: ssh-ng as root, pinned host key, maxJobs = cores. */
export function workerBuilder(rec: WorkerRecord): Builder {
  return {
    name: rec.lease.name,
    host: rec.ipv4 ?? "",
    port: 22,
    user: "root",
    protocol: "ssh-ng",
    systems: [rec.system],
    maxJobs: rec.cores,
    speedFactor: 1,
    supportedFeatures: ["nixos-test", "big-parallel", "benchmark"],
    mandatoryFeatures: [],
    hostKey: rec.hostKeyPub,
    identityFile: rec.loginKeyPath,
    tags: ["hetzner", rec.type, rec.location],
    trust: "trusted",
    source: "hetzner",
  };
}

/** Builders of the ready workers in a state directory. */
export async function readWorkerBuilders(stateDir: string): Promise<Builder[]> {
  return (await readRecords(stateDir)).filter((r) => r.status === "ready" && r.ipv4).map(workerBuilder);
}

/** A worker's cost from its creation until `endMs` (now, for a running one). */
export function recordCost(rec: WorkerRecord, endMs: number): WorkerCost {
  const table: PriceTable = {
    source: rec.prices.source,
    date: rec.prices.date,
    currency: rec.prices.currency,
    vatPercent: 0,
    serverTypes: { [rec.type]: { [rec.location]: rec.prices.server } },
    primaryIpv4: rec.prices.ipv4 ? { [rec.location]: rec.prices.ipv4 } : {},
  };
  const start = Date.parse(rec.serverCreatedAt ?? rec.lease.createdAt);
  return workerCost(table, rec.type, rec.location, start, Math.max(start, endMs));
}

// ---- reaper -------------------------------------------------------------------------------

const thisHost = hostname();

/** Whether the process holding a lease still runs (only processes on this host can be checked). */
function isHolderAlive(h: Extract<LeaseHolder, { kind: "process" }>): boolean {
  return h.host !== thisHost || isProcessAlive(h.pid);
}

export interface ReapResult {
  deleted: { name: string; id: number; reason: string }[];
  droppedLeases: string[];
  deletedSshKeys: number;
}

/**
 * The reaper: deletes nixpool servers whose lease expired (anyone's), and this owner's
 * servers with no record or whose holding process is gone; drops stale records and
 * temporary SSH keys. Runs in passing before every provider command.
 */
export async function reapWorkers(s: HetznerSession, log: Log): Promise<ReapResult> {
  // A server already being deleted needs nothing more.
  const servers = (await s.client.listServers({ labelSelector: MANAGED_SELECTOR })).filter(
    (x) => x.status !== "deleting",
  );
  const records = await readRecords(s.stateDir, log);
  const plan = planReap({
    servers: servers.map((x) => ({ id: x.id, name: x.name, labels: x.labels })),
    leases: records.map((r) => r.lease),
    owner: s.owner,
    nowMs: Date.now(),
    isHolderAlive,
  });
  const result: ReapResult = { deleted: [], droppedLeases: [], deletedSshKeys: 0 };
  const outcomes = await Promise.allSettled(
    plan.deleteServers.map(async ({ server, reason }) => {
      log(`gc: deleting server ${server.name} (${server.id}): ${reason}`);
      const action = await s.client.deleteServer(server.id);
      if (action) await s.client.waitForAction(action, { timeoutMs: 300_000 });
      result.deleted.push({ name: server.name, id: server.id, reason });
      const leaseId = server.labels[LABELS.lease];
      const rec = records.find((r) => r.lease.id === leaseId);
      if (rec) {
        log(`gc: ${rec.lease.name} cost ${formatCostShort(recordCost(rec, Date.now()))}`);
        await dropRecord(s.stateDir, rec.lease.id);
      }
    }),
  );
  const failures = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as unknown] : []));
  for (const { lease, reason } of plan.dropLeases) {
    log(`gc: dropping the record of ${lease.name}: ${reason}`);
    await dropRecord(s.stateDir, lease.id);
    result.droppedLeases.push(lease.name);
  }
  // Temporary API SSH keys: delete those whose server is gone or being deleted.
  const live = new Set(
    servers.filter((x) => !result.deleted.some((d) => d.id === x.id)).map((x) => x.labels[LABELS.lease]),
  );
  const liveRecords = new Set((await readRecords(s.stateDir)).map((r) => r.lease.id));
  for (const key of await s.client.listSshKeys({ labelSelector: MANAGED_SELECTOR })) {
    const leaseId = key.labels[LABELS.lease];
    const expired = Number(key.labels[LABELS.expires]) * 1000 <= Date.now();
    const mine = key.labels[LABELS.owner] === s.owner;
    if (expired || (mine && !live.has(leaseId) && !liveRecords.has(leaseId ?? ""))) {
      if (await s.client.deleteSshKey(key.id)) result.deletedSshKeys++;
    }
  }
  if (failures.length > 0) {
    const first = failures[0];
    throw new NixpoolError(
      "WORKER_GC_INCOMPLETE",
      `Worker gc deleted ${result.deleted.length} of ${plan.deleteServers.length} server(s); the first failure: ${first instanceof Error ? first.message : String(first)}`,
      { hint: "Run nixpool worker gc again; check with: nixpool worker list --all", cause: first },
    );
  }
  return result;
}

/** Runs the reaper, turning its failure into a warning (it runs in passing). */
export async function reapQuietly(s: HetznerSession, log: Log): Promise<ReapResult | undefined> {
  try {
    return await reapWorkers(s, log);
  } catch (e) {
    if (isNixpoolError(e) && e.code === "INTERRUPTED") throw e;
    log(`warning: gc of leftover workers failed: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

// ---- up -----------------------------------------------------------------------------------

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
        exitCode: 2,
      });
    }
    const at = t.locations.find((l) => l.name === req.location);
    if (!at?.available) {
      throw new NixpoolError(
        "HCLOUD_TYPE_UNAVAILABLE",
        `Server type ${t.name} is ${at ? "sold out" : "not offered"} in ${req.location}.`,
        {
          hint: `Rent it where it is available (${t.locations
            .filter((l) => l.available)
            .map((l) => l.name)
            .join(", ")}), e.g. nixpool worker up --type ${t.name} --location LOCATION; or use --type auto.`,
          exitCode: 2,
        },
      );
    }
    return { type: t, why: "requested" };
  }
  const choice = chooseServerType(types, req.location, { ...req.requirements, architecture }, prices);
  if (!choice) {
    throw new NixpoolError(
      "HCLOUD_NO_FITTING_TYPE",
      `No available ${architecture} server type in ${req.location} has ${req.requirements.minCores}+ cores and ${req.requirements.minMemory}+ GB memory.`,
      {
        hint: "Lower --min-cores/--min-memory or pass another --location; the types: hcloud server-type list",
        exitCode: 2,
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
  };
  await saveRecord(s.stateDir, rec);
  log(
    `worker ${lease.name}: ${type.name} (${type.cores} cores, ${type.memory} GB) in ${req.location} — ${why}`,
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

/** Finds the server of a lease by its derived name, checking the lease label. */
async function findLeaseServer(s: HetznerSession, lease: Lease): Promise<Server | undefined> {
  const [server] = await s.client.listServers({ name: lease.serverName });
  if (server && server.labels[LABELS.lease] !== lease.id) {
    throw new NixpoolError(
      "HCLOUD_NAME_TAKEN",
      `A server named ${lease.serverName} exists but does not carry lease ${lease.id}.`,
      { hint: "Rename or delete that server (hcloud server describe " + lease.serverName + "), then retry." },
    );
  }
  return server;
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

  // The key was needed for the first boot only.
  if (await s.client.deleteSshKey(sshKey.id).catch(() => false)) rec.sshKeyId = null;
  rec.status = "ready";
  rec.readyAt = new Date().toISOString();
  await saveRecord(s.stateDir, rec);
  log(`worker ${rec.lease.name}: ready (${rec.cores} jobs, ${rec.system})`);
  return rec;
}

async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, signal ? { signal } : {});
  } catch {
    throw new NixpoolError("INTERRUPTED", "Interrupted while waiting for the worker.", { exitCode: 130 });
  }
}

/** Retries `ssh true` until it succeeds; a wrong host key ends it at once. */
async function waitForSsh(rec: WorkerRecord, sshConfig: string, deadline: number, signal?: AbortSignal) {
  let last = "";
  while (Date.now() < deadline) {
    const r = await run(["ssh", "-F", sshConfig, sshAlias(workerBuilder(rec)), "true"], {
      reject: false,
      timeout: 30_000,
      ...(signal ? { signal } : {}),
    });
    if (r.exitCode === 0) return;
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
    await pause(1000, signal);
  }
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
  while (Date.now() < deadline) {
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
    if (r.exitCode === 0) return;
    last = r.stderr.trim().split("\n").slice(-1)[0] ?? "";
    await pause(2000, signal);
  }
  throw new NixpoolError(
    "WORKER_NIX_TIMEOUT",
    `Worker ${rec.lease.name} answers on SSH but Nix never did${last ? ` (last: ${last})` : ""}.`,
    {
      hint: "The server is deleted. Cloud-init may have failed to install nix-bin; run the same command with another --image (hcloud image list --type system).",
    },
  );
}

// ---- renewal ------------------------------------------------------------------------------

/** Extends a lease to now + ttlMs: the local record first, then the server's expiry label. */
export async function renewLease(s: HetznerSession, rec: WorkerRecord, ttlMs: number): Promise<void> {
  rec.lease.expiresAt = new Date(Date.now() + ttlMs).toISOString();
  await saveRecord(s.stateDir, rec);
  if (rec.serverId !== null) await s.client.updateServerLabels(rec.serverId, leaseLabels(rec.lease));
}

/**
 * Keeps a held lease alive while its holder works (a build may outlast the TTL): renews every
 * third of the TTL (at most every 30 min). stop() waits for a renewal in flight.
 */
export function startLeaseRenewal(
  s: HetznerSession,
  rec: WorkerRecord,
  ttlMs: number,
  log: Log,
): { stop: () => Promise<void> } {
  let inFlight: Promise<void> = Promise.resolve();
  const every = Math.min(Math.max(ttlMs / 3, 1000), 1_800_000);
  const timer = setInterval(() => {
    inFlight = inFlight
      .then(() => renewLease(s, rec, ttlMs))
      .catch((e: unknown) =>
        log(
          `warning: could not renew the lease of ${rec.lease.name} (${e instanceof Error ? e.message : String(e)}); it expires at ${rec.lease.expiresAt}`,
        ),
      );
  }, every);
  return {
    stop: async () => {
      clearInterval(timer);
      await inFlight;
    },
  };
}

// ---- down ---------------------------------------------------------------------------------

/**
 * Deletes a worker's server (looked up by its derived name if the id was never recorded) and
 * temporary SSH key, waits for the deletion, drops the record; returns the cost.
 */
export async function destroyWorker(s: HetznerSession, rec: WorkerRecord, log: Log): Promise<WorkerCost> {
  rec.status = "deleting";
  await saveRecord(s.stateDir, rec);
  let serverId = rec.serverId;
  if (serverId === null) serverId = (await findLeaseServer(s, rec.lease).catch(() => undefined))?.id ?? null;
  if (serverId !== null) {
    log(`worker ${rec.lease.name}: deleting server ${rec.lease.serverName} (${serverId})`);
    const action = await s.client.deleteServer(serverId);
    if (action) await s.client.waitForAction(action, { timeoutMs: 300_000 });
  }
  const keyId =
    rec.sshKeyId ??
    (await s.client.listSshKeys({ name: rec.lease.serverName }).catch(() => [])).find(
      (k) => k.labels[LABELS.lease] === rec.lease.id,
    )?.id;
  if (keyId !== undefined) await s.client.deleteSshKey(keyId);
  const cost = recordCost(rec, Date.now());
  await dropRecord(s.stateDir, rec.lease.id);
  return cost;
}

/** Finds a worker record by worker name, server name or lease id. */
export function findRecord(records: readonly WorkerRecord[], name: string): WorkerRecord | undefined {
  return records.find((r) => r.lease.name === name || r.lease.serverName === name || r.lease.id === name);
}
