import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";

/** A token of the shape Hetzner issues (64 characters). */
export const TEST_TOKEN = "t".repeat(32) + "0123456789abcdef0123456789abcdef";

/** The used part of Hetzner's OpenAPI spec, kept in the repository by scripts/gen-hetzner.ts. */
const SPEC = resolve(
  import.meta.dirname,
  "../../src/providers/hetzner/generated/hetzner-cloud.spec.trimmed.json",
);

type Json = Record<string, unknown>;

/** Validators for the spec's own response schemas (as the spec writes them: nullable, formats). */
export function specValidator(): (method: string, path: string, status: string, body: unknown) => string[] {
  const spec = JSON.parse(readFileSync(SPEC, "utf8")) as { paths: Record<string, Record<string, Json>> };
  const ajv = new Ajv({ strict: false, allErrors: true });
  const addFormats = addFormatsModule as unknown as (a: Ajv) => Ajv;
  addFormats(ajv);
  ajv.addFormat("int64", true);
  ajv.addFormat("decimal", /^-?\d+(\.\d+)?$/);
  const cache = new Map<string, ValidateFunction>();
  return (method, path, status, body) => {
    const key = `${method} ${path} ${status}`;
    let v = cache.get(key);
    if (!v) {
      const responses = spec.paths[path]?.[method.toLowerCase()]?.["responses"] as
        Record<string, Json> | undefined;
      const schema = (responses?.[status]?.["content"] as Record<string, { schema: Json }> | undefined)?.[
        "application/json"
      ]?.schema;
      if (!schema) throw new Error(`spec has no ${key}`);
      v = ajv.compile(schema);
      cache.set(key, v);
    }
    return v(body) ? [] : (v.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ""}`);
  };
}
