import type { Context } from "hono";
import { z } from "zod";
import { ApiError } from "./api-error.js";
import { matchLabels, parseLabelSelector } from "./label-selector.js";
import type { Labels } from "./state.js";

// Reading a request: ids, bodies, labels, names, and the list query parameters every list shares.

/** A server name: a hostname, as the API requires. */
export const HOSTNAME =
  /^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const LABEL_KEY =
  /^([a-z0-9A-Z]([a-z0-9A-Z.-]{0,251}[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?$/;
const LABEL_VALUE = /^([a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?)?$/;

export const labelsSchema = z.record(z.string(), z.string()).optional();
/** PUT /servers/{id} and PUT /ssh_keys/{id}: a new name and/or a new set of labels. */
export const updateSchema = z.object({ name: z.string().min(1).optional(), labels: labelsSchema });

/** One page of a list (?page, ?per_page: at most 50) and the pagination meta the API sends with it. */
export function paginate<T>(c: Context, items: T[]) {
  const page = Math.max(1, Number(c.req.query("page") ?? 1) || 1);
  const perPage = Math.min(50, Math.max(1, Number(c.req.query("per_page") ?? 25) || 25));
  const lastPage = Math.max(1, Math.ceil(items.length / perPage));
  return {
    items: items.slice((page - 1) * perPage, page * perPage),
    meta: {
      pagination: {
        page,
        per_page: perPage,
        previous_page: page > 1 ? page - 1 : null,
        next_page: page < lastPage ? page + 1 : null,
        last_page: lastPage,
        total_entries: items.length,
      },
    },
  };
}

/** The items the request's ?label_selector matches (all of them without one). */
export function selectByLabels<T extends { labels: Labels }>(c: Context, items: T[]): T[] {
  const sel = c.req.query("label_selector");
  if (sel === undefined) return items;
  const reqs = parseLabelSelector(sel);
  if ("error" in reqs) throw new ApiError(400, "invalid_input", reqs.error, { fields: [] });
  return items.filter((i) => matchLabels(i.labels, reqs));
}

/** The :id path parameter, a positive integer. */
export function idParam(c: Context): number {
  const id = Number(c.req.param("id"));
  if (!Number.isInteger(id) || id < 1) throw new ApiError(400, "invalid_input", "invalid id");
  return id;
}

/** Refuses labels whose keys or values Hetzner would refuse. */
export function checkLabels(labels: Labels | undefined): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!LABEL_KEY.test(k) || !LABEL_VALUE.test(v)) {
      throw new ApiError(400, "invalid_input", `invalid input in field 'labels'`, {
        fields: [{ name: "labels", messages: [`label ${k}=${v} is not valid`] }],
      });
    }
  }
}

/** PUT semantics shared by servers and SSH keys: a unique new name, a whole new label set. */
export function applyUpdate(
  target: { name: string; labels: Labels },
  all: Iterable<{ name: string }>,
  body: z.infer<typeof updateSchema>,
): void {
  if (body.name !== undefined && body.name !== target.name) {
    if ([...all].some((x) => x.name === body.name)) {
      throw new ApiError(409, "uniqueness_error", "name is already used", { fields: [{ name: "name" }] });
    }
    target.name = body.name;
  }
  if (body.labels !== undefined) {
    checkLabels(body.labels);
    target.labels = body.labels;
  }
}

/** The request's JSON body, validated by a schema; the API's invalid_input error names the fields. */
export async function readBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new ApiError(400, "json_error", "invalid JSON in request body");
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const fields = r.error.issues.map((i) => ({ name: i.path.join("."), messages: [i.message] }));
    throw new ApiError(400, "invalid_input", `invalid input in field '${fields[0]?.name ?? "body"}'`, {
      fields,
    });
  }
  return r.data;
}
