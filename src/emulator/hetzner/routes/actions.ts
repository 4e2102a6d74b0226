import { ApiError } from "../api-error.js";
import { renderAction } from "../render.js";
import { idParam, paginate } from "../request.js";
import type { Emulator } from "../state.js";
import type { EmulatorApp } from "../app.js";

/** GET /actions (optionally ?id=…), GET /actions/{id}. */
export function registerActionRoutes(app: EmulatorApp, emu: Emulator): void {
  const { state } = emu;
  app.get("/v1/actions", (c) => {
    const ids = c.req.queries("id")?.map(Number) ?? [];
    const all = [...state.actions.values()].filter((a) => ids.length === 0 || ids.includes(a.id));
    const { items, meta } = paginate(c, all);
    return c.json({ actions: items.map((a) => renderAction(a, emu.now())), meta });
  });
  app.get("/v1/actions/:id", (c) => {
    const a = state.actions.get(idParam(c));
    if (!a) throw new ApiError(404, "not_found", "action not found");
    return c.json({ action: renderAction(a, emu.now()) });
  });
}
