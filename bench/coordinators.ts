/**
 * Several coordinators, one pool (issue #22): two `nixpool serve` processes on one PostgreSQL
 * (started here) and one local pool of 2 builders × 2 jobs, four clients at once (two submit to
 * each coordinator), each a graph of `--leaves` derivations of `--sleep` s (test/fixtures/dispatch.nix
 * `graph`, a fresh seed per build, evaluated before the clock starts, as clients do). The ideal is
 * 4 × 40 × 0.5 s / 4 slots = 20 s.
 *
 *   npm run build && node --import tsx bench/coordinators.ts [--runs 1] [--leaves 40] [--sleep 0.5] [--follow-timeout 120]
 *
 * Each run is a pair, on the same coordinators:
 * - steady: the four builds, nothing killed: wall from the submits to the last end, vs the ideal.
 * - failover: the same with fresh seeds; once a quarter of the leaves are done, kill -9 of the
 *   coordinator running the most derivations. Its clients follow their build on the other
 *   coordinator (GET /api/builds/ID: the same id, adopted), submitting it again when it ends
 *   BUILD_ORPHANED or is unknown there, as a client does (docs/coordinator.md); a build still
 *   unfinished after --follow-timeout is reported "stuck". Failover cost = failover wall − steady
 *   wall; recovery = kill to the last end. The killed coordinator is started again for the next run.
 *
 * From every build's recorded derivation times: the most running at once (all builders, and per
 * builder: the slots are 4 and 2), and attempts beyond the first (work done twice).
 */
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { z } from "zod";
import { waitFor } from "../src/adapters/wait-for.js";
import { isNixpoolError } from "../src/core/errors.js";
import { CoordinatorClient } from "../src/serve/client/coordinator-client.js";
import type { SubmitRequest } from "../src/serve/coordinator-types.js";
import {
  startCoordinators,
  type TestCoordinator,
  type TestCoordinators,
} from "../test/helpers/coordinators.js";
import { graphRequest } from "../test/helpers/example-builds.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    leaves: { type: "string", default: "40" },
    sleep: { type: "string", default: "0.5" },
    "follow-timeout": { type: "string", default: "120" },
  },
});
const runs = Number(values.runs);
const leaves = Number(values.leaves);
const sleepS = Number(values.sleep);
const followTimeoutMs = Number(values["follow-timeout"]) * 1000;
const CLIENTS = 4;
const SLOTS = 4;
const SLOTS_PER_BUILDER = 2;
const idealS = (CLIENTS * leaves * sleepS) / SLOTS;

const DerivationSchema = z.looseObject({
  drv: z.string(),
  name: z.string(),
  builder: z.string().optional(),
  status: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  attempts: z.number(),
});
const BuildSchema = z.looseObject({
  id: z.string(),
  status: z.enum(["queued", "running", "succeeded", "failed", "cancelled"]),
  counts: z.looseObject({ total: z.number(), done: z.number(), running: z.number() }),
  derivations: z.array(DerivationSchema),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
type Build = z.infer<typeof BuildSchema>;
const BuildersSchema = z.array(z.looseObject({ name: z.string(), health: z.string() }));
const finished = (b: Build) => b.status !== "queued" && b.status !== "running";

const seconds = (from: bigint) => +(Number(process.hrtime.bigint() - from) / 1e9).toFixed(2);

async function getJson<T extends z.ZodType>(
  h: TestCoordinators,
  c: TestCoordinator,
  path: string,
  schema: T,
): Promise<z.infer<T> | undefined> {
  const r = await h.request(c, path, { timeoutMs: 5000 }).catch(() => undefined);
  if (!r || r.status !== 200) return undefined;
  const parsed = schema.safeParse(JSON.parse(r.body));
  return parsed.success ? parsed.data : undefined;
}

/** The most intervals open at once. */
function maxOverlap(ds: readonly z.infer<typeof DerivationSchema>[]): number {
  const edges: [number, number][] = [];
  for (const d of ds)
    if (d.startedAt && d.finishedAt) edges.push([Date.parse(d.startedAt), 1], [Date.parse(d.finishedAt), -1]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (now += d));
  return max;
}

interface ClientResult {
  client: number;
  coordinator: number;
  /** ok; followed (adopted by the other coordinator); resubmitted; stuck; failed: CODE */
  outcome: string;
  endS: number;
  build: Build | undefined;
}

async function oneRun(h: TestCoordinators, kill: boolean) {
  for (const c of h.coordinators) {
    const up = await waitFor(
      async () =>
        (await getJson(h, c, "/api/builders", BuildersSchema))?.every((b) => b.health === "up") || undefined,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    if (!up) throw new Error(`coordinator ${c.index}'s builders are not all up`);
  }
  const requests: SubmitRequest[] = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => graphRequest(`client ${i}`, leaves, sleepS)),
  );
  const clientOf = (c: TestCoordinator) =>
    new CoordinatorClient({ kind: "http", url: new URL(c.url), token: h.token });
  const ids: (string | undefined)[] = Array.from({ length: CLIENTS }, () => undefined);
  const home = (i: number) => h.coordinators[i < CLIENTS / 2 ? 0 : 1]!;
  let victim: TestCoordinator | undefined;
  let killedAt: bigint | undefined;
  const t0 = process.hrtime.bigint();

  const follow = async (i: number, on: TestCoordinator): Promise<ClientResult> => {
    const id = ids[i];
    let last: Build | undefined;
    const seen = id
      ? await waitFor(
          async () => {
            last = await getJson(h, on, `/api/builds/${id}`, BuildSchema);
            return last && finished(last) ? last : undefined;
          },
          { timeoutMs: followTimeoutMs, intervalMs: 100 },
        )
      : false;
    if (seen && seen.error?.code !== "BUILD_ORPHANED")
      return { client: i, coordinator: on.index, outcome: "followed", endS: seconds(t0), build: seen };
    if (!seen && last)
      return {
        client: i,
        coordinator: on.index,
        outcome: `stuck: ${last.status}`,
        endS: seconds(t0),
        build: last,
      };
    // Orphaned, or unknown there: the client submits the same request again.
    const again = await clientOf(on).submit(requests[i]!, (e) => {
      if (e.type === "submitted") ids[i] = e.id;
    });
    const build = again && (await getJson(h, on, `/api/builds/${again.id}`, BuildSchema));
    return {
      client: i,
      coordinator: on.index,
      outcome: `resubmitted (${seen ? "BUILD_ORPHANED" : "unknown there"})`,
      endS: seconds(t0),
      build,
    };
  };

  const client = async (i: number): Promise<ClientResult> => {
    const c = home(i);
    try {
      const end = await clientOf(c).submit(requests[i]!, (e) => {
        if (e.type === "submitted") ids[i] = e.id;
      });
      const endS = seconds(t0);
      const build = end && (await getJson(h, c, `/api/builds/${end.id}`, BuildSchema));
      const outcome = end?.status === "succeeded" ? "ok" : `failed: ${end?.error?.code ?? end?.status}`;
      return { client: i, coordinator: c.index, outcome, endS, build };
    } catch (e) {
      if (!(victim === c && isNixpoolError(e))) throw e;
      return follow(
        i,
        h.coordinators.find((x) => x !== c)!,
      );
    }
  };

  const killer = async () => {
    if (!kill) return undefined;
    const quarter = (CLIENTS * leaves) / 4;
    const chosen = await waitFor(
      async () => {
        let done = 0;
        const running = [0, 0];
        for (let i = 0; i < CLIENTS; i++) {
          const id = ids[i];
          const b = id ? await getJson(h, home(i), `/api/builds/${id}`, BuildSchema) : undefined;
          if (!b) continue;
          done += b.derivations.filter((d) => d.status === "built" && d.name.startsWith("leaf")).length;
          running[home(i).index]! += b.derivations.filter((d) => d.status === "running").length;
        }
        if (done < quarter) return undefined;
        return { index: running[1]! > running[0]! ? 1 : 0, running, done };
      },
      { timeoutMs: 600_000, intervalMs: 100 },
    );
    if (!chosen) throw new Error("a quarter of the leaves did not finish");
    victim = h.coordinators[chosen.index]!;
    killedAt = process.hrtime.bigint();
    await victim.stop("SIGKILL");
    return {
      victim: chosen.index,
      runningPerCoordinator: chosen.running,
      leavesDone: chosen.done,
      atS: seconds(t0),
    };
  };

  const [results, killed] = await Promise.all([
    Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i))),
    killer(),
  ]);
  const wallS = seconds(t0);
  const recoverS = killedAt === undefined ? undefined : seconds(killedAt);
  if (victim) await victim.restart();
  const ds = results.flatMap((r) => r.build?.derivations ?? []).filter((d) => d.name.startsWith("leaf"));
  const builders = [...new Set(ds.map((d) => d.builder).filter((b) => b !== undefined))].sort();
  return {
    wallS,
    vsIdeal: +(wallS / idealS).toFixed(3),
    ...(killed ? { killed, recoverS } : {}),
    outcomes: results.map((r) => `${r.client}@${r.coordinator}: ${r.outcome} at ${r.endS} s`),
    // built: by a coordinator; cached: found built (on a builder, or in the store) when adopted.
    leavesByStatus: Object.fromEntries(
      [...new Set(ds.map((d) => d.status))]
        .sort()
        .map((st) => [st, ds.filter((d) => d.status === st).length]),
    ),
    attemptsBeyondFirst: ds.reduce((s, d) => s + Math.max(0, d.attempts - 1), 0),
    maxRunningFromTimes: maxOverlap(ds),
    maxRunningPerBuilder: Object.fromEntries(
      builders.map((b) => [b, maxOverlap(ds.filter((d) => d.builder === b))]),
    ),
  };
}

const load0 = loadavg()[0];
const rows: Record<string, unknown>[] = [];
const h = await startCoordinators({ count: 2, builders: 2, jobs: SLOTS_PER_BUILDER });
try {
  for (let i = 0; i < runs; i++) {
    const steady = await oneRun(h, false);
    console.error(`run ${i + 1} steady: ${JSON.stringify(steady)}`);
    const failover = await oneRun(h, true);
    console.error(`run ${i + 1} failover: ${JSON.stringify(failover)}`);
    const allDone = [steady, failover].every((r) =>
      r.outcomes.every((o) => / (ok|followed|resubmitted \(.*\)) at /.test(o)),
    );
    rows.push({
      steady,
      failover,
      // Only when every build of both succeeded: a stuck build's wall is the follow timeout's.
      failoverCostS: allDone ? +(failover.wallS - steady.wallS).toFixed(2) : "n/a: a build did not finish",
      slotsExceeded: Math.max(steady.maxRunningFromTimes, failover.maxRunningFromTimes) > SLOTS,
    });
  }
} finally {
  await h.stop();
}
console.log(
  JSON.stringify(
    {
      date: new Date().toISOString(),
      clients: CLIENTS,
      leaves,
      sleepS,
      slots: SLOTS,
      idealS,
      loadBefore: load0,
      loadAfter: loadavg()[0],
      runs: rows,
    },
    null,
    2,
  ),
);
