import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isNixpoolError, type ErrorCode } from "../../core/errors.js";
import { redact } from "../../core/redact.js";

/** The body of every API error: a stable code and one sentence (never a token or a stack). */
export interface ApiErrorBody {
  code: string;
  message: string;
  hint?: string;
}

/** An error the API answers with a status and a JSON body. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export const badRequest = (message: string, hint?: string) =>
  new ApiError(400, "API_BAD_REQUEST", message, hint);
export const notFound = (message: string) => new ApiError(404, "API_NOT_FOUND", message);

/**
 * The HTTP status of a coordinator's refusal: unknown objects 404, someone else's build 403, usage
 * errors 400, draining or its database away 503, any other refusal 422 (understood, but it cannot be done).
 */
export function statusOfCode(code: string, usage: boolean): ContentfulStatusCode {
  if (/(_UNKNOWN|_NOT_FOUND)$/.test(code)) return 404;
  if (/(_FORBIDDEN|_NOT_YOURS|_NOT_ALLOWED|_DENIED)$/.test(code)) return 403;
  if (code === "COORDINATOR_DRAINING" || code === "DATABASE_UNREACHABLE") return 503;
  return usage ? 400 : 422;
}

/** The JSON answer for any error a handler threw; an unexpected one is logged and answered 500. */
export function answerError(c: Context, e: unknown, log: (line: string) => void): Response {
  if (e instanceof ApiError) {
    if (e.status === 401) c.header("WWW-Authenticate", 'Bearer realm="nixpool"');
    return c.json(body(e.code, e.message, e.hint), e.status);
  }
  if (isNixpoolError(e)) {
    return c.json(body(e.code, e.message, e.hint), statusOfCode(e.code, e.exitCode === 2));
  }
  log(
    `internal error on ${c.req.method} ${c.req.path}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`,
  );
  return c.json(body("API_INTERNAL", "The coordinator failed to answer this request; see its log."), 500);
}

function body(code: string, message: string, hint?: string): ApiErrorBody {
  return { code, message: redact(message), ...(hint ? { hint: redact(hint) } : {}) };
}
