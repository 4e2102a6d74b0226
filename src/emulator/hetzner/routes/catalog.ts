import { ApiError } from "../api-error.js";
import { renderDatacenter, renderLocation, renderPricing, renderServerType } from "../render.js";
import { idParam, paginate } from "../request.js";
import type { Emulator } from "../state.js";
import type { EmulatorApp } from "../app.js";

/** The read-only catalogue: server types, locations, datacenters, pricing (images: routes/images.ts). */
export function registerCatalogRoutes(app: EmulatorApp, { catalog }: Emulator): void {
  app.get("/v1/server_types", (c) => {
    const name = c.req.query("name");
    const types = catalog.serverTypes.filter((t) => name === undefined || t.name === name);
    const { items, meta } = paginate(c, types);
    return c.json({ server_types: items.map((t) => renderServerType(t, catalog)), meta });
  });
  app.get("/v1/server_types/:id", (c) => {
    const t = catalog.serverTypes.find((x) => x.id === idParam(c));
    if (!t) throw new ApiError(404, "not_found", "server type not found");
    return c.json({ server_type: renderServerType(t, catalog) });
  });
  app.get("/v1/locations", (c) => {
    const name = c.req.query("name");
    const { items, meta } = paginate(
      c,
      catalog.locations.filter((l) => name === undefined || l.name === name),
    );
    return c.json({ locations: items.map(renderLocation), meta });
  });
  app.get("/v1/locations/:id", (c) => {
    const l = catalog.locations.find((x) => x.id === idParam(c));
    if (!l) throw new ApiError(404, "not_found", "location not found");
    return c.json({ location: renderLocation(l) });
  });
  app.get("/v1/datacenters", (c) => {
    const name = c.req.query("name");
    const dcs = catalog.locations.filter((l) => name === undefined || l.datacenter.name === name);
    const { items, meta } = paginate(c, dcs);
    return c.json({
      datacenters: items.map((l) => renderDatacenter(l, catalog)),
      recommendation: catalog.locations[0]?.datacenter.id ?? 1,
      meta,
    });
  });
  app.get("/v1/datacenters/:id", (c) => {
    const l = catalog.locations.find((x) => x.datacenter.id === idParam(c));
    if (!l) throw new ApiError(404, "not_found", "datacenter not found");
    return c.json({ datacenter: renderDatacenter(l, catalog) });
  });
  app.get("/v1/pricing", (c) => c.json({ pricing: renderPricing(catalog) }));
}
