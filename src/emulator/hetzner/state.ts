import { defaultCatalog, type Catalog, type CatalogImage, type CatalogServerType } from "./catalog.js";
import type { Fault } from "./faults.js";
import { noBooter, type BootedHost, type DiskCopy, type ServerBooter } from "./booter.js";

export interface EmulatorTiming {
  /** Duration of the create_server action for a server from a system image (Hetzner: running in about 30–60 s). */
  createMs: number;
  /**
   * Duration of the create_server action for a server from a snapshot: its disk is restored first
   * (Hetzner: 1–2 min for a small snapshot). Default: createMs.
   */
  snapshotCreateMs: number;
  /** Time from the end of create_server until the machine answers on the network. */
  bootMs: number;
  /**
   * Time cloud-init takes, once the machine answers, to install the user_data's `packages` on a
   * server from a system image (nixpool's: nix-bin); Nix is absent until then. A server from a
   * snapshot has them on its disk already. Default 0.
   */
  provisionMs: number;
  /** Duration of the delete_server action. */
  deleteMs: number;
  /** Duration of create_image: the snapshot is `creating` until then (Hetzner: 1–5 min). */
  imageMs: number;
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

/** An image: a system image of the catalogue, or a snapshot (or backup) taken by create_image. */
export interface ImageRecord {
  id: number;
  type: "system" | "snapshot" | "backup";
  status: "creating" | "available" | "unavailable";
  name: string | null;
  description: string;
  /** GB the image takes (what snapshots are billed for); null while creating. */
  imageSize: number | null;
  /** GB of the disk it was taken from: a server type with a smaller disk cannot boot it. */
  diskSize: number;
  created: number;
  createdFrom: { id: number; name: string } | null;
  architecture: "x86" | "arm";
  osFlavor: CatalogImage["os_flavor"];
  osVersion: string | null;
  labels: Labels;
  protectDelete: boolean;
  /** The snapshotted disk as the booter keeps it (a copy of the machine's Nix store). */
  disk: DiskCopy | undefined;
  timers: NodeJS.Timeout[];
}

export interface ServerRecord {
  id: number;
  name: string;
  status: "initializing" | "starting" | "running" | "off" | "deleting";
  created: number;
  type: CatalogServerType;
  location: string;
  image: ImageRecord;
  labels: Labels;
  userData: string | undefined;
  sshKeys: string[];
  ipv4: string;
  ipv4Id: number;
  host: BootedHost | undefined;
  /** What the emulator did with the server; shown by GET /_emulator/state. */
  boot: "pending" | "provisioning" | "booted" | "slow" | "failed" | "unreachable" | "stopped" | "none";
  timers: NodeJS.Timeout[];
}

/** The emulator's state, exposed to the admin endpoints and tests. */
export interface EmulatorState {
  servers: Map<number, ServerRecord>;
  sshKeys: Map<number, SshKeyRecord>;
  /** System images (from the catalogue) and snapshots. */
  images: Map<number, ImageRecord>;
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
  const catalog = options.catalog ?? defaultCatalog;
  const pending = new Set<Promise<unknown>>();
  return {
    catalog,
    booter: options.booter ?? noBooter,
    timing: resolveTiming(options.timing),
    rateLimit: options.rateLimit ?? 3600,
    tokens: options.tokens,
    log: options.log,
    now: options.now ?? Date.now,
    state: {
      servers: new Map(),
      sshKeys: new Map(),
      images: new Map(catalog.images.map((i) => [i.id, systemImage(i)])),
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

/** The timing with defaults filled in; a server from a snapshot takes createMs unless told otherwise. */
export function resolveTiming(t: Partial<EmulatorTiming> = {}): EmulatorTiming {
  const createMs = t.createMs ?? 1500;
  return {
    createMs,
    snapshotCreateMs: t.snapshotCreateMs ?? createMs,
    bootMs: t.bootMs ?? 500,
    provisionMs: t.provisionMs ?? 0,
    deleteMs: t.deleteMs ?? 500,
    imageMs: t.imageMs ?? 2000,
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

/** A catalogue image as an image record: a system image, always available. */
function systemImage(i: CatalogImage): ImageRecord {
  return {
    id: i.id,
    type: "system",
    status: "available",
    name: i.name,
    description: i.description,
    imageSize: null,
    diskSize: i.disk_size,
    created: Date.parse("2023-06-13T06:00:02Z"),
    createdFrom: null,
    architecture: i.architecture,
    osFlavor: i.os_flavor,
    osVersion: i.os_version,
    labels: {},
    protectDelete: false,
    disk: undefined,
    timers: [],
  };
}
