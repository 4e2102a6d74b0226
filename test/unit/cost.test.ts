import { test } from "node:test";
import assert from "node:assert/strict";
import {
  billedHours,
  chooseServerType,
  FALLBACK_PRICES,
  formatCostShort,
  formatWorkerCost,
  pricesFromApi,
  workerCost,
  type TypeOffer,
} from "../../src/core/cost.js";

const H = 3_600_000;

test("every started hour is billed, at least one", () => {
  assert.equal(billedHours(0, 0), 1);
  assert.equal(billedHours(0, 1), 1);
  assert.equal(billedHours(0, H), 1);
  assert.equal(billedHours(0, H + 1), 2);
  assert.equal(billedHours(0, 10 * H - 1), 10);
});

test("the charge is capped at the monthly price, and the primary IPv4 is added", () => {
  const short = workerCost(FALLBACK_PRICES, "cx23", "fsn1", 0, 5 * 60_000);
  assert.equal(short.hours, 1);
  assert.equal(short.server.net, 0.006);
  assert.equal(short.ipv4.net, 0.0008);
  assert.equal(short.total.net, 0.0068);
  assert.equal(short.total.gross, 0.008092);
  const twoHours = workerCost(FALLBACK_PRICES, "cx23", "fsn1", 0, 61 * 60_000);
  assert.equal(twoHours.total.net, 0.0136);
  const month = workerCost(FALLBACK_PRICES, "cx23", "fsn1", 0, 40 * 24 * H);
  assert.equal(month.server.net, 3.79);
  assert.equal(month.ipv4.net, 0.5);
  assert.equal(month.total.net, 4.29);
  const unknown = workerCost(FALLBACK_PRICES, "cx23", "sin", 0, H);
  assert.equal(unknown.known, false);
  assert.match(formatWorkerCost(unknown, "cx23", "sin"), /unknown/);
});

test("the cost line names hours, type, location and where the prices come from", () => {
  assert.equal(
    formatWorkerCost(workerCost(FALLBACK_PRICES, "cx23", "fsn1", 0, 60_000), "cx23", "fsn1"),
    "cost: €0.0068 net, €0.0081 gross (1 started hour of cx23 in fsn1 incl. primary IPv4; bundled prices of 2026-12-01, the API's were unavailable)",
  );
  assert.match(FALLBACK_PRICES.date, /^\d{4}-\d{2}-\d{2}$/);
  assert.equal(
    formatCostShort(workerCost(FALLBACK_PRICES, "cx23", "fsn1", 0, 61 * 60_000)),
    "€0.0136 net (2 h)",
  );
  assert.equal(formatCostShort(workerCost(FALLBACK_PRICES, "cx23", "sin", 0, 1)), "unknown (1 h)");
});

test("API prices replace the table", () => {
  const m = (net: string, gross: string) => ({ net, gross });
  const t = pricesFromApi(
    {
      currency: "EUR",
      vat_rate: "19.000000",
      primary_ips: [
        {
          type: "ipv4",
          prices: [
            { location: "fsn1", price_hourly: m("0.0010", "0.0012"), price_monthly: m("0.60", "0.71") },
          ],
        },
        {
          type: "ipv6",
          prices: [{ location: "fsn1", price_hourly: m("0", "0"), price_monthly: m("0", "0") }],
        },
      ],
      server_types: [
        {
          name: "cx23",
          prices: [
            { location: "fsn1", price_hourly: m("0.0070", "0.0083"), price_monthly: m("4.00", "4.76") },
          ],
        },
      ],
    },
    "2026-11-27",
  );
  const c = workerCost(t, "cx23", "fsn1", 0, 3 * H);
  assert.equal(c.source, "api");
  assert.equal(c.total.net, 0.024);
  assert.equal(c.total.gross, 0.0285);
  assert.match(formatWorkerCost(c, "cx23", "fsn1"), /API prices of 2026-11-27/);
});

const offer = (name: string, cores: number, memory: number, extra: Partial<TypeOffer> = {}): TypeOffer => ({
  name,
  cores,
  memory,
  architecture: "x86",
  deprecated: false,
  locations: ["fsn1", "nbg1", "hel1", "ash"].map((l) => ({ name: l, available: true })),
  ...extra,
});

test("--type auto picks the cheapest available, non-deprecated type that fits, in the location", () => {
  const types = [
    offer("cx23old", 1, 2, { deprecated: true }),
    offer("cx23", 2, 4),
    offer("cx33", 4, 8, {
      locations: [
        { name: "hel1", available: false },
        { name: "fsn1", available: true },
      ],
    }),
    offer("cpx32", 4, 8),
    offer("cax11", 2, 4, { architecture: "arm" }),
    offer("ccx23", 4, 16),
  ];
  const req = { minCores: 2, minMemory: 2, architecture: "x86" as const };
  assert.equal(chooseServerType(types, "fsn1", req, FALLBACK_PRICES)?.type.name, "cx23");
  const four = { ...req, minCores: 4 };
  assert.equal(chooseServerType(types, "fsn1", four, FALLBACK_PRICES)?.type.name, "cx33");
  const hel = chooseServerType(types, "hel1", four, FALLBACK_PRICES);
  assert.equal(hel?.type.name, "cpx32");
  assert.deepEqual(hel?.alternatives, [{ name: "ccx23", hourly: 0.0392 }]);
  // cx23 is not sold in Ashburn; the fallback table has no cx23 price there either.
  assert.equal(chooseServerType(types, "ash", req, FALLBACK_PRICES)?.type.name, "cpx32");
  assert.equal(chooseServerType(types, "fsn1", { ...req, minMemory: 64 }, FALLBACK_PRICES), undefined);
  assert.equal(
    chooseServerType(types, "fsn1", { ...req, architecture: "arm" }, FALLBACK_PRICES)?.type.name,
    "cax11",
  );
  assert.equal(
    chooseServerType(
      [offer("x", 2, 4, { deprecation: { announced: "2026-01-01" } })],
      "fsn1",
      req,
      FALLBACK_PRICES,
    ),
    undefined,
  );
  const phasedOut = offer("cx23", 2, 4, {
    locations: [{ name: "fsn1", available: true, deprecation: { announced: "2026-01-01" } }],
  });
  assert.equal(
    chooseServerType([phasedOut, offer("cpx12", 2, 2)], "fsn1", req, FALLBACK_PRICES)?.type.name,
    "cpx12",
  );
});
