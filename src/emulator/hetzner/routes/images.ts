import type { Context } from "hono";
import { z } from "zod";
import { ApiError } from "../api-error.js";
import { renderAction, renderImage } from "../render.js";
import { checkLabels, idParam, labelsSchema, paginate, readBody, selectByLabels } from "../request.js";
import { deleteImage } from "../snapshots.js";
import { finishAction, newAction, type Emulator, type ImageRecord } from "../state.js";
import type { EmulatorApp } from "../app.js";

const IMAGE_TYPES = ["system", "app", "snapshot", "backup"] as const;
const IMAGE_STATUSES = ["available", "creating", "unavailable"] as const;
const SORT_FIELDS = ["id", "name", "created"] as const;

const updateImageSchema = z.object({
  description: z.string().optional(),
  type: z.literal("snapshot").optional(),
  labels: labelsSchema,
});
const protectionSchema = z.object({ delete: z.boolean().optional() });

/** The values of a repeatable query parameter, each checked against the allowed ones. */
function enumQuery<T extends string>(c: Context, name: string, allowed: readonly T[]): T[] | undefined {
  const values = c.req.queries(name);
  if (values === undefined) return undefined;
  for (const v of values) {
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ApiError(400, "invalid_input", `invalid input in field '${name}'`, {
        fields: [{ name, messages: [`must be one of ${allowed.join(", ")}`] }],
      });
    }
  }
  return values as T[];
}

/** Orders images by ?sort=field[:asc|:desc] (repeatable: later keys break ties); by id without one. */
function sortImages(c: Context, images: ImageRecord[]): ImageRecord[] {
  const keys = enumQuery(
    c,
    "sort",
    SORT_FIELDS.flatMap((f) => [f, `${f}:asc`, `${f}:desc`]),
  ) ?? ["id"];
  const value = (i: ImageRecord, field: string): number | string =>
    field === "name" ? (i.name ?? "") : field === "created" ? i.created : i.id;
  return [...images].sort((a, b) => {
    for (const key of keys) {
      const [field = "id", dir] = key.split(":");
      const va = value(a, field);
      const vb = value(b, field);
      const cmp = va < vb ? -1 : va > vb ? 1 : 0;
      if (cmp !== 0) return dir === "desc" ? -cmp : cmp;
    }
    return a.id - b.id;
  });
}

/** GET /images; GET, PUT, DELETE /images/{id}; POST /images/{id}/actions/change_protection. */
export function registerImageRoutes(app: EmulatorApp, emu: Emulator): void {
  const { state } = emu;
  const findImage = (id: number) => {
    const i = state.images.get(id);
    if (!i) throw new ApiError(404, "not_found", "image not found");
    return i;
  };
  const ownImage = (i: ImageRecord, what: string) => {
    if (i.type === "system") {
      throw new ApiError(422, "unsupported_error", `only snapshot and backup images can be ${what}`);
    }
  };

  app.get("/v1/images", (c) => {
    const name = c.req.query("name");
    const arch = enumQuery(c, "architecture", ["x86", "arm"] as const);
    const types = enumQuery(c, "type", IMAGE_TYPES);
    const statuses = enumQuery(c, "status", IMAGE_STATUSES);
    const images = [...state.images.values()].filter(
      (i) =>
        (name === undefined || i.name === name) &&
        (arch === undefined || arch.includes(i.architecture)) &&
        (types === undefined || types.includes(i.type)) &&
        (statuses === undefined || statuses.includes(i.status)),
    );
    const { items, meta } = paginate(c, sortImages(c, selectByLabels(c, images)));
    return c.json({ images: items.map(renderImage), meta });
  });
  app.get("/v1/images/:id", (c) => c.json({ image: renderImage(findImage(idParam(c))) }));
  app.put("/v1/images/:id", async (c) => {
    const i = findImage(idParam(c));
    ownImage(i, "updated");
    const body = await readBody(c, updateImageSchema);
    if (body.labels !== undefined) {
      checkLabels(body.labels);
      i.labels = body.labels;
    }
    if (body.description !== undefined) i.description = body.description;
    if (body.type !== undefined) i.type = body.type;
    return c.json({ image: renderImage(i) });
  });
  app.delete("/v1/images/:id", async (c) => {
    const i = findImage(idParam(c));
    ownImage(i, "deleted");
    if (i.protectDelete) {
      throw new ApiError(423, "protected", `image ${i.id} is protected against deletion`);
    }
    await deleteImage(emu, i);
    return c.body(null, 204);
  });
  app.post("/v1/images/:id/actions/change_protection", async (c) => {
    const i = findImage(idParam(c));
    ownImage(i, "protected");
    const body = await readBody(c, protectionSchema);
    if (body.delete !== undefined) i.protectDelete = body.delete;
    const a = newAction(emu, "change_protection", [{ id: i.id, type: "image" }], 0);
    finishAction(emu, a);
    return c.json({ action: renderAction(a, emu.now()) }, 201);
  });
}
