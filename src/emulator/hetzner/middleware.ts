import type { ErrorHandler, MiddlewareHandler, NotFoundHandler } from "hono";
import type { HttpBindings } from "@hono/node-server";
import { ApiError } from "./api-error.js";
import { faultMatches, isRequestFault, type RequestFault } from "./faults.js";
import type { Emulator, EmulatorState } from "./state.js";

type Env = { Bindings: HttpBindings };

/** Answers an ApiError with its status and the API's error body; anything else is a 500. */
export const answerError: ErrorHandler<Env> = (err, c) => {
  if (err instanceof ApiError) {
    return c.json(
      { error: { code: err.code, message: err.message, details: err.details } },
      err.status as 400,
    );
  }
  return c.json({ error: { code: "server_error", message: String(err), details: null } }, 500);
};

export const answerNotFound: NotFoundHandler<Env> = (c) =>
  c.json({ error: { code: "not_found", message: "not found", details: null } }, 404);

interface HeaderSink {
  header(name: string, value: string): void;
}

/** Hetzner's rate limit: a bucket of `limit` requests per hour, refilled continuously. */
function createRateLimit(limit: number, now: () => number) {
  const rate = limit / 3600_000;
  let bucket = limit;
  let bucketAt = now();
  const remaining = () => String(Math.max(0, Math.floor(bucket)));
  return {
    /** Refills the bucket for the time passed and sets the RateLimit-* headers. */
    refill(c: HeaderSink) {
      bucket = Math.min(limit, bucket + (now() - bucketAt) * rate);
      bucketAt = now();
      c.header("RateLimit-Limit", String(limit));
      c.header("RateLimit-Remaining", remaining());
      c.header("RateLimit-Reset", String(Math.ceil((now() + (limit - bucket) / rate) / 1000)));
    },
    /** Whether no whole request is left. */
    empty: () => bucket < 1,
    /** Spends one request. */
    take(c: HeaderSink) {
      bucket -= 1;
      c.header("RateLimit-Remaining", remaining());
    },
  };
}

/** Takes one use of the first injected fault that hits this request. */
function takeRequestFault(state: EmulatorState, method: string, path: string): RequestFault | undefined {
  const i = state.faults.findIndex((f) => isRequestFault(f) && faultMatches(f, method, path));
  if (i < 0) return undefined;
  const fault = state.faults[i] as RequestFault;
  fault.count -= 1;
  if (fault.count <= 0) state.faults.splice(i, 1);
  return fault;
}

/**
 * In front of every /v1 request, in this order: injected faults (drop, delay, server error,
 * rate limit, conflict), the rate limit, the bearer token; then one log line with the status.
 */
export function guardApi(emu: Emulator): MiddlewareHandler<Env> {
  const { state } = emu;
  const rateLimit = createRateLimit(emu.rateLimit, emu.now);
  return async (c, next) => {
    state.requests++;
    const method = c.req.method;
    const fault = takeRequestFault(state, method, c.req.path.slice(3));
    rateLimit.refill(c);
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
      if (fault?.kind === "rate_limit" || rateLimit.empty()) {
        c.header("RateLimit-Remaining", "0");
        throw new ApiError(429, "rate_limit_exceeded", "limit of requests per hour reached");
      }
      if (fault?.kind === "conflict") {
        throw new ApiError(409, "conflict", "another action is running on the resource");
      }
      rateLimit.take(c);
      const auth = c.req.header("Authorization") ?? "";
      const token = /^Bearer\s+(\S+)$/i.exec(auth)?.[1];
      if (!token || (emu.tokens !== undefined && !emu.tokens.includes(token))) {
        throw new ApiError(401, "unauthorized", "unable to authenticate");
      }
      await next();
    } catch (e) {
      // Thrown here, the error is answered after this middleware: log the status it will get.
      errorStatus = e instanceof ApiError ? e.status : 500;
      throw e;
    } finally {
      emu.log?.(`${method} ${c.req.path} ${errorStatus ?? c.res.status}`);
    }
  };
}
