import { createHash } from "node:crypto";
import type { BasicDerivation, BuiltOutput } from "./build.js";

// The DrvOutputs of a BuildResult, as Nix 2.8's `nix-store --serve` answers BuildDerivation: for
// each output, the id "sha256:<hash modulo>!<output>" (hashDerivationModulo of the derivation
// it was sent, which has no inputDrvs, outputs masked: libstore/derivations.cc) and the output's
// base name. Nix 2.8's client reads them only for content-addressed derivations (build-remote.cc,
// with the ca-derivations experimental feature); the gateway sends them as a real builder would.

const ESCAPES: Record<string, string> = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** Nix's printString: quoted, with its five escapes. */
function quoted(s: string): string {
  return `"${s.replace(/["\\\n\r\t]/g, (c) => ESCAPES[c] as string)}"`;
}

/** Nix's printUnquotedString: quoted, nothing escaped (store paths, names, the platform). */
function plain(s: string): string {
  return `"${s}"`;
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function sha256Hex(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex");
}

/** The derivation as Nix's Derivation::unparse(maskOutputs = true) writes it, with no input derivations. */
export function maskedATerm(drv: BasicDerivation): string {
  const outs = [...drv.outputs.entries()].sort(([a], [b]) => byCodeUnit(a, b));
  const outputs = outs.map(
    ([name, o]) => `(${plain(name)},${plain("")},${plain(o.hashAlgo)},${plain(o.hash)})`,
  );
  const srcs = [...drv.inputSrcs].sort(byCodeUnit).map(plain);
  const env = [...drv.env.entries()]
    .sort(([a], [b]) => byCodeUnit(a, b))
    .map(([k, v]) => `(${quoted(k)},${quoted(drv.outputs.has(k) ? "" : v)})`);
  return `Derive([${outputs.join(",")}],[],[${srcs.join(",")}],${plain(drv.platform)},${quoted(drv.builder)},[${drv.args.map(quoted).join(",")}],[${env.join(",")}])`;
}

/**
 * Each output's hash modulo ("sha256:<base16>"): a fixed-output derivation's from its declared
 * hash and path, any other's from its masked ATerm. Floating content-addressed outputs (no path)
 * have none: Nix 2.8 builds them only with an experimental feature the gateway does not offer.
 */
export function outputHashesModulo(drv: BasicDerivation): Map<string, string> {
  const outs = [...drv.outputs.entries()];
  if (outs.length > 0 && outs.every(([, o]) => o.hashAlgo !== "" && o.hash !== "" && o.path !== "")) {
    return new Map(
      outs.map(([name, o]) => [name, `sha256:${sha256Hex(`fixed:out:${o.hashAlgo}:${o.hash}:${o.path}`)}`]),
    );
  }
  const hash = `sha256:${sha256Hex(maskedATerm(drv))}`;
  return new Map(outs.map(([name]) => [name, hash]));
}

/** The DrvOutputs a builder reports for `drv` once its outputs are valid (unsigned). */
export function builtOutputsOf(drv: BasicDerivation): BuiltOutput[] {
  const hashes = outputHashesModulo(drv);
  const result: BuiltOutput[] = [];
  for (const [name, o] of drv.outputs) {
    const hash = hashes.get(name);
    if (hash === undefined || o.path === "") continue;
    result.push({
      id: `${hash}!${name}`,
      outputName: name,
      outPath: o.path.slice(o.path.lastIndexOf("/") + 1),
      signatures: [],
    });
  }
  return result;
}
