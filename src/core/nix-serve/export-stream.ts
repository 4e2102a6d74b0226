import { isStorePath } from "../store-path.js";
import { scanNar, type NarSummary } from "./nar.js";
import {
  protocolError,
  readPaths,
  readString,
  readU64,
  WireWriter,
  type DecodeContext,
  type Decoder,
} from "./wire.js";

/**
 * The export stream of `nix-store --export` and of the serve protocol's ExportPaths and
 * ImportPaths (src/libstore/export-import.cc): per path `1, NAR, "NIXE", path, references,
 * deriver, 0`, and a final `0`. Paths come after their references.
 */

export const EXPORT_MAGIC = 0x4558494e;

/** One path of an export stream, without its NAR bytes. */
export interface ExportedPath {
  path: string;
  references: string[];
  /** "" when unknown. */
  deriver: string;
  nar: NarSummary;
}

/** Scans a whole export stream, validating its structure; file contents are skipped, not kept. */
export function* scanExportStream(ctx: DecodeContext): Decoder<ExportedPath[]> {
  const paths: ExportedPath[] = [];
  for (;;) {
    const at = ctx.offset();
    const more = yield* readU64(ctx, "export stream marker");
    if (more === 0) return paths;
    if (more !== 1) throw badExport(`expected 0 or 1 before a path but found ${more}`, at);
    const nar = yield* scanNar(ctx);
    const magicAt = ctx.offset();
    const magic = yield* readU64(ctx, "export magic");
    if (magic !== EXPORT_MAGIC)
      throw badExport(`expected the magic "NIXE" after a NAR but found 0x${magic.toString(16)}`, magicAt);
    const pathAt = ctx.offset();
    const path = yield* readString(ctx, "exported path", 4096);
    if (!isStorePath(path)) throw badExport(`"${path}" is not a store path`, pathAt);
    const references = yield* readPaths(ctx, `references of ${path}`);
    for (const r of references)
      if (!isStorePath(r)) throw badExport(`reference "${r}" of ${path} is not a store path`, pathAt);
    const deriver = yield* readString(ctx, `deriver of ${path}`, 4096);
    if (deriver !== "" && !isStorePath(deriver))
      throw badExport(`deriver "${deriver}" of ${path} is not a store path`, pathAt);
    // Nix still reads an optional legacy signature: a 1 followed by a string.
    const sigAt = ctx.offset();
    const hasSig = yield* readU64(ctx, `signature marker of ${path}`);
    if (hasSig === 1) yield* readString(ctx, `legacy signature of ${path}`, 4096);
    else if (hasSig !== 0)
      throw badExport(`expected 0 or 1 as the signature marker of ${path} but found ${hasSig}`, sigAt);
    paths.push({ path, references, deriver, nar });
  }
}

function badExport(reason: string, offset: number) {
  return protocolError(`The peer sent a malformed export stream: ${reason} (byte ${offset}).`, {
    what: "export stream",
    offset,
  });
}

/** The bytes that follow one path's NAR in an export stream. */
export function encodeExportTrailer(
  path: string,
  references: readonly string[],
  deriver: string,
): Uint8Array {
  return new WireWriter().u64(EXPORT_MAGIC).string(path).strings(references).string(deriver).u64(0).finish();
}

/** Encodes a whole export stream from NARs held in memory (tests, small paths). */
export function encodeExportStream(
  entries: readonly { path: string; references: readonly string[]; deriver: string; nar: Uint8Array }[],
): Uint8Array {
  const w = new WireWriter();
  for (const e of entries)
    w.u64(1)
      .raw(e.nar)
      .raw(encodeExportTrailer(e.path, e.references, e.deriver));
  return w.u64(0).finish();
}
