import type { Catalog, CatalogLocation, CatalogServerType } from "./catalog.js";
import type { ActionRecord, ImageRecord, ServerRecord, SshKeyRecord } from "./state.js";

// The API's JSON shapes, as Hetzner Cloud answers them (and as hcloud-go and the hcloud CLI decode them).

/** A time as the API writes it: seconds, `+00:00`. */
export const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+00:00");
const INCLUDED_TRAFFIC = 21990232555520;

/** A net price and its gross with VAT. */
function renderPrice(v: string, catalog: Catalog) {
  const vat = Number(catalog.vatRate);
  return { net: Number(v).toFixed(4), gross: (Number(v) * (1 + vat / 100)).toFixed(4) };
}

function locationOf(catalog: Catalog, name: string): CatalogLocation {
  const l = catalog.locations.find((x) => x.name === name);
  if (!l) throw new Error(`catalog has no location ${name}`);
  return l;
}

/** A location (also inside a datacenter and a server). */
export function renderLocation(l: CatalogLocation) {
  return {
    id: l.id,
    name: l.name,
    description: l.description,
    country: l.country,
    city: l.city,
    latitude: l.latitude,
    longitude: l.longitude,
    network_zone: l.network_zone,
  };
}

/** A location's datacenter, with the server types offered and available there. */
export function renderDatacenter(l: CatalogLocation, catalog: Catalog) {
  const offered = catalog.serverTypes.filter((t) => t.locations.some((x) => x.name === l.name));
  return {
    id: l.datacenter.id,
    name: l.datacenter.name,
    description: l.datacenter.description,
    location: renderLocation(l),
    server_types: {
      supported: offered.map((t) => t.id),
      available: offered
        .filter((t) => t.locations.some((x) => x.name === l.name && x.available))
        .map((t) => t.id),
      available_for_migration: offered.map((t) => t.id),
    },
  };
}

function renderTypePrices(t: CatalogServerType, catalog: Catalog) {
  return t.locations.map((l) => ({
    location: l.name,
    price_hourly: renderPrice(t.prices?.[l.name]?.hourly ?? t.hourly, catalog),
    price_monthly: renderPrice(t.prices?.[l.name]?.monthly ?? t.monthly, catalog),
    included_traffic: INCLUDED_TRAFFIC,
    price_per_tb_traffic: renderPrice("1.00", catalog),
  }));
}

/** A server type with its prices per location. */
export function renderServerType(t: CatalogServerType, catalog: Catalog) {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    cores: t.cores,
    memory: t.memory,
    disk: t.disk,
    deprecated: t.deprecated,
    prices: renderTypePrices(t, catalog),
    storage_type: "local" as const,
    cpu_type: t.cpu_type,
    category: t.category,
    architecture: t.architecture,
    // Deprecated in the API itself: set (from the locations) only once every location phases the type out.
    deprecation: t.deprecated ? (t.locations[0]?.deprecation ?? null) : null,
    locations: t.locations.map((l) => ({
      id: locationOf(catalog, l.name).id,
      name: l.name,
      deprecation: l.deprecation,
      recommended: l.available && l.deprecation === null,
      available: l.available,
    })),
  };
}

/** An image: a system image of the catalogue, or a snapshot taken by create_image. */
export function renderImage(i: ImageRecord) {
  return {
    id: i.id,
    type: i.type,
    status: i.status,
    name: i.name,
    description: i.description,
    // GB; unknown while a snapshot is being created.
    image_size: i.status === "creating" ? null : i.imageSize,
    disk_size: i.diskSize,
    created: iso(i.created),
    created_from: i.createdFrom,
    bound_to: null,
    os_flavor: i.osFlavor,
    os_version: i.osVersion,
    rapid_deploy: i.type === "system",
    protection: { delete: i.protectDelete },
    deprecated: null,
    deleted: null,
    labels: i.labels,
    architecture: i.architecture,
  };
}

/** GET /pricing's body: every price in the catalogue, net and gross. */
export function renderPricing(catalog: Catalog) {
  const price = (v: string) => renderPrice(v, catalog);
  const ipPrices = catalog.locations.map((l) => ({
    location: l.name,
    price_hourly: price(catalog.primaryIpv4.hourly),
    price_monthly: price(catalog.primaryIpv4.monthly),
  }));
  return {
    currency: "EUR",
    vat_rate: catalog.vatRate,
    primary_ips: [
      { type: "ipv4", prices: ipPrices },
      {
        type: "ipv6",
        prices: ipPrices.map((p) => ({ ...p, price_hourly: price("0"), price_monthly: price("0") })),
      },
    ],
    floating_ips: [
      {
        type: "ipv4",
        prices: catalog.locations.map((l) => ({ location: l.name, price_monthly: price("3.00") })),
      },
    ],
    floating_ip: { price_monthly: price("3.00") },
    image: { price_per_gb_month: price(catalog.imagePerGbMonth) },
    volume: { price_per_gb_month: price("0.0440") },
    server_backup: { percentage: "20.000000" },
    server_types: catalog.serverTypes.map((t) => ({
      id: t.id,
      name: t.name,
      prices: renderTypePrices(t, catalog),
    })),
    load_balancer_types: [],
  };
}

/** An action; a running one reports progress by the time passed against its duration. */
export function renderAction(a: ActionRecord, now: number) {
  const elapsed = now - a.started;
  const progress =
    a.status === "running" ? Math.min(99, Math.floor((elapsed / Math.max(1, a.durationMs)) * 100)) : 100;
  return {
    id: a.id,
    command: a.command,
    status: a.status,
    progress,
    started: iso(a.started),
    finished: a.finished === null ? null : iso(a.finished),
    resources: a.resources,
    error: a.error,
  };
}

/** A server with its type, datacenter, location and image inlined. */
export function renderServer(s: ServerRecord, catalog: Catalog) {
  const l = locationOf(catalog, s.location);
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    created: iso(s.created),
    public_net: {
      ipv4: {
        id: s.ipv4Id,
        ip: s.ipv4,
        blocked: false,
        dns_ptr: `static.${s.ipv4}.clients.your-server.de`,
      },
      ipv6: null,
      floating_ips: [],
      firewalls: [],
    },
    private_net: [],
    server_type: renderServerType(s.type, catalog),
    datacenter: renderDatacenter(l, catalog),
    location: renderLocation(l),
    image: renderImage(s.image),
    iso: null,
    rescue_enabled: false,
    locked: false,
    backup_window: null,
    outgoing_traffic: 0,
    ingoing_traffic: 0,
    included_traffic: INCLUDED_TRAFFIC,
    protection: { delete: false, rebuild: false },
    labels: s.labels,
    volumes: [],
    load_balancers: [],
    primary_disk_size: s.type.disk,
    placement_group: null,
  };
}

/** An SSH key. */
export function renderSshKey(k: SshKeyRecord) {
  return {
    id: k.id,
    name: k.name,
    fingerprint: k.fingerprint,
    public_key: k.public_key,
    labels: k.labels,
    created: iso(k.created),
  };
}
