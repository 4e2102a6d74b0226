import { setTimeout as sleepTimer } from "node:timers/promises";
import { z } from "zod";
import { ExitCode, NixpoolError } from "../../core/errors.js";
import { redact, registerSecret } from "../../core/redact.js";
import { responseSchemas } from "./generated/schemas.js";
import { isRetryableApiError, mapApiError, type ApiErrorBody } from "./errors.js";
import { defaultRetryPolicy, readRateLimit, retryDelayMs, type RetryPolicy } from "./retry.js";
import type {
  Action,
  CreateServerRequest,
  CreateServerResponse,
  CreateImageResponse,
  CreateSshKeyRequest,
  Image,
  Location,
  Pagination,
  Pricing,
  Server,
  ServerType,
  SshKey,
} from "./types.js";

export const DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1";

/** One retry, reported to the caller (for progress output). */
export interface RetryEvent {
  request: string;
  attempt: number;
  delayMs: number;
  reason: string;
}

export interface HcloudClientOptions {
  token: string;
  endpoint?: string;
  retry?: Partial<RetryPolicy>;
  /** Per-request timeout; default 30 s. */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
  onRetry?: (e: RetryEvent) => void;
  /** Injected for tests; default Math.random. */
  random?: () => number;
  now?: () => number;
}

type Query = Record<string, string | number | readonly (string | number)[] | undefined>;

interface RequestSpec {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Query;
  body?: unknown;
  /** Key of the response schema in generated/schemas.ts. */
  schema?: string;
  /** Statuses that are not errors for this call (404 for a delete that already happened). */
  accept?: number[];
  /** Fewer attempts for requests with a fallback (prices). */
  attempts?: number;
}

const validators = new Map<string, z.ZodType>();
function validatorFor(key: string): z.ZodType {
  let v = validators.get(key);
  if (!v) {
    const schema = responseSchemas[key];
    // A missing schema is a bug here (gen-hetzner.ts VALIDATED), not a reason to skip validation.
    if (!schema) throw new Error(`no response schema "${key}" in generated/schemas.ts`);
    v = z.fromJSONSchema(schema);
    validators.set(key, v);
  }
  return v;
}

const errorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

/** A network failure or timeout: no answer at all. */
class TransportError extends Error {}

/**
 * A typed Hetzner Cloud API client over fetch: validates answers against the spec's schemas,
 * retries what is retryable (429 with the rate-limit headers, 5xx, conflict, timeouts,
 * dropped connections) with backoff and jitter, and maps API errors to NixpoolErrors.
 */
export class HcloudClient {
  readonly endpoint: string;
  private readonly token: string;
  private readonly policy: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly options: HcloudClientOptions;

  constructor(options: HcloudClientOptions) {
    this.options = options;
    this.token = options.token;
    registerSecret(options.token);
    this.endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
    this.policy = { ...defaultRetryPolicy, ...options.retry };
    this.timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /** Sends one request with retries; returns the parsed (and validated) JSON body and the status. */
  async request<T>(spec: RequestSpec): Promise<{ status: number; body: T }> {
    const url = new URL(`${this.endpoint}${spec.path}`);
    for (const [k, v] of Object.entries(spec.query ?? {})) {
      if (v === undefined) continue;
      for (const item of Array.isArray(v) ? v : [v]) url.searchParams.append(k, String(item));
    }
    const label = `${spec.method} ${spec.path}`;
    const now = this.options.now ?? Date.now;
    const attempts = spec.attempts ?? this.policy.attempts;
    for (let attempt = 1; ; attempt++) {
      this.options.signal?.throwIfAborted();
      let res: Response;
      let text: string;
      try {
        const signals = [
          AbortSignal.timeout(this.timeoutMs),
          ...(this.options.signal ? [this.options.signal] : []),
        ];
        res = await fetch(url, {
          method: spec.method,
          headers: {
            Authorization: `Bearer ${this.token}`,
            Accept: "application/json",
            "User-Agent": "nixpool/0.1",
            ...(spec.body !== undefined ? { "Content-Type": "application/json" } : {}),
          },
          ...(spec.body !== undefined ? { body: JSON.stringify(spec.body) } : {}),
          signal: AbortSignal.any(signals),
        });
        text = await res.text();
      } catch (e) {
        if (this.options.signal?.aborted) {
          throw new NixpoolError("INTERRUPTED", `${label} was interrupted.`, {
            exitCode: ExitCode.interrupted,
          });
        }
        const reason = describeTransportError(e);
        if (attempt >= attempts) {
          throw new NixpoolError(
            "HCLOUD_UNREACHABLE",
            `Hetzner Cloud API at ${this.endpoint} did not answer ${label}: ${reason}.`,
            {
              hint: `Check the network and HCLOUD_ENDPOINT (default ${DEFAULT_ENDPOINT}); test with: hcloud server list`,
              cause: new TransportError(redact(reason)),
            },
          );
        }
        await this.pause(label, attempt, reason);
        continue;
      }
      let json: unknown = undefined;
      if (text !== "") {
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
      }
      if (res.ok || spec.accept?.includes(res.status)) {
        if (res.ok && spec.schema) this.validate(spec.schema, json, label);
        return { status: res.status, body: json as T };
      }
      const parsed = errorSchema.safeParse(json);
      const apiError: ApiErrorBody | undefined = parsed.success ? parsed.data.error : undefined;
      if (isRetryableApiError(res.status, apiError?.code) && attempt < attempts) {
        const rate =
          res.status === 429 ? { info: readRateLimit((n) => res.headers.get(n)), nowMs: now() } : undefined;
        await this.pause(label, attempt, `${res.status} ${apiError?.code ?? ""}`.trim(), rate);
        continue;
      }
      throw mapApiError(res.status, apiError, label);
    }
  }

  private async pause(
    label: string,
    attempt: number,
    reason: string,
    rate?: Parameters<typeof retryDelayMs>[3],
  ): Promise<void> {
    const delayMs = retryDelayMs(attempt, this.policy, (this.options.random ?? Math.random)(), rate);
    this.options.onRetry?.({ request: label, attempt, delayMs, reason });
    try {
      await sleepTimer(delayMs, undefined, this.options.signal ? { signal: this.options.signal } : {});
    } catch {
      throw new NixpoolError("INTERRUPTED", `${label} was interrupted.`, { exitCode: ExitCode.interrupted });
    }
  }

  private validate(schemaKey: string, json: unknown, label: string): void {
    const r = validatorFor(schemaKey).safeParse(json);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new NixpoolError(
        "HCLOUD_BAD_RESPONSE",
        `Hetzner Cloud answered ${label} with an unexpected shape at ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}.`,
        {
          hint: `Check that HCLOUD_ENDPOINT (default ${DEFAULT_ENDPOINT}) points at the Hetzner Cloud API; if it does, report this to nixpool.`,
          details: { issues: r.error.issues.slice(0, 5).map((i) => `${i.path.join(".")}: ${i.message}`) },
        },
      );
    }
  }

  /** Fetches every page of a list endpoint (per_page 50), each validated against `GET path`. */
  async listAll<T>(path: string, key: string, query: Query = {}): Promise<T[]> {
    const out: T[] = [];
    for (let page: number | null = 1; page !== null;) {
      type Page = Record<string, unknown> & { meta?: { pagination?: Pagination } };
      const { body }: { body: Page } = await this.request<Page>({
        method: "GET",
        path,
        query: { ...query, page, per_page: 50 },
        schema: `GET ${path}`,
      });
      out.push(...((body[key] as T[] | undefined) ?? []));
      const next: number | null | undefined = body.meta?.pagination?.next_page;
      page = next && next > page ? next : null;
    }
    return out;
  }

  /** Servers, optionally filtered by a label selector or an exact name. */
  listServers(filter: { labelSelector?: string; name?: string } = {}): Promise<Server[]> {
    return this.listAll<Server>("/servers", "servers", {
      label_selector: filter.labelSelector,
      name: filter.name,
    });
  }

  /** One server, or undefined when it does not exist. */
  async getServer(id: number): Promise<Server | undefined> {
    const r = await this.request<{ server: Server }>({
      method: "GET",
      path: `/servers/${id}`,
      schema: "GET /servers/{id}",
      accept: [404],
    });
    return r.status === 404 ? undefined : r.body.server;
  }

  /** Creates a server; the answer carries the create action to wait for. */
  async createServer(req: CreateServerRequest): Promise<CreateServerResponse> {
    return (
      await this.request<CreateServerResponse>({
        method: "POST",
        path: "/servers",
        body: req,
        schema: "POST /servers",
      })
    ).body;
  }

  /** Replaces a server's labels (the API's PUT replaces the whole set). */
  async updateServerLabels(id: number, labels: Record<string, string>): Promise<Server> {
    return (
      await this.request<{ server: Server }>({
        method: "PUT",
        path: `/servers/${id}`,
        body: { labels },
        schema: "PUT /servers/{id}",
      })
    ).body.server;
  }

  /** Deletes a server; returns its delete action, or undefined when it was already gone. */
  async deleteServer(id: number): Promise<Action | undefined> {
    const r = await this.request<{ action: Action }>({
      method: "DELETE",
      path: `/servers/${id}`,
      schema: "DELETE /servers/{id}",
      accept: [404],
    });
    return r.status === 404 ? undefined : r.body.action;
  }

  async getAction(id: number): Promise<Action> {
    return (
      await this.request<{ action: Action }>({
        method: "GET",
        path: `/actions/${id}`,
        schema: "GET /actions/{id}",
      })
    ).body.action;
  }

  /**
   * Polls an action until it succeeds (returns it) or fails (throws HCLOUD_ACTION_FAILED);
   * throws HCLOUD_ACTION_TIMEOUT after timeoutMs.
   */
  async waitForAction(
    action: Action,
    o: { timeoutMs?: number; pollMs?: number; onProgress?: (a: Action) => void } = {},
  ): Promise<Action> {
    const timeoutMs = o.timeoutMs ?? 600_000;
    const deadline = Date.now() + timeoutMs;
    let current = action;
    let poll = o.pollMs ?? 500;
    while (current.status === "running") {
      if (Date.now() > deadline) {
        throw new NixpoolError(
          "HCLOUD_ACTION_TIMEOUT",
          `Hetzner Cloud action ${current.command} (${current.id}) did not finish within ${Math.round(timeoutMs / 1000)} s.`,
          {
            hint: "Look at it with: hcloud server describe NAME; then remove leftovers with: nixpool worker gc",
          },
        );
      }
      try {
        await sleepTimer(poll, undefined, this.options.signal ? { signal: this.options.signal } : {});
      } catch {
        throw new NixpoolError("INTERRUPTED", `Waiting for ${current.command} was interrupted.`, {
          exitCode: ExitCode.interrupted,
        });
      }
      poll = Math.min(2000, Math.round(poll * 1.5));
      current = await this.getAction(current.id);
      o.onProgress?.(current);
    }
    if (current.status === "error") {
      throw new NixpoolError(
        "HCLOUD_ACTION_FAILED",
        `Hetzner Cloud action ${current.command} (${current.id}) failed: ${current.error?.message ?? "no reason given"} (${current.error?.code ?? "unknown"}).`,
        {
          hint: "Run the same command again; if it keeps failing, pass another --location or --type (hcloud location list; hcloud server-type list).",
          details: { action: current.id, apiCode: current.error?.code },
        },
      );
    }
    return current;
  }

  listServerTypes(): Promise<ServerType[]> {
    return this.listAll<ServerType>("/server_types", "server_types");
  }

  listLocations(): Promise<Location[]> {
    return this.listAll<Location>("/locations", "locations");
  }

  /** Prices; `attempts` lowers the retry budget when the caller has a fallback. */
  async getPricing(o: { attempts?: number } = {}): Promise<Pricing> {
    return (
      await this.request<{ pricing: Pricing }>({
        method: "GET",
        path: "/pricing",
        schema: "GET /pricing",
        ...(o.attempts !== undefined ? { attempts: o.attempts } : {}),
      })
    ).body.pricing;
  }

  /** Images: system images by name, or snapshots and backups (type) by label selector. */
  listImages(
    filter: {
      name?: string;
      architecture?: string;
      labelSelector?: string;
      type?: "system" | "snapshot" | "backup" | "app";
      status?: "available" | "creating" | "unavailable";
      sort?: string;
    } = {},
  ): Promise<Image[]> {
    return this.listAll<Image>("/images", "images", {
      name: filter.name,
      architecture: filter.architecture,
      label_selector: filter.labelSelector,
      type: filter.type,
      status: filter.status,
      sort: filter.sort,
    });
  }

  /** One image, or undefined when it does not exist (deleted). */
  async getImage(id: number): Promise<Image | undefined> {
    const r = await this.request<{ image: Image }>({
      method: "GET",
      path: `/images/${id}`,
      schema: "GET /images/{id}",
      accept: [404],
    });
    return r.status === 404 ? undefined : r.body.image;
  }

  /** Deletes a snapshot; false when it was already gone. */
  async deleteImage(id: number): Promise<boolean> {
    const r = await this.request({ method: "DELETE", path: `/images/${id}`, accept: [404] });
    return r.status !== 404;
  }

  /** Takes a snapshot of a server's disk: the image (`creating`) and the create_image action. */
  async createImage(
    serverId: number,
    req: { description: string; labels: Record<string, string> },
  ): Promise<CreateImageResponse> {
    return (
      await this.request<CreateImageResponse>({
        method: "POST",
        path: `/servers/${serverId}/actions/create_image`,
        body: { type: "snapshot", ...req },
        schema: "POST /servers/{id}/actions/create_image",
      })
    ).body;
  }

  /** Shuts a server down (ACPI, as `shutdown -h`); its disk is then consistent for a snapshot. */
  async shutdownServer(id: number): Promise<Action> {
    return (
      await this.request<{ action: Action }>({
        method: "POST",
        path: `/servers/${id}/actions/shutdown`,
        schema: "POST /servers/{id}/actions/shutdown",
      })
    ).body.action;
  }

  listSshKeys(filter: { labelSelector?: string; name?: string } = {}): Promise<SshKey[]> {
    return this.listAll<SshKey>("/ssh_keys", "ssh_keys", {
      label_selector: filter.labelSelector,
      name: filter.name,
    });
  }

  async createSshKey(req: CreateSshKeyRequest): Promise<SshKey> {
    return (
      await this.request<{ ssh_key: SshKey }>({
        method: "POST",
        path: "/ssh_keys",
        body: req,
        schema: "POST /ssh_keys",
      })
    ).body.ssh_key;
  }

  /** Deletes an SSH key; false when it was already gone. */
  async deleteSshKey(id: number): Promise<boolean> {
    const r = await this.request({ method: "DELETE", path: `/ssh_keys/${id}`, accept: [404] });
    return r.status !== 404;
  }
}

/** A short reason for a fetch failure: the cause's code (ECONNRESET, UND_ERR_SOCKET) or a timeout. */
function describeTransportError(e: unknown): string {
  if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError"))
    return "the request timed out";
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ""}`;
  return e instanceof Error ? e.message : String(e);
}
