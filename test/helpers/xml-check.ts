/** A parsed XML element: name, attributes (entities decoded), children and text. */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][A-Za-z0-9_.:-]*$/;
const PREDEFINED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** Decodes character data, throwing on a bare "&", an unknown entity or a raw "<". */
function decode(text: string, where: string): string {
  if (text.includes("<")) throw new Error(`raw "<" in ${where}`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f]/.test(text)) throw new Error(`control character in ${where}`);
  return text.replace(/&([^;]*);?/g, (whole, ref: string) => {
    if (!whole.endsWith(";")) throw new Error(`bare "&" in ${where}`);
    if (ref in PREDEFINED) return PREDEFINED[ref] ?? "";
    const m = /^#(x[0-9A-Fa-f]+|[0-9]+)$/.exec(ref);
    if (!m?.[1]) throw new Error(`unknown entity &${ref}; in ${where}`);
    return String.fromCodePoint(m[1].startsWith("x") ? parseInt(m[1].slice(1), 16) : Number(m[1]));
  });
}

/**
 * A strict parser for the XML subset renderers emit (declaration, elements, attributes,
 * character data, comments): throws on anything not well-formed, so a test fails on it.
 */
export function parseXml(xml: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const skipSpace = () => {
    while (i < xml.length && /\s/.test(xml[i] ?? "")) i++;
  };
  if (xml.startsWith("<?xml")) {
    const end = xml.indexOf("?>");
    if (end < 0) throw new Error("unterminated XML declaration");
    i = end + 2;
  }
  while (i < xml.length) {
    const lt = xml.indexOf("<", i);
    const text = xml.slice(i, lt < 0 ? xml.length : lt);
    const top = stack[stack.length - 1];
    if (top) top.text += decode(text, `<${top.name}>`);
    else if (text.trim() !== "") throw new Error(`text outside the root element: ${text.slice(0, 40)}`);
    if (lt < 0) break;
    i = lt;
    if (xml.startsWith("<!--", i)) {
      const end = xml.indexOf("-->", i + 4);
      if (end < 0) throw new Error("unterminated comment");
      i = end + 3;
      continue;
    }
    if (xml.startsWith("</", i)) {
      const end = xml.indexOf(">", i);
      const name = xml.slice(i + 2, end).trim();
      const open = stack.pop();
      if (!open || open.name !== name) throw new Error(`</${name}> closes <${open?.name ?? "nothing"}>`);
      i = end + 1;
      continue;
    }
    i++;
    const nameMatch = /^[^\s/>]+/.exec(xml.slice(i));
    const name = nameMatch?.[0] ?? "";
    if (!NAME.test(name)) throw new Error(`bad element name "${name}" at ${i}`);
    i += name.length;
    const el: XmlElement = { name, attributes: {}, children: [], text: "" };
    for (;;) {
      skipSpace();
      if (xml.startsWith("/>", i)) {
        i += 2;
        break;
      }
      if (xml[i] === ">") {
        i++;
        stack.push(el);
        break;
      }
      const attr = /^([^\s=/>]+)\s*=\s*(["'])/.exec(xml.slice(i));
      if (!attr?.[1] || !attr[2]) throw new Error(`bad attribute in <${name}> at ${i}`);
      if (!NAME.test(attr[1])) throw new Error(`bad attribute name "${attr[1]}" in <${name}>`);
      if (attr[1] in el.attributes) throw new Error(`duplicate attribute ${attr[1]} in <${name}>`);
      i += attr[0].length;
      const close = xml.indexOf(attr[2], i);
      if (close < 0) throw new Error(`unterminated attribute ${attr[1]} in <${name}>`);
      el.attributes[attr[1]] = decode(xml.slice(i, close), `${name}@${attr[1]}`);
      i = close + 1;
    }
    const parent = stack[stack.length - (stack[stack.length - 1] === el ? 2 : 1)];
    if (parent) parent.children.push(el);
    else if (root) throw new Error("more than one root element");
    else root = el;
  }
  if (stack.length > 0) throw new Error(`<${stack[stack.length - 1]?.name ?? ""}> is never closed`);
  if (!root) throw new Error("no root element");
  return root;
}

/** Every element under (and including) `el`, depth first. */
export function allElements(el: XmlElement): XmlElement[] {
  return [el, ...el.children.flatMap(allElements)];
}
