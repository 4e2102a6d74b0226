import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { createHetznerEmulator, type HetznerEmulator } from "./app.js";
import type { EmulatorOptions } from "./state.js";

export interface RunningEmulator {
  /** Base URL of the API, e.g. http://127.0.0.1:PORT/v1 (what HCLOUD_ENDPOINT takes). */
  endpoint: string;
  /** Base URL of the admin endpoints, e.g. http://127.0.0.1:PORT/_emulator. */
  adminUrl: string;
  port: number;
  emulator: HetznerEmulator;
  /** Stops the HTTP server and every emulated machine. */
  close(): Promise<void>;
}

/** Serves the Hetzner Cloud API emulator over HTTP on hostname:port (port 0: any free port). */
export async function startHetznerEmulator(
  o: EmulatorOptions & { port?: number; hostname?: string } = {},
): Promise<RunningEmulator> {
  const emulator = createHetznerEmulator(o);
  const hostname = o.hostname ?? "127.0.0.1";
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve, reject) => {
      const s = serve({ fetch: emulator.app.fetch, port: o.port ?? 0, hostname }, (info: AddressInfo) =>
        resolve({ server: s, port: info.port }),
      );
      s.once("error", reject);
    },
  );
  const base = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  let closed: Promise<void> | undefined;
  return {
    endpoint: `${base}/v1`,
    adminUrl: `${base}/_emulator`,
    port,
    emulator,
    close: () =>
      (closed ??= (async () => {
        await emulator.shutdown();
        await new Promise<void>((r) => {
          server.close(() => r());
          (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        });
      })()),
  };
}
