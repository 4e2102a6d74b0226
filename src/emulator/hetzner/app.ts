import { createHash } from "node:crypto";
import { Hono, type Context as HonoContext } from "hono";
import type { HttpBindings } from "@hono/node-server";
import { z } from "zod";
import { defaultCatalog, type Catalog, type CatalogImage, type CatalogServerType } from "./catalog.js";
import { faultMatches, faultSchema, isRequestFault, type Fault, type RequestFault } from "./faults.js";
import { matchLabels, parseLabelSelector } from "./label-selector.js";
import { parseUserData } from "./user-data.js";

/** What the emulator asks of a booter: start a builder host for a server. */
export interface BootRequest {
  serverId: number;
  name: string;
  cores: number;
  /** The server's user_data as sent; the fields below are what the emulator takes from it. */
  userData: string | undefined;
  hostKeyPrivate: string | undefined;
  authorizedKeys: string[];
  nixConf: string | undefined;
}

/** A running emulated machine. */
export interface BootedHost {
  address: string;
  /** Cuts or restores the machine's network (a booting or broken machine is unreachable). */
  setReachable(up: boolean): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a machine for a server; the default booter starts nothing and hands out TEST-NET addresses. */
export type ServerBooter = (req: BootRequest) => Promise<BootedHost>;

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

type Labels = Record<string, string>;

interface ActionRecord {
  id: number;
  command: string;
  status: "running" | "success" | "error";
  started: number;
  finished: number | null;
  durationMs: number;
  error: { code: string; message: string } | null;
  resources: { id: number; type: string }[];
}

interface SshKeyRecord {
  id: number;
  name: string;
  fingerprint: string;
  public_key: string;
  labels: Labels;
  created: number;
}

interface ServerRecord {
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

export interface HetznerEmulator {
  app: Hono<{ Bindings: HttpBindings }>;
  state: EmulatorState;
  /** Stops every booted machine and timer. */
  shutdown(): Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> | null = null,
  ) {
    super(message);
  }
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+00:00");
const price = (v: string, vat: number) => ({
  net: Number(v).toFixed(4),
  gross: (Number(v) * (1 + vat / 100)).toFixed(4),
});
const HOSTNAME =
  /^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const LABEL_KEY =
  /^([a-z0-9A-Z]([a-z0-9A-Z.-]{0,251}[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?$/;
const LABEL_VALUE = /^([a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?)?$/;

const labelsSchema = z.record(z.string(), z.string()).optional();
/** IDs may come as numbers (hcloud-go sends them so) or as strings; names as strings. */
const ref = z.union([z.string(), z.number()]).transform(String);
const createServerSchema = z.object({
  name: z.string(),
  server_type: ref,
  image: ref,
  location: ref.optional(),
  datacenter: ref.optional(),
  start_after_create: z.boolean().optional(),
  ssh_keys: z.array(z.union([z.string(), z.number()])).optional(),
  user_data: z.string().optional(),
  labels: labelsSchema,
  automount: z.boolean().optional(),
  public_net: z.unknown().optional(),
  networks: z.array(z.unknown()).optional(),
  volumes: z.array(z.unknown()).optional(),
  firewalls: z.array(z.unknown()).optional(),
  placement_group: z.unknown().optional(),
});
/** PUT /servers/{id} and PUT /ssh_keys/{id}: a new name and/or a new set of labels. */
const updateSchema = z.object({ name: z.string().min(1).optional(), labels: labelsSchema });
const createSshKeySchema = z.object({
  name: z.string().min(1),
  public_key: z.string().min(1),
  labels: labelsSchema,
});

/** A fake booter: no machine, a documentation address (203.0.113.0/24). */
export const noBooter: ServerBooter = (req) =>
  Promise.resolve({
    address: `203.0.113.${(req.serverId % 250) + 1}`,
    setReachable: () => Promise.resolve(),
    stop: () => Promise.resolve(),
  });

/**
 * The Hetzner Cloud API emulator (under /v1) with admin endpoints under /_emulator:
 * GET /_emulator/state, POST /_emulator/faults, DELETE /_emulator/faults.
 */
export function createHetznerEmulator(options: EmulatorOptions = {}): HetznerEmulator {
  const catalog = options.catalog ?? defaultCatalog;
  const booter = options.booter ?? noBooter;
  const now = options.now ?? Date.now;
  const timing: EmulatorTiming = { createMs: 1500, bootMs: 500, deleteMs: 500, ...options.timing };
  const limit = options.rateLimit ?? 3600;
  const vat = Number(catalog.vatRate);
  const state: EmulatorState = {
    servers: new Map(),
    sshKeys: new Map(),
    actions: new Map(),
    faults: [],
    requests: 0,
    serversCreated: 0,
  };
  let nextId = 1000;
  const newId = () => ++nextId;
  let bucket = limit;
  let bucketAt = now();
  const pending = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    const q = p.catch(() => undefined).finally(() => pending.delete(q));
    pending.add(q);
  };

  // ---- renderers -------------------------------------------------------------------------
  const locationOf = (name: string) => {
    const l = catalog.locations.find((x) => x.name === name);
    if (!l) throw new Error(`catalog has no location ${name}`);
    return l;
  };
  const renderLocation = (l: Catalog["locations"][number]) => ({
    id: l.id,
    name: l.name,
    description: l.description,
    country: l.country,
    city: l.city,
    latitude: l.latitude,
    longitude: l.longitude,
    network_zone: l.network_zone,
  });
  const renderDatacenter = (l: Catalog["locations"][number]) => {
    const offered = catalog.serverTypes.filter((t) => t.locations.some((x) => x.name === l.name));
    return {
      id: l.datacenter.id,
      name: l.datacenter.name,
      description: l.datacenter.description,
      location: renderLocation(l),
      server_types: {
        supported: offered.map((t) => t.id),
        available: offered
          .filter((t) => t.locations.some((x) => x.name === l.name && x.available))
          .map((t) => t.id),
        available_for_migration: offered.map((t) => t.id),
      },
    };
  };
  const renderTypePrices = (t: CatalogServerType) =>
    t.locations.map((l) => ({
      location: l.name,
      price_hourly: price(t.hourly, vat),
      price_monthly: price(t.monthly, vat),
      included_traffic: 21990232555520,
      price_per_tb_traffic: price("1.00", vat),
    }));
  const renderServerType = (t: CatalogServerType) => ({
    id: t.id,
    name: t.name,
    description: t.description,
    cores: t.cores,
    memory: t.memory,
    disk: t.disk,
    deprecated: t.deprecated,
    prices: renderTypePrices(t),
    storage_type: "local" as const,
    cpu_type: t.cpu_type,
    category: t.category,
    architecture: t.architecture,
    deprecation: t.deprecated
      ? { announced: "2025-06-01T00:00:00+00:00", unavailable_after: "2026-09-01T00:00:00+00:00" }
      : null,
    locations: t.locations.map((l) => ({
      id: locationOf(l.name).id,
      name: l.name,
      deprecation: null,
      recommended: l.available,
      available: l.available,
    })),
  });
  const renderImage = (i: CatalogImage) => ({
    id: i.id,
    type: "system" as const,
    status: "available" as const,
    name: i.name,
    description: i.description,
    image_size: null,
    disk_size: i.disk_size,
    created: "2023-06-13T06:00:02+00:00",
    created_from: null,
    bound_to: null,
    os_flavor: i.os_flavor,
    os_version: i.os_version,
    rapid_deploy: true,
    protection: { delete: false },
    deprecated: null,
    deleted: null,
    labels: {},
    architecture: i.architecture,
  });
  const renderAction = (a: ActionRecord) => {
    const elapsed = now() - a.started;
    const progress =
      a.status === "running" ? Math.min(99, Math.floor((elapsed / Math.max(1, a.durationMs)) * 100)) : 100;
    return {
      id: a.id,
      command: a.command,
      status: a.status,
      progress,
      started: iso(a.started),
      finished: a.finished === null ? null : iso(a.finished),
      resources: a.resources,
      error: a.error,
    };
  };
  const renderServer = (s: ServerRecord) => {
    const l = locationOf(s.location);
    return {
      id: s.id,
      name: s.name,
      status: s.status,
      created: iso(s.created),
      public_net: {
        ipv4: {
          id: s.ipv4Id,
          ip: s.ipv4,
          blocked: false,
          dns_ptr: `static.${s.ipv4}.clients.your-server.de`,
        },
        ipv6: null,
        floating_ips: [],
        firewalls: [],
      },
      private_net: [],
      server_type: renderServerType(s.type),
      datacenter: renderDatacenter(l),
      location: renderLocation(l),
      image: renderImage(s.image),
      iso: null,
      rescue_enabled: false,
      locked: false,
      backup_window: null,
      outgoing_traffic: 0,
      ingoing_traffic: 0,
      included_traffic: 21990232555520,
      protection: { delete: false, rebuild: false },
      labels: s.labels,
      volumes: [],
      load_balancers: [],
      primary_disk_size: s.type.disk,
      placement_group: null,
    };
  };
  const renderSshKey = (k: SshKeyRecord) => ({
    id: k.id,
    name: k.name,
    fingerprint: k.fingerprint,
    public_key: k.public_key,
    labels: k.labels,
    created: iso(k.created),
  });

  // ---- helpers ---------------------------------------------------------------------------
  const paginate = <T>(c: HonoContext, items: T[]) => {
    const page = Math.max(1, Number(c.req.query("page") ?? 1) || 1);
    const perPage = Math.min(50, Math.max(1, Number(c.req.query("per_page") ?? 25) || 25));
    const lastPage = Math.max(1, Math.ceil(items.length / perPage));
    return {
      items: items.slice((page - 1) * perPage, page * perPage),
      meta: {
        pagination: {
          page,
          per_page: perPage,
          previous_page: page > 1 ? page - 1 : null,
          next_page: page < lastPage ? page + 1 : null,
          last_page: lastPage,
          total_entries: items.length,
        },
      },
    };
  };
  const selectByLabels = <T extends { labels: Labels }>(c: HonoContext, items: T[]): T[] => {
    const sel = c.req.query("label_selector");
    if (sel === undefined) return items;
    const reqs = parseLabelSelector(sel);
    if ("error" in reqs) throw new ApiError(400, "invalid_input", reqs.error, { fields: [] });
    return items.filter((i) => matchLabels(i.labels, reqs));
  };
  const idParam = (c: HonoContext) => {
    const id = Number(c.req.param("id"));
    if (!Number.isInteger(id) || id < 1) throw new ApiError(400, "invalid_input", "invalid id");
    return id;
  };
  const checkLabels = (labels: Labels | undefined) => {
    for (const [k, v] of Object.entries(labels ?? {})) {
      if (!LABEL_KEY.test(k) || !LABEL_VALUE.test(v)) {
        throw new ApiError(400, "invalid_input", `invalid input in field 'labels'`, {
          fields: [{ name: "labels", messages: [`label ${k}=${v} is not valid`] }],
        });
      }
    }
  };
  /** PUT semantics shared by servers and SSH keys: a unique new name, a whole new label set. */
  const applyUpdate = (
    target: { name: string; labels: Labels },
    all: Iterable<{ name: string }>,
    body: z.infer<typeof updateSchema>,
  ) => {
    if (body.name !== undefined && body.name !== target.name) {
      if ([...all].some((x) => x.name === body.name)) {
        throw new ApiError(409, "uniqueness_error", "name is already used", { fields: [{ name: "name" }] });
      }
      target.name = body.name;
    }
    if (body.labels !== undefined) {
      checkLabels(body.labels);
      target.labels = body.labels;
    }
  };
  const readJson = async (c: HonoContext): Promise<unknown> => {
    try {
      return await c.req.json();
    } catch {
      throw new ApiError(400, "json_error", "invalid JSON in request body");
    }
  };
  const parseBody = <S extends z.ZodType>(schema: S, body: unknown): z.infer<S> => {
    const r = schema.safeParse(body);
    if (!r.success) {
      const fields = r.error.issues.map((i) => ({ name: i.path.join("."), messages: [i.message] }));
      throw new ApiError(400, "invalid_input", `invalid input in field '${fields[0]?.name ?? "body"}'`, {
        fields,
      });
    }
    return r.data;
  };
  const newAction = (command: string, resources: ActionRecord["resources"], durationMs: number) => {
    const a: ActionRecord = {
      id: newId(),
      command,
      status: "running",
      started: now(),
      finished: null,
      durationMs,
      error: null,
      resources,
    };
    state.actions.set(a.id, a);
    return a;
  };
  const finishAction = (a: ActionRecord, error: ActionRecord["error"] = null) => {
    a.status = error ? "error" : "success";
    a.finished = now();
    a.error = error;
  };
  const takeFault = <K extends Fault["kind"]>(kind: K): Extract<Fault, { kind: K }> | undefined => {
    const i = state.faults.findIndex((f) => f.kind === kind);
    if (i < 0) return undefined;
    const f = state.faults[i] as Extract<Fault, { kind: K }>;
    f.count -= 1;
    if (f.count <= 0) state.faults.splice(i, 1);
    return f;
  };
  const rateHeaders = (c: { header: (name: string, value: string) => void }) => {
    const rate = limit / 3600_000;
    bucket = Math.min(limit, bucket + (now() - bucketAt) * rate);
    bucketAt = now();
    c.header("RateLimit-Limit", String(limit));
    c.header("RateLimit-Remaining", String(Math.max(0, Math.floor(bucket))));
    c.header("RateLimit-Reset", String(Math.ceil((now() + (limit - bucket) / rate) / 1000)));
  };

  // ---- server lifecycle -----------------------------------------------------------------
  const bootServer = async (s: ServerRecord) => {
    const cfg = parseUserData(s.userData);
    const fault = takeFault("boot");
    const host = await booter({
      serverId: s.id,
      name: s.name,
      cores: s.type.cores,
      userData: s.userData,
      hostKeyPrivate: cfg.hostKeyPrivate,
      authorizedKeys: [...s.sshKeys, ...cfg.authorizedKeys],
      nixConf: cfg.nixConf,
    });
    s.host = host;
    s.ipv4 = host.address;
    await host.setReachable(false);
    return fault;
  };
  const scheduleBoot = (
    s: ServerRecord,
    action: ActionRecord,
    fault: Extract<Fault, { kind: "boot" }> | undefined,
  ) => {
    s.timers.push(
      setTimeout(() => {
        if (fault?.mode === "fail") {
          finishAction(action, { code: "server_create_failed", message: "Server creation failed" });
          s.status = "off";
          s.boot = "failed";
          return;
        }
        finishAction(action);
        s.status = "running";
        if (fault?.mode === "unreachable") {
          s.boot = "unreachable";
          return;
        }
        const bootMs = fault?.mode === "slow" ? fault.delayMs : timing.bootMs;
        s.timers.push(
          setTimeout(() => {
            if (s.status !== "running" || !s.host) return;
            const host = s.host;
            track(
              host.setReachable(true).then(() => {
                s.boot = fault?.mode === "slow" ? "slow" : "booted";
              }),
            );
          }, bootMs),
        );
      }, timing.createMs),
    );
    s.timers.push(
      setTimeout(() => {
        if (s.status === "initializing") s.status = "starting";
      }, timing.createMs / 2),
    );
  };
  const deleteServer = (s: ServerRecord) => {
    for (const t of s.timers) clearTimeout(t);
    s.timers = [];
    s.status = "deleting";
    const action = newAction("delete_server", [{ id: s.id, type: "server" }], timing.deleteMs);
    const host = s.host;
    s.host = undefined;
    const stopped = host ? host.stop() : Promise.resolve();
    const done = Promise.all([stopped, new Promise((r) => setTimeout(r, timing.deleteMs))]).then(
      () => {
        state.servers.delete(s.id);
        s.boot = "stopped";
        finishAction(action);
      },
      (e: unknown) => {
        finishAction(action, { code: "server_error", message: `stopping the machine failed: ${String(e)}` });
      },
    );
    track(done);
    return action;
  };

  // ---- app -------------------------------------------------------------------------------
  const app = new Hono<{ Bindings: HttpBindings }>();

  app.onError((err, c) => {
    if (err instanceof ApiError) {
      return c.json(
        { error: { code: err.code, message: err.message, details: err.details } },
        err.status as 400,
      );
    }
    return c.json({ error: { code: "server_error", message: String(err), details: null } }, 500);
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: "not found", details: null } }, 404));

  app.use("/v1/*", async (c, next) => {
    state.requests++;
    const method = c.req.method;
    const path = c.req.path.slice(3);
    const i = state.faults.findIndex((f) => isRequestFault(f) && faultMatches(f, method, path));
    const fault = i >= 0 ? (state.faults[i] as RequestFault) : undefined;
    if (fault) {
      fault.count -= 1;
      if (fault.count <= 0) state.faults.splice(i, 1);
    }
    rateHeaders(c);
    let errorStatus: number | undefined;
    try {
      if (fault?.kind === "drop" && fault.after) {
        await next();
        c.env.incoming.socket.destroy();
        return;
      }
      if (fault?.kind === "drop") {
        c.env.incoming.socket.destroy();
        throw new ApiError(503, "unavailable", "connection dropped");
      }
      if (fault?.kind === "delay") await new Promise((r) => setTimeout(r, fault.ms));
      if (fault?.kind === "server_error") {
        throw new ApiError(
          fault.status,
          fault.status === 503 ? "unavailable" : "server_error",
          "injected server error",
        );
      }
      if (fault?.kind === "rate_limit" || bucket < 1) {
        c.header("RateLimit-Remaining", "0");
        throw new ApiError(429, "rate_limit_exceeded", "limit of requests per hour reached");
      }
      if (fault?.kind === "conflict") {
        throw new ApiError(409, "conflict", "another action is running on the resource");
      }
      bucket -= 1;
      c.header("RateLimit-Remaining", String(Math.max(0, Math.floor(bucket))));
      const auth = c.req.header("Authorization") ?? "";
      const token = /^Bearer\s+(\S+)$/i.exec(auth)?.[1];
      if (!token || (options.tokens !== undefined && !options.tokens.includes(token))) {
        throw new ApiError(401, "unauthorized", "unable to authenticate");
      }
      await next();
    } catch (e) {
      // Thrown here, the error is answered after this middleware: log the status it will get.
      errorStatus = e instanceof ApiError ? e.status : 500;
      throw e;
    } finally {
      options.log?.(`${method} ${c.req.path} ${errorStatus ?? c.res.status}`);
    }
  });

  // actions
  app.get("/v1/actions", (c) => {
    const ids = c.req.queries("id")?.map(Number) ?? [];
    const all = [...state.actions.values()].filter((a) => ids.length === 0 || ids.includes(a.id));
    const { items, meta } = paginate(c, all);
    return c.json({ actions: items.map(renderAction), meta });
  });
  app.get("/v1/actions/:id", (c) => {
    const a = state.actions.get(idParam(c));
    if (!a) throw new ApiError(404, "not_found", "action not found");
    return c.json({ action: renderAction(a) });
  });

  // catalogue
  app.get("/v1/server_types", (c) => {
    const name = c.req.query("name");
    const types = catalog.serverTypes.filter((t) => name === undefined || t.name === name);
    const { items, meta } = paginate(c, types);
    return c.json({ server_types: items.map(renderServerType), meta });
  });
  app.get("/v1/server_types/:id", (c) => {
    const t = catalog.serverTypes.find((x) => x.id === idParam(c));
    if (!t) throw new ApiError(404, "not_found", "server type not found");
    return c.json({ server_type: renderServerType(t) });
  });
  app.get("/v1/locations", (c) => {
    const name = c.req.query("name");
    const { items, meta } = paginate(
      c,
      catalog.locations.filter((l) => name === undefined || l.name === name),
    );
    return c.json({ locations: items.map(renderLocation), meta });
  });
  app.get("/v1/locations/:id", (c) => {
    const l = catalog.locations.find((x) => x.id === idParam(c));
    if (!l) throw new ApiError(404, "not_found", "location not found");
    return c.json({ location: renderLocation(l) });
  });
  app.get("/v1/datacenters", (c) => {
    const name = c.req.query("name");
    const dcs = catalog.locations.filter((l) => name === undefined || l.datacenter.name === name);
    const { items, meta } = paginate(c, dcs);
    return c.json({
      datacenters: items.map(renderDatacenter),
      recommendation: catalog.locations[0]?.datacenter.id ?? 1,
      meta,
    });
  });
  app.get("/v1/datacenters/:id", (c) => {
    const l = catalog.locations.find((x) => x.datacenter.id === idParam(c));
    if (!l) throw new ApiError(404, "not_found", "datacenter not found");
    return c.json({ datacenter: renderDatacenter(l) });
  });
  app.get("/v1/images", (c) => {
    const name = c.req.query("name");
    const arch = c.req.query("architecture");
    const types = c.req.queries("type");
    const images = catalog.images.filter(
      (i) =>
        (name === undefined || i.name === name) &&
        (arch === undefined || i.architecture === arch) &&
        (types === undefined || types.includes("system")),
    );
    const { items, meta } = paginate(c, selectByLabels(c, images.map(renderImage)));
    return c.json({ images: items, meta });
  });
  app.get("/v1/images/:id", (c) => {
    const i = catalog.images.find((x) => x.id === idParam(c));
    if (!i) throw new ApiError(404, "not_found", "image not found");
    return c.json({ image: renderImage(i) });
  });
  app.get("/v1/pricing", (c) => {
    const ipPrices = catalog.locations.map((l) => ({
      location: l.name,
      price_hourly: price(catalog.primaryIpv4.hourly, vat),
      price_monthly: price(catalog.primaryIpv4.monthly, vat),
    }));
    return c.json({
      pricing: {
        currency: "EUR",
        vat_rate: catalog.vatRate,
        primary_ips: [
          { type: "ipv4", prices: ipPrices },
          {
            type: "ipv6",
            prices: ipPrices.map((p) => ({
              ...p,
              price_hourly: price("0", vat),
              price_monthly: price("0", vat),
            })),
          },
        ],
        floating_ips: [
          {
            type: "ipv4",
            prices: catalog.locations.map((l) => ({ location: l.name, price_monthly: price("3.00", vat) })),
          },
        ],
        floating_ip: { price_monthly: price("3.00", vat) },
        image: { price_per_gb_month: price("0.0110", vat) },
        volume: { price_per_gb_month: price("0.0440", vat) },
        server_backup: { percentage: "20.000000" },
        server_types: catalog.serverTypes.map((t) => ({
          id: t.id,
          name: t.name,
          prices: renderTypePrices(t),
        })),
        load_balancer_types: [],
      },
    });
  });

  // ssh keys
  app.get("/v1/ssh_keys", (c) => {
    const name = c.req.query("name");
    const fp = c.req.query("fingerprint");
    const keys = [...state.sshKeys.values()].filter(
      (k) => (name === undefined || k.name === name) && (fp === undefined || k.fingerprint === fp),
    );
    const { items, meta } = paginate(c, selectByLabels(c, keys));
    return c.json({ ssh_keys: items.map(renderSshKey), meta });
  });
  app.get("/v1/ssh_keys/:id", (c) => {
    const k = state.sshKeys.get(idParam(c));
    if (!k) throw new ApiError(404, "not_found", "SSH key not found");
    return c.json({ ssh_key: renderSshKey(k) });
  });
  app.put("/v1/ssh_keys/:id", async (c) => {
    const k = state.sshKeys.get(idParam(c));
    if (!k) throw new ApiError(404, "not_found", "SSH key not found");
    applyUpdate(k, state.sshKeys.values(), parseBody(updateSchema, await readJson(c)));
    return c.json({ ssh_key: renderSshKey(k) });
  });
  app.post("/v1/ssh_keys", async (c) => {
    const body = parseBody(createSshKeySchema, await readJson(c));
    checkLabels(body.labels);
    const [type, blob] = body.public_key.trim().split(/\s+/);
    if (!type?.startsWith("ssh-") && !type?.startsWith("ecdsa-")) {
      throw new ApiError(400, "invalid_input", "invalid input in field 'public_key'", {
        fields: [{ name: "public_key", messages: ["invalid public key"] }],
      });
    }
    const raw = Buffer.from(blob ?? "", "base64");
    if (raw.length < 16) {
      throw new ApiError(400, "invalid_input", "invalid input in field 'public_key'", {
        fields: [{ name: "public_key", messages: ["invalid public key"] }],
      });
    }
    const fingerprint = (createHash("md5").update(raw).digest("hex").match(/../g) ?? []).join(":");
    for (const k of state.sshKeys.values()) {
      if (k.name === body.name || k.fingerprint === fingerprint) {
        throw new ApiError(409, "uniqueness_error", "SSH key with the same fingerprint already exists", {
          fields: [{ name: k.name === body.name ? "name" : "public_key" }],
        });
      }
    }
    const key: SshKeyRecord = {
      id: newId(),
      name: body.name,
      fingerprint,
      public_key: body.public_key.trim(),
      labels: body.labels ?? {},
      created: now(),
    };
    state.sshKeys.set(key.id, key);
    return c.json({ ssh_key: renderSshKey(key) }, 201);
  });
  app.delete("/v1/ssh_keys/:id", (c) => {
    const id = idParam(c);
    if (!state.sshKeys.delete(id)) throw new ApiError(404, "not_found", "SSH key not found");
    return c.body(null, 204);
  });

  // servers
  app.get("/v1/servers", (c) => {
    const name = c.req.query("name");
    const statuses = c.req.queries("status");
    const servers = [...state.servers.values()].filter(
      (s) =>
        (name === undefined || s.name === name) && (statuses === undefined || statuses.includes(s.status)),
    );
    const { items, meta } = paginate(c, selectByLabels(c, servers));
    return c.json({ servers: items.map(renderServer), meta });
  });
  app.get("/v1/servers/:id", (c) => {
    const s = state.servers.get(idParam(c));
    if (!s) throw new ApiError(404, "not_found", "server not found");
    return c.json({ server: renderServer(s) });
  });
  app.get("/v1/servers/:id/actions", (c) => {
    const id = idParam(c);
    const all = [...state.actions.values()].filter((a) =>
      a.resources.some((r) => r.type === "server" && r.id === id),
    );
    const { items, meta } = paginate(c, all);
    return c.json({ actions: items.map(renderAction), meta });
  });
  app.post("/v1/servers", async (c) => {
    const body = parseBody(createServerSchema, await readJson(c));
    if (!HOSTNAME.test(body.name)) {
      throw new ApiError(400, "invalid_input", "invalid input in field 'name'", {
        fields: [{ name: "name", messages: ["Name must be a valid hostname."] }],
      });
    }
    checkLabels(body.labels);
    const type = catalog.serverTypes.find(
      (t) => t.name === body.server_type || String(t.id) === body.server_type,
    );
    if (!type) {
      throw new ApiError(400, "invalid_input", "server type not found", {
        fields: [{ name: "server_type", messages: ["server type not found"] }],
      });
    }
    const image = catalog.images.find(
      (i) =>
        (i.name === body.image || String(i.id) === body.image) &&
        (String(i.id) === body.image || i.architecture === type.architecture),
    );
    if (!image) {
      throw new ApiError(400, "invalid_input", "image not found", {
        fields: [{ name: "image", messages: ["image not found"] }],
      });
    }
    const dc = body.datacenter
      ? catalog.locations.find(
          (l) => l.datacenter.name === body.datacenter || String(l.datacenter.id) === body.datacenter,
        )
      : undefined;
    if (body.datacenter && !dc) throw new ApiError(400, "invalid_input", "datacenter not found");
    const locName = dc?.name ?? body.location ?? type.locations.find((l) => l.available)?.name ?? "fsn1";
    const loc = catalog.locations.find((l) => l.name === locName || String(l.id) === locName);
    if (!loc) {
      throw new ApiError(400, "invalid_input", "location not found", {
        fields: [{ name: "location", messages: ["location not found"] }],
      });
    }
    const offer = type.locations.find((l) => l.name === loc.name);
    if (!offer) {
      throw new ApiError(
        422,
        "unsupported_location_for_server_type",
        `server type ${type.name} is not offered in ${loc.name}`,
      );
    }
    if (!offer.available) {
      throw new ApiError(
        412,
        "resource_unavailable",
        `server type ${type.name} is unavailable in ${loc.name}`,
      );
    }
    if (image.architecture !== type.architecture) {
      throw new ApiError(400, "invalid_input", "image architecture does not match the server type");
    }
    const sshKeys: string[] = [];
    for (const ref of body.ssh_keys ?? []) {
      const k = [...state.sshKeys.values()].find(
        (x) => x.name === String(ref) || String(x.id) === String(ref),
      );
      if (!k) {
        throw new ApiError(400, "invalid_input", `SSH key ${String(ref)} not found`, {
          fields: [{ name: "ssh_keys", messages: ["SSH key not found"] }],
        });
      }
      sshKeys.push(k.public_key);
    }
    if ([...state.servers.values()].some((s) => s.name === body.name)) {
      throw new ApiError(409, "uniqueness_error", "server name is already used", {
        fields: [{ name: "name" }],
      });
    }
    if (takeFault("resource_limit")) {
      throw new ApiError(403, "resource_limit_exceeded", "server limit exceeded", {
        limits: [{ name: "server_limit" }],
      });
    }
    const id = newId();
    const server: ServerRecord = {
      id,
      name: body.name,
      status: "initializing",
      created: now(),
      type,
      location: loc.name,
      image,
      labels: body.labels ?? {},
      userData: body.user_data,
      sshKeys,
      ipv4: "",
      ipv4Id: newId(),
      host: undefined,
      boot: "pending",
      timers: [],
    };
    state.servers.set(id, server);
    state.serversCreated++;
    let fault: Extract<Fault, { kind: "boot" }> | undefined;
    try {
      fault = await bootServer(server);
    } catch (e) {
      state.servers.delete(id);
      throw new ApiError(500, "server_error", `the emulated machine did not start: ${String(e)}`);
    }
    if (server.status === "deleting")
      throw new ApiError(404, "not_found", "server was deleted during creation");
    const action = newAction("create_server", [{ id, type: "server" }], timing.createMs);
    scheduleBoot(server, action, fault);
    const noPassword = sshKeys.length > 0;
    return c.json(
      {
        server: renderServer(server),
        action: renderAction(action),
        next_actions: [renderAction(newFinished("start_server", id))],
        root_password: noPassword ? null : "emulated-password-not-mailed",
      },
      201,
    );
  });
  const newFinished = (command: string, id: number) => {
    const a = newAction(command, [{ id, type: "server" }], 0);
    finishAction(a);
    return a;
  };
  app.put("/v1/servers/:id", async (c) => {
    const s = state.servers.get(idParam(c));
    if (!s) throw new ApiError(404, "not_found", "server not found");
    const body = parseBody(updateSchema, await readJson(c));
    if (body.name !== undefined && !HOSTNAME.test(body.name))
      throw new ApiError(400, "invalid_input", "invalid input in field 'name'");
    applyUpdate(s, state.servers.values(), body);
    return c.json({ server: renderServer(s) });
  });
  app.delete("/v1/servers/:id", (c) => {
    const s = state.servers.get(idParam(c));
    if (!s) throw new ApiError(404, "not_found", "server not found");
    if (s.status === "deleting") {
      const running = [...state.actions.values()].find(
        (a) =>
          a.command === "delete_server" && a.status === "running" && a.resources.some((r) => r.id === s.id),
      );
      if (running) return c.json({ action: renderAction(running) });
    }
    return c.json({ action: renderAction(deleteServer(s)) });
  });

  // admin
  app.get("/_emulator/state", (c) =>
    c.json({
      requests: state.requests,
      servers_created: state.serversCreated,
      faults: state.faults,
      servers: [...state.servers.values()].map((s) => ({
        id: s.id,
        name: s.name,
        status: s.status,
        ip: s.ipv4,
        labels: s.labels,
        boot: s.boot,
      })),
      ssh_keys: [...state.sshKeys.values()].map(renderSshKey),
    }),
  );
  app.post("/_emulator/faults", async (c) => {
    const body: unknown = await c.req.json().catch(() => undefined);
    const list = Array.isArray(body) ? body : [body];
    const parsed = z.array(faultSchema).safeParse(list);
    if (!parsed.success) {
      return c.json(
        { error: { code: "invalid_input", message: z.prettifyError(parsed.error), details: null } },
        400,
      );
    }
    state.faults.push(...parsed.data);
    return c.json({ faults: state.faults });
  });
  app.delete("/_emulator/faults", (c) => {
    state.faults.length = 0;
    return c.json({ faults: [] });
  });

  const shutdown = async () => {
    const hosts: BootedHost[] = [];
    for (const s of state.servers.values()) {
      for (const t of s.timers) clearTimeout(t);
      if (s.host) hosts.push(s.host);
      s.host = undefined;
    }
    await Promise.allSettled([...hosts.map((h) => h.stop()), ...pending]);
  };

  return { app, state, shutdown };
}
