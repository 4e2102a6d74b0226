/**
 * Generates what nixpool uses of the Hetzner Cloud OpenAPI spec (the spec itself is not in the
 * repository; its trimmed part is):
 *   src/providers/hetzner/generated/hetzner-cloud.spec.trimmed.json  the used paths, without prose
 *                                               or examples (the emulator's tests validate
 *                                               against it; it can be fed back to this script)
 *   src/providers/hetzner/generated/api.ts      openapi-typescript types for the used paths
 *   src/providers/hetzner/generated/schemas.ts  JSON schemas (no descriptions/examples) of the
 *                                               responses the client validates
 * Run: npm run gen:hetzner -- SPEC   (SPEC: the official spec, or the trimmed one above)
 */
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, "src/providers/hetzner/generated");
/** The trimmed spec kept in the repository. */
const TRIMMED = "hetzner-cloud.spec.trimmed.json";

/** Operations the client and the emulator use: path → methods. */
const USED: Record<string, string[]> = {
  "/actions": ["get"],
  "/actions/{id}": ["get"],
  "/servers": ["get", "post"],
  "/servers/{id}": ["get", "put", "delete"],
  "/servers/{id}/actions": ["get"],
  "/server_types": ["get"],
  "/server_types/{id}": ["get"],
  "/locations": ["get"],
  "/locations/{id}": ["get"],
  "/datacenters": ["get"],
  "/datacenters/{id}": ["get"],
  "/pricing": ["get"],
  "/ssh_keys": ["get", "post"],
  "/ssh_keys/{id}": ["get", "put", "delete"],
  "/images": ["get"],
  "/images/{id}": ["get", "put", "delete"],
  "/images/{id}/actions/change_protection": ["post"],
  "/servers/{id}/actions/create_image": ["post"],
  "/servers/{id}/actions/shutdown": ["post"],
  "/servers/{id}/actions/poweron": ["post"],
};

/** Responses validated at run time, keyed "METHOD PATH". */
const VALIDATED: [string, string, string][] = [
  ["get", "/actions", "200"],
  ["get", "/actions/{id}", "200"],
  ["get", "/servers", "200"],
  ["post", "/servers", "201"],
  ["get", "/servers/{id}", "200"],
  ["put", "/servers/{id}", "200"],
  ["delete", "/servers/{id}", "200"],
  ["get", "/server_types", "200"],
  ["get", "/locations", "200"],
  ["get", "/pricing", "200"],
  ["get", "/ssh_keys", "200"],
  ["post", "/ssh_keys", "201"],
  ["get", "/images", "200"],
  ["get", "/images/{id}", "200"],
  ["put", "/images/{id}", "200"],
  ["post", "/images/{id}/actions/change_protection", "201"],
  ["post", "/servers/{id}/actions/create_image", "201"],
  ["post", "/servers/{id}/actions/shutdown", "201"],
  ["post", "/servers/{id}/actions/poweron", "201"],
  ["get", "/servers", "4xx"],
];

const ANNOTATIONS = new Set(["description", "example", "examples", "externalDocs", "title", "deprecated"]);

type Json = Record<string, unknown>;

/** Removes annotations from a schema (not from `properties`, whose keys are field names). */
function trimSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(trimSchema);
  if (schema === null || typeof schema !== "object") return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema as Json)) {
    if (ANNOTATIONS.has(k)) continue;
    if (k === "properties" && v && typeof v === "object") {
      out[k] = Object.fromEntries(Object.entries(v as Json).map(([pk, pv]) => [pk, trimSchema(pv)]));
    } else if (k === "format" && v !== "date-time") {
      continue; // int64, decimal, ipv4 … are not checked at run time
    } else {
      out[k] = trimSchema(v);
    }
  }
  // OpenAPI 3.0 "nullable" → JSON Schema, so any validator (zod's fromJSONSchema) reads it.
  if (out["nullable"] === true) {
    delete out["nullable"];
    const inner = { ...out };
    if (Array.isArray(inner["enum"])) inner["enum"] = [...(inner["enum"] as unknown[]), null];
    return { anyOf: [inner, { type: "null" }] };
  }
  delete out["nullable"];
  return out;
}

/** Removes prose and examples anywhere in an OpenAPI fragment, keeping field names. */
function stripAnnotations(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(stripAnnotations);
  if (node === null || typeof node !== "object") return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node as Json)) {
    if (k === "properties" && v && typeof v === "object") {
      out[k] = Object.fromEntries(Object.entries(v as Json).map(([pk, pv]) => [pk, stripAnnotations(pv)]));
    } else if (
      k !== "description" &&
      k !== "example" &&
      k !== "examples" &&
      k !== "externalDocs" &&
      k !== "summary"
    ) {
      out[k] = stripAnnotations(v);
    }
  }
  return out;
}

/** Keeps an operation's id, parameters, body and responses, without prose or examples. */
function trimOperation(op: Json): Json {
  const keep: Json = {};
  for (const k of ["operationId", "parameters", "requestBody", "responses"]) {
    if (op[k] !== undefined) keep[k] = op[k];
  }
  return stripAnnotations(keep) as Json;
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (arg === undefined || arg.startsWith("-")) {
    process.stderr.write(
      `usage: npm run gen:hetzner -- SPEC\n  SPEC: Hetzner Cloud's OpenAPI spec (cloud.spec.json), or src/providers/hetzner/generated/${TRIMMED}\n`,
    );
    process.exit(2);
  }
  const spec = JSON.parse(await readFile(resolve(arg), "utf8")) as Json & { paths: Record<string, Json> };
  const paths: Record<string, Json> = {};
  for (const [path, methods] of Object.entries(USED)) {
    const item = spec.paths[path];
    if (!item) throw new Error(`The spec has no path ${path}.`);
    const trimmed: Json = {};
    if (item["parameters"]) trimmed["parameters"] = item["parameters"];
    for (const m of methods) {
      const op = item[m] as Json | undefined;
      if (!op) throw new Error(`The spec has no ${m.toUpperCase()} ${path}.`);
      trimmed[m] = trimOperation(op);
    }
    paths[path] = trimmed;
  }
  const info = spec["info"] as Json;
  const subset = {
    openapi: spec["openapi"],
    info: { title: info["title"], version: info["version"] },
    paths,
    components: { schemas: {} },
  };
  const ast = await openapiTS(subset as unknown as Parameters<typeof openapiTS>[0], {
    exportType: true,
    alphabetize: true,
  });
  const header = `// Generated by scripts/gen-hetzner.ts from the Hetzner Cloud OpenAPI spec (${String(info["title"])} ${String(info["version"])}). Do not edit.\n`;
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, TRIMMED), `${JSON.stringify(subset, null, 1)}\n`);
  await writeFile(join(outDir, "api.ts"), `/* eslint-disable */\n${header}${astToString(ast)}`);

  const schemas: Record<string, unknown> = {};
  for (const [method, path, status] of VALIDATED) {
    const op = paths[path]?.[method] as Json | undefined;
    const responses = op?.["responses"] as Record<string, Json> | undefined;
    const content = responses?.[status]?.["content"] as Record<string, { schema: unknown }> | undefined;
    const schema = content?.["application/json"]?.schema;
    if (!schema)
      throw new Error(`The spec has no ${status} JSON response for ${method.toUpperCase()} ${path}.`);
    const key = status === "4xx" ? "error" : `${method.toUpperCase()} ${path}`;
    schemas[key] = trimSchema(schema);
  }
  await writeFile(
    join(outDir, "schemas.ts"),
    `/* eslint-disable */\n${header}// Response schemas without descriptions or examples; "nullable" rewritten as anyOf null.\n` +
      `export const responseSchemas: Record<string, Record<string, unknown>> = ${JSON.stringify(schemas)};\n`,
  );
  process.stdout.write(
    `wrote ${outDir}/${TRIMMED}, api.ts and schemas.ts (${Object.keys(paths).length} paths)\n`,
  );
}

await main();
