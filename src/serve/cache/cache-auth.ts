import type { MiddlewareHandler } from "hono";
import { ApiError } from "../http/api-error.js";
import type { ApiEnv } from "../http/api-env.js";
import { sameSecret } from "../http/auth.js";

export interface CacheAuthOptions {
  /** The API's bearer token (it reads the cache too); undefined: `--no-token`, loopback only. */
  apiToken: string | undefined;
  /** The read-only cache token (`nixpool cache token`), what clients put in netrc. */
  cacheToken: string;
  /** `--cache-open` (loopback only): TCP readers need no credentials. */
  open: boolean;
  /** A remote client's own API token (`serve token --client NAME`) reads the cache too. */
  clientOf?: (token: string) => string | undefined;
}

/**
 * The cache's gate: the API's rules, read-only. On the socket, any local user (the kernel knows
 * who); on TCP, the cache token, the API token or a remote client's own token (`serve token
 * --client`), as HTTP Basic (netrc: `login` is not checked, `password` is the token) or as a
 * bearer token; no credentials with `--cache-open` or `--no-token`.
 */
export function authenticateCache(o: CacheAuthOptions): MiddlewareHandler<ApiEnv> {
  const accepted = [o.cacheToken, ...(o.apiToken !== undefined ? [o.apiToken] : [])];
  const isAccepted = (secret: string) =>
    accepted.some((t) => sameSecret(secret, t)) || o.clientOf?.(secret) !== undefined;
  return async (c, next) => {
    if (c.env.transport === "socket" || o.open || o.apiToken === undefined) return next();
    const header = c.req.header("authorization") ?? "";
    const basic = /^Basic ([A-Za-z0-9+/=]{1,1024})$/.exec(header);
    const bearer = /^Bearer ([\x21-\x7e]{1,1024})$/.exec(header);
    let secret: string | undefined;
    if (basic?.[1] !== undefined) {
      const text = Buffer.from(basic[1], "base64").toString("utf8");
      const colon = text.indexOf(":");
      secret = colon >= 0 ? text.slice(colon + 1) : undefined;
    } else if (bearer?.[1] !== undefined) secret = bearer[1];
    if (secret !== undefined && isAccepted(secret)) return next();
    throw new ApiError(
      401,
      "API_UNAUTHORIZED",
      header === "" ? "This binary cache needs its token." : "The credentials are not this cache's token.",
      "Put `machine HOST login nixpool password TOKEN` (TOKEN: nixpool cache token) in the netrc-file Nix reads (docs/cache.md).",
    );
  };
}
