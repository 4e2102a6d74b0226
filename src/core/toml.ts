import { parse, TomlError } from "smol-toml";
import { configError, type ErrorCode } from "./errors.js";

/**
 * Parses TOML text, or throws a configuration error (code `code`, exit 2) naming the file,
 * line and column of the syntax error.
 */
export function parseTomlDocument(text: string, file: string, code: ErrorCode): Record<string, unknown> {
  try {
    return parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0] ?? e.message;
      throw configError(code, `${file}:${e.line}:${e.column}: ${first}`, {
        hint: `Fix the TOML syntax at line ${e.line}, column ${e.column} of ${file}.`,
        details: { file, line: e.line, column: e.column },
      });
    }
    throw e;
  }
}
