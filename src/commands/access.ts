import { resolve } from "node:path";
import type { RegisterCommands } from "../cli/commands.js";
import { parseNumberFlag } from "../core/number-flag.js";
import { renderTable } from "../cli/output.js";
import { protocolOption, usersOption } from "../cli/access-options.js";
import type { AccessProtocol } from "../core/access/authorized-keys.js";
import { readDurationFlag } from "../core/duration.js";
import { renderNixConfFragment, renderSshdFragment } from "../core/access/fragments.js";
import { DEFAULT_KEYS_COMMAND_PREFIX } from "../core/access/keys-command-script.js";
import { isActive, planAddUser, planRemoveUser, canVouch } from "../core/access/users.js";
import { configError, ExitCode } from "../core/errors.js";
import { caExists, resolveCaPaths, revokeUserCerts } from "../access/ca.js";
import { readGithubCache } from "../access/github-cache.js";
import { runHousekeeping } from "../access/housekeeping.js";
import { checkKeysCommandSetup, installKeysCommand, keysCommandPath } from "../access/keys-command-setup.js";
import { lookupAuthorizedKeys, lookupGatewayKeys, lookupPrincipals } from "../access/keys-lookup.js";
import { resolveAccessPaths } from "../access/paths.js";
import { syncAccess } from "../access/sync.js";
import { ensureIndexDir, loadUsers, updateUsers } from "../access/users-store.js";

/** access sync's --timeout and --deadline: durations; a bare number is still milliseconds, with a note. */
function syncDuration(flag: string, text: string, warn: (line: string) => void): number {
  const d = readDurationFlag(text, {
    flag,
    bare: { legacyUnit: "ms" },
    minMs: 1,
    example: `nixpool access sync ${flag} ${flag === "--timeout" ? "5s" : "2m"}`,
  });
  if (d.warning) warn(d.warning);
  return d.ms;
}

const positiveInt = (name: string, v: string): number =>
  parseNumberFlag(name, v, { integer: true, min: 1, example: `nixpool access sync ${name} 5000` });

function parseGithubUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw configError("GITHUB_URL_INVALID", `GitHub URL "${v}" is not a URL.`, {
      hint: "Use e.g. --github-url https://github.com",
    });
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw configError("GITHUB_URL_INVALID", `GitHub URL "${v}" must be http(s).`, {
      hint: "Use e.g. --github-url https://github.com",
    });
  }
  return v.replace(/\/+$/, "");
}

/** nixpool access …: members, their keys at login, the sshd and nix.conf fragments, housekeeping. */
export const registerAccess: RegisterCommands = (program, context) => {
  const access = program
    .command("access")
    .description("who may use this shared builder, with which key, for how long");

  access
    .command("add <name>")
    .description("admit a member (vouched for by a member who may vouch)")
    .option("--github <handle>", "take keys from https://github.com/HANDLE.keys")
    .option(
      "--key <keyline>",
      "a public key line (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option("--trusted", "join Nix's trusted-users (effectively root on the store)")
    .option("--can-vouch", "may vouch for new members")
    .option("--gateway", "may use the gateway: the whole pool as one builder (docs/gateway.md)")
    .option("--vouched-by <member>", "the member vouching for this one")
    .option("--expires <date>", "access ends at this date (00:00 UTC) or ISO date-time")
    .addOption(usersOption())
    .option("--json", "print JSON")
    .action(
      async (
        name: string,
        o: {
          github?: string;
          key: string[];
          trusted?: boolean;
          canVouch?: boolean;
          gateway?: boolean;
          vouchedBy?: string;
          expires?: string;
          users?: string;
          json?: boolean;
        },
      ) => {
        const ctx = context();
        const paths = resolveAccessPaths(ctx.stateDir, o.users);
        const now = Date.now();
        const next = await updateUsers(paths, (f) =>
          planAddUser(
            f,
            {
              name,
              github: o.github,
              keys: o.key,
              trusted: o.trusted,
              canVouch: o.canVouch,
              gateway: o.gateway,
              vouchedBy: o.vouchedBy,
              expires: o.expires,
            },
            now,
          ),
        );
        const u = next.users.find((x) => x.name === name);
        if (o.json) ctx.output.json({ added: u, usersFile: paths.usersFile });
        else {
          ctx.output.out(`Added ${name} to ${paths.usersFile}.`);
          if (u?.github) ctx.output.out(`Fetch their GitHub keys with: nixpool access sync`);
        }
      },
    );

  access
    .command("remove <name>")
    .description("remove a member; their keys and certificates stop working at once")
    .addOption(usersOption())
    .option("--json", "print JSON")
    .action(async (name: string, o: { users?: string; json?: boolean }) => {
      const ctx = context();
      const paths = resolveAccessPaths(ctx.stateDir, o.users);
      const next = await updateUsers(paths, (f) => planRemoveUser(f, name));
      const revoked = await revokeUserCerts(resolveCaPaths(paths.caDir), name);
      const orphans = next.users.filter((u) => u.vouchedBy === name).map((u) => u.name);
      if (o.json) ctx.output.json({ removed: name, certificatesRevoked: revoked, vouchedFor: orphans });
      else {
        ctx.output.out(
          `Removed ${name}; their keys${revoked ? ` and ${revoked} certificate(s)` : ""} are refused from now on.`,
        );
        if (orphans.length) ctx.output.out(`Still listed, vouched for by ${name}: ${orphans.join(", ")}.`);
      }
    });

  access
    .command("list")
    .description("list the members")
    .addOption(usersOption())
    .option("--json", "print JSON")
    .action(async (o: { users?: string; json?: boolean }) => {
      const ctx = context();
      const paths = resolveAccessPaths(ctx.stateDir, o.users);
      const f = await loadUsers(paths.usersFile);
      const cache = await readGithubCache(paths.githubCache);
      const now = Date.now();
      const rows = f.users.map((u) => {
        const c = u.github ? cache[u.github.toLowerCase()] : undefined;
        return {
          ...u,
          githubKeys: c?.keys.length ?? 0,
          githubLastSeen: c?.lastSeen ?? null,
          active: isActive(u, now),
          mayVouch: canVouch(u, now),
        };
      });
      if (o.json) {
        ctx.output.json({ usersFile: paths.usersFile, users: rows });
        return;
      }
      if (rows.length === 0) {
        ctx.output.out(
          `No members in ${paths.usersFile}. Add one with: nixpool access add NAME --github HANDLE`,
        );
        return;
      }
      ctx.output.out(
        renderTable(
          ["NAME", "GITHUB", "KEYS", "TRUSTED", "VOUCH", "GATEWAY", "VOUCHED-BY", "EXPIRES", "STATUS"],
          rows.map((r) => [
            r.name,
            r.github ?? "-",
            `${r.keys.length}+${r.githubKeys}`,
            r.trusted ? "yes" : "no",
            r.mayVouch ? "yes" : "no",
            r.gateway ? "yes" : "no",
            r.vouchedBy ?? "-",
            r.expires ?? "never",
            r.active ? "active" : "expired",
          ]),
        ),
      );
    });

  access
    .command("sync")
    .description("fetch members' GitHub keys into the local cache (a failed fetch keeps cached keys)")
    .option("--github-url <url>", "GitHub base URL (default $NIXPOOL_GITHUB_URL or https://github.com)")
    .option("--write <dir>", "also write one authorized_keys file per member into DIR")
    .option(
      "--timeout <duration>",
      "per-request timeout, e.g. 5s (a bare number is still milliseconds, deprecated)",
      "5s",
    )
    .option("--max-bytes <n>", "largest answer accepted per handle", "65536")
    .option("--concurrency <n>", "fetches at once", "8")
    .option(
      "--deadline <duration>",
      "time for all fetches, e.g. 2m; later handles keep their cached keys (a bare number is still milliseconds, deprecated)",
      "2m",
    )
    .addOption(protocolOption())
    .addOption(usersOption())
    .option("--json", "print JSON")
    .action(
      async (o: {
        githubUrl?: string;
        write?: string;
        timeout: string;
        maxBytes: string;
        concurrency: string;
        deadline: string;
        protocol: AccessProtocol;
        users?: string;
        json?: boolean;
      }) => {
        const ctx = context();
        const paths = resolveAccessPaths(ctx.stateDir, o.users);
        const baseUrl = parseGithubUrl(
          o.githubUrl ?? process.env["NIXPOOL_GITHUB_URL"] ?? "https://github.com",
        );
        const r = await syncAccess(paths, {
          baseUrl,
          timeoutMs: syncDuration("--timeout", o.timeout, (l) => ctx.output.err(l)),
          maxBytes: positiveInt("--max-bytes", o.maxBytes),
          maxKeys: 100,
          concurrency: positiveInt("--concurrency", o.concurrency),
          deadlineMs: syncDuration("--deadline", o.deadline, (l) => ctx.output.err(l)),
          protocol: o.protocol,
          // Absolute: the directory is remembered for later add/remove, from any working directory.
          writeDir: o.write === undefined ? undefined : resolve(o.write),
        });
        const failed = r.handles.filter((h) => h.status === "kept" || h.status === "skipped");
        if (o.json) ctx.output.json(r);
        else {
          if (r.handles.length > 0) {
            ctx.output.out(
              renderTable(
                ["HANDLE", "USERS", "STATUS", "KEYS", "LAST-SEEN", "ERROR"],
                r.handles.map((h) => [
                  h.handle,
                  h.users.join(","),
                  h.status,
                  String(h.keys),
                  h.lastSeen ?? "never",
                  h.error ?? "",
                ]),
              ),
            );
          }
          ctx.output.out(
            `${r.users} members; index: ${r.indexWritten} written, ${r.indexRemoved} removed${o.write ? `; ${o.write}: ${r.filesWritten} written, ${r.filesRemoved} removed` : ""}.`,
          );
          if (failed.length)
            ctx.output.err(
              `${failed.length} handle(s) kept their cached keys; run nixpool access sync again later.`,
            );
        }
        if (failed.length) process.exitCode = ExitCode.partial;
      },
    );

  access
    .command("keys <user>")
    .description("print USER's restricted keys from local data (for sshd's AuthorizedKeysCommand)")
    .addOption(protocolOption())
    .option("--principals", "print the principals USER's certificates may carry instead")
    .option("--key-id <keyid>", "with --principals: the certificate's key ID (none unless issued to USER)")
    .option("--gateway", "print every gateway client's keys (USER is the gateway's account; docs/gateway.md)")
    .action(
      async (
        user: string,
        o: { protocol: AccessProtocol; principals?: boolean; keyId?: string; gateway?: boolean },
      ) => {
        const ctx = context();
        const { indexDir, sshdDir } = resolveAccessPaths(ctx.stateDir);
        const nowMs = Date.now();
        const lines = o.gateway
          ? await lookupGatewayKeys(user, { sshdDir })
          : o.principals
            ? await lookupPrincipals(user, { indexDir, nowMs, keyId: o.keyId })
            : await lookupAuthorizedKeys(user, { indexDir, protocol: o.protocol, nowMs });
        if (lines.length) ctx.output.out(lines.join("\n"));
      },
    );

  access
    .command("install-keys-command")
    .description(
      "install the keys command sshd runs at every login: root's, world-readable, a small sh script",
    )
    .option("--prefix <dir>", "directory to install keys-command into", DEFAULT_KEYS_COMMAND_PREFIX)
    .option("--command-user <user>", "the AuthorizedKeysCommandUser that must be able to run it", "nobody")
    .option("--json", "print JSON")
    .action(async (o: { prefix: string; commandUser: string; json?: boolean }) => {
      const ctx = context();
      const r = await installKeysCommand({
        prefix: o.prefix,
        commandUser: o.commandUser,
        uid: process.getuid?.() ?? 0,
      });
      if (o.json) return ctx.output.json(r);
      ctx.output.out(`${r.changed ? "Installed" : "Up to date:"} ${r.path} (root, 0755).`);
      const flag = r.path === keysCommandPath() ? "" : ` --keys-command ${r.path}`;
      ctx.output.out(`Point sshd at it with the fragment of: nixpool access sshd-config${flag}`);
    });

  access
    .command("sshd-config")
    .description("print the sshd_config fragment (AuthorizedKeysCommand, MaxStartups, the CA when it exists)")
    .option(
      "--keys-command <path>",
      "the installed keys command (nixpool access install-keys-command)",
      keysCommandPath(),
    )
    .option(
      "--command-user <user>",
      "unprivileged AuthorizedKeysCommandUser (not root); reads only STATE/access/sshd/*/USER",
      "nobody",
    )
    .option("--max-startups <spec>", "MaxStartups start:rate:full", "10:30:100")
    .option("--login-grace-time <s>", "LoginGraceTime seconds", "30")
    .addOption(protocolOption())
    .action(
      async (o: {
        keysCommand: string;
        commandUser: string;
        maxStartups: string;
        loginGraceTime: string;
        protocol: AccessProtocol;
      }) => {
        const ctx = context();
        const paths = resolveAccessPaths(ctx.stateDir);
        const ca = resolveCaPaths(paths.caDir);
        const withCa = await caExists(ca);
        const base = [o.keysCommand, "--state-dir", ctx.stateDir];
        const fragment = renderSshdFragment({
          keysCommand: [...base, "--protocol", o.protocol],
          commandUser: o.commandUser,
          maxStartups: o.maxStartups,
          loginGraceTime: positiveInt("--login-grace-time", o.loginGraceTime),
          ca: withCa
            ? { publicKeyFile: ca.pub, krlFile: ca.krl, principalsCommand: [...base, "--principals"] }
            : undefined,
        });
        // Refuse a fragment with which sshd would refuse every login: say which path and the fix.
        await ensureIndexDir(paths);
        const [problem] = await checkKeysCommandSetup({
          command: o.keysCommand,
          commandUser: o.commandUser,
          paths,
          kinds: withCa ? [o.protocol, "principals"] : [o.protocol],
        });
        if (problem) throw problem;
        ctx.output.out(fragment);
      },
    );

  access
    .command("nix-conf")
    .description("print the nix.conf fragment (trusted-users, allowed-users)")
    .addOption(usersOption())
    .action(async (o: { users?: string }) => {
      const ctx = context();
      const f = await loadUsers(resolveAccessPaths(ctx.stateDir, o.users).usersFile);
      ctx.output.out(renderNixConfFragment(f, Date.now()));
    });

  access
    .command("housekeeping")
    .description("remove old build directories and old files in builder users' homes")
    .option("--dry-run", "list what would be removed")
    .option("--max-age <age>", "remove what is older than this (e.g. 12h, 7d)", "7d")
    .option("--build-root <dir>", "where nix-build-* directories are", "/tmp")
    .option("--home-root <dir>", "parent of the builder users' home directories", "/home")
    .addOption(usersOption())
    .option("--json", "print JSON")
    .action(
      async (o: {
        dryRun?: boolean;
        maxAge: string;
        buildRoot: string;
        homeRoot: string;
        users?: string;
        json?: boolean;
      }) => {
        const ctx = context();
        // No bare number: a unit-less guess could remove every build directory.
        const maxAgeMs = readDurationFlag(o.maxAge, {
          flag: "--max-age",
          bare: "refuse",
          minMs: 1000,
          example: "nixpool access housekeeping --max-age 7d",
        }).ms;
        const f = await loadUsers(resolveAccessPaths(ctx.stateDir, o.users).usersFile);
        const r = await runHousekeeping({
          buildRoot: o.buildRoot,
          homeRoot: o.homeRoot,
          users: f.users.map((u) => u.name),
          maxAgeMs,
          nowMs: Date.now(),
          dryRun: o.dryRun ?? false,
        });
        if (o.json) {
          ctx.output.json({
            dryRun: o.dryRun ?? false,
            removed: r.removed,
            entries: r.entries.map((e) => ({ ...e, modified: new Date(e.mtimeMs).toISOString() })),
          });
          return;
        }
        if (r.entries.length === 0) ctx.output.out(`Nothing older than ${o.maxAge}.`);
        else {
          ctx.output.out(
            renderTable(
              ["KIND", "MODIFIED", "PATH"],
              r.entries.map((e) => [e.kind, new Date(e.mtimeMs).toISOString(), e.path]),
            ),
          );
          ctx.output.out(o.dryRun ? `Would remove ${r.entries.length} (dry run).` : `Removed ${r.removed}.`);
        }
      },
    );
};
