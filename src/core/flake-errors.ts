// Why `nix eval` of a flake output failed, told from Nix 2.8's stderr: the flake is missing, is
// not a flake, lacks the attribute, needs the network, or does not evaluate.
import { ExitCode, NixpoolError } from "./errors.js";
import type { FlakeInstallable } from "./installable.js";
import { findNixPosition, splitNixMessages, type NixPosition } from "./nix-eval-errors.js";

/** `nix eval --show-trace` of the installable, for hints. */
function traceCommand(i: FlakeInstallable): string {
  return `nix --extra-experimental-features 'nix-command flakes' eval --show-trace ${i.shown}`;
}

/**
 * The error for a failed evaluation of `i`. `sourceDir` maps Nix's position in the flake's store
 * copy (`/nix/store/…-source/flake.nix:3:5`) back to the user's checkout, when known.
 */
export function flakeEvalError(
  stderr: string,
  i: FlakeInstallable,
  source?: { storePath: string; dir: string },
): NixpoolError {
  const messages = splitNixMessages(stderr);
  const errors = messages.filter((m) => m.startsWith("error:"));
  const nixError = messages.filter((m) => !m.startsWith("warning:")).join("\n");
  const first = errors[0] ?? nixError.split("\n")[0] ?? "nix eval failed";
  const all = errors.join("\n");
  // Nix's text goes with an evaluation error only (the CLI prints it): the others say it all.
  const details = { installable: i.shown, nixMessage: nixError };

  const missing = /getting status of '(.+)': No such file or directory/.exec(all)?.[1];
  if (
    missing !== undefined ||
    /does not appear to be a git repository|repository .* does not exist/.test(stderr)
  ) {
    return new NixpoolError(
      "FLAKE_NOT_FOUND",
      `The flake ${i.ref} does not exist${missing ? ` (${missing})` : ""}.`,
      {
        hint: "Name a directory or git repository holding a flake.nix, e.g.: nixpool build .#hello",
        exitCode: ExitCode.usage,
        details,
      },
    );
  }
  // Nix 2.8 searches a path's parents for flake.nix, stopping at / (or a filesystem boundary) or at a git root.
  if (
    /could not find a flake\.nix file|is not part of a flake \(|unable to find a flake before encountering filesystem boundary/.test(
      all,
    )
  ) {
    return new NixpoolError(
      "NOT_A_FLAKE",
      `${i.ref} is not a flake: neither it nor a parent directory has a flake.nix.`,
      {
        hint: `Build a Nix file instead (nixpool build FILE.nix -A ATTR), or create a flake there: nix flake init`,
        exitCode: ExitCode.usage,
        details,
      },
    );
  }
  const tried = /does not provide attribute (.+)$/m.exec(all)?.[1];
  if (tried !== undefined) {
    const paths = [...tried.matchAll(/'([^']*)'/g)].map((m) => m[1] ?? "");
    return new NixpoolError(
      "FLAKE_ATTRIBUTE_MISSING",
      `The flake ${i.ref} has no attribute ${paths.join(", ") || tried}.`,
      {
        hint: `List its outputs with: nix --extra-experimental-features 'nix-command flakes' flake show ${i.ref}`,
        exitCode: ExitCode.usage,
        details: { ...details, tried: paths },
      },
    );
  }
  const url = /unable to download '([^']+)'|Couldn't resolve host|Could not resolve host: ([^\s]+)/.exec(all);
  if (url && /flake-registry\.json/.test(url[0]) && isRegistryName(i.ref)) {
    // The word named nothing on disk, so Nix took it for a registry name (a typo, often).
    return new NixpoolError(
      "FLAKE_INPUT_UNAVAILABLE",
      `${i.ref} is no file or directory here, so Nix looked it up in the flake registry, which it could not fetch (${url[1] ?? "the network is unreachable"}).`,
      {
        hint: `Name a local flake or file (./${i.ref}, ${i.ref}.nix) or a flake by URL (path:/abs/dir, git+file:///repo, github:owner/repo)`,
        details,
      },
    );
  }
  if (url) {
    return new NixpoolError(
      "FLAKE_INPUT_UNAVAILABLE",
      `Nix could not fetch an input of the flake ${i.ref} (${url[1] ?? url[2] ?? "the network is unreachable"}).`,
      {
        hint: "Without the network, give the input a local copy: nixpool build … --override-input INPUT path:/local/copy (or a path:/git+file: input in flake.nix)",
        details,
      },
    );
  }
  const at = findNixPosition(all);
  const position = at && source ? mapPosition(at, source) : at;
  const reason = (first.replace(/^error:\s*/, "").split("\n")[0] ?? "").replace(/\.$/, "");
  const where = position ? ` (at ${position.file}:${position.line}:${position.column})` : "";
  return new NixpoolError("NIX_EVAL_FAILED", `Nix could not evaluate ${i.shown}: ${reason}${where}.`, {
    hint: position
      ? `Fix the expression at ${position.file}:${position.line}:${position.column}, then check it with: ${traceCommand(i)}`
      : `Check it with: ${traceCommand(i)}`,
    details: { installable: i.shown, nixError, position: position ?? null },
  });
}

/** A position in the flake's store copy, as the same place in its checkout. */
function mapPosition(p: NixPosition, source: { storePath: string; dir: string }): NixPosition {
  const prefix = `${source.storePath}/`;
  return p.file.startsWith(prefix) ? { ...p, file: `${source.dir}/${p.file.slice(prefix.length)}` } : p;
}

/** A flake reference Nix looks up in its registry: `flake:NAME`, or a bare name that is no path or URL. */
function isRegistryName(ref: string): boolean {
  return ref.startsWith("flake:") || !/^([a-zA-Z][a-zA-Z0-9+.-]*:|[./~])/.test(ref);
}
