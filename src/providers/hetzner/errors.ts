import { ExitCode, NixpoolError, type ErrorCode } from "../../core/errors.js";

/** An error answer of the Hetzner Cloud API: {"error":{"code","message","details"}}. */
export interface ApiErrorBody {
  code: string;
  message: string;
  details?: unknown;
}

interface Mapping {
  code: ErrorCode;
  hint: string;
  exitCode?: typeof ExitCode.usage;
}

const TOKEN_HINT =
  "Create a Read & Write API token in the Hetzner Cloud Console (project → Security → API tokens) and set HCLOUD_TOKEN, --token-file or NIXPOOL_HCLOUD_TOKEN_COMMAND.";

const SERVER_ERROR_HINT =
  "Hetzner Cloud is having trouble (https://status.hetzner.com); run the same command again later, then clean up with: nixpool worker gc";

const MAPPINGS: Record<string, Mapping> = {
  unauthorized: { code: "HCLOUD_UNAUTHORIZED", hint: TOKEN_HINT, exitCode: ExitCode.usage },
  token_readonly: {
    code: "HCLOUD_TOKEN_READONLY",
    hint: "The token is read-only; create a Read & Write token. " + TOKEN_HINT,
    exitCode: ExitCode.usage,
  },
  forbidden: { code: "HCLOUD_FORBIDDEN", hint: TOKEN_HINT, exitCode: ExitCode.usage },
  resource_limit_exceeded: {
    code: "HCLOUD_RESOURCE_LIMIT",
    hint: "Delete servers you no longer need (nixpool worker gc; hcloud server list), or ask Hetzner to raise the project's limit (Console → Limits).",
  },
  uniqueness_error: {
    code: "HCLOUD_NOT_UNIQUE",
    hint: "A resource with that name exists already; list them with: nixpool worker list (or hcloud server list).",
  },
  invalid_input: {
    code: "HCLOUD_INVALID_INPUT",
    hint: "Check --type, --location and --image against: hcloud server-type list; hcloud location list; hcloud image list.",
    exitCode: ExitCode.usage,
  },
  json_error: { code: "HCLOUD_INVALID_INPUT", hint: "This is a bug in nixpool; please report it." },
  not_found: { code: "HCLOUD_NOT_FOUND", hint: "List what exists with: nixpool worker list" },
  rate_limit_exceeded: {
    code: "HCLOUD_RATE_LIMITED",
    hint: "The project's API limit (3600 requests/hour) is used up, maybe by other tools with the same token; wait a few minutes, then run the same command again.",
  },
  resource_unavailable: {
    code: "HCLOUD_RESOURCE_UNAVAILABLE",
    hint: "That server type is sold out in this location; see where it is offered with: hcloud server-type describe TYPE; then pass another --location, or --type auto.",
  },
  unsupported_location_for_server_type: {
    code: "HCLOUD_RESOURCE_UNAVAILABLE",
    hint: "That server type is not offered in this location; see: hcloud server-type describe TYPE",
  },
  placement_error: {
    code: "HCLOUD_RESOURCE_UNAVAILABLE",
    hint: "Hetzner could not place the server; run the same command with another --location or --type (hcloud location list).",
  },
  conflict: {
    code: "HCLOUD_CONFLICT",
    hint: "Another action runs on the resource; run the same command again in a minute.",
  },
  locked: {
    code: "HCLOUD_CONFLICT",
    hint: "Another action has locked the resource; run the same command again in a minute.",
  },
  protected: {
    code: "HCLOUD_PROTECTED",
    hint: "Remove the protection (hcloud server disable-protection NAME delete, or hcloud image disable-protection ID delete), then run the same command again.",
  },
  maintenance: {
    code: "HCLOUD_UNAVAILABLE",
    hint: "Hetzner Cloud is in maintenance (https://status.hetzner.com); run the same command again later.",
  },
  server_error: {
    code: "HCLOUD_SERVER_ERROR",
    hint: SERVER_ERROR_HINT,
  },
  service_error: { code: "HCLOUD_SERVER_ERROR", hint: SERVER_ERROR_HINT },
  unavailable: {
    code: "HCLOUD_UNAVAILABLE",
    hint: SERVER_ERROR_HINT,
  },
  timeout: { code: "HCLOUD_TIMEOUT", hint: SERVER_ERROR_HINT },
};

/** A snapshot taken on a type with a bigger disk cannot be restored onto a smaller one. */
const SNAPSHOT_TOO_BIG: Mapping = {
  code: "SNAPSHOT_TOO_BIG",
  hint: "Rent a type whose disk holds the snapshot (--type auto picks one; hcloud image describe ID shows its disk_size), or wake without --from-snapshot.",
  exitCode: ExitCode.usage,
};

/** Maps an API error answer to a NixpoolError naming the request, with a hint. */
export function mapApiError(status: number, body: ApiErrorBody | undefined, request: string): NixpoolError {
  const apiCode = body?.code ?? (status >= 500 ? "server_error" : "unknown");
  const diskTooBig =
    apiCode === "invalid_input" && /image disk is bigger than server type disk/.test(body?.message ?? "");
  const m = (diskTooBig ? SNAPSHOT_TOO_BIG : MAPPINGS[apiCode]) ?? {
    code: status >= 500 ? "HCLOUD_SERVER_ERROR" : "HCLOUD_REQUEST_FAILED",
    hint: "Look the error code up in the Hetzner Cloud API documentation, or try the same with the hcloud CLI (hcloud server list).",
  };
  const message = body?.message ? body.message.replace(/\.$/, "") : `HTTP ${status}`;
  return new NixpoolError(
    m.code,
    `Hetzner Cloud refused ${request}: ${message} (${apiCode}, HTTP ${status}).`,
    {
      hint: m.hint,
      ...(m.exitCode !== undefined ? { exitCode: m.exitCode } : {}),
      details: { status, apiCode, ...(body?.details ? { apiDetails: body.details } : {}) },
    },
  );
}

/** API error codes worth retrying. */
export function isRetryableApiError(status: number, apiCode: string | undefined): boolean {
  if (status === 429 || status >= 500) return true;
  return (
    apiCode === "conflict" ||
    apiCode === "locked" ||
    apiCode === "rate_limit_exceeded" ||
    apiCode === "timeout"
  );
}
