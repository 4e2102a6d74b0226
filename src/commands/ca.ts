import { Option } from "commander";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { RegisterCommands } from "../cli/commands.js";
import { renderTable } from "../cli/output.js";
import type { AccessProtocol } from "../core/access/authorized-keys.js";
import {
  CERT_USES,
  DEFAULT_VALIDITY,
  isCertRevoked,
  parsePrincipals,
  parseValidity,
  type CertUse,
} from "../core/access/cert.js";
import { quoteUntrusted } from "../core/access/names.js";
import { isActive } from "../core/access/users.js";
import { configError } from "../core/errors.js";
import { writeFileAtomic } from "../adapters/fs.js";
import { initCa, readIssued, readRevoked, resolveCaPaths, revokeCerts, signCert } from "../access/ca.js";
import { resolveAccessPaths } from "../access/paths.js";
import { loadUsers } from "../access/users-store.js";
import { protocolOption, usersOption } from "../cli/access-options.js";

/** nixpool ca …: a user CA for short-lived SSH certificates, with a KRL. */
export const registerCa: RegisterCommands = (program, context) => {
  const ca = program.command("ca").description("short-lived SSH certificates for builder users");

  ca.command("init")
    .description("create the user CA (STATE/ca) and an empty revocation list")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const ctx = context();
      const p = resolveCaPaths(resolveAccessPaths(ctx.stateDir).caDir);
      const r = await initCa(p);
      if (o.json) ctx.output.json({ publicKey: r.publicKey, publicKeyFile: p.pub, krl: p.krl });
      else ctx.output.out(`Created the CA ${p.pub}.\nAdd it to sshd with: nixpool access sshd-config`);
    });

  ca.command("sign <user>")
    .description("sign USER's public key: key ID, unique serial and a short validity window always set")
    .requiredOption("--key <file>", "the user's public key file (e.g. id_ed25519.pub)")
    .option("--principals <list>", "comma-separated principals (default: USER), e.g. sudoer,USER")
    .option("--validity <spec>", "[START:]END, e.g. 10m, +8h or -5m:+1h (at most 30 days)", DEFAULT_VALIDITY)
    .addOption(
      new Option(
        "--for <use>",
        "builder: the Nix protocol only; deploy: commands (sudo -n), no pty, only agent forwarding (pam-ussh)",
      )
        .choices(CERT_USES)
        .default("builder"),
    )
    .option("--out <file>", "where to write the certificate (default: KEY with -cert.pub)")
    .addOption(protocolOption())
    .addOption(usersOption())
    .option("--json", "print JSON")
    .action(
      async (
        user: string,
        o: {
          key: string;
          principals?: string;
          validity: string;
          out?: string;
          protocol: AccessProtocol;
          for: CertUse;
          users?: string;
          json?: boolean;
        },
      ) => {
        const ctx = context();
        const paths = resolveAccessPaths(ctx.stateDir, o.users);
        const now = Date.now();
        const f = await loadUsers(paths.usersFile);
        const member = f.users.find((u) => u.name === user);
        if (!member || !isActive(member, now)) {
          throw configError(
            "CERT_USER_UNKNOWN",
            `User ${quoteUntrusted(user)} is not an active member of ${paths.usersFile}.`,
            {
              hint: "Add them first: nixpool access add NAME --vouched-by MEMBER",
            },
          );
        }
        const principals = parsePrincipals(o.principals, user);
        // Another member's name as a principal would let USER's key log in as that member.
        const impersonated = principals.filter((p) => p !== user && f.users.some((u) => u.name === p));
        if (impersonated.length > 0) {
          throw configError(
            "CERT_PRINCIPAL_INVALID",
            `A certificate for "${user}" cannot name another member (${impersonated.join(", ")}) as a principal.`,
            {
              hint: `Sign each member's own key: nixpool ca sign ${impersonated[0] ?? "NAME"} --key THEIR_KEY.pub`,
            },
          );
        }
        const validity = parseValidity(o.validity, now);
        // A certificate never outlives its member's access.
        if (member.expires !== undefined) validity.toMs = Math.min(validity.toMs, Date.parse(member.expires));
        if (validity.toMs <= validity.fromMs) {
          throw configError(
            "CERT_VALIDITY_INVALID",
            `The window ends after ${user}'s access expires (${member.expires}).`,
            { hint: "Choose a window before the expiry." },
          );
        }
        const keyFile = resolve(o.key);
        const text = await readFile(keyFile, "utf8").catch(() => {
          throw configError("CERT_KEY_INVALID", `Cannot read the public key file ${keyFile}.`, {
            hint: "Pass the .pub file: --key ~/.ssh/id_ed25519.pub",
          });
        });
        if (text.includes("PRIVATE KEY")) {
          throw configError("CERT_KEY_INVALID", `${keyFile} is a private key.`, {
            hint: "Pass the .pub file.",
          });
        }
        const { cert, issued } = await signCert(resolveCaPaths(paths.caDir), {
          user,
          publicKey: text.trim(),
          principals,
          validity,
          protocol: o.protocol,
          now,
          use: o.for,
        });
        const out = resolve(o.out ?? keyFile.replace(/\.pub$/, "").concat("-cert.pub"));
        await writeFileAtomic(out, `${cert}\n`, { mode: 0o644 });
        if (o.json) ctx.output.json({ certificate: out, ...issued });
        else
          ctx.output.out(
            `Signed ${out}: id ${issued.keyId}, serial ${issued.serial}, principals ${principals.join(",")}, for ${o.for}, valid ${issued.validFrom} to ${issued.validTo}.`,
          );
      },
    );

  ca.command("revoke")
    .description("revoke certificates (by serial, key ID or user) and replace the KRL atomically")
    .option(
      "--serial <n>",
      "serial (repeatable)",
      (v: string, acc: number[]) => {
        const n = Number(v);
        if (!Number.isSafeInteger(n) || n <= 0)
          throw configError("USAGE", `--serial "${v}" is not a serial number.`, {
            hint: "See serials with: nixpool ca list",
          });
        return [...acc, n];
      },
      [] as number[],
    )
    .option("--id <keyid>", "key ID (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option(
      "--user <name>",
      "every certificate issued to this user (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option("--json", "print JSON")
    .action(async (o: { serial: number[]; id: string[]; user: string[]; json?: boolean }) => {
      const ctx = context();
      if (o.serial.length + o.id.length + o.user.length === 0) {
        throw configError("USAGE", "Nothing to revoke was named.", {
          hint: "Use --serial N, --id KEYID or --user NAME.",
        });
      }
      for (const id of o.id) {
        if (!/^[\x21-\x7e]{1,200}$/.test(id))
          throw configError("USAGE", `Key ID ${quoteUntrusted(id)} is not printable ASCII without spaces.`, {
            hint: "See key IDs with: nixpool ca list",
          });
      }
      const p = resolveCaPaths(resolveAccessPaths(ctx.stateDir).caDir);
      const r = await revokeCerts(p, { serials: o.serial, keyIds: o.id, users: o.user });
      if (o.json) ctx.output.json({ ...r, krl: p.krl });
      else ctx.output.out(`Revoked ${r.added.length} more (${r.total} in ${p.krl}).`);
    });

  ca.command("list")
    .description("list issued certificates")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const ctx = context();
      const p = resolveCaPaths(resolveAccessPaths(ctx.stateDir).caDir);
      const issued = await readIssued(p);
      const revoked = await readRevoked(p);
      const rows = issued.map((c) => ({ ...c, revoked: isCertRevoked(revoked, c) }));
      if (o.json) {
        ctx.output.json({ certificates: rows });
        return;
      }
      ctx.output.out(
        renderTable(
          ["SERIAL", "KEY-ID", "PRINCIPALS", "FROM", "TO", "REVOKED"],
          rows.map((c) => [
            String(c.serial),
            c.keyId,
            c.principals.join(","),
            c.validFrom,
            c.validTo,
            c.revoked ? "yes" : "no",
          ]),
        ),
      );
    });
};
