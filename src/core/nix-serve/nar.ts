import {
  protocolError,
  readByteString,
  readBytes,
  readPadding,
  readU64,
  skipBytes,
  WireWriter,
  type DecodeContext,
  type Decoder,
} from "./wire.js";

/**
 * A scanner for Nix archives (NAR, src/libutil/archive.cc): it walks the structure without
 * keeping file contents, so a relay knows where a NAR ends while the bytes pass through.
 * It accepts the canonical form Nix writes: `( type regular [executable ""] contents N DATA )`,
 * `( type symlink target T )`, `( type directory (entry ( name N node NODE ))* )`, entries
 * strictly sorted by name.
 */

export const NAR_MAGIC = "nix-archive-1";

/** What a scanned NAR held. */
export interface NarSummary {
  /** Bytes of the NAR itself. */
  size: number;
  files: number;
  directories: number;
  symlinks: number;
  /** Sum of regular file sizes. */
  contentBytes: number;
}

// Linux limits: a name is at most 255 bytes, a symlink target at most 4095.
const MAX_TOKEN = 16;
const MAX_NAME = 255;
const MAX_TARGET = 4096;
const MAX_DEPTH = 1024;

const decoder = new TextDecoder();
const ascii = (b: Uint8Array) => decoder.decode(b);

function* token(ctx: DecodeContext, what: string, max = MAX_TOKEN): Decoder<string> {
  return ascii(yield* readByteString(ctx, what, max));
}

function* expectToken(ctx: DecodeContext, expected: string, where: string): Decoder<void> {
  const start = ctx.offset();
  const got = yield* token(ctx, `NAR ${where}`);
  if (got !== expected) throw badNar(`expected "${expected}" ${where} but found "${got}"`, start);
}

function badNar(reason: string, offset: number) {
  return protocolError(`The peer sent a malformed NAR: ${reason} (byte ${offset}).`, { what: "NAR", offset });
}

/** Compares byte strings as Nix does (std::string, unsigned bytes). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function validName(name: Uint8Array): boolean {
  if (name.length === 0) return false;
  if (name.length === 1 && name[0] === 0x2e) return false;
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return false;
  return !name.includes(0x2f) && !name.includes(0);
}

/** Scans one NAR from its magic to its last ")". */
export function* scanNar(ctx: DecodeContext): Decoder<NarSummary> {
  const start = ctx.offset();
  const len = yield* readU64(ctx, "NAR magic");
  if (len !== NAR_MAGIC.length) throw badNar(`it does not start with "${NAR_MAGIC}"`, start);
  const magic = ascii(yield* readBytes(len));
  yield* readPadding(ctx, len, "NAR magic");
  if (magic !== NAR_MAGIC) throw badNar(`it does not start with "${NAR_MAGIC}"`, start);
  const summary: NarSummary = { size: 0, files: 0, directories: 0, symlinks: 0, contentBytes: 0 };
  yield* scanNode(ctx, summary, "/", 0);
  summary.size = ctx.offset() - start;
  return summary;
}

function* scanNode(ctx: DecodeContext, summary: NarSummary, path: string, depth: number): Decoder<void> {
  if (depth > MAX_DEPTH)
    throw badNar(`directories nest deeper than ${MAX_DEPTH} levels at ${path}`, ctx.offset());
  yield* expectToken(ctx, "(", `to open the node ${path}`);
  yield* expectToken(ctx, "type", `in the node ${path}`);
  const typeAt = ctx.offset();
  const type = yield* token(ctx, `NAR type of ${path}`);
  switch (type) {
    case "regular": {
      summary.files++;
      let at = ctx.offset();
      let field = yield* token(ctx, `NAR field of ${path}`);
      if (field === "executable") {
        const marker = yield* readByteString(ctx, `executable marker of ${path}`, MAX_TOKEN);
        if (marker.length !== 0) throw badNar(`the executable marker of ${path} is not empty`, at);
        at = ctx.offset();
        field = yield* token(ctx, `NAR field of ${path}`);
      }
      if (field !== "contents")
        throw badNar(`expected "contents" in the file ${path} but found "${field}"`, at);
      const size = yield* readU64(ctx, `size of ${path}`);
      yield* skipBytes(size);
      yield* readPadding(ctx, size, `the contents of ${path}`);
      summary.contentBytes += size;
      yield* expectToken(ctx, ")", `to close the file ${path}`);
      return;
    }
    case "symlink": {
      summary.symlinks++;
      yield* expectToken(ctx, "target", `in the symlink ${path}`);
      const target = yield* readByteString(ctx, `symlink target of ${path}`, MAX_TARGET);
      if (target.length === 0) throw badNar(`the symlink ${path} has an empty target`, ctx.offset());
      yield* expectToken(ctx, ")", `to close the symlink ${path}`);
      return;
    }
    case "directory": {
      summary.directories++;
      let prev: Uint8Array | undefined;
      for (;;) {
        const at = ctx.offset();
        const field = yield* token(ctx, `NAR field of ${path}`);
        if (field === ")") return;
        if (field !== "entry")
          throw badNar(`expected "entry" or ")" in the directory ${path} but found "${field}"`, at);
        yield* expectToken(ctx, "(", `to open an entry of ${path}`);
        yield* expectToken(ctx, "name", `in an entry of ${path}`);
        const nameAt = ctx.offset();
        const name = yield* readByteString(ctx, `entry name in ${path}`, MAX_NAME);
        const shown = ascii(name);
        if (!validName(name))
          throw badNar(`the directory ${path} has an invalid entry name "${shown}"`, nameAt);
        if (prev && compareBytes(prev, name) >= 0) {
          throw badNar(`the entries of ${path} are not sorted ("${ascii(prev)}" before "${shown}")`, nameAt);
        }
        prev = name;
        yield* expectToken(ctx, "node", `in the entry ${path}${shown}`);
        yield* scanNode(ctx, summary, `${path}${shown}/`, depth + 1);
        yield* expectToken(ctx, ")", `to close the entry ${path}${shown}`);
      }
    }
    default:
      throw badNar(`unknown node type "${type}" at ${path}`, typeAt);
  }
}

/** A file tree to encode as a NAR (tests and fake peers). */
export type NarNode =
  | { type: "regular"; executable?: boolean; contents: Uint8Array | string }
  | { type: "symlink"; target: string }
  | { type: "directory"; entries: Record<string, NarNode> };

/** Encodes a file tree as a canonical NAR (entries sorted by name). */
export function encodeNar(root: NarNode): Uint8Array {
  const w = new WireWriter().string(NAR_MAGIC);
  const node = (n: NarNode): void => {
    w.string("(").string("type");
    if (n.type === "regular") {
      w.string("regular");
      if (n.executable) w.string("executable").string("");
      w.string("contents").bytes(
        typeof n.contents === "string" ? new TextEncoder().encode(n.contents) : n.contents,
      );
    } else if (n.type === "symlink") {
      w.string("symlink").string("target").string(n.target);
    } else {
      w.string("directory");
      for (const name of Object.keys(n.entries).sort()) {
        w.string("entry").string("(").string("name").string(name).string("node");
        node(n.entries[name]!);
        w.string(")");
      }
    }
    w.string(")");
  };
  node(root);
  return w.finish();
}
