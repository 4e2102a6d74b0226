import { ApiError } from "../api-error.js";
import { renderDatacenter, renderImage, renderLocation, renderPricing, renderServerType } from "../render.js";
import { idParam, paginate, selectByLabels } from "../request.js";
import type { Emulator } from "../state.js";
import type { EmulatorApp } from "../app.js";

/** The read-only catalogue: server types, locations, datacenters, images, pricing. */
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
  app.get("/v1/images", (c) => {
    const name = c.req.query("name");
    const arch = c.req.query("architecture");
    const types = c.req.queries("type");
    const images = catalog.images.filter(
      (i) =>
        (name === undefined || i.name === name) &&
        (arch === undefined || i.architecture === arch) &&
        (types === undefined || types.includes("system")),
    );
    const { items, meta } = paginate(c, selectByLabels(c, images.map(renderImage)));
    return c.json({ images: items, meta });
  });
  app.get("/v1/images/:id", (c) => {
    const i = catalog.images.find((x) => x.id === idParam(c));
    if (!i) throw new ApiError(404, "not_found", "image not found");
    return c.json({ image: renderImage(i) });
  });
  app.get("/v1/pricing", (c) => c.json({ pricing: renderPricing(catalog) }));
}
