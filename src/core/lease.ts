/**
 * Leases of rented workers: written to local state before the server is created, mirrored
 * in the server's labels, and the basis on which the reaper decides what to delete.
 */

/** Label keys nixpool puts on every server and SSH key it creates. */
export const LABELS = {
  managed: "nixpool",
  owner: "nixpool-owner",
  lease: "nixpool-lease",
  expires: "nixpool-expires",
} as const;

/**
 * Who keeps a worker alive: a running nixpool process (a build or a shell; the reaper may
 * delete it once that process is gone), or the user (worker up, --keep; until the lease expires).
 */
export type LeaseHolder = { kind: "process"; pid: number; host: string } | { kind: "user" };

export interface Lease {
  id: string;
  /** Worker (and builder) name, e.g. hz-3f9a1c02b7. */
  name: string;
  /** Server name at the provider; derived from the lease so a retried create cannot make a second server. */
  serverName: string;
  owner: string;
  provider: "hetzner";
  createdAt: string;
  expiresAt: string;
  holder: LeaseHolder;
}

export const LEASE_ID_PATTERN = /^[0-9a-f]{10}$/;

/** A new lease from a random id (10 hex digits), valid for ttlMs from now. */
export function newLease(o: {
  id: string;
  owner: string;
  nowMs: number;
  ttlMs: number;
  holder: LeaseHolder;
}): Lease {
  if (!LEASE_ID_PATTERN.test(o.id)) throw new Error(`lease id ${o.id} is not 10 hex digits`);
  return {
    id: o.id,
    name: `hz-${o.id}`,
    serverName: `nixpool-${o.id}`,
    owner: o.owner,
    provider: "hetzner",
    createdAt: new Date(o.nowMs).toISOString(),
    expiresAt: new Date(o.nowMs + o.ttlMs).toISOString(),
    holder: o.holder,
  };
}

/** The labels that identify nixpool, the owner, the lease and its expiry (unix seconds). */
export function leaseLabels(l: Lease): Record<string, string> {
  return {
    [LABELS.managed]: "1",
    [LABELS.owner]: l.owner,
    [LABELS.lease]: l.id,
    [LABELS.expires]: String(Math.floor(Date.parse(l.expiresAt) / 1000)),
  };
}

/** The label selector for everything nixpool created in a project. */
export const MANAGED_SELECTOR = `${LABELS.managed}=1`;

/** A server as the reaper sees it: id, name and labels. */
export interface LabelledServer {
  id: number;
  name: string;
  labels: Record<string, string>;
}

export type ReapReason = "lease expired" | "owner record gone" | "holder process gone" | "no expiry label";

export interface ReapPlan {
  /** Servers to delete, with the reason. */
  deleteServers: { server: LabelledServer; reason: ReapReason }[];
  /** Local lease records to drop: expired or abandoned with no server behind them. */
  dropLeases: { lease: Lease; reason: string }[];
}

export interface ReapInput {
  servers: readonly LabelledServer[];
  leases: readonly Lease[];
  owner: string;
  nowMs: number;
  /** Whether the process holding a lease is still running (on this host). */
  isHolderAlive: (h: Extract<LeaseHolder, { kind: "process" }>) => boolean;
}

/** Whether a lease is past its expiry. */
export function isLeaseExpired(l: Pick<Lease, "expiresAt">, nowMs: number): boolean {
  return Date.parse(l.expiresAt) <= nowMs;
}

/**
 * Decides what the reaper deletes: any nixpool server whose lease expired (whoever owns it);
 * this owner's servers with no lease record, or whose holding process is gone. Other owners'
 * live servers are left alone.
 */
export function planReap(input: ReapInput): ReapPlan {
  const leases = new Map(input.leases.map((l) => [l.id, l]));
  const abandoned = (l: Lease) => l.holder.kind === "process" && !input.isHolderAlive(l.holder);
  const deleteServers: ReapPlan["deleteServers"] = [];
  const withServer = new Set<string>();
  for (const s of input.servers) {
    if (s.labels[LABELS.managed] !== "1") continue;
    const leaseId = s.labels[LABELS.lease] ?? "";
    withServer.add(leaseId);
    const expires = Number(s.labels[LABELS.expires]);
    if (!Number.isFinite(expires)) {
      if (s.labels[LABELS.owner] === input.owner)
        deleteServers.push({ server: s, reason: "no expiry label" });
      continue;
    }
    if (expires * 1000 <= input.nowMs) {
      deleteServers.push({ server: s, reason: "lease expired" });
      continue;
    }
    if (s.labels[LABELS.owner] !== input.owner) continue;
    const lease = leases.get(leaseId);
    if (!lease) deleteServers.push({ server: s, reason: "owner record gone" });
    else if (abandoned(lease)) deleteServers.push({ server: s, reason: "holder process gone" });
  }
  const dropLeases: ReapPlan["dropLeases"] = [];
  for (const l of input.leases) {
    if (withServer.has(l.id)) continue;
    if (isLeaseExpired(l, input.nowMs)) dropLeases.push({ lease: l, reason: "expired, no server" });
    else if (abandoned(l)) dropLeases.push({ lease: l, reason: "holder process gone, no server" });
  }
  return { deleteServers, dropLeases };
}
