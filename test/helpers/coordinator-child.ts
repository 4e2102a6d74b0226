// A coordinator in a process of its own, for the kill -9 test: it opens on a pool's state
// directory (history in DATABASE_URL when given), runs the first request to its end, starts the second, says so on stdout (one JSON
// line each) and waits to be killed.
import { readPool, poolBuilders } from "../../src/providers/local/records.js";
import { Coordinator } from "../../src/serve/coordinator.js";
import { parseDatabaseUrl } from "../../src/core/database-url.js";
import type { SubmitRequest } from "../../src/serve/coordinator-types.js";

const [stateDir, requestsJson, databaseUrl] = process.argv.slice(2);
if (!stateDir || !requestsJson)
  throw new Error("usage: coordinator-child STATE_DIR REQUESTS_JSON [DATABASE_URL]");
const [first, second] = JSON.parse(requestsJson) as [SubmitRequest, SubmitRequest];
const pool = await readPool(stateDir);
if (!pool) throw new Error(`no pool in ${stateDir}`);
const c = await Coordinator.open({
  stateDir,
  builders: poolBuilders(pool),
  ...(databaseUrl ? { database: parseDatabaseUrl(databaseUrl, "argv") } : {}),
});
const me = { user: "child", via: "local" } as const;
const done = await c.waitFor(c.submit(first, me));
process.stdout.write(`${JSON.stringify({ finished: done.id, status: done.status })}\n`);
const running = c.submit(second, me);
c.subscribe((e) => {
  if (e.type === "derivation" && e.buildId === running && e.derivation.status === "running") {
    process.stdout.write(`${JSON.stringify({ running })}\n`);
  }
});
setInterval(() => undefined, 1000);
