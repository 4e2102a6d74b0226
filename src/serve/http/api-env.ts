import type { HttpBindings } from "@hono/node-server";
import type { ClientIdentity } from "../coordinator-types.js";

/** Which listener a request came through: the Unix socket (peer credentials) or TCP (the token). */
export type Transport = "socket" | "tcp";

/** The hono environment of the coordinator's app: node's request, its listener, and who asked. */
export interface ApiEnv {
  Bindings: HttpBindings & { transport: Transport };
  Variables: { client: ClientIdentity };
}
