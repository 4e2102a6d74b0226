import { stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import {
  checkFileOptions,
  checkFlakeOptions,
  parseInstallable,
  type FlakeOptions,
  type Installable,
  type NixArg,
  type PathFacts,
} from "../core/installable.js";

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** What the file system says of one path (a missing or unreadable path does not exist). */
async function pathFacts(abs: string): Promise<PathFacts> {
  const s = await stat(abs).catch(() => undefined);
  if (!s) return { exists: false };
  if (!s.isDirectory()) return { exists: true, isDirectory: false, hasFlakeNix: false, hasDefaultNix: false };
  const [hasFlakeNix, hasDefaultNix] = await Promise.all([
    isFile(join(abs, "flake.nix")),
    isFile(join(abs, "default.nix")),
  ]);
  return { exists: true, isDirectory: true, hasFlakeNix, hasDefaultNix };
}

/**
 * The installables of a command line (`.#hello`, `.`, `FILE.nix`), read as `nix build` and
 * `nix-build` would from `cwd`; -A and --arg apply to every Nix file among them. Refuses -A or
 * --arg with flakes only, and flake options with Nix files only.
 */
export async function readInstallables(
  words: readonly string[],
  file: { attrs: readonly string[]; args: readonly NixArg[] },
  flake: FlakeOptions,
  cwd = process.cwd(),
): Promise<Installable[]> {
  const installables = await Promise.all(
    words.map(async (w) => {
      const pathPart = w.includes("#") ? (w.split("#")[0] ?? "") : w;
      const expanded = pathPart.startsWith("~/") ? join(homedir(), pathPart.slice(2)) : pathPart;
      const abs = resolve(cwd, expanded || ".");
      const facts = w.includes("#") ? { exists: false as const } : await pathFacts(abs);
      return parseInstallable(w, abs, facts, file);
    }),
  );
  checkFileOptions(installables, file);
  checkFlakeOptions(installables, flake);
  return installables;
}
