/**
 * What a rented Hetzner Cloud server costs: billed per started hour, capped at the monthly
 * price, plus its primary IPv4. Prices come from the API, else from a bundled dated table.
 */

/** An amount in the table's currency, without and with VAT. */
export interface Money {
  net: number;
  gross: number;
}

export interface Rate {
  hourly: Money;
  monthly: Money;
}

export interface PriceTable {
  source: "api" | "fallback";
  /** The day the prices were true: the fallback table's date, or when the API was asked. */
  date: string;
  currency: string;
  vatPercent: number;
  /** serverTypes[type][location] */
  serverTypes: Record<string, Record<string, Rate>>;
  /** primaryIpv4[location] */
  primaryIpv4: Record<string, Rate>;
  /** Snapshots: per GB of image_size and month. */
  imagePerGbMonth?: Money;
}

const rate = (hourly: number, monthly: number, vat: number): Rate => ({
  hourly: { net: hourly, gross: round(hourly * (1 + vat / 100)) },
  monthly: { net: monthly, gross: round(monthly * (1 + vat / 100)) },
});

function round(n: number, digits = 6): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

const FALLBACK_DATE = "2026-12-01";
const FALLBACK_VAT = 19;
const EU = ["fsn1", "nbg1", "hel1"];
const ALL = ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];
/** Outside the EU (Ashburn, Hillsboro, Singapore) the cpx and ccx types cost about a fifth more. */
const ABROAD = ["ash", "hil", "sin"];
/** type → [hourly net, monthly net, locations] (EUR, Hetzner's public price list; the current line). */
const FALLBACK_ROWS: Record<string, [number, number, string[]]> = {
  cx23: [0.006, 3.79, EU],
  cx33: [0.0109, 6.8, EU],
  cx43: [0.0263, 16.4, EU],
  cx53: [0.0519, 32.4, EU],
  cpx12: [0.007, 4.35, ALL],
  cpx22: [0.0121, 7.55, ALL],
  cpx32: [0.0218, 13.6, ALL],
  cpx42: [0.0403, 25.2, ALL],
  cpx52: [0.0586, 36.49, ALL],
  cpx62: [0.0879, 54.9, ALL],
  cax11: [0.006, 3.79, EU],
  cax21: [0.0104, 6.49, EU],
  cax31: [0.0208, 12.99, EU],
  cax41: [0.0408, 25.49, EU],
  ccx13: [0.02, 12.49, ALL],
  ccx23: [0.0392, 24.49, ALL],
  ccx33: [0.0777, 48.49, ALL],
};

/** The bundled price table, used when the API's /pricing cannot be read. */
export const FALLBACK_PRICES: PriceTable = {
  source: "fallback",
  date: FALLBACK_DATE,
  currency: "EUR",
  vatPercent: FALLBACK_VAT,
  serverTypes: Object.fromEntries(
    Object.entries(FALLBACK_ROWS).map(([type, [h, m, locs]]) => [
      type,
      Object.fromEntries(
        locs.map((l) => {
          const f = ABROAD.includes(l) ? 1.2 : 1;
          return [l, rate(round(h * f, 4), round(m * f, 4), FALLBACK_VAT)];
        }),
      ),
    ]),
  ),
  primaryIpv4: Object.fromEntries(ALL.map((l) => [l, rate(0.0008, 0.5, FALLBACK_VAT)])),
  imagePerGbMonth: { net: 0.011, gross: round(0.011 * (1 + FALLBACK_VAT / 100)) },
};

/** The API's /pricing answer, reduced to what the cost model needs. */
export interface ApiPricing {
  currency: string;
  vat_rate: string;
  primary_ips: {
    type: string;
    prices: { location: string; price_hourly: ApiMoney; price_monthly: ApiMoney }[];
  }[];
  server_types: {
    name: string;
    prices: { location: string; price_hourly: ApiMoney; price_monthly: ApiMoney }[];
  }[];
  image?: { price_per_gb_month: ApiMoney };
}
interface ApiMoney {
  net: string;
  gross: string;
}

const money = (m: ApiMoney): Money => ({ net: Number(m.net), gross: Number(m.gross) });

/** Converts the API's /pricing answer into a price table dated `date` (YYYY-MM-DD). */
export function pricesFromApi(p: ApiPricing, date: string): PriceTable {
  const ipv4 = p.primary_ips.find((x) => x.type === "ipv4");
  return {
    source: "api",
    date,
    currency: p.currency,
    vatPercent: Number(p.vat_rate),
    serverTypes: Object.fromEntries(
      p.server_types.map((t) => [
        t.name,
        Object.fromEntries(
          t.prices.map((x) => [
            x.location,
            { hourly: money(x.price_hourly), monthly: money(x.price_monthly) },
          ]),
        ),
      ]),
    ),
    primaryIpv4: Object.fromEntries(
      (ipv4?.prices ?? []).map((x) => [
        x.location,
        { hourly: money(x.price_hourly), monthly: money(x.price_monthly) },
      ]),
    ),
    ...(p.image ? { imagePerGbMonth: money(p.image.price_per_gb_month) } : {}),
  };
}

/** Hours in a billing month, for prorating a per-month price (snapshots). */
export const HOURS_PER_MONTH = 730;

/**
 * What a snapshot of `gb` GB costs: per GB and month, prorated per started hour, capped at
 * a month's price for each month begun.
 */
export function snapshotCost(
  perGbMonth: Money,
  gb: number,
  startMs: number,
  endMs: number,
): Money & { monthly: Money } {
  const hours = billedHours(startMs, endMs);
  const monthly = { net: round(perGbMonth.net * gb), gross: round(perGbMonth.gross * gb) };
  const months = Math.ceil(hours / HOURS_PER_MONTH);
  const f = (m: number) => round(Math.min((m * hours) / HOURS_PER_MONTH, m * months));
  return { net: f(monthly.net), gross: f(monthly.gross), monthly };
}

/** Hours billed for a server that existed from start to end: every started hour, at least one. */
export function billedHours(startMs: number, endMs: number): number {
  return Math.max(1, Math.ceil((endMs - startMs) / 3_600_000));
}

/** Hourly rate × started hours, capped at the monthly price. */
export function chargeFor(r: Rate, hours: number): Money {
  return {
    net: round(Math.min(r.hourly.net * hours, r.monthly.net)),
    gross: round(Math.min(r.hourly.gross * hours, r.monthly.gross)),
  };
}

export interface WorkerCost {
  hours: number;
  server: Money;
  ipv4: Money;
  total: Money;
  currency: string;
  source: PriceTable["source"];
  date: string;
  /** False when the table has no price for the type in that location (cost shown as unknown). */
  known: boolean;
}

/** The cost of one worker of TYPE in LOCATION between start and end (end: now for a running one). */
export function workerCost(
  table: PriceTable,
  type: string,
  location: string,
  startMs: number,
  endMs: number,
): WorkerCost {
  const hours = billedHours(startMs, endMs);
  const typeRate = table.serverTypes[type]?.[location];
  const ipRate = table.primaryIpv4[location];
  const server = typeRate ? chargeFor(typeRate, hours) : { net: 0, gross: 0 };
  const ipv4 = ipRate ? chargeFor(ipRate, hours) : { net: 0, gross: 0 };
  return {
    hours,
    server,
    ipv4,
    total: { net: round(server.net + ipv4.net), gross: round(server.gross + ipv4.gross) },
    currency: table.currency,
    source: table.source,
    date: table.date,
    known: typeRate !== undefined,
  };
}

/** Formats an amount: "€0.0068" (4 decimals: hourly prices are fractions of a cent). */
export function formatMoney(amount: number, currency: string): string {
  const symbol = currency === "EUR" ? "€" : currency === "USD" ? "$" : `${currency} `;
  return `${symbol}${amount.toFixed(4)}`;
}

/** One line: "cost: €0.0068 net, €0.0081 gross (1 started hour of cx22 in fsn1 incl. primary IPv4; API prices of 2026-11-27)". */
export function formatWorkerCost(c: WorkerCost, type: string, location: string): string {
  if (!c.known) {
    return `cost: unknown (no price for ${type} in ${location}; ${c.hours} started hour${c.hours === 1 ? "" : "s"})`;
  }
  const prices =
    c.source === "api"
      ? `API prices of ${c.date}`
      : `bundled prices of ${c.date}, the API's were unavailable`;
  return (
    `cost: ${formatMoney(c.total.net, c.currency)} net, ${formatMoney(c.total.gross, c.currency)} gross ` +
    `(${c.hours} started hour${c.hours === 1 ? "" : "s"} of ${type} in ${location} incl. primary IPv4; ${prices})`
  );
}

/** Short form for tables and logs: "€0.0068 net (1 h)"; "unknown (1 h)" without a price. */
export function formatCostShort(c: WorkerCost): string {
  const amount = c.known ? `${formatMoney(c.total.net, c.currency)} net` : "unknown";
  return `${amount} (${c.hours} h)`;
}

/** What a server type must offer. */
export interface TypeRequirements {
  minCores: number;
  /** GB */
  minMemory: number;
  architecture: "x86" | "arm";
  /** GB of disk at least (a snapshot's disk_size: a smaller disk cannot boot it). */
  minDisk?: number;
}

/** A server type as the choice needs it (a subset of the API's server type). */
export interface TypeOffer {
  name: string;
  cores: number;
  memory: number;
  /** GB */
  disk?: number;
  architecture: string;
  deprecated: boolean;
  deprecation?: unknown;
  /** Where it is offered; a location entry with a deprecation is being phased out there. */
  locations: { name: string; available: boolean; deprecation?: unknown }[];
}

export interface TypeChoice<T extends TypeOffer = TypeOffer> {
  type: T;
  hourly: Money;
  /** The other fitting types, cheapest first (for --json and messages). */
  alternatives: { name: string; hourly: number }[];
}

/**
 * `--type auto`: the cheapest non-deprecated type that is available in the location and meets
 * the requirements (ties: more cores, then name). Undefined when nothing fits.
 */
export function chooseServerType<T extends TypeOffer>(
  types: readonly T[],
  location: string,
  req: TypeRequirements,
  prices: PriceTable,
): TypeChoice<T> | undefined {
  const fitting = types
    .filter((t) => !t.deprecated && (t.deprecation === undefined || t.deprecation === null))
    .filter((t) => t.architecture === req.architecture)
    .filter((t) => t.cores >= req.minCores && t.memory >= req.minMemory)
    .filter((t) => req.minDisk === undefined || (t.disk ?? 0) >= req.minDisk)
    .filter((t) => t.locations.some((l) => l.name === location && l.available && !l.deprecation))
    .flatMap((t) => {
      const r = prices.serverTypes[t.name]?.[location];
      return r ? [{ type: t, hourly: r.hourly }] : [];
    })
    .sort(
      (a, b) =>
        a.hourly.net - b.hourly.net || b.type.cores - a.type.cores || a.type.name.localeCompare(b.type.name),
    );
  const [best, ...rest] = fitting;
  if (!best) return undefined;
  return { ...best, alternatives: rest.map((x) => ({ name: x.type.name, hourly: x.hourly.net })) };
}
