import { z } from "zod";
import { BUILDER_NAME_PATTERN, type Builder } from "../core/builder.js";
import { publicKeyProblem } from "../core/public-key.js";
import { DEFAULT_PROFILE, type DeployTarget } from "../core/deploy/target.js";
import { parseDuration } from "../core/duration.js";
import { autoscaleSchema } from "./autoscale-schema.js";

const HOST_PATTERN = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$/;
const USER_PATTERN = /^[a-z_][a-z0-9_.-]{0,31}$/i;
const TOKEN_PATTERN = /^[A-Za-z0-9_.+-]+$/;

const token = (what: string) =>
  z.string().regex(TOKEN_PATTERN, `must be a ${what} (letters, digits, _ . + -)`);

const hostField = z.string().regex(HOST_PATTERN, "must be a host name or an IP address");
const portField = z
  .number()
  .int("must be an integer")
  .min(1, "must be ≥ 1")
  .max(65535, "must be ≤ 65535")
  .default(22);
const userField = z.string().regex(USER_PATTERN, "must be a user name (letters, digits, _ . -)");
const hostKeyField = z
  .string()
  .trim()
  .superRefine((line, ctx) => {
    const why = publicKeyProblem(line);
    if (why)
      ctx.addIssue({
        code: "custom",
        message: `must be one public key line such as 'ssh-ed25519 AAAA…': ${why}`,
      });
  });
const identityFileField = z
  .string()
  .min(1)
  .refine(
    (s) => !/[\s;#]/.test(s),
    "must be a path without spaces, ';' or '#' (the machines file cannot carry them)",
  );
// A profile path reaches the target's shell-less argv only, but keep it to plain path characters.
const PROFILE_PATTERN = /^\/(?:[A-Za-z0-9_.+-]+\/)*[A-Za-z0-9_.+-]+$/;

export const builderSchema = z
  .object({
    host: hostField,
    port: portField,
    user: userField.optional(),
    protocol: z.enum(["ssh", "ssh-ng"], { error: 'must be "ssh" or "ssh-ng"' }).default("ssh"),
    systems: z.array(token("system such as x86_64-linux")).min(1, "must list at least one system").optional(),
    maxJobs: z.number().int("must be an integer").min(1, "must be ≥ 1").default(1),
    speedFactor: z.number().int("must be an integer (Nix 2.8)").min(1, "must be ≥ 1").default(1),
    supportedFeatures: z.array(token("feature name")).default([]),
    mandatoryFeatures: z.array(token("feature name")).default([]),
    hostKey: hostKeyField.optional(),
    identityFile: identityFileField.optional(),
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

/** A `[targets.NAME]` entry: a machine nixpool deploys to (docs/configuration.md#targets). */
export const targetSchema = z
  .object({
    host: hostField,
    port: portField,
    user: userField.optional(),
    // Required: a target is never reached by trusting a key on first use.
    hostKey: z
      .string({
        error: (i) =>
          i.input === undefined
            ? "is required: the target's public host key line, e.g. from its /etc/ssh/ssh_host_ed25519_key.pub"
            : "must be a string",
      })
      .pipe(hostKeyField),
    identityFile: identityFileField.optional(),
    sudo: z.boolean({ error: "must be true or false" }).default(false),
    profile: z
      .string()
      .regex(
        PROFILE_PATTERN,
        "must be an absolute path of letters, digits, _ . + - (no spaces, no trailing /)",
      )
      .refine((p) => !p.split("/").includes(".."), "must not contain ..")
      .default(DEFAULT_PROFILE),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.sudo && t.user === "root") {
      ctx.addIssue({
        code: "custom",
        path: ["sudo"],
        message: "must be false for user root (root needs no sudo)",
      });
    }
  });

const namedRecord = <T extends z.ZodType>(schema: T, what: string) =>
  z
    .record(z.string(), schema)
    .default({})
    .superRefine((rec, ctx) => {
      for (const name of Object.keys(rec)) {
        if (!BUILDER_NAME_PATTERN.test(name)) {
          ctx.addIssue({
            code: "custom",
            path: [name],
            message: `${what} name must start with a letter or digit and hold only letters, digits, _ . -`,
          });
        }
      }
    });

/** Derivation name globs: letters, digits and the characters Nix allows in names, plus * and ?. */
const NAME_GLOB = /^[A-Za-z0-9+\-._?=*]+$/;

/** `[policy]`: where derivations may go and what untrusted builders' results are worth (docs/trust.md). */
export const policySchema = z
  .object({
    trustedOnly: z
      .array(
        z
          .string()
          .regex(
            NAME_GLOB,
            "must be a derivation name glob (letters, digits, + - . _ ? = and * for any run)",
          ),
      )
      .default([]),
    untrustedResults: z
      .enum(["accept", "verify", "refuse"], { error: 'must be "accept", "verify" or "refuse"' })
      .default("accept"),
  })
  .strict();

export type InventoryPolicy = z.output<typeof policySchema>;

/**
 * `[coordinator]`: `database`, the history of nixpool serve: a postgresql:// URL (several
 * coordinators share one pool through it; docs/coordinator.md). SQLite under the state directory
 * when absent. Checked further (and its password kept out of logs) by core/database-url.ts.
 */
export const coordinatorSchema = z
  .object({
    database: z
      .string()
      .regex(
        /^postgres(ql)?:\/\/\S+$/,
        'must be a PostgreSQL URL such as "postgresql://nixpool@db.example/nixpool"',
      )
      .optional(),
  })
  .strict();

/** `[hetzner]`: snapshots of suspended workers (docs/hetzner.md#snapshots). */
export const hetznerSchema = z
  .object({
    keepSnapshots: z
      .number()
      .int("must be an integer")
      .min(0, "must be ≥ 0")
      .max(100, "must be ≤ 100")
      .optional(),
    snapshotTtl: z
      .string()
      .transform((t, ctx) => {
        const ms = parseDuration(t);
        if (ms === undefined || ms < 3_600_000) {
          ctx.addIssue({ code: "custom", message: 'must be a duration of an hour or more, e.g. "30d"' });
          return z.NEVER;
        }
        return ms;
      })
      .optional(),
  })
  .strict();

export const inventorySchema = z
  .object({
    defaults: z
      .object({ system: token("system").optional() })
      .strict()
      .optional(),
    policy: policySchema.optional(),
    coordinator: coordinatorSchema.optional(),
    hetzner: hetznerSchema.optional(),
    builders: namedRecord(builderSchema, "builder"),
    targets: namedRecord(targetSchema, "target"),
    /** `[autoscale.hetzner]`: workers rented and deleted by the coordinator (docs/autoscale.md). */
    autoscale: autoscaleSchema.optional(),
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

/** Turns a validated inventory file's `[targets.NAME]` entries into deploy targets. */
export function normaliseTargets(file: InventoryFile): DeployTarget[] {
  return Object.entries(file.targets).map(([name, t]) => ({
    name,
    host: t.host,
    port: t.port,
    user: t.user,
    hostKey: t.hostKey,
    identityFile: t.identityFile,
    sudo: t.sudo,
    profile: t.profile,
    source: "inventory" as const,
  }));
}
