import { z } from "zod";

/** The steps of `worker suspend`, in order (suspend.ts); the record says which one runs next. */
export const SUSPEND_STEPS = ["roots", "gc", "shutdown", "image", "delete"] as const;
export type SuspendStep = (typeof SUSPEND_STEPS)[number];

// The schema of a worker's record (records.ts). A module of its own so that zod loads only when
// there is a record to validate: every command that lists builders reads the records.

const rateSchema = z.object({
  hourly: z.object({ net: z.number(), gross: z.number() }),
  monthly: z.object({ net: z.number(), gross: z.number() }),
});

export const workerRecordSchema = z.object({
  version: z.literal(1),
  lease: z.object({
    id: z.string().regex(/^[0-9a-f]{10}$/),
    name: z.string(),
    serverName: z.string(),
    owner: z.string(),
    provider: z.literal("hetzner"),
    createdAt: z.string(),
    expiresAt: z.string(),
    holder: z.union([
      z.object({ kind: z.literal("process"), pid: z.number(), host: z.string() }),
      z.object({ kind: z.literal("user") }),
    ]),
  }),
  endpoint: z.string(),
  type: z.string(),
  location: z.string(),
  image: z.string(),
  cores: z.number(),
  memory: z.number(),
  system: z.string(),
  prices: z.object({
    source: z.enum(["api", "fallback"]),
    date: z.string(),
    currency: z.string(),
    server: rateSchema,
    ipv4: rateSchema.nullable(),
  }),
  serverId: z.number().nullable(),
  serverCreatedAt: z.string().nullable(),
  ipv4: z.ipv4().nullable(),
  sshKeyId: z.number().nullable(),
  hostKeyPub: z.string(),
  loginKeyPath: z.string(),
  status: z.enum(["creating", "booting", "ready", "suspending", "deleting"]),
  readyAt: z.string().nullable(),
  /** The worker's system (a store path on it), once given; absent in records of older versions. */
  systemPath: z.string().nullable().optional(),
  /** The snapshot it was woken from. */
  fromSnapshot: z.number().nullable().optional(),
  /** A suspend under way: the step to run next, and the snapshot once create_image was asked for. */
  suspend: z
    .object({
      step: z.enum(SUSPEND_STEPS),
      imageId: z.number().nullable(),
      startedAt: z.string(),
    })
    .optional(),
});

/** A worker as recorded in STATE/hetzner/workers/LEASE/worker.json: the lease plus what was rented. */
export type WorkerRecord = z.infer<typeof workerRecordSchema>;
