/** Exit codes, documented in docs/exit-codes.md. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  partial: 3,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Every error code nixpool reports, each documented in docs/exit-codes.md (a unit test checks
 * both directions). A new code is added here first: anything else does not typecheck.
 */
export const ERROR_CODES = [
  "ACCESS_INDEX_MISSING",
  "ACCESS_INDEX_UNREACHABLE",
  "ACCESS_LOCKED",
  "ACCESS_STATE_DAMAGED",
  "ALL_BUILDERS_DOWN",
  "API_BAD_REQUEST",
  "API_FORBIDDEN",
  "API_INTERNAL",
  "API_NOT_FOUND",
  "API_UNAUTHORIZED",
  "BUILDER_AUTH_FAILED",
  "BUILDER_CONNECT_FAILED",
  "BUILDER_NAME_CLASH",
  "BUILDER_UNKNOWN",
  "BUILDER_UNREACHABLE",
  "BUILDER_UNSAFE_FIELD",
  "BUILD_CANCELLED",
  "BUILD_FAILED",
  "BUILD_NOT_YOURS",
  "BUILD_ON_INVALID",
  "BUILD_UNKNOWN",
  "CACHE_BUSY",
  "CACHE_KEY_INVALID",
  "CACHE_OPEN_TO_NETWORK",
  "CACHE_UNAVAILABLE",
  "CA_EXISTS",
  "CA_MISSING",
  "CA_SERIAL_DAMAGED",
  "CERT_KEY_INVALID",
  "CERT_PRINCIPAL_INVALID",
  "CERT_UNKNOWN",
  "CERT_USER_UNKNOWN",
  "CERT_VALIDITY_INVALID",
  "CHECKS_FAILED",
  "CLIENT_UNKNOWN",
  "COMMAND_USER_UNKNOWN",
  "CONFIG_INVALID",
  "CONFIG_SYNTAX",
  "CONFIG_WRITE_FAILED",
  "COORDINATOR_BAD_RESPONSE",
  "COORDINATOR_DRAINING",
  "COORDINATOR_LISTEN_FAILED",
  "COORDINATOR_LISTEN_INVALID",
  "COORDINATOR_OPEN_TO_NETWORK",
  "COORDINATOR_REQUEST_FAILED",
  "COORDINATOR_STOPPED",
  "COORDINATOR_UNAUTHORIZED",
  "COORDINATOR_UNREACHABLE",
  "COORDINATOR_URL_INVALID",
  "COPY_DIRECT_FAILED",
  "COPY_SOURCE_MISSING",
  "DAEMON_NEEDS_APPLY",
  "DEPLOY_ACTIVATION_FAILED",
  "DEPLOY_CONFIG_UNKNOWN",
  "DEPLOY_INSTALL_FAILED",
  "DEPLOY_INSTALL_NOT_READY",
  "DEPLOY_NO_ACTIVATION",
  "DEPLOY_NO_PREVIOUS_GENERATION",
  "DEPLOY_RESTORE_FAILED",
  "DEPLOY_TARGET_ANSWER_INVALID",
  "DEPLOY_TARGET_BUSY",
  "DEPLOY_UNCONFIRMED",
  "DERIVATION_INVALID",
  "DERIVATION_UNREADABLE",
  "DISPATCHER_NEEDS_STORE",
  "DOWNLOAD_FAILED",
  "DRV_GRAPH_INVALID",
  "DURATION_INVALID",
  "EMULATOR_OPEN_TO_NETWORK",
  "EMULATOR_TOKEN_FILE_EMPTY",
  "EMULATOR_TOKEN_FILE_UNREADABLE",
  "FLAG_CONFLICT",
  "FLAG_INVALID",
  "FLAKE_ATTRIBUTE_MISSING",
  "FLAKE_INPUT_UNAVAILABLE",
  "FLAKE_NOT_FOUND",
  "FLAKE_NO_DERIVATIONS",
  "GATEWAY_CLIENT_INVALID",
  "GATEWAY_CLIENT_STALLED",
  "GATEWAY_INPUTS_MISSING",
  "GATEWAY_PATH_INVALID",
  "GATEWAY_SESSION_FAILED",
  "GITHUB_URL_INVALID",
  "HCLOUD_ACTION_FAILED",
  "HCLOUD_ACTION_TIMEOUT",
  "HCLOUD_BAD_RESPONSE",
  "HCLOUD_CONFLICT",
  "HCLOUD_ENDPOINT_INSECURE",
  "HCLOUD_ENDPOINT_INVALID",
  "HCLOUD_FORBIDDEN",
  "HCLOUD_INVALID_INPUT",
  "HCLOUD_NAME_TAKEN",
  "HCLOUD_NOT_FOUND",
  "HCLOUD_NOT_UNIQUE",
  "HCLOUD_NO_FITTING_TYPE",
  "HCLOUD_NO_IPV4",
  "HCLOUD_PROTECTED",
  "HCLOUD_RATE_LIMITED",
  "HCLOUD_REQUEST_FAILED",
  "HCLOUD_RESOURCE_LIMIT",
  "HCLOUD_RESOURCE_UNAVAILABLE",
  "HCLOUD_SERVER_ERROR",
  "HCLOUD_SERVER_VANISHED",
  "HCLOUD_TIMEOUT",
  "HCLOUD_TOKEN_COMMAND_FAILED",
  "HCLOUD_TOKEN_FILE_UNREADABLE",
  "HCLOUD_TOKEN_INVALID",
  "HCLOUD_TOKEN_MISSING",
  "HCLOUD_TOKEN_READONLY",
  "HCLOUD_TYPE_UNAVAILABLE",
  "HCLOUD_TYPE_UNKNOWN",
  "HCLOUD_UNAUTHORIZED",
  "HCLOUD_UNAVAILABLE",
  "HCLOUD_UNREACHABLE",
  "HISTORY_INVALID",
  "HOST_KEY_MISMATCH",
  "HOST_KEY_UNKNOWN",
  "IDENTITY_UNUSABLE",
  "INTERRUPTED",
  "INVENTORY_EXISTS",
  "INVENTORY_NOT_FOUND",
  "KEYS_COMMAND_MISSING",
  "KEYS_COMMAND_NEEDS_ROOT",
  "KEYS_COMMAND_UNREACHABLE",
  "KEYS_COMMAND_UNSAFE",
  "LOCAL_HOST_START_FAILED",
  "LOCAL_POOL_EXISTS",
  "LOCAL_POOL_FULL",
  "LOCAL_POOL_NEEDS_ROOT",
  "LOCAL_POOL_NO_NAMESPACES",
  "MACHINES_FILE_FOREIGN",
  "MACHINES_FILE_INVALID",
  "MACHINES_FILE_UNREADABLE",
  "NIX_EVAL_FAILED",
  "NIX_FILE_NOT_FOUND",
  "NOT_A_FLAKE",
  "NOT_REPRODUCIBLE",
  "NO_BUILDERS",
  "NO_CAPABLE_BUILDER",
  "NO_TRUSTED_BUILDER",
  "PROCESS_FAILED",
  "PROCESS_NOT_STARTED",
  "PROCESS_TIMEOUT",
  "PROVIDER_UNKNOWN",
  "SERVE_CONNECTION_LOST",
  "SERVE_PROTOCOL_ERROR",
  "SERVE_REQUEST_FAILED",
  "SERVE_TIMEOUT",
  "SSHD_FRAGMENT_INVALID",
  "SSH_CONFIG_UNSAFE_VALUE",
  "STATE_RECORD_INVALID",
  "SUBMIT_FORBIDDEN",
  "SUBMIT_INVALID",
  "TARGET_AUTH_FAILED",
  "TARGET_COMMAND_FAILED",
  "TARGET_CONNECT_FAILED",
  "TARGET_HOST_KEY_MISSING",
  "TARGET_SUDO_REFUSED",
  "TARGET_UNKNOWN",
  "TARGET_UNREACHABLE",
  "USAGE",
  "USERS_INVALID",
  "USERS_SYNTAX",
  "USER_REJECTED",
  "USER_UNKNOWN",
  "VERIFY_NO_DERIVER",
  "VERIFY_TOO_FEW_BUILDERS",
  "WORKER_BOOT_TIMEOUT",
  "WORKER_GC_INCOMPLETE",
  "WORKER_LEAKED",
  "WORKER_NIX_TIMEOUT",
  "WORKER_UNKNOWN",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface NixpoolErrorOptions {
  hint?: string;
  cause?: unknown;
  exitCode?: ExitCode;
  /** Extra structured data for --json output (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The one error type users see: a string code, a one-sentence message naming the object,
 * and a hint with the next command to run.
 */
export class NixpoolError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: NixpoolErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "NixpoolError";
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.failed;
    this.details = options.details;
  }
}

/** Configuration or usage errors exit with 2. */
export function configError(
  code: ErrorCode,
  message: string,
  options: Omit<NixpoolErrorOptions, "exitCode"> = {},
) {
  return new NixpoolError(code, message, { ...options, exitCode: ExitCode.usage });
}

export function isNixpoolError(e: unknown): e is NixpoolError {
  return e instanceof NixpoolError;
}
