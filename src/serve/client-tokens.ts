import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir } from "node:fs/promises";
import { readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { registerSecret } from "../core/redact.js";

// Every remote client (a person, a CI runner) has its own revocable token: builds, fair share and
// cancel rights are per client, not per shared secret. Only a digest of each token is kept, so
// the file gives nobody a token; a token is shown once, when it is made.

const ClientsFileSchema = z.strictObject({
  clients: z.record(
    z.string().regex(USER_NAME_PATTERN),
    z.strictObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/), created: z.string() }),
  ),
});
type ClientsFile = z.infer<typeof ClientsFileSchema>;

const digest = (token: string) => createHash("sha256").update(token).digest("hex");

/** A client's name: a user name's rule, and never "token" (the shared token's holder is shown so). */
export function parseClientName(name: string): string {
  if (USER_NAME_PATTERN.test(name) && name !== "token") return name;
  throw new NixpoolError(
    "USAGE",
    `"${name}" cannot name a client (lower case letters, digits, _ and -; not "token").`,
    {
      hint: "For example: nixpool serve token --client ci-runner-1",
      exitCode: ExitCode.usage,
    },
  );
}

function parseClients(text: string, file: string): ClientsFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const r = ClientsFileSchema.safeParse(json);
  if (r.success) return r.data;
  throw new NixpoolError("STATE_RECORD_INVALID", `The clients file ${file} is damaged.`, {
    hint: `Move it away and issue the clients' tokens again: nixpool serve token --client NAME`,
  });
}

async function readClients(file: string): Promise<ClientsFile> {
  const text = await readFileIfExists(file);
  return text === undefined ? { clients: {} } : parseClients(text, file);
}

async function writeClients(file: string, data: ClientsFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
}

/** Makes NAME a new token (replacing its old one, which stops working at once); returns it. */
export async function issueClientToken(file: string, name: string, now: Date): Promise<string> {
  const data = await readClients(file);
  const token = randomBytes(32).toString("base64url");
  registerSecret(token);
  data.clients[parseClientName(name)] = { sha256: digest(token), created: now.toISOString() };
  await writeClients(file, data);
  return token;
}

/** Revokes NAME's token; CLIENT_UNKNOWN when it has none. */
export async function revokeClientToken(file: string, name: string): Promise<void> {
  const data = await readClients(file);
  if (!(name in data.clients)) {
    throw new NixpoolError("CLIENT_UNKNOWN", `No client ${name} has a token on this coordinator.`, {
      hint: "List them with: nixpool serve token --list",
      exitCode: ExitCode.usage,
    });
  }
  delete data.clients[name];
  await writeClients(file, data);
}

/** The clients with a token, and when it was made. */
export async function listClientTokens(file: string): Promise<{ name: string; created: string }[]> {
  const data = await readClients(file);
  return Object.entries(data.clients)
    .map(([name, c]) => ({ name, created: c.created }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Who holds a bearer token, for the API's gate: read again whenever the file changes, so a new
 * or revoked token counts from the next request. A damaged file names no one (and is logged).
 */
export function clientTokenLookup(
  file: string,
  log: (line: string) => void,
): (token: string) => string | undefined {
  let seen = "";
  let byDigest = new Map<string, string>();
  return (token) => {
    let stamp: string;
    try {
      const s = statSync(file);
      stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      stamp = "none";
    }
    if (stamp !== seen) {
      seen = stamp;
      byDigest = new Map();
      if (stamp !== "none") {
        try {
          const data = parseClients(readFileSync(file, "utf8"), file);
          for (const [name, c] of Object.entries(data.clients)) byDigest.set(c.sha256, name);
        } catch (e) {
          log(`client tokens: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
    return byDigest.get(digest(token));
  };
}
