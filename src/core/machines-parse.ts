import { publicKeyProblem } from "./public-key.js";

/**
 * A parser for Nix machines files that reads them exactly as Nix 2.8 does
 * (src/libstore/machines.cc at tag 2.8.0, checked against the real nix on this machine),
 * but reports every problem with its file and line instead of stopping at the first.
 */

/** Where an entry came from. */
export interface MachinesLocation {
  file: string;
  line: number;
}

/** One machine entry as Nix 2.8 parses it. */
export interface ParsedMachine {
  at: MachinesLocation;
  /** The entry after the `#` cut, as Nix quotes it in its errors. */
  entry: string;
  /** The first field as written. */
  uri: string;
  /** The store URI Nix uses: a scheme-less URI gains `ssh://` (see applySchemeRule). */
  storeUri: string;
  /** undefined: the field was `-` or absent (Nix uses its own system). Order and duplicates kept. */
  systems: string[] | undefined;
  sshKey: string | undefined;
  maxJobs: number;
  /** As written; Nix raises 0 to 1. */
  speedFactor: number;
  /** Sorted and de-duplicated, like Nix's std::set. */
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  /** The 8th field as written (base64). */
  hostKeyBase64: string | undefined;
  /** The decoded host key line, when the 8th field decodes to one. */
  hostKey: string | undefined;
  /** Fields after the 8th, which Nix ignores. */
  extraFields: string[];
}

export type MachinesSeverity = "error" | "warning";

/** A problem found in a machines file; "error" means Nix 2.8 itself would refuse the file. */
export interface MachinesDiagnostic {
  at: MachinesLocation;
  severity: MachinesSeverity;
  code: string;
  message: string;
}

export interface ParseMachinesResult {
  machines: ParsedMachine[];
  diagnostics: MachinesDiagnostic[];
  /** Every file read, in order (the top file first). */
  files: string[];
}

/** What reading an included file gave. */
export type IncludeRead =
  { kind: "text"; text: string } | { kind: "missing" } | { kind: "error"; message: string };

export interface ParseMachinesOptions {
  /** Reads an absolute path; the caller does the I/O. */
  read: (path: string) => Promise<IncludeRead>;
  /**
   * Directory relative `@include` paths resolve against. Nix's build hook runs in `/`,
   * so relative includes are relative to `/` (default), not to the including file.
   */
  includeBase?: string;
  /** Nesting limit; Nix 2.8 recurses until its stack overflows. */
  maxDepth?: number;
}

const WHITESPACE = /[ \t\n\r]+/;
const BASE64_ALPHABET = /^[A-Za-z0-9+/]*$/;
const UINT_MAX = 4294967295;

/** Nix's backwards-compatibility rule: a URI without scheme, path or special word means ssh://. */
export function applySchemeRule(uri: string): string {
  const special = ["auto", "daemon", "local"];
  const keep =
    uri.includes("://") ||
    uri.includes("/") ||
    special.includes(uri) ||
    special.some((w) => uri.startsWith(`${w}?`)) ||
    uri.startsWith("?");
  return keep ? uri : `ssh://${uri}`;
}

/** Nix 2.8's string2Int<unsigned int>: digits with an optional leading '+', up to 2^32-1. */
export function parseNixUnsigned(text: string): number | undefined {
  if (!/^\+?[0-9]+$/.test(text)) return undefined;
  const n = Number(text.replace(/^\+/, ""));
  return n <= UINT_MAX ? n : undefined;
}

/**
 * Nix 2.8's base64Decode: stops at the first '=', skips newlines, refuses any other
 * character outside the alphabet. Returns undefined where Nix throws.
 */
export function decodeNixBase64(text: string): string | undefined {
  const cut = text.indexOf("=");
  const body = (cut >= 0 ? text.slice(0, cut) : text).replace(/\n/g, "");
  if (!BASE64_ALPHABET.test(body)) return undefined;
  let bits = 0;
  let acc = 0;
  const bytes: number[] = [];
  for (const c of body) {
    const digit = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".indexOf(c);
    acc = ((acc << 6) | digit) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bytes.push((acc >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Whether text is one OpenSSH public key line ("type base64 [comment]"); returns it trimmed. */
export function checkPublicKeyLine(text: string): string | undefined {
  const line = text.trim();
  return publicKeyProblem(line) === undefined ? line : undefined;
}

function sortedSet(field: string): string[] {
  return [...new Set(field.split(",").filter((x) => x !== ""))].sort();
}

function isSet(tokens: readonly string[], i: number): boolean {
  const t = tokens[i];
  return t !== undefined && t !== "" && t !== "-";
}

/** Parses one entry (already cut at '#', not starting with '@') the way Nix's parseBuilderLine does. */
export function parseMachineEntry(
  entry: string,
  at: MachinesLocation,
): { machine?: ParsedMachine; diagnostics: MachinesDiagnostic[] } {
  const diagnostics: MachinesDiagnostic[] = [];
  const problem = (code: string, message: string, severity: MachinesSeverity = "error") =>
    diagnostics.push({ at, severity, code, message });
  const tokens = entry.split(WHITESPACE).filter((t) => t !== "");
  if (!isSet(tokens, 0)) {
    problem(
      "MACHINES_NO_URI",
      entry.trim() === ""
        ? `an entry holding only whitespace (${JSON.stringify(entry)}) is fatal to Nix 2.8: "bad machine specification: store URL was not found"; delete the line or start the comment in column 1`
        : `the first field must be a store URI, not "-" (Nix 2.8: "store URL was not found")`,
    );
    return { diagnostics };
  }
  const uri = tokens[0] ?? "";
  const unsigned = (i: number, name: string): number => {
    if (!isSet(tokens, i)) return 1;
    const text = tokens[i] ?? "";
    const n = parseNixUnsigned(text);
    if (n === undefined) {
      problem(
        "MACHINES_BAD_NUMBER",
        `${name} (field ${i + 1}) "${text}" is not an unsigned integer Nix 2.8 accepts (digits only, at most ${UINT_MAX})`,
      );
      return 1;
    }
    return n;
  };
  const maxJobs = unsigned(3, "maxJobs");
  const speedFactor = unsigned(4, "speedFactor");
  let hostKeyBase64: string | undefined;
  let hostKey: string | undefined;
  if (isSet(tokens, 7)) {
    hostKeyBase64 = tokens[7] ?? "";
    const decoded = decodeNixBase64(hostKeyBase64);
    if (decoded === undefined) {
      problem("MACHINES_BAD_BASE64", `the host key (field 8) is not valid base64`);
    } else {
      hostKey = checkPublicKeyLine(decoded);
      if (hostKey === undefined) {
        problem(
          "MACHINES_BAD_HOST_KEY",
          `the host key (field 8) decodes to ${JSON.stringify(decoded.slice(0, 60))}, not a public key line such as "ssh-ed25519 AAAA…"; ssh would refuse the connection`,
        );
      }
    }
  }
  if (diagnostics.some((d) => d.severity === "error")) return { diagnostics };
  const machine: ParsedMachine = {
    at,
    entry,
    uri,
    storeUri: applySchemeRule(uri),
    systems: isSet(tokens, 1) ? (tokens[1] ?? "").split(",").filter((x) => x !== "") : undefined,
    sshKey: isSet(tokens, 2) ? tokens[2] : undefined,
    maxJobs,
    speedFactor,
    supportedFeatures: isSet(tokens, 5) ? sortedSet(tokens[5] ?? "") : [],
    mandatoryFeatures: isSet(tokens, 6) ? sortedSet(tokens[6] ?? "") : [],
    hostKeyBase64,
    hostKey,
    extraFields: tokens.slice(8),
  };
  return { machine, diagnostics };
}

function resolveIncludePath(path: string, base: string): string {
  if (path.startsWith("/")) return path;
  const parts = `${base.replace(/\/+$/, "")}/${path}`.split("/");
  const out: string[] = [];
  for (const p of parts) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return `/${out.join("/")}`;
}

const trimNix = (s: string) => s.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, "");

/**
 * Parses a machines file and its `@include`s the way Nix 2.8 expands and parses them:
 * entries split on newlines and `;`, each cut at `#` without trimming first, `@PATH`
 * only in the first column, missing includes ignored (reported as a warning here).
 */
export async function parseMachinesFile(
  path: string,
  text: string,
  options: ParseMachinesOptions,
): Promise<ParseMachinesResult> {
  const result: ParseMachinesResult = { machines: [], diagnostics: [], files: [] };
  const base = options.includeBase ?? "/";
  const maxDepth = options.maxDepth ?? 20;

  const walk = async (file: string, content: string, stack: string[]): Promise<void> => {
    result.files.push(file);
    const lines = content.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const at = { file, line: i + 1 };
      for (const piece of (lines[i] ?? "").split(";")) {
        if (piece === "") continue; // Nix's tokenizer skips empty pieces
        const hash = piece.indexOf("#");
        const entry = hash >= 0 ? piece.slice(0, hash) : piece;
        if (entry === "") continue;
        if (entry.startsWith("@")) {
          await include(trimNix(entry.slice(1)), at, stack);
          continue;
        }
        if (/^[ \t\r]+@/.test(entry)) {
          result.diagnostics.push({
            at,
            severity: "warning",
            code: "MACHINES_INDENTED_INCLUDE",
            message: `"${entry.trim()}" is not an include for Nix 2.8 because it does not start in column 1; Nix reads it as a machine with that URI`,
          });
        }
        const parsed = parseMachineEntry(entry, at);
        result.diagnostics.push(...parsed.diagnostics);
        if (parsed.machine) result.machines.push(parsed.machine);
      }
    }
  };

  const include = async (raw: string, at: MachinesLocation, stack: string[]) => {
    const target = resolveIncludePath(raw, base);
    if (raw === "") {
      result.diagnostics.push({
        at,
        severity: "warning",
        code: "MACHINES_INCLUDE_EMPTY",
        message: `"@" names no file; Nix ignores it`,
      });
      return;
    }
    if (stack.includes(target) || stack.length > maxDepth) {
      result.diagnostics.push({
        at,
        severity: "error",
        code: "MACHINES_INCLUDE_CYCLE",
        message: `@${raw} includes ${target} again (${[...stack, target].join(" -> ")}); Nix 2.8 recurses until "stack overflow"`,
      });
      return;
    }
    const read = await options.read(target);
    if (read.kind === "missing") {
      result.diagnostics.push({
        at,
        severity: "warning",
        code: "MACHINES_INCLUDE_MISSING",
        message: `@${raw}: ${target} does not exist; Nix silently ignores a missing include${raw.startsWith("/") ? "" : ` (relative includes resolve from ${base}, where Nix's build hook runs)`}`,
      });
      return;
    }
    if (read.kind === "error") {
      result.diagnostics.push({
        at,
        severity: "error",
        code: "MACHINES_INCLUDE_UNREADABLE",
        message: `@${raw}: cannot read ${target}: ${read.message}`,
      });
      return;
    }
    await walk(target, read.text, [...stack, target]);
  };

  await walk(path, text, [path]);
  return result;
}

/** Formats a diagnostic as "FILE:LINE: error: message". */
export function formatMachinesDiagnostic(d: MachinesDiagnostic): string {
  return `${d.at.file}:${d.at.line}: ${d.severity}: ${d.message}`;
}

/** What a machine entry means to Nix once defaults are applied; equal values mean equivalent entries. */
export interface EffectiveMachine {
  storeUri: string;
  systems: string[];
  sshKey: string;
  maxJobs: number;
  speedFactor: number;
  /** Nix checks a derivation's features against supported ∪ mandatory. */
  features: string[];
  mandatoryFeatures: string[];
  /** "type blob" of the pinned key, or "" (the comment does not matter to ssh). */
  hostKey: string;
}

/** Applies Nix's defaults to a parsed entry (thisSystem stands for Nix's own system). */
export function effectiveMachine(m: ParsedMachine, thisSystem: string): EffectiveMachine {
  const [type, blob] = (m.hostKey ?? "").split(/\s+/);
  return {
    storeUri: m.storeUri,
    systems: m.systems ?? [thisSystem],
    sshKey: m.sshKey ?? "",
    maxJobs: m.maxJobs,
    speedFactor: Math.max(1, m.speedFactor),
    features: [...new Set([...m.supportedFeatures, ...m.mandatoryFeatures])].sort(),
    mandatoryFeatures: m.mandatoryFeatures,
    hostKey: type && blob ? `${type} ${blob}` : "",
  };
}
