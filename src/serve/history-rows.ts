import { z } from "zod";

/** The history's rows as the store reads them back (history-store.ts validates every one). */

const BUILD_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
const DERIVATION_STATUSES = [
  "queued",
  "running",
  "built",
  "cached",
  "failed",
  "skipped",
  "cancelled",
] as const;
const isoOrNull = z.string().nullable();
export const countsSchema = z.object({
  total: z.number().int().nonnegative(),
  done: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  queued: z.number().int().nonnegative(),
});
export const buildRow = z.object({
  id: z.string().min(1),
  seq: z.number().int(),
  label: z.string(),
  client: z.string(),
  status: z.enum(BUILD_STATUSES),
  submitted_at: z.string(),
  started_at: isoOrNull,
  finished_at: isoOrNull,
  counts: z.string(),
  outputs: z.string(),
  error_code: z.string().nullable(),
  error_message: z.string().nullable(),
});
export const derivationRow = z.object({
  drv: z.string(),
  name: z.string(),
  builder: z.string().nullable(),
  trust: z.string().nullable(),
  status: z.enum(DERIVATION_STATUSES),
  started_at: isoOrNull,
  finished_at: isoOrNull,
  attempts: z.number().int().nonnegative(),
  error: z.string().nullable(),
});
export const recordsRow = z.object({
  started_at_ms: z.number(),
  wall_ms: z.number(),
  builders: z.string(),
  stats: z.string(),
  records: z.string(),
});
export const statsJson = z.object({
  evalMs: z.number(),
  connectMs: z.number(),
  pathsUploaded: z.number(),
  pathsDownloaded: z.number(),
  // Absent in rows written before bytes were counted.
  bytesUploaded: z.number().default(0),
  bytesDownloaded: z.number().default(0),
  derivationsInClosure: z.number(),
  cpuMs: z.number(),
  maxRssMb: z.number(),
});
export const buildersJson = z.array(z.object({ name: z.string(), slots: z.number().int().nonnegative() }));
export const workerRow = z.object({
  name: z.string(),
  server_type: z.string(),
  started_at: z.string(),
  cost: z.number(),
  currency: z.string(),
});

/** The binary cache's read of the records (history-store.ts builtResults). */
export const builtRow = z.object({
  row: z.number().int(),
  finished_at: z.string().nullable(),
  records: z.string(),
});
export const builtRecords = z.array(
  z.looseObject({
    drv: z.string(),
    builds: z
      .array(
        z.looseObject({
          builder: z.string(),
          trust: z.enum(["trusted", "untrusted"]),
          narHashes: z.record(z.string(), z.string()),
        }),
      )
      .optional(),
  }),
);

/** A derivation's successful builds (builder, trust, NAR hash per output), as the dispatcher recorded them. */
export type BuiltDerivation = z.output<typeof builtRecords>[number];

/** The autoscaler's rows (history-store.ts). */
export const decisionRow = z.object({
  at: z.string(),
  action: z.string(),
  worker: z.string().nullable(),
  server_type: z.string().nullable(),
  reason: z.string(),
});
export const autoscaleWorkerRow = z.object({
  rental: z.string(),
  worker: z.string().nullable(),
  server_type: z.string(),
  started_ms: z.number(),
  ended_ms: z.number().nullable(),
  hourly: z.number(),
});
