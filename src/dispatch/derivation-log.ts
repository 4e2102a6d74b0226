import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { basename, join } from "node:path";

const TAIL_LINES = 25;

/** One derivation's build log: kept in a file under the state directory, with its last lines at hand. */
export class DerivationLog {
  readonly path: string;
  readonly tail: string[] = [];
  private stream: WriteStream | undefined;
  private failed = false;

  constructor(dir: string, drvPath: string) {
    this.path = join(dir, `${basename(drvPath, ".drv")}.log`);
  }

  /** Starts an attempt's section of the log (the file is replaced on the first attempt). */
  async begin(attempt: number, builder: string): Promise<void> {
    if (!this.stream && !this.failed) {
      // A log that cannot be written (disk full, permissions) costs the file, never the build.
      try {
        await mkdir(join(this.path, ".."), { recursive: true, mode: 0o700 });
        const stream = createWriteStream(this.path, { flags: "w", mode: 0o600 });
        stream.on("error", () => this.fail());
        this.stream = stream;
      } catch {
        this.fail();
      }
    }
    this.stream?.write(`# nixpool: attempt ${attempt} on ${builder}, ${new Date().toISOString()}\n`);
    this.tail.length = 0;
  }

  private fail(): void {
    this.failed = true;
    this.stream?.destroy();
    this.stream = undefined;
  }

  line(text: string): void {
    this.stream?.write(`${text}\n`);
    this.tail.push(text);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  async end(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    if (s) await new Promise<void>((resolve) => s.end(resolve));
  }
}
