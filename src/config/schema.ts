import { z } from "zod";
import { BUILDER_NAME_PATTERN, type Builder } from "../core/builder.js";
import { publicKeyProblem } from "../core/public-key.js";

const HOST_PATTERN = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$/;
const USER_PATTERN = /^[a-z_][a-z0-9_.-]{0,31}$/i;
const TOKEN_PATTERN = /^[A-Za-z0-9_.+-]+$/;

const token = (what: string) =>
  z.string().regex(TOKEN_PATTERN, `must be a ${what} (letters, digits, _ . + -)`);

export const builderSchema = z
  .object({
    host: z.string().regex(HOST_PATTERN, "must be a host name or an IP address"),
    port: z
      .number()
      .int("must be an integer")
      .min(1, "must be ≥ 1")
      .max(65535, "must be ≤ 65535")
      .default(22),
    user: z.string().regex(USER_PATTERN, "must be a user name (letters, digits, _ . -)").optional(),
    protocol: z.enum(["ssh", "ssh-ng"], { error: 'must be "ssh" or "ssh-ng"' }).default("ssh"),
    systems: z.array(token("system such as x86_64-linux")).min(1, "must list at least one system").optional(),
    maxJobs: z.number().int("must be an integer").min(1, "must be ≥ 1").default(1),
    speedFactor: z.number().int("must be an integer (Nix 2.8)").min(1, "must be ≥ 1").default(1),
    supportedFeatures: z.array(token("feature name")).default([]),
    mandatoryFeatures: z.array(token("feature name")).default([]),
    hostKey: z
      .string()
      .trim()
      .superRefine((line, ctx) => {
        const why = publicKeyProblem(line);
        if (why)
          ctx.addIssue({
            code: "custom",
            message: `must be one public key line such as 'ssh-ed25519 AAAA…': ${why}`,
          });
      })
      .optional(),
    identityFile: z
      .string()
      .min(1)
      .refine(
        (s) => !/[\s;#]/.test(s),
        "must be a path without spaces, ';' or '#' (the machines file cannot carry them)",
      )
      .optional(),
    tags: z.array(token("tag")).default([]),
    trust: z.enum(["trusted", "untrusted"], { error: 'must be "trusted" or "untrusted"' }).default("trusted"),
  })
  .strict()
  .superRefine((b, ctx) => {
    for (const f of b.mandatoryFeatures) {
      if (!b.supportedFeatures.includes(f)) {
        // Nix treats mandatory features as supported too; say so rather than fail silently.
        ctx.addIssue({
          code: "custom",
          path: ["mandatoryFeatures"],
          message: `"${f}" must also be listed in supportedFeatures`,
        });
      }
    }
  });

export const inventorySchema = z
  .object({
    defaults: z
      .object({ system: token("system").optional() })
      .strict()
      .optional(),
    builders: z
      .record(z.string(), builderSchema)
      .default({})
      .superRefine((rec, ctx) => {
        for (const name of Object.keys(rec)) {
          if (!BUILDER_NAME_PATTERN.test(name)) {
            ctx.addIssue({
              code: "custom",
              path: [name],
              message: "builder name must start with a letter or digit and hold only letters, digits, _ . -",
            });
          }
        }
      }),
  })
  .strict();

export type InventoryInput = z.input<typeof inventorySchema>;
export type InventoryFile = z.output<typeof inventorySchema>;

/** Turns a validated inventory file into normalised builders. */
export function normaliseBuilders(file: InventoryFile, localSystem: string): Builder[] {
  const system = file.defaults?.system ?? localSystem;
  return Object.entries(file.builders).map(([name, b]) => ({
    name,
    host: b.host,
    port: b.port,
    user: b.user,
    protocol: b.protocol,
    systems: b.systems ?? [system],
    maxJobs: b.maxJobs,
    speedFactor: b.speedFactor,
    supportedFeatures: b.supportedFeatures,
    mandatoryFeatures: b.mandatoryFeatures,
    hostKey: b.hostKey,
    identityFile: b.identityFile,
    tags: b.tags,
    trust: b.trust,
    source: "inventory" as const,
  }));
}
