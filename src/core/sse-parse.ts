/** One server-sent event: its type (`event:`, "message" when absent), data lines joined by "\n", and id. */
export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/**
 * An incremental reader of a text/event-stream (the WHATWG rules: lines end in LF, CRLF or CR;
 * `:` starts a comment; a blank line ends an event; an event without data is dropped). Feed it
 * text in any chunks; it returns the events completed so far. `maxEventBytes` bounds one event.
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private dataBytes = 0;
  private event = "";
  private id: string | undefined;

  constructor(private readonly maxEventBytes = 16 * 1024 * 1024) {}

  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      // A lone CR at the end may be the first half of CRLF: wait for the next chunk.
      if (!m || (m[0] === "\r" && m.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const message = this.line(line);
      if (message) out.push(message);
    }
    if (this.buffer.length > this.maxEventBytes) throw new RangeError("an event stream line is too long");
    return out;
  }

  private line(line: string): SseMessage | undefined {
    if (line === "") {
      const message =
        this.data.length > 0
          ? {
              event: this.event || "message",
              data: this.data.join("\n"),
              ...(this.id !== undefined ? { id: this.id } : {}),
            }
          : undefined;
      this.data = [];
      this.dataBytes = 0;
      this.event = "";
      return message;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.dataBytes += value.length;
      if (this.dataBytes > this.maxEventBytes) throw new RangeError("an event stream event is too long");
      this.data.push(value);
    } else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return undefined;
  }
}
