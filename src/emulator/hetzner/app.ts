import { Hono } from "hono";
import type { HttpBindings } from "@hono/node-server";
import { answerError, answerNotFound, guardApi } from "./middleware.js";
import { registerActionRoutes } from "./routes/actions.js";
import { registerAdminRoutes } from "./routes/admin.js";
import { registerCatalogRoutes } from "./routes/catalog.js";
import { registerImageRoutes } from "./routes/images.js";
import { registerServerActionRoutes } from "./routes/server-actions.js";
import { registerServerRoutes } from "./routes/servers.js";
import { registerSshKeyRoutes } from "./routes/ssh-keys.js";
import { stopAllServers } from "./server-lifecycle.js";
import { createEmulator, type EmulatorOptions, type EmulatorState } from "./state.js";

export type EmulatorApp = Hono<{ Bindings: HttpBindings }>;

export interface HetznerEmulator {
  app: EmulatorApp;
  state: EmulatorState;
  /** Stops every booted machine and timer. */
  shutdown(): Promise<void>;
}

/**
 * The Hetzner Cloud API emulator (under /v1) with admin endpoints under /_emulator:
 * GET /_emulator/state, POST /_emulator/faults, DELETE /_emulator/faults.
 */
export function createHetznerEmulator(options: EmulatorOptions = {}): HetznerEmulator {
  const emu = createEmulator(options);
  const app: EmulatorApp = new Hono();
  app.onError(answerError);
  app.notFound(answerNotFound);
  app.use("/v1/*", guardApi(emu));
  registerActionRoutes(app, emu);
  registerCatalogRoutes(app, emu);
  registerSshKeyRoutes(app, emu);
  registerServerRoutes(app, emu);
  registerServerActionRoutes(app, emu);
  registerImageRoutes(app, emu);
  registerAdminRoutes(app, emu);
  return { app, state: emu.state, shutdown: () => stopAllServers(emu) };
}
