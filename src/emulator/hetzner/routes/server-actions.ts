import { z } from "zod";
import { ApiError } from "../api-error.js";
import { renderAction, renderImage } from "../render.js";
import { checkLabels, idParam, labelsSchema, readBody } from "../request.js";
import { createSnapshot, isSnapshotting } from "../snapshots.js";
import { finishAction, newAction, type Emulator, type ServerRecord } from "../state.js";
import type { EmulatorApp } from "../app.js";

const createImageSchema = z.object({
  type: z.enum(["snapshot", "backup"]).default("snapshot"),
  description: z.string().optional(),
  labels: labelsSchema,
});

/** POST /servers/{id}/actions/create_image, …/shutdown, …/poweron. */
export function registerServerActionRoutes(app: EmulatorApp, emu: Emulator): void {
  const { state } = emu;
  const findServer = (id: number) => {
    const s = state.servers.get(id);
    if (!s || s.status === "deleting") throw new ApiError(404, "not_found", "server not found");
    return s;
  };
  const refuseLocked = (s: ServerRecord) => {
    if (s.status === "initializing" || s.status === "starting" || isSnapshotting(emu, s)) {
      throw new ApiError(423, "locked", `server ${s.id} is locked by a running action`);
    }
  };
  /** A power action: the status changes when it ends, after the boot time. */
  const power = (s: ServerRecord, command: string, to: "off" | "running") => {
    const a = newAction(emu, command, [{ id: s.id, type: "server" }], emu.timing.bootMs);
    s.timers.push(
      setTimeout(() => {
        const host = s.host;
        const done = host ? host.setReachable(to === "running") : Promise.resolve();
        emu.track(
          done.then(() => {
            s.status = to;
            if (host) s.boot = to === "running" ? "booted" : "stopped";
            finishAction(emu, a);
          }),
        );
      }, emu.timing.bootMs),
    );
    return a;
  };

  app.post("/v1/servers/:id/actions/create_image", async (c) => {
    const s = findServer(idParam(c));
    const body = await readBody(c, createImageSchema);
    checkLabels(body.labels);
    refuseLocked(s);
    if (body.type === "backup") {
      throw new ApiError(422, "unsupported_error", `server ${s.id} has no backups enabled`);
    }
    const { image, action } = createSnapshot(emu, s, {
      type: body.type,
      description: body.description,
      labels: body.labels ?? {},
    });
    return c.json({ image: renderImage(image), action: renderAction(action, emu.now()) }, 201);
  });
  app.post("/v1/servers/:id/actions/shutdown", (c) => {
    const s = findServer(idParam(c));
    refuseLocked(s);
    if (s.status === "off") {
      const a = newAction(emu, "shutdown_server", [{ id: s.id, type: "server" }], 0);
      finishAction(emu, a);
      return c.json({ action: renderAction(a, emu.now()) }, 201);
    }
    return c.json({ action: renderAction(power(s, "shutdown_server", "off"), emu.now()) }, 201);
  });
  app.post("/v1/servers/:id/actions/poweron", (c) => {
    const s = findServer(idParam(c));
    refuseLocked(s);
    return c.json({ action: renderAction(power(s, "start_server", "running"), emu.now()) }, 201);
  });
}
