/** Hetzner Cloud label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas. */

export type LabelRequirement =
  | { op: "eq" | "ne"; key: string; value: string }
  | { op: "exists" | "absent"; key: string }
  | { op: "in" | "notin"; key: string; values: string[] };

/** Splits a selector at top-level commas (commas inside parentheses belong to `in`/`notin`). */
function splitTopLevel(selector: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of selector) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

/** Parses a label selector; returns an error message for a malformed one. */
export function parseLabelSelector(selector: string): LabelRequirement[] | { error: string } {
  const out: LabelRequirement[] = [];
  for (const part of splitTopLevel(selector)) {
    let m: RegExpMatchArray | null;
    if ((m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part))) {
      const values = (m[3] ?? "")
        .split(",")
        .map((v) => v.trim())
        .filter((v) => v !== "");
      out.push({ op: m[2] === "in" ? "in" : "notin", key: m[1] ?? "", values });
    } else if ((m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part))) {
      out.push({ op: m[2] === "!=" ? "ne" : "eq", key: m[1] ?? "", value: m[3] ?? "" });
    } else if ((m = /^!\s*([^\s!=(),]+)$/.exec(part))) {
      out.push({ op: "absent", key: m[1] ?? "" });
    } else if ((m = /^([^\s!=(),]+)$/.exec(part))) {
      out.push({ op: "exists", key: m[1] ?? "" });
    } else {
      return { error: `invalid label selector part "${part}"` };
    }
  }
  return out;
}

/** Whether labels satisfy every requirement. */
export function matchLabels(labels: Record<string, string>, reqs: readonly LabelRequirement[]): boolean {
  return reqs.every((r) => {
    const v = Object.prototype.hasOwnProperty.call(labels, r.key) ? labels[r.key] : undefined;
    switch (r.op) {
      case "eq":
        return v === r.value;
      case "ne":
        return v !== r.value;
      case "exists":
        return v !== undefined;
      case "absent":
        return v === undefined;
      case "in":
        return v !== undefined && r.values.includes(v);
      case "notin":
        return v === undefined || !r.values.includes(v);
    }
  });
}
