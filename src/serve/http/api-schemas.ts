import { z } from "zod";
import type { BuildStatus, SubmitRequest } from "../coordinator-types.js";
import { GivenDerivationSchema } from "../given-derivation.js";

// eslint-disable-next-line no-control-regex
const PRINTABLE = /^[^\x00-\x1f\x7f]*$/;
const NAME = /^[A-Za-z0-9._+-]{1,128}$/;
const CLIENT_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** A build id as the coordinator makes them: short and URL-safe. */
export const BuildIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "is not a build id");

/** A derivation's file name in the store, as in a log's URL: HASH-NAME.drv. */
export const DrvBaseSchema = z
  .string()
  .regex(/^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]{1,211}\.drv$/, "is not a derivation (HASH-NAME.drv)");

/** POST /api/builds: exactly what src/serve/coordinator-types.ts's SubmitRequest allows, nothing more. */
export const SubmitRequestSchema = z.strictObject({
  derivations: z
    .array(
      z.strictObject({
        drv: z
          .string()
          .regex(
            /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]{1,211}\.drv$/,
            "is not a store derivation",
          ),
        output: z.string().regex(/^[A-Za-z0-9+._?=-]{1,64}$/, "is not an output name"),
        given: GivenDerivationSchema.optional(),
      }),
    )
    .min(1)
    .max(10_000),
  label: z.string().min(1).max(500).regex(PRINTABLE, "has control characters"),
  keepGoing: z.boolean().optional(),
  copyBack: z.enum(["needed", "all", "none"]).optional(),
  builders: z.array(z.string().regex(NAME, "is not a builder name")).max(1000).optional(),
  tags: z.array(z.string().regex(NAME, "is not a tag")).max(100).optional(),
  onBehalfOf: z.string().regex(CLIENT_NAME, "is not a client name").optional(),
});

/** The parsed body as the coordinator takes it (JSON has no undefined: absent fields stay absent). */
export function toSubmitRequest(body: z.infer<typeof SubmitRequestSchema>): SubmitRequest {
  const { keepGoing, copyBack, builders, tags, onBehalfOf, derivations, ...rest } = body;
  return {
    ...rest,
    derivations: derivations.map(({ given, ...d }) => ({ ...d, ...(given !== undefined ? { given } : {}) })),
    ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
    ...(keepGoing !== undefined ? { keepGoing } : {}),
    ...(copyBack !== undefined ? { copyBack } : {}),
    ...(builders !== undefined ? { builders } : {}),
    ...(tags !== undefined ? { tags } : {}),
  };
}

const STATUSES = [
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
] as const satisfies readonly BuildStatus[];

/** GET /api/builds?limit=N&status=S */
export const BuildsQuerySchema = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,6}$/, "is not a whole number")
    .transform(Number)
    .pipe(z.number().int().min(1).max(100_000))
    .optional(),
  status: z.enum(STATUSES).optional(),
  client: z
    .string()
    .regex(/^[A-Za-z0-9._:$-]{1,64}$/, "is not a client name")
    .optional(),
});

/** One line per problem: where (a.b[0].c) and what. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "body"}: ${i.message}`)
    .join("; ");
}
