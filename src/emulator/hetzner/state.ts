import { defaultCatalog, type Catalog, type CatalogImage, type CatalogServerType } from "./catalog.js";
import type { Fault } from "./faults.js";
import { noBooter, type BootedHost, type ServerBooter } from "./booter.js";

export interface EmulatorTiming {
  /** Duration of the create_server action. */
  createMs: number;
  /** Time from the end of create_server until the machine answers on the network. */
  bootMs: number;
  /** Duration of the delete_server action. */
  deleteMs: number;
}

export interface EmulatorOptions {
  catalog?: Catalog;
  booter?: ServerBooter;
  /** Accepted API tokens; when absent any non-empty token is accepted. */
  tokens?: string[];
  /** Requests per hour (RateLimit-Limit); default 3600. */
  rateLimit?: number;
  timing?: Partial<EmulatorTiming>;
  /** One line per request: method, path, status. */
  log?: (line: string) => void;
  now?: () => number;
}

export type Labels = Record<string, string>;

export interface ActionRecord {
  id: number;
  command: string;
  status: "running" | "success" | "error";
  started: number;
  finished: number | null;
  durationMs: number;
  error: { code: string; message: string } | null;
  resources: { id: number; type: string }[];
}

export interface SshKeyRecord {
  id: number;
  name: string;
  fingerprint: string;
  public_key: string;
  labels: Labels;
  created: number;
}

export interface ServerRecord {
  id: number;
  name: string;
  status: "initializing" | "starting" | "running" | "off" | "deleting";
  created: number;
  type: CatalogServerType;
  location: string;
  image: CatalogImage;
  labels: Labels;
  userData: string | undefined;
  sshKeys: string[];
  ipv4: string;
  ipv4Id: number;
  host: BootedHost | undefined;
  /** What the emulator did with the server; shown by GET /_emulator/state. */
  boot: "pending" | "booted" | "slow" | "failed" | "unreachable" | "stopped" | "none";
  timers: NodeJS.Timeout[];
}

/** The emulator's state, exposed to the admin endpoints and tests. */
export interface EmulatorState {
  servers: Map<number, ServerRecord>;
  sshKeys: Map<number, SshKeyRecord>;
  actions: Map<number, ActionRecord>;
  faults: Fault[];
  requests: number;
  /** Servers created since start (a retried create must not add one). */
  serversCreated: number;
}

/** What every route and middleware shares: the options resolved, the state, ids and background work. */
export interface Emulator {
  readonly catalog: Catalog;
  readonly booter: ServerBooter;
  readonly timing: EmulatorTiming;
  /** Requests per hour. */
  readonly rateLimit: number;
  readonly tokens: string[] | undefined;
  readonly log: ((line: string) => void) | undefined;
  readonly now: () => number;
  readonly state: EmulatorState;
  /** The next id; servers, SSH keys, actions and IPs draw from one sequence. */
  newId(): number;
  /** Keeps a background promise (a boot, a delete) for shutdown to wait on; its failure is not thrown. */
  track(p: Promise<unknown>): void;
  /** Background promises still running. */
  readonly pending: ReadonlySet<Promise<unknown>>;
}

/** Resolves the options (defaults filled in) and starts with an empty state. */
export function createEmulator(options: EmulatorOptions = {}): Emulator {
  let nextId = 1000;
  const pending = new Set<Promise<unknown>>();
  return {
    catalog: options.catalog ?? defaultCatalog,
    booter: options.booter ?? noBooter,
    timing: { createMs: 1500, bootMs: 500, deleteMs: 500, ...options.timing },
    rateLimit: options.rateLimit ?? 3600,
    tokens: options.tokens,
    log: options.log,
    now: options.now ?? Date.now,
    state: {
      servers: new Map(),
      sshKeys: new Map(),
      actions: new Map(),
      faults: [],
      requests: 0,
      serversCreated: 0,
    },
    newId: () => ++nextId,
    track: (p) => {
      const q = p.catch(() => undefined).finally(() => pending.delete(q));
      pending.add(q);
    },
    pending,
  };
}

/** Records a running action on some resources. */
export function newAction(
  emu: Emulator,
  command: string,
  resources: ActionRecord["resources"],
  durationMs: number,
): ActionRecord {
  const a: ActionRecord = {
    id: emu.newId(),
    command,
    status: "running",
    started: emu.now(),
    finished: null,
    durationMs,
    error: null,
    resources,
  };
  emu.state.actions.set(a.id, a);
  return a;
}

/** Ends an action: success, or the error given. */
export function finishAction(emu: Emulator, a: ActionRecord, error: ActionRecord["error"] = null): void {
  a.status = error ? "error" : "success";
  a.finished = emu.now();
  a.error = error;
}

/** Takes one use of the first injected fault of a kind (removed when used up). */
export function takeFault<K extends Fault["kind"]>(
  state: EmulatorState,
  kind: K,
): Extract<Fault, { kind: K }> | undefined {
  const i = state.faults.findIndex((f) => f.kind === kind);
  if (i < 0) return undefined;
  const f = state.faults[i] as Extract<Fault, { kind: K }>;
  f.count -= 1;
  if (f.count <= 0) state.faults.splice(i, 1);
  return f;
}
