import type { Derivation } from "../core/derivation.js";
import { ExitCode, NixpoolError, configError } from "../core/errors.js";
import type { ClientIdentity, SubmitRequest } from "./coordinator-types.js";
import { z } from "zod";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { fromGivenJson, GivenDerivationSchema } from "./given-derivation.js";

const STORE_DRV = /^\/nix\/store\/[0-9a-z]{32}-[^/]+\.drv$/;
/** What Coordinator.submit takes, checked again whoever calls it (the API checks its own body first). */
export const submitSchema = z.strictObject({
  derivations: z
    .array(
      z.strictObject({
        drv: z.string().regex(STORE_DRV),
        output: z.string().min(1).max(200),
        given: GivenDerivationSchema.optional(),
      }),
    )
    .min(1)
    .max(10_000),
  label: z.string().max(500),
  keepGoing: z.boolean().optional(),
  copyBack: z.enum(["needed", "all", "none"]).optional(),
  builders: z.array(z.string()).optional(),
  tags: z.array(z.string()).optional(),
  onBehalfOf: z.string().regex(USER_NAME_PATTERN).optional(),
});

/**
 * Who a build counts for: a gateway session (on the socket as one of `gatewayUids`: root, the
 * coordinator's own user, `serve --gateway-user`) submits for the client its key names, shown as
 * "gateway:NAME"; anyone else is refused that.
 */
export function submitterOf(
  client: ClientIdentity,
  onBehalfOf: string | undefined,
  gatewayUids: ReadonlySet<number>,
): ClientIdentity {
  if (onBehalfOf === undefined) return client;
  const privileged =
    client.via === "local" ||
    (client.via === "socket" && client.uid !== undefined && gatewayUids.has(client.uid));
  if (!privileged) {
    throw new NixpoolError(
      "SUBMIT_FORBIDDEN",
      `${client.user} may not submit builds for another client (${onBehalfOf}).`,
      {
        hint: "Only the gateway names the client it builds for: run it as root, as the coordinator's user, or as the account of `nixpool serve --gateway-user`.",
        exitCode: ExitCode.usage,
      },
    );
  }
  return { ...client, user: `gateway:${onBehalfOf}` };
}

/**
 * Whether `caller` may cancel a build `submitter` started: its submitter (the same account over
 * the same way in), root, this process; and the gateway's account (one of `gatewayUids` on the
 * socket) the builds it submitted for its clients ("gateway:NAME"), which it cancels when the
 * client's timeout passes or the client goes away.
 */
export function mayCancel(
  submitter: ClientIdentity,
  caller: ClientIdentity,
  gatewayUids: ReadonlySet<number>,
): boolean {
  return (
    caller.via === "local" ||
    caller.uid === 0 ||
    // A token names no person: a token holder and a local account called "token" are not the same.
    (caller.via === submitter.via && caller.user === submitter.user) ||
    (submitter.user.startsWith("gateway:") &&
      submitter.via === "socket" &&
      caller.via === "socket" &&
      caller.uid !== undefined &&
      gatewayUids.has(caller.uid))
  );
}

/** Roots given by value (gateway builds): all of them or none. */
export function givenDerivationsOf(data: SubmitRequest): Map<string, Derivation> | undefined {
  const given = data.derivations.filter((d) => d.given !== undefined);
  if (given.length === 0) return undefined;
  if (given.length !== data.derivations.length) {
    throw configError("SUBMIT_INVALID", "The build request gives some derivations by value and not others.", {
      hint: "Give every root by value (the gateway does), or none (nixpool build does).",
    });
  }
  return new Map(given.map((d) => [d.drv, fromGivenJson(d.given!)]));
}

/** A build id the coordinator does not know (to wait for, or to cancel). */
export function unknownBuild(id: string): NixpoolError {
  return new NixpoolError("BUILD_UNKNOWN", `No build ${id} on this coordinator.`, {
    hint: "List the builds with: curl …/api/builds (or open the dashboard).",
  });
}

/** A build a dead coordinator left that this one cannot run (its derivations are not here). */
export function orphaned(b: { id: string; from: string | null }, why: string): NixpoolError {
  return new NixpoolError(
    "BUILD_ORPHANED",
    `Build ${b.id} was left by coordinator ${b.from ?? "(unknown)"}, which stopped, and cannot go on here: ${why}.`,
    {
      hint: "Submit it again (nixpool build with NIXPOOL_COORDINATOR naming every coordinator does so by itself).",
    },
  );
}
