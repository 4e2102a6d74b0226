import type { RegisterCommands } from "../cli/commands.js";
import { statePaths } from "../config/state-paths.js";
import { ensureCacheKey } from "../adapters/cache-key.js";
import {
  cacheHostOf,
  parseCacheUrl,
  renderCacheNetrc,
  renderCacheNixConf,
  renderCacheNixosSettings,
} from "../core/binary-cache/client-config.js";
import { renderPublicSigningKey } from "../core/binary-cache/signing-key.js";
import { configError } from "../core/errors.js";
import { ensureCacheToken } from "../serve/serve-token.js";

const DEFAULT_URL = "http://127.0.0.1:7420/cache";

function readUrl(text: string): string {
  const url = parseCacheUrl(text);
  if (url === undefined) {
    throw configError("FLAG_INVALID", `--url "${text}" is not an http(s) URL of the cache.`, {
      hint: `For example: nixpool cache client-config --url http://pool.example.org:7420/cache`,
    });
  }
  return url;
}

/** nixpool cache …: the pool's binary cache (served by `nixpool serve` at /cache; docs/cache.md). */
export const registerCache: RegisterCommands = (program, context) => {
  const cache = program
    .command("cache")
    .description("the pool's binary cache: its signing key, its read-only token, client configuration");

  cache
    .command("key")
    .description("the pool's Nix signing key (made on first use, 0600): prints its trusted-public-keys entry")
    .option("--name <name>", "the key's name when it is made (default nixpool-HOST-1)")
    .option("--new", "replace it with a new key (clients must trust the new public key)")
    .option("--json", "print JSON")
    .action(async (o: { name?: string; new?: boolean; json?: boolean }) => {
      const ctx = context();
      const files = statePaths(ctx.stateDir).cache;
      const { key, created } = await ensureCacheKey(files, {
        ...(o.name !== undefined ? { name: o.name } : {}),
        renew: o.new === true,
      });
      const publicKey = renderPublicSigningKey(key);
      if (o.json) {
        ctx.output.json({
          name: key.name,
          publicKey,
          created,
          secretKeyFile: files.secretKey,
          publicKeyFile: files.publicKey,
        });
        return;
      }
      ctx.output.out(publicKey);
      if (process.stderr.isTTY) {
        ctx.output.err(
          `(${created ? "made" : "from"} ${files.secretKey}; clients add it to trusted-public-keys: nixpool cache client-config)`,
        );
      }
    });

  cache
    .command("token")
    .description("print the cache's read-only token for clients' netrc-file (made on first use; 0600)")
    .option("--new", "replace it with a new one (clients must use the new one)")
    .action(async (o: { new?: boolean }) => {
      const ctx = context();
      const token = await ensureCacheToken(ctx.stateDir, o.new === true);
      // Printed on purpose, straight to stdout (as serve token does), never through redaction.
      process.stdout.write(`${token}\n`);
    });

  cache
    .command("client-config")
    .description("print the nix.conf lines (or NixOS settings) that make a machine use the cache")
    .option("--url <url>", "the cache's URL as clients reach it", DEFAULT_URL)
    .option(
      "--netrc-file <path>",
      "the netrc file clients keep the token in (the one they already use, if any)",
      "/etc/nix/netrc",
    )
    .option(
      "--open",
      "the cache needs no token (serve --cache-public, or --cache-open on loopback): exactly two lines",
    )
    .option("--nixos", "print NixOS module settings instead of nix.conf lines")
    .action(async (o: { url: string; netrcFile: string; open?: boolean; nixos?: boolean }) => {
      const ctx = context();
      const url = readUrl(o.url);
      const { key } = await ensureCacheKey(statePaths(ctx.stateDir).cache);
      const opts = {
        url,
        publicKey: renderPublicSigningKey(key),
        ...(o.open ? {} : { netrcFile: o.netrcFile }),
      };
      ctx.output.out((o.nixos ? renderCacheNixosSettings(opts) : renderCacheNixConf(opts)).trimEnd());
      if (!o.open && process.stderr.isTTY) {
        // Appended: the file may already hold other caches' credentials.
        ctx.output.err(
          `(then: nixpool cache netrc --url ${url} >> ${o.netrcFile}; chmod 600 ${o.netrcFile})`,
        );
      }
    });

  cache
    .command("netrc")
    .description("print the netrc line that carries the cache token (a secret: write it to a 0600 file)")
    .option("--url <url>", "the cache's URL as clients reach it", DEFAULT_URL)
    .action(async (o: { url: string }) => {
      const ctx = context();
      const url = readUrl(o.url);
      const token = await ensureCacheToken(ctx.stateDir);
      process.stdout.write(renderCacheNetrc(cacheHostOf(url), token));
    });
};
