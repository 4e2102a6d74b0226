import { z } from "zod";

/** What a client reads from a coordinator, checked before use: an answer is external input. */

const num = z.number().finite();
const nullableNum = num.nullable();

const StatusSnapshotSchema = z.object({
  elapsedMs: num,
  total: num,
  done: num,
  running: num,
  queued: num,
  failed: num,
  builders: z.array(
    z.object({
      name: z.string(),
      slots: num,
      state: z.enum(["connecting", "up", "down"]),
      running: z.array(z.object({ slot: num, name: z.string() })),
    }),
  ),
});

/** The dispatcher's events (src/dispatch/run-dispatch.ts's DispatchEvent), as a remote client shows them. */
export const DispatchEventSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("status"), snapshot: StatusSnapshotSchema }),
  z.object({
    kind: z.literal("start"),
    drv: z.string(),
    name: z.string(),
    builder: z.string(),
    attempt: num,
  }),
  z.object({ kind: z.literal("done"), drv: z.string(), name: z.string(), builder: z.string(), ms: num }),
  z.object({
    kind: z.literal("retry"),
    drv: z.string(),
    name: z.string(),
    builder: z.string(),
    reason: z.string(),
  }),
  z.object({ kind: z.literal("builder-down"), builder: z.string(), reason: z.string() }),
  z.object({
    kind: z.literal("log"),
    drv: z.string(),
    name: z.string(),
    builder: z.string(),
    line: z.string(),
  }),
]);

const DerivationRecordSchema = z.object({
  drv: z.string(),
  name: z.string(),
  status: z.enum(["queued", "running", "built", "cached", "failed", "skipped"]),
  builder: z.string().nullable(),
  slot: nullableNum,
  attempts: num,
  retries: z.array(z.object({ builder: z.string(), reason: z.string() })),
  readyMs: nullableNum,
  startedMs: nullableNum,
  finishedMs: nullableNum,
  spans: z.array(
    z.object({
      phase: z.enum(["upload", "build", "download"]),
      builder: z.string(),
      slot: num,
      startMs: num,
      endMs: num,
    }),
  ),
  error: z.string().nullable(),
});

export const BuildReportSchema = z.object({
  records: z.array(DerivationRecordSchema),
  startedAtMs: num,
  wallMs: num,
  builders: z.array(z.object({ name: z.string(), slots: num })),
  stats: z.object({
    evalMs: num,
    connectMs: num,
    pathsUploaded: num,
    pathsDownloaded: num,
    // Absent from coordinators that did not count bytes yet.
    bytesUploaded: num.default(0),
    bytesDownloaded: num.default(0),
    derivationsInClosure: num,
    cpuMs: num,
    maxRssMb: num,
  }),
});

export const BuildDetailSchema = z.looseObject({
  id: z.string(),
  label: z.string(),
  status: z.enum(["queued", "running", "succeeded", "failed", "cancelled"]),
  outputs: z.array(z.string()),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  report: BuildReportSchema.optional(),
});
export type ClientBuildDetail = z.infer<typeof BuildDetailSchema>;

/** An API error's body. */
export const ApiErrorBodySchema = z.object({
  code: z.string(),
  message: z.string(),
  hint: z.string().optional(),
});

/** The events a client follows on its build's stream (others are skipped). */
export const StreamEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("submitted"), id: z.string() }),
  z.object({ type: z.literal("dispatch"), buildId: z.string(), event: DispatchEventSchema }),
  z.object({ type: z.literal("end"), build: BuildDetailSchema.optional() }),
]);
export type StreamEvent = z.infer<typeof StreamEventSchema>;
