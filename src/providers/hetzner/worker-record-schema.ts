import { z } from "zod";

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
  status: z.enum(["creating", "booting", "ready", "deleting"]),
  readyAt: z.string().nullable(),
});

/** A worker as recorded in STATE/hetzner/workers/LEASE/worker.json: the lease plus what was rented. */
export type WorkerRecord = z.infer<typeof workerRecordSchema>;
