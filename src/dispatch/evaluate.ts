import { resolve } from "node:path";
import type { NixArg } from "../adapters/nix-build.js";
import { run } from "../adapters/runner.js";
import { NixpoolError } from "../core/errors.js";
import { evalFailure, splitNixMessages } from "../core/nix-eval-errors.js";

export interface EvaluateRequest {
  file: string;
  attr?: string | undefined;
  args?: readonly NixArg[];
  signal?: AbortSignal;
}

/** The nix-instantiate argv: the same file, attribute and arguments nix-build would get. */
export function instantiateArgv(req: EvaluateRequest): string[] {
  const argv = ["nix-instantiate", resolve(req.file)];
  if (req.attr) argv.push("-A", req.attr);
  for (const a of req.args ?? []) argv.push(`--${a.kind}`, a.name, a.value);
  argv.push("--option", "substituters", "");
  return argv;
}

/** A derivation to build and the output the user asked for (`-A pkg.dev` names "dev"). */
export interface EvaluatedRoot {
  drv: string;
  output: string;
}

/** Evaluates the file into derivations (written to the local store); returns their .drv paths. */
export async function evaluateDerivations(req: EvaluateRequest): Promise<EvaluatedRoot[]> {
  const result = await run(instantiateArgv(req), {
    reject: false,
    timeout: 0,
    ...(req.signal ? { signal: req.signal } : {}),
  });
  if (result.exitCode !== 0) throw evaluationError(result.stderr, resolve(req.file));
  const drvs = result.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const bad = drvs.find((d) => !/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[^/]+\.drv(!.*)?$/.test(d));
  if (bad !== undefined || drvs.length === 0) {
    throw new NixpoolError(
      "NIX_EVAL_FAILED",
      `nix-instantiate ${req.file} printed no derivation path${bad ? ` (got "${bad}")` : ""}.`,
      {
        hint: `Does ${req.attr ? `attribute ${req.attr}` : "the file"} evaluate to a derivation? Try: nix-instantiate ${req.file}`,
      },
    );
  }
  // nix-instantiate prints DRV!OUTPUT when the attribute names an output other than "out".
  return drvs.map((d) => {
    const [drv = d, output = "out"] = d.split("!");
    return { drv, output };
  });
}

/** Nix's own error (never its warnings) for an evaluation that failed. */
function evaluationError(stderr: string, file: string): NixpoolError {
  const known = evalFailure(stderr, file);
  if (known) return known;
  const nixError = splitNixMessages(stderr)
    .filter((m) => !m.startsWith("warning:"))
    .join("\n")
    .trim();
  return new NixpoolError(
    "NIX_EVAL_FAILED",
    `nix-instantiate ${file} failed: ${nixError.split("\n")[0] ?? ""}`,
    {
      hint: `Check it with: nix-instantiate --show-trace ${file}`,
      details: { file, position: null, nixError },
    },
  );
}
