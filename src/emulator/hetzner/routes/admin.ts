import { z } from "zod";
import { faultSchema } from "../faults.js";
import { renderSshKey } from "../render.js";
import type { Emulator } from "../state.js";
import type { EmulatorApp } from "../app.js";

/** GET /_emulator/state; POST /_emulator/faults (one fault or a list), DELETE /_emulator/faults. */
export function registerAdminRoutes(app: EmulatorApp, { state }: Emulator): void {
  app.get("/_emulator/state", (c) =>
    c.json({
      requests: state.requests,
      servers_created: state.serversCreated,
      faults: state.faults,
      servers: [...state.servers.values()].map((s) => ({
        id: s.id,
        name: s.name,
        status: s.status,
        ip: s.ipv4,
        labels: s.labels,
        boot: s.boot,
      })),
      ssh_keys: [...state.sshKeys.values()].map(renderSshKey),
      images: [...state.images.values()]
        .filter((i) => i.type !== "system")
        .map((i) => ({
          id: i.id,
          type: i.type,
          status: i.status,
          description: i.description,
          labels: i.labels,
          image_size: i.imageSize,
          disk_size: i.diskSize,
          created_from: i.createdFrom,
          protected: i.protectDelete,
        })),
    }),
  );
  app.post("/_emulator/faults", async (c) => {
    const body: unknown = await c.req.json().catch(() => undefined);
    const list = Array.isArray(body) ? body : [body];
    const parsed = z.array(faultSchema).safeParse(list);
    if (!parsed.success) {
      return c.json(
        { error: { code: "invalid_input", message: z.prettifyError(parsed.error), details: null } },
        400,
      );
    }
    state.faults.push(...parsed.data);
    return c.json({ faults: state.faults });
  });
  app.delete("/_emulator/faults", (c) => {
    state.faults.length = 0;
    return c.json({ faults: [] });
  });
}
