import { createHash } from "node:crypto";
import { z } from "zod";
import { ApiError } from "../api-error.js";
import { renderSshKey } from "../render.js";
import {
  applyUpdate,
  checkLabels,
  idParam,
  labelsSchema,
  paginate,
  readBody,
  selectByLabels,
  updateSchema,
} from "../request.js";
import type { Emulator, SshKeyRecord } from "../state.js";
import type { EmulatorApp } from "../app.js";

const createSshKeySchema = z.object({
  name: z.string().min(1),
  public_key: z.string().min(1),
  labels: labelsSchema,
});

const invalidPublicKey = () =>
  new ApiError(400, "invalid_input", "invalid input in field 'public_key'", {
    fields: [{ name: "public_key", messages: ["invalid public key"] }],
  });

/** GET, POST /ssh_keys; GET, PUT, DELETE /ssh_keys/{id}. */
export function registerSshKeyRoutes(app: EmulatorApp, emu: Emulator): void {
  const { state } = emu;
  app.get("/v1/ssh_keys", (c) => {
    const name = c.req.query("name");
    const fp = c.req.query("fingerprint");
    const keys = [...state.sshKeys.values()].filter(
      (k) => (name === undefined || k.name === name) && (fp === undefined || k.fingerprint === fp),
    );
    const { items, meta } = paginate(c, selectByLabels(c, keys));
    return c.json({ ssh_keys: items.map(renderSshKey), meta });
  });
  app.get("/v1/ssh_keys/:id", (c) => {
    const k = state.sshKeys.get(idParam(c));
    if (!k) throw new ApiError(404, "not_found", "SSH key not found");
    return c.json({ ssh_key: renderSshKey(k) });
  });
  app.put("/v1/ssh_keys/:id", async (c) => {
    const k = state.sshKeys.get(idParam(c));
    if (!k) throw new ApiError(404, "not_found", "SSH key not found");
    applyUpdate(k, state.sshKeys.values(), await readBody(c, updateSchema));
    return c.json({ ssh_key: renderSshKey(k) });
  });
  app.post("/v1/ssh_keys", async (c) => {
    const body = await readBody(c, createSshKeySchema);
    checkLabels(body.labels);
    const [type, blob] = body.public_key.trim().split(/\s+/);
    if (!type?.startsWith("ssh-") && !type?.startsWith("ecdsa-")) throw invalidPublicKey();
    const raw = Buffer.from(blob ?? "", "base64");
    if (raw.length < 16) throw invalidPublicKey();
    const fingerprint = (createHash("md5").update(raw).digest("hex").match(/../g) ?? []).join(":");
    for (const k of state.sshKeys.values()) {
      if (k.name === body.name || k.fingerprint === fingerprint) {
        throw new ApiError(409, "uniqueness_error", "SSH key with the same fingerprint already exists", {
          fields: [{ name: k.name === body.name ? "name" : "public_key" }],
        });
      }
    }
    const key: SshKeyRecord = {
      id: emu.newId(),
      name: body.name,
      fingerprint,
      public_key: body.public_key.trim(),
      labels: body.labels ?? {},
      created: emu.now(),
    };
    state.sshKeys.set(key.id, key);
    return c.json({ ssh_key: renderSshKey(key) }, 201);
  });
  app.delete("/v1/ssh_keys/:id", (c) => {
    const id = idParam(c);
    if (!state.sshKeys.delete(id)) throw new ApiError(404, "not_found", "SSH key not found");
    return c.body(null, 204);
  });
}
