import { z } from "zod";

// The schemas of the local pool's records (records.ts). A module of their own so that zod loads
// only when there is a record to validate: every command that lists builders reads the records.

export const hostRecordSchema = z.object({
  name: z.string().min(1),
  dir: z.string().min(1),
  slot: z.number().int().nonnegative(),
  netns: z.string().min(1),
  address: z.ipv4(),
  hostAddress: z.ipv4(),
  hostKeyPub: z.string().min(1),
  sshdPid: z.number().int(),
  storeDir: z.string().min(1),
  nixConfPath: z.string().min(1),
  sshdConfigPath: z.string().min(1),
  sshdLogPath: z.string().min(1),
  authorizedKeysPath: z.string().min(1),
});

/** A running builder host, as recorded in DIR/host.json. */
export type HostRecord = z.infer<typeof hostRecordSchema>;

export const poolSchema = z.object({
  jobs: z.number().int().positive(),
  createdAt: z.string(),
  clientKeyPath: z.string().min(1),
  hosts: z.array(hostRecordSchema),
});

/** A running local pool, as recorded in STATE/local/pool.json. */
export type Pool = z.infer<typeof poolSchema>;
