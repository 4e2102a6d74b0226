import { escapeXml } from "../../core/timeline-svg.js";

/**
 * HTML that is safe to place as it is: built by `markup` (every value escaped) or, for markup our
 * own renderers produced (the timeline SVG), marked with `trustedMarkup`. A plain string is
 * never taken for markup, so a derivation name, a builder name or a log line cannot become one.
 */
export class Html {
  constructor(readonly markup: string) {}
  toString(): string {
    return this.markup;
  }
}

/** What may stand in a template: text (escaped), numbers, nested Html, lists of these; nothing for null/undefined/false. */
export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

function renderValue(value: HtmlValue): string {
  if (value instanceof Html) return value.markup;
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(renderValue).join("");
  if (value === null || value === undefined || value === false) return "";
  // escapeXml (one home for markup escaping) covers text and double- or single-quoted attributes.
  return escapeXml(String(value));
}

/**
 * A template whose every interpolated value is escaped, unless it is Html already. (Not named
 * `html`: prettier would reformat such templates as HTML, whitespace in <pre> included.)
 */
export function markup(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0] ?? "";
  values.forEach((v, i) => {
    out += renderValue(v) + (strings[i + 1] ?? "");
  });
  return new Html(out);
}

/** Markup produced by one of nixpool's own renderers, which escape their text themselves. */
export function trustedMarkup(markup: string): Html {
  return new Html(markup);
}
