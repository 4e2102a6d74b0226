import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import type { ClientIdentity } from "../coordinator-types.js";
import { ApiError } from "./api-error.js";
import type { ApiEnv } from "./api-env.js";
import { readPeerCredentials, userNameOf } from "./peer-credentials.js";

export interface AuthOptions {
  /** The bearer token TCP clients must present; undefined: none (`--no-token`, loopback only). */
  token: string | undefined;
  /** The dashboard cookie's name: one per port, as several services may share a host name. */
  cookieName: string;
  /** The client a bearer token of its own names (`nixpool serve token --client NAME`), if any. */
  clientOf?: (token: string) => string | undefined;
}

/** Compares secrets in constant time (their digests, so lengths leak nothing either). */
export function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** The cookie's value: derived from the token, so the cookie itself never carries the token. */
export function cookieValueOf(token: string): string {
  return createHmac("sha256", token).update("nixpool dashboard session v1").digest("base64url");
}

const unauthorized = (message: string) =>
  new ApiError(
    401,
    "API_UNAUTHORIZED",
    message,
    "Send the token of `nixpool serve token` as Authorization: Bearer TOKEN, or open /?token=TOKEN once in a browser.",
  );

/** Who the socket's peer is: the kernel's record of its uid (SO_PEERCRED), named by the user database. */
async function identifySocketPeer(c: Context<ApiEnv>): Promise<ClientIdentity> {
  const creds = await readPeerCredentials(c.env.incoming.socket);
  if (!creds) throw new ApiError(401, "API_UNAUTHORIZED", "The socket's peer credentials are unavailable.");
  return { user: await userNameOf(creds.uid), uid: creds.uid, via: "socket" };
}

/** A TCP request's identity: the bearer token, or the dashboard cookie (for safe methods, or same-origin). */
function identifyTokenHolder(c: Context<ApiEnv>, o: AuthOptions): ClientIdentity {
  const holder: ClientIdentity = { user: "token", via: "token" };
  if (o.token === undefined) return { ...holder, unauthenticated: true };
  const header = c.req.header("authorization");
  if (header !== undefined) {
    const m = /^Bearer ([\x21-\x7e]+)$/.exec(header);
    if (m?.[1] !== undefined && sameSecret(m[1], o.token)) return holder;
    const client = m?.[1] !== undefined ? o.clientOf?.(m[1]) : undefined;
    if (client !== undefined) return { user: client, via: "token" };
    throw unauthorized("The bearer token is not this coordinator's (nor a client's that was not revoked).");
  }
  const cookie = getCookie(c, o.cookieName);
  if (cookie !== undefined && sameSecret(cookie, cookieValueOf(o.token))) {
    // SameSite=Strict already keeps other sites' requests from carrying it; a cross-origin write is refused too.
    const origin = c.req.header("origin");
    const safe = c.req.method === "GET" || c.req.method === "HEAD";
    if (!safe && origin !== undefined && hostOf(origin) !== c.req.header("host")) {
      throw new ApiError(403, "API_FORBIDDEN", `A request from ${origin} may not change this coordinator.`);
    }
    return holder;
  }
  throw unauthorized(
    cookie === undefined ? "This coordinator needs its token." : "The session cookie is stale.",
  );
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/**
 * The one gate of every route. On the socket, the peer's uid; on TCP, the token. `GET …?token=T`
 * with the right token sets an HttpOnly, SameSite=Strict cookie and redirects to the same path
 * without the token (as Jupyter does), so the token leaves the address bar and history.
 */
export function authenticate(o: AuthOptions): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    if (c.env.transport === "socket") {
      c.set("client", await identifySocketPeer(c));
      return next();
    }
    const offered = c.req.query("token");
    if (offered !== undefined && c.req.method === "GET" && o.token !== undefined) {
      if (!sameSecret(offered, o.token))
        throw unauthorized("The token in the address is not this coordinator's.");
      setCookie(c, o.cookieName, cookieValueOf(o.token), {
        httpOnly: true,
        sameSite: "Strict",
        path: "/",
      });
      const url = new URL(c.req.url);
      url.searchParams.delete("token");
      c.header("Cache-Control", "no-store");
      c.header("Referrer-Policy", "no-referrer");
      // One leading slash: `//host/…` would send the browser to another site.
      return c.redirect(`${url.pathname.replace(/^\/+/, "/")}${url.search}`, 302);
    }
    c.set("client", identifyTokenHolder(c, o));
    return next();
  };
}
