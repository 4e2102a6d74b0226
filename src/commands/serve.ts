import { buildTrustPolicy } from "../cli/trust-options.js";
import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { statePaths } from "../config/state-paths.js";
import { readDurationFlag } from "../core/duration.js";
import {
  parseListenAddress,
  refuseOpenCache,
  refuseOpenWithoutToken,
  type ListenAddress,
} from "../core/listen-address.js";
import { ExitCode, configError } from "../core/errors.js";
import { accountOf } from "../serve/http/peer-credentials.js";
import { grantGatewayAccount } from "../serve/gateway/gateway-account.js";
import { redactForTerminal } from "../core/redact.js";
import { Coordinator } from "../serve/coordinator.js";
import { mountDashboard } from "../serve/dashboard/routes.js";
import { startApiServer } from "../serve/http/api-server.js";
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from "../serve/http/http-limits.js";
import { ensureCacheToken, ensureServeToken } from "../serve/serve-token.js";
import { clearHostCaches, configureHostCaches } from "../providers/local/host-cache.js";
import {
  clientTokenLookup,
  issueClientToken,
  listClientTokens,
  parseClientName,
  revokeClientToken,
} from "../serve/client-tokens.js";
import { renderTable } from "../cli/output.js";
import { startCacheService, type CacheService } from "../serve/cache/cache-service.js";
import { parseNumberFlag } from "../core/number-flag.js";
import { chooseDatabase } from "../core/database-url.js";
import { migrateHistoryFrom } from "../serve/history-migrate-from.js";

interface ServeFlags {
  /** HOST:PORT, or false for --no-listen. */
  listen: string | false;
  socket?: string;
  grace: string;
  /** False for --no-token. */
  token: boolean;
  /** False for --no-cache. */
  cache: boolean;
  cacheOpen?: boolean;
  /** `--cache-public`: the cache (never the API) open to anyone who reaches the listener. */
  cachePublic?: boolean;
  cachePriority: string;
  headerTimeout: string;
  idleTimeout: string;
  /** The account `nixpool gateway` runs as (sshd's forced command for gateway clients). */
  gatewayUser?: string;
  /** Copy this SQLite history into the PostgreSQL database, then exit. */
  migrateFrom?: string;
}

interface TokenFlags {
  new?: boolean;
  client?: string;
  revoke?: boolean;
  list?: boolean;
  json?: boolean;
}

const DEFAULT_LISTEN = "127.0.0.1:7420";

/** Runs the coordinator until SIGTERM or SIGINT: the first drains (up to the grace), a second stops at once. */
async function runServe(ctx: Context, opts: ServeFlags): Promise<void> {
  const listen: ListenAddress | undefined =
    opts.listen === false
      ? undefined
      : parseListenAddress(opts.listen, "--listen", `nixpool serve --listen ${DEFAULT_LISTEN}`);
  if (listen) refuseOpenWithoutToken(listen, opts.token);
  const graceMs = readDurationFlag(opts.grace, {
    flag: "--grace",
    bare: "seconds",
    example: "nixpool serve --grace 10m",
  }).ms;
  const limits: HttpLimits = {
    ...DEFAULT_HTTP_LIMITS,
    headersMs: readDurationFlag(opts.headerTimeout, {
      flag: "--header-timeout",
      bare: "seconds",
      example: "nixpool serve --header-timeout 30s",
      minMs: 100,
      maxMs: 3_600_000,
    }).ms,
    idleMs: readDurationFlag(opts.idleTimeout, {
      flag: "--idle-timeout",
      bare: "seconds",
      example: "nixpool serve --idle-timeout 60s",
      minMs: 100,
      maxMs: 24 * 3_600_000,
    }).ms,
  };
  const token = opts.token ? await ensureServeToken(ctx.stateDir) : undefined;
  const log = (line: string) => ctx.output.err(redactForTerminal(line));
  const inventory = await ctx.loadInventory();
  const database = chooseDatabase({
    envUrl: process.env["NIXPOOL_DATABASE_URL"],
    inventoryUrl: inventory.database,
    inventoryPath: inventory.path,
    sqlitePath: statePaths(ctx.stateDir).serve.historyDb,
  });
  if (opts.migrateFrom !== undefined) {
    const counts = await migrateHistoryFrom(opts.migrateFrom, database);
    ctx.output.out(
      `nixpool serve: copied ${counts.builds} builds, ${counts.derivations} derivations, ${counts.build_records} timelines, ${counts.builder_events} builder events and ${counts.worker_costs} workers from ${opts.migrateFrom} into ${database.display}`,
    );
    return;
  }
  // Every submitted build runs under the inventory's [policy] (docs/trust.md), as a local build does.
  const trust = buildTrustPolicy(inventory.policy, {});
  const cachePriority = parseNumberFlag("--cache-priority", opts.cachePriority, {
    integer: true,
    min: 0,
    max: 1000,
    example: "nixpool serve --cache-priority 30",
  });
  if (listen && opts.cacheOpen === true && opts.cachePublic !== true) refuseOpenCache(listen);
  let gatewayUids: number[] = [];
  let gatewayGid: number | undefined;
  if (opts.gatewayUser !== undefined) {
    const account = await accountOf(opts.gatewayUser);
    if (account === undefined) {
      throw configError(
        "FLAG_INVALID",
        `--gateway-user "${opts.gatewayUser}" is not a user of this machine.`,
        {
          hint: "Create the gateway's account first (docs/gateway.md), e.g. useradd -r -m -s /bin/sh nixpool",
        },
      );
    }
    gatewayUids = [account.uid];
    gatewayGid = account.gid;
  }
  // [autoscale.hetzner]: workers a crashed run left are reaped before the pool is read.
  const autoscale = inventory.autoscale
    ? {
        config: inventory.autoscale,
        provider: (await import("../providers/hetzner/autoscale-provider.js")).hetznerAutoscaleProvider({
          stateDir: ctx.stateDir,
          env: process.env,
          config: inventory.autoscale,
          snapshots: { keep: inventory.hetzner.keepSnapshots, ttlMs: inventory.hetzner.snapshotTtlMs },
          log,
        }),
        log,
      }
    : undefined;
  await autoscale?.provider.reap();
  const coordinator = await Coordinator.open({
    stateDir: ctx.stateDir,
    builders: await ctx.builders(),
    trust,
    gatewayUids,
    database,
    log,
    ...(autoscale ? { autoscale } : {}),
  });
  log(`nixpool serve: history in ${database.display}`);
  // Remote clients' own tokens (serve token --client): the API and the cache both take them.
  const clientOf = clientTokenLookup(statePaths(ctx.stateDir).serve.clientsFile, log);
  let cache: CacheService | undefined;
  if (opts.cache) {
    cache = await startCacheService({
      stateDir: ctx.stateDir,
      sources: coordinator.cacheSources(),
      apiToken: token,
      clientOf,
      open: opts.cacheOpen === true || opts.cachePublic === true,
      priority: cachePriority,
      log,
      idleMs: limits.idleMs,
    }).catch(async (e: unknown) => {
      await coordinator.close();
      throw e;
    });
  }
  const closeCache = () => cache?.close() ?? Promise.resolve();
  const api = await startApiServer({
    coordinator,
    socketPath: opts.socket ?? statePaths(ctx.stateDir).serve.socket,
    listen,
    token,
    clientOf,
    log,
    mountDashboard,
    pool: coordinator.poolStore(),
    limits,
    ...(cache ? { cache } : {}),
  }).catch(async (e: unknown) => {
    await closeCache();
    await coordinator.close();
    throw e;
  });
  // The gateway's own account reaches the socket and appends to the gateway log (docs/gateway.md).
  if (gatewayGid !== undefined) {
    await grantGatewayAccount(ctx.stateDir, api.socketPath, gatewayGid).catch((e: unknown) =>
      log(
        `nixpool serve: the gateway's account may not reach the socket: ${e instanceof Error ? e.message : String(e)} (run serve as root, docs/gateway.md)`,
      ),
    );
  }
  ctx.output.out(`nixpool serve: API on unix:${api.socketPath}`);
  if (autoscale) {
    const a = autoscale.config;
    ctx.output.out(
      `nixpool serve: autoscaling ${a.minWorkers}–${a.maxWorkers} Hetzner workers in ${a.location} (GET /api/autoscale)`,
    );
  }
  if (cache && opts.cachePublic === true) {
    ctx.output.out(
      `nixpool serve: the binary cache is public (--cache-public): anyone who reaches ${api.url ?? "the socket"}/cache may read every trusted result${token ? "; the API still needs its token" : ""}`,
    );
  }
  // The local pool's hosts substitute from the cache (docs/cache.md#builders-use-substitutes).
  let buildersUseCache = false;
  if (cache && listen && api.url) {
    const cacheToken = opts.cachePublic === true || !token ? undefined : await ensureCacheToken(ctx.stateDir);
    const hosts = await configureHostCaches(ctx.stateDir, {
      listen,
      port: Number(new URL(api.url).port),
      publicKey: cache.publicKey,
      token: cacheToken,
    }).catch((e: unknown) => {
      log(
        `nixpool serve: the local pool's hosts were not given the cache: ${e instanceof Error ? e.message : String(e)}`,
      );
      // Some hosts may have their files already: taken out again when serve stops.
      return { configured: [], unreachable: [], failed: true };
    });
    buildersUseCache = hosts.configured.length > 0 || "failed" in hosts;
    for (const h of hosts.configured)
      ctx.output.out(`nixpool serve: local builder ${h.name} substitutes from ${h.url}`);
    const [first] = hosts.unreachable;
    if (first) {
      log(
        `nixpool serve: local builders ${hosts.unreachable.map((h) => h.name).join(", ")} do not use the cache: ${first.reason} (--listen 0.0.0.0:PORT lets the pool's hosts reach it)`,
      );
    }
  }
  const closeBuilderCaches = () =>
    buildersUseCache ? clearHostCaches(ctx.stateDir).catch(() => undefined) : Promise.resolve();
  if (api.url) {
    coordinator.advertise(api.url);
    ctx.output.out(`nixpool serve: API and dashboard on ${api.url}`);
    ctx.output.out(
      token
        ? `  open ${api.url}/?token=TOKEN once in a browser (TOKEN: nixpool serve token)`
        : "  without a token: every local user may submit and cancel builds over TCP",
    );
  }
  if (cache) {
    const where = api.url ? `${api.url}/cache` : `unix:${api.socketPath} /cache`;
    ctx.output.out(`nixpool serve: binary cache on ${where} (trusted-public-keys: ${cache.publicKey})`);
  }
  const code = await new Promise<ExitCode>((resolve) => {
    let stage: "serving" | "draining" | "stopping" = "serving";
    const onSignal = (sig: NodeJS.Signals) => {
      if (stage === "serving") {
        stage = "draining";
        log(`${sig}: draining: no new builds; running ones have ${Math.round(graceMs / 1000)}s to finish`);
        api.startDraining();
        void coordinator
          .drain(graceMs)
          .finally(() => api.close())
          .finally(closeCache)
          .finally(closeBuilderCaches)
          .then(
            () => resolve(ExitCode.ok),
            (e: unknown) => {
              log(`draining failed: ${e instanceof Error ? e.message : String(e)}`);
              resolve(ExitCode.failed);
            },
          );
      } else if (stage === "draining") {
        stage = "stopping";
        log(`${sig} again: stopping now; running builds fail with COORDINATOR_STOPPED`);
        void coordinator
          .close()
          .finally(() => api.close())
          .finally(closeCache)
          .finally(closeBuilderCaches)
          .then(
            () => resolve(ExitCode.interrupted),
            () => resolve(ExitCode.interrupted),
          );
      }
    };
    // process.on, never once: see src/adapters/signals.ts.
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  log(code === ExitCode.ok ? "stopped: every build finished or was stopped, history closed" : "stopped");
  process.exitCode = code;
}

/** nixpool serve: the coordinator (one queue, warm builders, history, HTTP API and dashboard). */
export const registerServe: RegisterCommands = (program, context) => {
  const serve = program
    .command("serve")
    .description("run the coordinator: one queue for every client of the pool, its API and dashboard")
    .option("--listen <host:port>", "TCP address of the API and dashboard (token required)", DEFAULT_LISTEN)
    .option("--no-listen", "no TCP listener: the Unix socket only")
    .option("--socket <path>", "the API's Unix socket (default STATE/serve/api.sock)")
    .option("--grace <duration>", "on SIGTERM, how long running builds may take to finish", "5m")
    .option("--no-token", "serve TCP without a token (loopback only: any local user may use it)")
    .option("--no-cache", "do not serve the pool's binary cache at /cache")
    .option("--cache-open", "the binary cache needs no token over TCP (loopback only)")
    .option(
      "--cache-public",
      "the binary cache (only the cache, never the API) needs no token on any address: anyone who reaches it reads every trusted result",
    )
    .option("--cache-priority <n>", "the cache's Priority for Nix (lower wins; cache.nixos.org is 40)", "30")
    .option(
      "--header-timeout <duration>",
      "a request's line and headers must arrive within this (408)",
      "30s",
    )
    .option(
      "--idle-timeout <duration>",
      "close a connection on which nothing moves for this long (a stalled download or upload)",
      "60s",
    )
    .option(
      "--gateway-user <name>",
      "the account nixpool gateway runs as: its sessions submit for their clients, and its group may reach the socket and the gateway log",
    )
    .option(
      "--migrate-from <sqlite>",
      "copy this SQLite history (STATE/serve/history.sqlite) into the PostgreSQL database, then exit",
    )
    .action(async (opts: ServeFlags) => runServe(context(), opts));
  serve
    .command("token")
    .description("print the API token TCP clients send (made on first use; 0600 in the state directory)")
    .option("--new", "replace it with a new one (clients and browsers must use the new one)")
    .option("--client <name>", "a token of this client's own (shown once; a new one replaces the old)")
    .option("--revoke", "with --client: revoke that client's token (at once)")
    .option("--list", "list the clients that have a token")
    .option("--json", "print JSON (with --list)")
    .action(async (opts: TokenFlags) => {
      const ctx = context();
      const clientsFile = statePaths(ctx.stateDir).serve.clientsFile;
      if (opts.list) {
        const clients = await listClientTokens(clientsFile);
        if (opts.json) return ctx.output.json({ clients });
        ctx.output.out(
          clients.length
            ? renderTable(
                ["CLIENT", "TOKEN MADE"],
                clients.map((c) => [c.name, c.created]),
              )
            : "No client has a token of its own (make one: nixpool serve token --client NAME).",
        );
        return;
      }
      if (opts.revoke) {
        if (opts.client === undefined)
          throw configError("USAGE", "--revoke needs --client NAME.", {
            hint: "For example: nixpool serve token --client ci-runner-1 --revoke",
          });
        await revokeClientToken(clientsFile, parseClientName(opts.client));
        ctx.output.err(`revoked the token of client ${opts.client}: it is refused from the next request on`);
        return;
      }
      if (opts.client !== undefined) {
        const token = await issueClientToken(clientsFile, parseClientName(opts.client), new Date());
        // Printed once, on purpose, straight to stdout: only its digest is kept.
        process.stdout.write(`${token}\n`);
        if (process.stderr.isTTY)
          ctx.output.err(
            `(client ${opts.client}: set NIXPOOL_COORDINATOR_TOKEN to it there; shown only now, revoke with --revoke)`,
          );
        return;
      }
      const token = await ensureServeToken(ctx.stateDir, opts.new === true);
      // The one place the token is printed on purpose: straight to stdout, not through redaction.
      process.stdout.write(`${token}\n`);
      if (process.stderr.isTTY) {
        ctx.output.err(
          `(from ${statePaths(ctx.stateDir).serve.tokenFile}; a browser opens the dashboard once with /?token=…)`,
        );
      }
    });
};
