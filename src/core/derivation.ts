import type { BasicDerivation, DerivationOutput } from "./nix-serve/build.js";
import { NixpoolError } from "./errors.js";
import { isDerivationPath, isStorePath } from "./store-path.js";

export { derivationName } from "./build-log.js";
export type { DerivationOutput } from "./nix-serve/build.js";

/** A store derivation (`.drv`) as Nix 2.8 writes it (ATerm, src/libstore/derivations.cc). */
export interface Derivation {
  /** Output name → path; fixed outputs also carry hashAlgo ("sha256", "r:sha256") and hash. */
  outputs: Map<string, DerivationOutput>;
  /** Input derivation path → the output names used. */
  inputDrvs: Map<string, string[]>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: Map<string, string>;
}

/**
 * Parses the text of a `.drv` file. Strict: anything Nix would not have written (unknown
 * escapes, duplicate names, non-store paths, trailing bytes) is refused, naming the file and
 * the offset.
 */
export function parseDerivation(text: string, file: string): Derivation {
  return new AtermParser(text, file).derivation();
}

/**
 * The BasicDerivation BuildDerivation sends: the input derivations' outputs become inputSrcs
 * (`outputPathOf` gives the path of one output of an input derivation).
 */
export function toBasicDerivation(
  drv: Derivation,
  outputPathOf: (drvPath: string, outputName: string) => string,
): BasicDerivation {
  const srcs = new Set(drv.inputSrcs);
  for (const [inputDrv, names] of drv.inputDrvs)
    for (const name of names) srcs.add(outputPathOf(inputDrv, name));
  const env = new Map([...drv.env].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return {
    outputs: new Map(drv.outputs),
    inputSrcs: [...srcs].sort(),
    platform: drv.platform,
    builder: drv.builder,
    args: [...drv.args],
    env,
  };
}

/** The output paths of a derivation, by output name. */
export function outputPaths(drv: Derivation): Map<string, string> {
  return new Map([...drv.outputs].map(([name, o]) => [name, o.path]));
}

/** `requiredSystemFeatures` (a space-separated env value, or a list under __structuredAttrs). */
export function requiredSystemFeatures(drv: Derivation): string[] {
  const structured = structuredAttrs(drv)?.["requiredSystemFeatures"];
  if (Array.isArray(structured)) return structured.filter((f): f is string => typeof f === "string");
  return (drv.env.get("requiredSystemFeatures") ?? "").split(/\s+/).filter((f) => f !== "");
}

/** A fixed-output derivation: one output "out" with a declared hash (it may fetch from the network). */
export function isFixedOutput(drv: Derivation): boolean {
  const out = drv.outputs.get("out");
  return drv.outputs.size === 1 && out !== undefined && out.hash !== "";
}

/** Whether the derivation asks to be built locally (`preferLocalBuild = true`). */
export function preferLocalBuild(drv: Derivation): boolean {
  const structured = structuredAttrs(drv)?.["preferLocalBuild"];
  if (structured !== undefined) return structured === true;
  return drv.env.get("preferLocalBuild") === "1";
}

function structuredAttrs(drv: Derivation): Record<string, unknown> | undefined {
  const json = drv.env.get("__json");
  if (json === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(json);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

class AtermParser {
  private pos = 0;

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  derivation(): Derivation {
    this.expect("Derive([");
    const outputs = new Map<string, DerivationOutput>();
    this.list(() => {
      this.expect("(");
      const at = this.pos;
      const name = this.string();
      this.expect(",");
      const pathAt = this.pos;
      const path = this.string();
      this.expect(",");
      const hashAlgo = this.string();
      this.expect(",");
      const hash = this.string();
      this.expect(")");
      if (name === "") this.fail("an output has an empty name", at);
      if (outputs.has(name)) this.fail(`output "${name}" appears twice`, at);
      if (!isStorePath(path)) this.fail(`output "${name}" has the path "${path}", not a store path`, pathAt);
      if ((hashAlgo === "") !== (hash === ""))
        this.fail(`output "${name}" has a hash algorithm or a hash, not both`, at);
      outputs.set(name, { path, hashAlgo, hash });
    }, "]");
    if (outputs.size === 0) this.fail("the derivation has no outputs", this.pos);
    this.expect(",[");
    const inputDrvs = new Map<string, string[]>();
    this.list(() => {
      this.expect("(");
      const at = this.pos;
      const path = this.string();
      if (!isDerivationPath(path)) this.fail(`input derivation "${path}" is not a .drv store path`, at);
      if (inputDrvs.has(path)) this.fail(`input derivation ${path} appears twice`, at);
      this.expect(",[");
      const names = this.strings();
      this.expect(")");
      inputDrvs.set(path, names);
    }, "]");
    this.expect(",[");
    const inputSrcs = this.strings();
    for (const s of inputSrcs)
      if (!isStorePath(s)) this.fail(`input source "${s}" is not a store path`, this.pos);
    this.expect(",");
    const platform = this.string();
    this.expect(",");
    const builder = this.string();
    this.expect(",[");
    const args = this.strings();
    this.expect(",[");
    const env = new Map<string, string>();
    this.list(() => {
      this.expect("(");
      const at = this.pos;
      const name = this.string();
      this.expect(",");
      const value = this.string();
      this.expect(")");
      if (env.has(name)) this.fail(`environment variable "${name}" appears twice`, at);
      env.set(name, value);
    }, "]");
    this.expect(")");
    // A trailing newline is tolerated; nothing else may follow.
    if (this.pos < this.text.length && this.text.slice(this.pos).trim() !== "") {
      this.fail("unexpected text after the derivation", this.pos);
    }
    return { outputs, inputDrvs, inputSrcs, platform, builder, args, env };
  }

  /** Items separated by "," up to `close` (the opening bracket is already consumed). */
  private list(item: () => void, close: string): void {
    if (this.text.startsWith(close, this.pos)) {
      this.pos += close.length;
      return;
    }
    for (;;) {
      item();
      if (this.text.startsWith(close, this.pos)) {
        this.pos += close.length;
        return;
      }
      this.expect(",");
    }
  }

  private strings(): string[] {
    const out: string[] = [];
    this.list(() => out.push(this.string()), "]");
    return out;
  }

  private string(): string {
    const start = this.pos;
    if (this.text.charCodeAt(this.pos) !== QUOTE) this.fail('expected a string (")', this.pos);
    this.pos++;
    let out = "";
    let run = this.pos;
    for (;;) {
      const c = this.text.charCodeAt(this.pos);
      if (Number.isNaN(c)) this.fail("a string is not closed", start);
      if (c === QUOTE) {
        out += this.text.slice(run, this.pos);
        this.pos++;
        return out;
      }
      if (c === BACKSLASH) {
        out += this.text.slice(run, this.pos);
        const e = this.text[this.pos + 1];
        const decoded =
          e === "n" ? "\n" : e === "r" ? "\r" : e === "t" ? "\t" : e === '"' || e === "\\" ? e : undefined;
        if (decoded === undefined) this.fail(`unknown escape "\\${e ?? ""}" in a string`, this.pos);
        out += decoded;
        this.pos += 2;
        run = this.pos;
        continue;
      }
      this.pos++;
    }
  }

  private expect(s: string): void {
    if (!this.text.startsWith(s, this.pos)) {
      const found = this.text.slice(this.pos, this.pos + Math.max(s.length, 8));
      this.fail(
        `expected "${s}" but found ${found === "" ? "the end of the file" : JSON.stringify(found)}`,
        this.pos,
      );
    }
    this.pos += s.length;
  }

  private fail(reason: string, offset: number): never {
    throw new NixpoolError(
      "DERIVATION_INVALID",
      `The derivation ${this.file} is malformed: ${reason} (character ${offset}).`,
      {
        hint: `Inspect it with \`nix --extra-experimental-features nix-command show-derivation ${this.file}\`; re-create it with nix-instantiate if it is damaged.`,
        details: { file: this.file, offset },
      },
    );
  }
}
