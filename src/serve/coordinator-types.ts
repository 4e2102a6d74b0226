/**
 * The seam between the coordinator's engine (src/serve/coordinator.ts), its HTTP API
 * (src/serve/http/) and its dashboard (src/serve/dashboard/): plain data, JSON as it is.
 * Times are ISO strings. A change here is announced in its commit message.
 */
import type { DispatchEvent, DispatchResult } from "../dispatch/run-dispatch.js";
import type { GivenDerivationJson } from "./given-derivation.js";

/** Short and URL-safe. */
export type BuildId = string;

/** Who asked: the socket's peer, a token's holder, or this process. */
export interface ClientIdentity {
  user: string;
  uid?: number;
  via: "socket" | "token" | "local";
  /** A TCP request to a coordinator serving without a token (`--no-token`): anyone on the machine. */
  unauthenticated?: true;
}

/** A build to run; the client has evaluated already (its store is the coordinator's). */
export interface SubmitRequest {
  /**
   * The roots, as src/dispatch/evaluate.ts returns them. `given`: the derivation by value (the
   * gateway's BuildDerivation), for a .drv that is not in the coordinator's store.
   */
  derivations: { drv: string; output: string; given?: GivenDerivationJson }[];
  /**
   * The client a gateway session submits for (the name its key maps to); shown as
   * "gateway:NAME". Honoured only from root or the coordinator's own user on the socket.
   */
  onBehalfOf?: string;
  /** Shown in lists, e.g. "default.nix -A hello". */
  label: string;
  keepGoing?: boolean;
  copyBack?: "needed" | "all" | "none";
  /** Only these builders (by name); all when absent. */
  builders?: string[];
  tags?: string[];
}

export type BuildStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";

export interface BuildCounts {
  total: number;
  done: number;
  failed: number;
  running: number;
  queued: number;
}

export interface BuildSummary {
  id: BuildId;
  label: string;
  /** The submitter's user name. */
  client: string;
  status: BuildStatus;
  submittedAt: string;
  startedAt?: string;
  finishedAt?: string;
  counts: BuildCounts;
}

export type DerivationViewStatus =
  "queued" | "running" | "built" | "cached" | "failed" | "skipped" | "cancelled";

export interface DerivationView {
  drv: string;
  name: string;
  builder?: string;
  trust?: string;
  status: DerivationViewStatus;
  startedAt?: string;
  finishedAt?: string;
  attempts: number;
  error?: string;
}

/**
 * A finished build's dispatch records, as a local build has them: the remote client prints the
 * same report, --json and --timeline from them (src/cli/dispatch-output.ts). Outputs and the
 * out-link are the client's own.
 */
export type BuildReport = Omit<DispatchResult, "outputs" | "outLink" | "holders">;

export interface BuildDetail extends BuildSummary {
  derivations: DerivationView[];
  /** The roots' output paths (once succeeded). */
  outputs: string[];
  error?: { code: string; message: string };
  /** Once finished (also when failed or cancelled): the records behind the client's report. */
  report?: BuildReport;
}

export type BuilderHealth = "up" | "down" | "backoff";

export interface BuilderView {
  name: string;
  systems: string[];
  slots: number;
  inUse: number;
  /** Several coordinators: slots of this builder the others hold now. */
  inUseElsewhere?: number;
  health: BuilderHealth;
  speedFactor: number;
  trust: string;
  current: { buildId: BuildId; drv: string; name: string }[];
  lastError?: string;
  nextProbeAt?: string;
}

/** A coordinator sharing the pool's database, as GET /api/coordinators shows it. */
export interface CoordinatorView {
  id: string;
  /** Where its API answers, as it said (`serve --listen`); null when it listens on its socket only. */
  url: string | null;
  self: boolean;
  alive: boolean;
  startedAt: string;
  heartbeatAt: string;
}

/** A rented cloud worker, with what it has cost so far. */
export interface WorkerView {
  name: string;
  serverType: string;
  startedAt: string;
  costSoFar: number;
  currency: string;
}

/**
 * One autoscaler decision: a rental, a deletion or suspend (`suspendIdle`), work it could not rent
 * for, a worker ready, suspended or failed.
 */
export interface AutoscaleDecisionView {
  at: string;
  action: "rent" | "ready" | "delete" | "suspend" | "suspended" | "blocked" | "failed";
  worker?: string;
  serverType?: string;
  /** e.g. "rented cx33: 37 x86_64-linux derivations waited > 30s; today 0.42 of 5.00 EUR" */
  reason: string;
}

/** A worker the autoscaler rented, as it stands now. */
export interface AutoscaleWorkerView {
  /** The worker's name once leased (hz-…), else the rental's id. */
  name: string;
  serverType: string;
  /** suspending: out of the pool (it takes no work), its snapshot under way; billed until deleted. */
  status: "booting" | "ready" | "suspending" | "deleting";
  startedAt: string;
  /** Derivations building on it, plus running builds that used it (they may still fetch its outputs); idle at 0. */
  running: number;
  /** When its current paid hour ends. */
  paidUntil: string;
}

/** GET /api/autoscale: the settings, the last plan, the workers, spending and the decisions (newest first). */
export interface AutoscaleView {
  provider: "hetzner";
  /** False while another coordinator leads (this one rents nothing). */
  leader: boolean;
  settings: {
    minWorkers: number;
    maxWorkers: number;
    serverTypes: "auto" | string[];
    location: string;
    derivationsPerWorker: number;
    scaleUpAfterMs: number;
    minLifetimeMs: number;
    releaseMarginMs: number;
    intervalMs: number;
    suspendIdle: boolean;
  };
  lastTickAt?: string;
  /** The last plan's one line: queue, workers, budget. */
  summary: string;
  /** Why waiting work is not rented for now (the last plan's), e.g. a budget cap. */
  blocked: string[];
  currency: "EUR";
  /** Spent (gross, per started hour) and the caps, per window. */
  spent: { hour: number; day: number; month: number };
  budget: { hour?: number; day?: number; month?: number };
  workers: AutoscaleWorkerView[];
  decisions: AutoscaleDecisionView[];
  /**
   * This pool's snapshots of suspended workers (what a wake starts from) and their storage cost,
   * gross EUR per month at the API's price (read with the catalogue); absent until first read.
   */
  snapshots?: { count: number; gb: number; monthly: number };
}

export type CoordinatorEvent =
  /** Any status change of a build. */
  | { type: "build"; build: BuildSummary }
  | { type: "derivation"; buildId: BuildId; derivation: DerivationView }
  | { type: "log"; buildId: BuildId; drv: string; line: string }
  | { type: "builder"; builder: BuilderView }
  /** The dispatcher's own event, so that a remote client renders the report a local build does. */
  | { type: "dispatch"; buildId: BuildId; event: DispatchEvent };

/** What the HTTP API and the dashboard use of the coordinator (class Coordinator implements it). */
export interface CoordinatorApi {
  submit(req: SubmitRequest, client: ClientIdentity): BuildId;
  /** Only the submitter (or root) may cancel. */
  cancel(id: BuildId, client: ClientIdentity): Promise<void>;
  /**
   * Accounts on the socket that act for gateway clients: root, the coordinator's own, and
   * `serve --gateway-user`'s. They alone may build for a client and write into this machine's
   * store through /api/pool/fetch and substitute.
   */
  gatewayUids(): ReadonlySet<number>;
  /** Resolves when the build has finished, whatever its status. */
  waitFor(id: BuildId): Promise<BuildDetail>;
  builders(): BuilderView[];
  /** `client`: only that submitter's (e.g. "gateway:alice"). */
  builds(q?: { limit?: number; status?: BuildStatus; client?: string }): Promise<BuildSummary[]>;
  build(id: BuildId): Promise<BuildDetail | undefined>;
  derivationLog(id: BuildId, drv: string): Promise<string | undefined>;
  timelineSvg(id: BuildId): Promise<string | undefined>;
  workers(): WorkerView[];
  /** The autoscaler's state, or undefined when the inventory has no `[autoscale.hetzner]`. */
  autoscale(): AutoscaleView | undefined;
  /** The coordinators sharing the pool (several on PostgreSQL; else this one alone). */
  coordinators?(): Promise<CoordinatorView[]>;
  subscribe(fn: (e: CoordinatorEvent) => void): () => void;
  drain(graceMs: number): Promise<void>;
  close(): Promise<void>;
}
