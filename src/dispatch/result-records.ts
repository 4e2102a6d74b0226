import { appendFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { readFileIfExists } from "../adapters/fs.js";
import { NixpoolError } from "../core/errors.js";
import { isDerivationPath, isStorePath } from "../core/store-path.js";

/**
 * STATE/trust/results.jsonl: one line per output of every successful build of nixpool's
 * dispatcher, appended (a line is one write, so concurrent builds do not interleave): which
 * builder built it, how far that builder was trusted, and the NAR hash it reported.
 */
export const resultRecordSchema = z
  .object({
    v: z.literal(1),
    output: z.string().refine(isStorePath, "must be a store path"),
    outputName: z.string().regex(/^[A-Za-z0-9+\-._?=]+$/, "must be an output name"),
    drv: z.string().refine(isDerivationPath, "must be a .drv store path"),
    builder: z.string().min(1).max(63),
    trust: z.enum(["trusted", "untrusted"]),
    narHash: z.string().regex(/^sha256:[0-9a-z]{52}$/, "must be sha256:<base32>"),
    builtAt: z.iso.datetime(),
  })
  .strict();

export type ResultRecord = z.output<typeof resultRecordSchema>;

/** Appends records (one JSON line each) to the results file, creating its directory. */
export async function appendResultRecords(file: string, records: readonly ResultRecord[]): Promise<void> {
  if (records.length === 0) return;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await appendFile(file, records.map((r) => `${JSON.stringify(r)}\n`).join(""), { mode: 0o600 });
}

/** Reads and validates every record; none when the file does not exist; STATE_RECORD_INVALID names file:line. */
export async function readResultRecords(file: string): Promise<ResultRecord[]> {
  const text = await readFileIfExists(file);
  if (text === undefined) return [];
  const out: ResultRecord[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === "") continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (e) {
      throw invalid(file, i + 1, (e as Error).message);
    }
    const r = resultRecordSchema.safeParse(json);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw invalid(file, i + 1, issue ? `${issue.path.join(".") || "(line)"}: ${issue.message}` : "invalid");
    }
    out.push(r.data);
  }
  return out;
}

function invalid(file: string, line: number, problem: string): NixpoolError {
  return new NixpoolError(
    "STATE_RECORD_INVALID",
    `The build results record ${file}:${line} is not valid (${problem}).`,
    {
      hint: `Fix or delete that line of ${file} (it only records who built what; builds do not need it).`,
    },
  );
}
