import { z } from "zod";
import { AUTOSCALE_DEFAULTS, type AutoscaleConfig } from "../core/autoscale/config.js";
import { parseDuration } from "../core/duration.js";

// `[autoscale.hetzner]` in the inventory (docs/autoscale.md): validated here, each error naming
// its key (autoscale.hetzner.budget.day: must be ≥ 0).

const count = (min: number) =>
  z.number({ error: "must be a number" }).int("must be an integer").min(min, `must be ≥ ${min}`);

const duration = (fallbackMs: number, minMs = 0) =>
  z
    .string({ error: "must be a duration such as 30s, 10m or 1h" })
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: `"${text}" is not a duration such as 30s, 10m or 1h` });
        return z.NEVER;
      }
      if (ms < minMs) {
        ctx.addIssue({ code: "custom", message: `must be at least ${minMs / 1000}s` });
        return z.NEVER;
      }
      return ms;
    })
    .optional()
    .transform((ms) => ms ?? fallbackMs);

const euros = z.number({ error: "must be an amount in EUR, e.g. 5.0" }).min(0, "must be ≥ 0");
const TYPE_NAME = /^[a-z0-9-]{1,32}$/;

export const autoscaleHetznerSchema = z
  .object({
    minWorkers: count(0).default(AUTOSCALE_DEFAULTS.minWorkers),
    maxWorkers: count(1).max(100, "must be ≤ 100"),
    serverTypes: z
      .union(
        [
          z.literal("auto"),
          z
            .array(z.string().regex(TYPE_NAME, "must be a server type name such as cx33"))
            .min(1, 'must list at least one server type, or be "auto"'),
        ],
        { error: 'must be "auto" or a list of server types such as ["cx33", "cax21"]' },
      )
      .default(AUTOSCALE_DEFAULTS.serverTypes),
    location: z
      .string()
      .regex(/^[a-z0-9-]{2,20}$/, "must be a location name such as fsn1")
      .default(AUTOSCALE_DEFAULTS.location),
    image: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be an image name such as debian-12")
      .default(AUTOSCALE_DEFAULTS.image),
    minCores: count(1).default(AUTOSCALE_DEFAULTS.minCores),
    minMemory: z
      .number({ error: "must be a number (GB)" })
      .positive("must be > 0")
      .default(AUTOSCALE_DEFAULTS.minMemory),
    derivationsPerWorker: count(1).default(AUTOSCALE_DEFAULTS.derivationsPerWorker),
    scaleUpAfter: duration(AUTOSCALE_DEFAULTS.scaleUpAfterMs),
    minLifetime: duration(AUTOSCALE_DEFAULTS.minLifetimeMs),
    // Time for the deletion to go through before the next billed hour begins.
    releaseMargin: duration(AUTOSCALE_DEFAULTS.releaseMarginMs, 30_000),
    interval: duration(AUTOSCALE_DEFAULTS.intervalMs, 100),
    bootTimeout: duration(AUTOSCALE_DEFAULTS.bootTimeoutMs, 1000),
    fromSnapshot: z
      .enum(["latest", "none"], { error: 'must be "latest" or "none"' })
      .default(AUTOSCALE_DEFAULTS.fromSnapshot),
    suspendIdle: z.boolean({ error: "must be true or false" }).default(AUTOSCALE_DEFAULTS.suspendIdle),
    budget: z
      .object({ hour: euros.optional(), day: euros.optional(), month: euros.optional() })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.minWorkers > a.maxWorkers) {
      ctx.addIssue({
        code: "custom",
        path: ["minWorkers"],
        message: `must be ≤ maxWorkers (${a.maxWorkers})`,
      });
    }
    if (a.releaseMargin >= 3_600_000) {
      ctx.addIssue({
        code: "custom",
        path: ["releaseMargin"],
        message: "must be shorter than 1h (a billed hour)",
      });
    }
  });

export const autoscaleSchema = z.object({ hetzner: autoscaleHetznerSchema.optional() }).strict();

/** The validated table as the autoscaler takes it. */
export function toAutoscaleConfig(a: z.output<typeof autoscaleHetznerSchema>): AutoscaleConfig {
  return {
    minWorkers: a.minWorkers,
    maxWorkers: a.maxWorkers,
    serverTypes: a.serverTypes,
    location: a.location,
    image: a.image,
    minCores: a.minCores,
    minMemory: a.minMemory,
    derivationsPerWorker: a.derivationsPerWorker,
    scaleUpAfterMs: a.scaleUpAfter,
    minLifetimeMs: a.minLifetime,
    releaseMarginMs: a.releaseMargin,
    intervalMs: a.interval,
    bootTimeoutMs: a.bootTimeout,
    fromSnapshot: a.fromSnapshot,
    suspendIdle: a.suspendIdle,
    budget: {
      ...(a.budget.hour !== undefined ? { hour: a.budget.hour } : {}),
      ...(a.budget.day !== undefined ? { day: a.budget.day } : {}),
      ...(a.budget.month !== undefined ? { month: a.budget.month } : {}),
    },
  };
}
