import assert from "node:assert/strict";

/**
 * What a terminal shows after the writes, line by line: applies "\r", "\n" (as a terminal's
 * output processing does: to the start of the next line), cursor up (CSI n A) and erase to the
 * end of the screen (CSI J); characters overwrite what is under the cursor. Fails on any other
 * escape sequence, so a test sees every one the code sends.
 */
export function screen(writes: readonly string[]): string[] {
  const lines: string[] = [""];
  let row = 0;
  let col = 0;
  const text = writes.join("");
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] ?? "";
    if (ch === "\u001b") {
      // eslint-disable-next-line no-control-regex
      const m = /^\u001b\[(\d*)([A-Za-z])/.exec(text.slice(i));
      assert.ok(m, `unknown escape at ${JSON.stringify(text.slice(i, i + 8))}`);
      if (m[2] === "A") row = Math.max(0, row - Number(m[1] || 1));
      else if (m[2] === "J") {
        lines.splice(row + 1);
        lines[row] = (lines[row] ?? "").slice(0, col);
      } else assert.fail(`unexpected escape ${m[0]}`);
      i += m[0].length - 1;
    } else if (ch === "\n") {
      row++;
      col = 0;
      if (lines.length <= row) lines.push("");
    } else if (ch === "\r") {
      col = 0;
    } else {
      const line = (lines[row] ?? "").padEnd(col);
      lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
      col++;
    }
  }
  return lines;
}
