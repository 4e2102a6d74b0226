import { z } from "zod";
import { ApiError } from "../api-error.js";
import type { Fault } from "../faults.js";
import { renderAction, renderServer } from "../render.js";
import {
  applyUpdate,
  checkLabels,
  HOSTNAME,
  idParam,
  labelsSchema,
  paginate,
  readBody,
  selectByLabels,
  updateSchema,
} from "../request.js";
import { bootServer, createMsFor, deleteServer, scheduleBoot } from "../server-lifecycle.js";
import { isSnapshotting } from "../snapshots.js";
import { finishAction, newAction, takeFault, type Emulator, type ServerRecord } from "../state.js";
import type { EmulatorApp } from "../app.js";

/** IDs may come as numbers (hcloud-go sends them so) or as strings; names as strings. */
const ref = z.union([z.string(), z.number()]).transform(String);
const createServerSchema = z.object({
  name: z.string(),
  server_type: ref,
  image: ref,
  location: ref.optional(),
  datacenter: ref.optional(),
  start_after_create: z.boolean().optional(),
  ssh_keys: z.array(z.union([z.string(), z.number()])).optional(),
  user_data: z.string().optional(),
  labels: labelsSchema,
  automount: z.boolean().optional(),
  public_net: z.unknown().optional(),
  networks: z.array(z.unknown()).optional(),
  volumes: z.array(z.unknown()).optional(),
  firewalls: z.array(z.unknown()).optional(),
  placement_group: z.unknown().optional(),
});

/** GET, POST /servers; GET, PUT, DELETE /servers/{id}; GET /servers/{id}/actions. */
export function registerServerRoutes(app: EmulatorApp, emu: Emulator): void {
  const { state, catalog } = emu;
  const render = (s: ServerRecord) => renderServer(s, catalog);
  const findServer = (id: number) => {
    const s = state.servers.get(id);
    if (!s) throw new ApiError(404, "not_found", "server not found");
    return s;
  };
  const newFinished = (command: string, id: number) => {
    const a = newAction(emu, command, [{ id, type: "server" }], 0);
    finishAction(emu, a);
    return a;
  };

  app.get("/v1/servers", (c) => {
    const name = c.req.query("name");
    const statuses = c.req.queries("status");
    const servers = [...state.servers.values()].filter(
      (s) =>
        (name === undefined || s.name === name) && (statuses === undefined || statuses.includes(s.status)),
    );
    const { items, meta } = paginate(c, selectByLabels(c, servers));
    return c.json({ servers: items.map(render), meta });
  });
  app.get("/v1/servers/:id", (c) => c.json({ server: render(findServer(idParam(c))) }));
  app.get("/v1/servers/:id/actions", (c) => {
    const id = idParam(c);
    const all = [...state.actions.values()].filter((a) =>
      a.resources.some((r) => r.type === "server" && r.id === id),
    );
    const { items, meta } = paginate(c, all);
    return c.json({ actions: items.map((a) => renderAction(a, emu.now())), meta });
  });
  app.post("/v1/servers", async (c) => {
    const body = await readBody(c, createServerSchema);
    if (!HOSTNAME.test(body.name)) {
      throw new ApiError(400, "invalid_input", "invalid input in field 'name'", {
        fields: [{ name: "name", messages: ["Name must be a valid hostname."] }],
      });
    }
    checkLabels(body.labels);
    const type = catalog.serverTypes.find(
      (t) => t.name === body.server_type || String(t.id) === body.server_type,
    );
    if (!type) {
      throw new ApiError(400, "invalid_input", "server type not found", {
        fields: [{ name: "server_type", messages: ["server type not found"] }],
      });
    }
    const image = [...state.images.values()].find(
      (i) =>
        String(i.id) === body.image ||
        (i.type === "system" && i.name === body.image && i.architecture === type.architecture),
    );
    if (!image) {
      throw new ApiError(400, "invalid_input", "image not found", {
        fields: [{ name: "image", messages: ["image not found"] }],
      });
    }
    if (image.status !== "available") {
      throw new ApiError(422, "invalid_input", `image ${image.id} is not available (${image.status})`);
    }
    if (image.diskSize > type.disk) {
      // As the API answers it (the snapshot of a bigger type's disk cannot be restored onto a smaller one).
      throw new ApiError(422, "invalid_input", "image disk is bigger than server type disk", {
        fields: [{ name: "image", messages: ["image disk is bigger than server type disk"] }],
      });
    }
    const dc = body.datacenter
      ? catalog.locations.find(
          (l) => l.datacenter.name === body.datacenter || String(l.datacenter.id) === body.datacenter,
        )
      : undefined;
    if (body.datacenter && !dc) throw new ApiError(400, "invalid_input", "datacenter not found");
    const locName = dc?.name ?? body.location ?? type.locations.find((l) => l.available)?.name ?? "fsn1";
    const loc = catalog.locations.find((l) => l.name === locName || String(l.id) === locName);
    if (!loc) {
      throw new ApiError(400, "invalid_input", "location not found", {
        fields: [{ name: "location", messages: ["location not found"] }],
      });
    }
    const offer = type.locations.find((l) => l.name === loc.name);
    if (!offer) {
      throw new ApiError(
        422,
        "unsupported_location_for_server_type",
        `server type ${type.name} is not offered in ${loc.name}`,
      );
    }
    if (!offer.available) {
      throw new ApiError(
        412,
        "resource_unavailable",
        `server type ${type.name} is unavailable in ${loc.name}`,
      );
    }
    if (image.architecture !== type.architecture) {
      throw new ApiError(400, "invalid_input", "image architecture does not match the server type");
    }
    const sshKeys: string[] = [];
    for (const ref of body.ssh_keys ?? []) {
      const k = [...state.sshKeys.values()].find(
        (x) => x.name === String(ref) || String(x.id) === String(ref),
      );
      if (!k) {
        throw new ApiError(400, "invalid_input", `SSH key ${String(ref)} not found`, {
          fields: [{ name: "ssh_keys", messages: ["SSH key not found"] }],
        });
      }
      sshKeys.push(k.public_key);
    }
    if ([...state.servers.values()].some((s) => s.name === body.name)) {
      throw new ApiError(409, "uniqueness_error", "server name is already used", {
        fields: [{ name: "name" }],
      });
    }
    if (takeFault(state, "resource_limit")) {
      throw new ApiError(403, "resource_limit_exceeded", "server limit exceeded", {
        limits: [{ name: "server_limit" }],
      });
    }
    const id = emu.newId();
    const server: ServerRecord = {
      id,
      name: body.name,
      status: "initializing",
      created: emu.now(),
      type,
      location: loc.name,
      image,
      labels: body.labels ?? {},
      userData: body.user_data,
      sshKeys,
      ipv4: "",
      ipv4Id: emu.newId(),
      host: undefined,
      boot: "pending",
      timers: [],
    };
    state.servers.set(id, server);
    state.serversCreated++;
    let fault: Extract<Fault, { kind: "boot" }> | undefined;
    try {
      fault = await bootServer(emu, server);
    } catch (e) {
      state.servers.delete(id);
      throw new ApiError(500, "server_error", `the emulated machine did not start: ${String(e)}`);
    }
    if (server.status === "deleting")
      throw new ApiError(404, "not_found", "server was deleted during creation");
    const action = newAction(emu, "create_server", [{ id, type: "server" }], createMsFor(emu, server));
    scheduleBoot(emu, server, action, fault);
    const noPassword = sshKeys.length > 0;
    return c.json(
      {
        server: render(server),
        action: renderAction(action, emu.now()),
        next_actions: [renderAction(newFinished("start_server", id), emu.now())],
        root_password: noPassword ? null : "emulated-password-not-mailed",
      },
      201,
    );
  });
  app.put("/v1/servers/:id", async (c) => {
    const s = findServer(idParam(c));
    const body = await readBody(c, updateSchema);
    if (body.name !== undefined && !HOSTNAME.test(body.name))
      throw new ApiError(400, "invalid_input", "invalid input in field 'name'");
    applyUpdate(s, state.servers.values(), body);
    return c.json({ server: render(s) });
  });
  app.delete("/v1/servers/:id", (c) => {
    const s = findServer(idParam(c));
    if (isSnapshotting(emu, s)) {
      throw new ApiError(423, "locked", `server ${s.id} is locked by a running create_image action`);
    }
    if (s.status === "deleting") {
      const running = [...state.actions.values()].find(
        (a) =>
          a.command === "delete_server" && a.status === "running" && a.resources.some((r) => r.id === s.id),
      );
      if (running) return c.json({ action: renderAction(running, emu.now()) });
    }
    return c.json({ action: renderAction(deleteServer(emu, s), emu.now()) });
  });
}
