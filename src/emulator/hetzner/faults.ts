import { z } from "zod";

/** Faults the emulator injects on demand (POST /_emulator/faults). */
export const faultSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("rate_limit"),
    count: z.int().min(1),
    method: z.string().optional(),
    path: z.string().optional(),
  }),
  z.object({
    kind: z.literal("server_error"),
    count: z.int().min(1),
    status: z.union([z.literal(500), z.literal(502), z.literal(503), z.literal(504)]).default(503),
    method: z.string().optional(),
    path: z.string().optional(),
  }),
  z.object({
    kind: z.literal("conflict"),
    count: z.int().min(1),
    method: z.string().optional(),
    path: z.string().optional(),
  }),
  /** Closes the connection without an answer (before or after handling the request). */
  z.object({
    kind: z.literal("drop"),
    count: z.int().min(1),
    /** Handle the request first, then close without answering (the client never learns it worked). */
    after: z.boolean().default(false),
    method: z.string().optional(),
    path: z.string().optional(),
  }),
  /** Answers after ms milliseconds (for client timeouts). */
  z.object({
    kind: z.literal("delay"),
    count: z.int().min(1),
    ms: z.int().min(0),
    method: z.string().optional(),
    path: z.string().optional(),
  }),
  /** POST /servers fails with resource_limit_exceeded. */
  z.object({ kind: z.literal("resource_limit"), count: z.int().min(1) }),
  /**
   * The next created servers boot slowly (SSH after delayMs), fail (the create action ends
   * in an error) or never become reachable.
   */
  z.object({
    kind: z.literal("boot"),
    mode: z.enum(["slow", "fail", "unreachable"]),
    count: z.int().min(1).default(1),
    delayMs: z.int().min(0).default(5000),
  }),
]);
export type Fault = z.infer<typeof faultSchema>;

/** Faults that hit any matching API request (rather than a server's creation or boot). */
export type RequestFault = Extract<
  Fault,
  { kind: "rate_limit" | "server_error" | "conflict" | "drop" | "delay" }
>;

/** Whether a fault hits requests. */
export function isRequestFault(f: Fault): f is RequestFault {
  return ["rate_limit", "server_error", "conflict", "drop", "delay"].includes(f.kind);
}

/** Whether a request fault applies to a request. */
export function faultMatches(f: RequestFault, method: string, path: string): boolean {
  if (f.method !== undefined && f.method.toUpperCase() !== method.toUpperCase()) return false;
  if (f.path !== undefined && !path.startsWith(f.path)) return false;
  return true;
}
