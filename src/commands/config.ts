import type { Command } from "commander";
import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { renderTable } from "../cli/output.js";
import {
  applySystemConfig,
  type AppliedFile,
  type ApplyOptions,
  type ApplyReport,
} from "../adapters/system-config.js";
import { renderMachinesFile } from "../core/machines.js";
import { renderKnownHosts, renderSshConfig } from "../core/ssh-config.js";
import { renderNixosModule } from "../core/nixos.js";
import { renderNixConfFragment, SYSTEM_PATHS } from "../core/nix-conf.js";
import { renderGatewayClientConfig } from "../core/gateway-client.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { isActive } from "../core/access/users.js";
import { loadUsers } from "../access/users-store.js";
import { configError } from "../core/errors.js";
import { readFileIfExists } from "../adapters/fs.js";
import { ensureCacheKey } from "../adapters/cache-key.js";
import { statePaths } from "../config/state-paths.js";
import {
  parseCacheUrl,
  renderCacheNixConf,
  renderCacheNixosSettings,
} from "../core/binary-cache/client-config.js";
import { renderPublicSigningKey } from "../core/binary-cache/signing-key.js";

interface ClientConfigFlags {
  host: string;
  port: string;
  user: string;
  hostKeyFile: string;
  identity: string;
  machinesFile: string;
  cacheUrl?: string;
  cacheNetrcFile: string;
  cacheOpen?: boolean;
  json?: boolean;
}

function printApplyReport(ctx: Context, report: ApplyReport, json: boolean): void {
  if (json) {
    ctx.output.json(report);
    return;
  }
  const verb = (s: AppliedFile["status"]) => (report.dryRun && s !== "unchanged" ? `would be ${s}` : s);
  ctx.output.out(
    renderTable(
      ["FILE", "STATUS", "BACKUP"],
      report.files.map((f) => [f.written, verb(f.status), f.backup ?? "-"]),
    ),
  );
  for (const w of report.warnings) ctx.output.err(`warning: ${w}`);
}

/** nixpool config machines|ssh|known-hosts|nix-conf|nixos|apply */
export const registerConfig: RegisterCommands = (program, context) => {
  const config: Command = program
    .command("config")
    .description("render the pool as Nix and OpenSSH configuration, or apply it to this system");

  config
    .command("machines")
    .description("print the machines file (8 fields per builder, '-' for defaults)")
    .option("--direct", "name builders on port 22 by user@host instead of their ssh_config alias")
    .action(async (opts: { direct?: boolean }) => {
      const ctx = context();
      const builders = await ctx.builders();
      if (opts.direct) {
        ctx.output.out(renderMachinesFile(builders, { uriStyle: "direct" }));
        return;
      }
      // Through the aliases ssh checks the pinned keys only: an unpinned builder is unusable.
      for (const b of builders.filter((x) => !x.hostKey)) {
        ctx.output.err(
          `warning: builder ${b.name} has no pinned host key and is left out (ssh would refuse it); pin it with hostKey, or use --direct to rely on your own known_hosts.`,
        );
      }
      ctx.output.out(renderMachinesFile(builders.filter((b) => b.hostKey)));
    });

  config
    .command("ssh")
    .description("print the ssh_config: one Host alias per builder, with port, user, key and pinned host key")
    .option(
      "--known-hosts-file <path>",
      "known_hosts file the aliases check against",
      SYSTEM_PATHS.knownHosts,
    )
    .action(async (opts: { knownHostsFile: string }) => {
      const ctx = context();
      const builders = await ctx.builders();
      ctx.output.out(renderSshConfig(builders, { knownHostsFile: opts.knownHostsFile }));
    });

  config
    .command("known-hosts")
    .description("print the known_hosts lines pinning each builder's host key")
    .action(async () => {
      const ctx = context();
      ctx.output.out(renderKnownHosts(await ctx.builders()));
    });

  config
    .command("nix-conf")
    .description("print the nix.conf fragment (builders = @machines file, builders-use-substitutes)")
    .option("--machines-file <path>", "machines file path for builders = @PATH", SYSTEM_PATHS.machines)
    .action((opts: { machinesFile: string }) => {
      context().output.out(renderNixConfFragment({ machinesFile: opts.machinesFile }));
    });

  config
    .command("nixos")
    .description("print a NixOS module: nix.buildMachines, programs.ssh.knownHosts and ssh aliases")
    .action(async () => {
      const ctx = context();
      ctx.output.out(renderNixosModule(await ctx.builders()));
    });

  config
    .command("client")
    .argument("<name>", "the client (a member with gateway rights, see docs/gateway.md)")
    .description("print what a client machine needs to use the whole pool as one builder through the gateway")
    .requiredOption("--host <host>", "how client machines reach this machine's sshd")
    .option("--port <port>", "that sshd's port", "22")
    .option("--user <account>", "the account the gateway's keys are installed for", "nixpool")
    .option("--host-key-file <path>", "that sshd's public host key", "/etc/ssh/ssh_host_ed25519_key.pub")
    .option(
      "--identity <path>",
      "the client's private key, as a path on the client",
      "/etc/nix/nixpool-gateway_ed25519",
    )
    .option("--machines-file <path>", "the client's machines file", SYSTEM_PATHS.machines)
    .option("--cache-url <url>", "also use the pool's binary cache at this URL (docs/cache.md)")
    .option(
      "--cache-netrc-file <path>",
      "the netrc file the client keeps the cache token in (the one it already uses, if any)",
      "/etc/nix/netrc",
    )
    .option("--cache-open", "the cache needs no token (serve --cache-public): no netrc file")
    .option("--json", "print JSON")
    .action(async (name: string, opts: ClientConfigFlags) => {
      const ctx = context();
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw configError("FLAG_INVALID", `--port "${opts.port}" is not a TCP port.`, {
          hint: "e.g. --port 22",
        });
      }
      if (!USER_NAME_PATTERN.test(name)) {
        throw configError("GATEWAY_CLIENT_INVALID", `"${name}" is not a client name.`, {
          hint: "Clients are members: nixpool access add NAME --key … --gateway (docs/gateway.md).",
        });
      }
      // The files work only for a member with gateway rights: say so now rather than at the client's first ssh.
      const member = (await loadUsers(statePaths(ctx.stateDir).access.usersFile)).users.find(
        (u) => u.name === name,
      );
      if (!member?.gateway || !isActive(member, Date.now())) {
        ctx.output.err(
          `warning: ${name} is not ${member ? (member.gateway ? "an active member (expired)" : "a member with gateway rights") : "a member"} yet, so the gateway refuses its key; on this machine: nixpool access add ${name} --key "$(cat KEY.pub)" --gateway`,
        );
      }
      const hostKey = (await readFileIfExists(opts.hostKeyFile))?.trim();
      if (hostKey === undefined) {
        throw configError("FLAG_INVALID", `The host key file ${opts.hostKeyFile} does not exist.`, {
          hint: "Give --host-key-file with the public host key of the sshd that runs the gateway.",
        });
      }
      const cfg = renderGatewayClientConfig({
        client: name,
        host: opts.host,
        port,
        user: opts.user,
        hostKey,
        identityFile: opts.identity,
        builders: await ctx.builders(),
        machinesFile: opts.machinesFile,
      });
      let cache: { url: string; publicKey: string; nixConf: string; nixos: string } | undefined;
      if (opts.cacheUrl !== undefined) {
        const url = parseCacheUrl(opts.cacheUrl);
        if (url === undefined) {
          throw configError(
            "FLAG_INVALID",
            `--cache-url "${opts.cacheUrl}" is not an http(s) URL of the cache.`,
            {
              hint: "e.g. --cache-url http://pool.example.org:7420/cache",
            },
          );
        }
        const { key } = await ensureCacheKey(statePaths(ctx.stateDir).cache);
        const c = {
          url,
          publicKey: renderPublicSigningKey(key),
          ...(opts.cacheOpen === true ? {} : { netrcFile: opts.cacheNetrcFile }),
        };
        const withSubstitutes = { ...c, buildersUseSubstitutes: true };
        cache = {
          url,
          publicKey: c.publicKey,
          nixConf: renderCacheNixConf(withSubstitutes),
          nixos: renderCacheNixosSettings(withSubstitutes),
        };
      }
      if (opts.json) {
        ctx.output.json({ client: name, ...cfg, ...(cache ? { cache } : {}) });
        return;
      }
      ctx.output.out(
        [
          `# For ${name}'s machines. Its key (private part at ${opts.identity}, readable by root):`,
          `#   nixpool access add ${name} --key "$(cat KEY.pub)" --gateway   (on this machine)`,
          "",
          `# ${opts.machinesFile}`,
          cfg.machinesLine,
          "",
          "# root's known_hosts (the machines line pins the key too)",
          cfg.knownHostsLine,
          ...(cfg.sshConfig
            ? ["", "# root's ssh_config (Nix 2.8 store URIs take no port)", cfg.sshConfig]
            : []),
          "",
          "# nix.conf",
          cfg.nixConf,
          ...(cache
            ? [
                opts.cacheOpen === true
                  ? "# nix.conf: the pool's binary cache (open: no token)"
                  : `# nix.conf: the pool's binary cache; append its token to ${opts.cacheNetrcFile} (0600): nixpool cache netrc --url ${cache.url} >> ${opts.cacheNetrcFile}`,
                cache.nixConf,
              ]
            : []),
          "# NixOS: import this from configuration.nix instead of the files above",
          cfg.nixos,
          ...(cache ? ["# NixOS: the pool's binary cache, in the same configuration", cache.nixos] : []),
        ].join("\n"),
      );
    });

  config
    .command("apply")
    .description(
      "write the machines file, ssh_config, known_hosts and nix.conf where Nix and the daemon read them",
    )
    .option("--root <dir>", "write under this directory instead of / (paths inside stay the system's)")
    .option("--dry-run", "report what would change; write nothing")
    .option("--force", "replace a machines file nixpool did not write (a backup is kept)")
    .option("--json", "print JSON")
    .action(async (opts: ApplyOptions) => {
      const ctx = context();
      const report = await applySystemConfig(await ctx.builders(), opts);
      printApplyReport(ctx, report, opts.json ?? false);
    });
};
