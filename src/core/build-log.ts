/** What Nix's internal-json log told us about one derivation's build. */
export interface DerivationBuild {
  drv: string;
  /** Store URI of the machine (e.g. ssh-ng://nixpool-local1); "" when built locally. */
  machine: string;
  startedMs: number;
  finishedMs: number | undefined;
  logTail: string[];
}

export interface BuildLogState {
  builds: Map<string, DerivationBuild>;
  activityToDrv: Map<number, string>;
  errors: string[];
  /** Derivations that waited for a free machine (the hook's polling), by count. */
  waits: number;
}

const TYPE_BUILD = 105;
const RESULT_BUILD_LOG_LINE = 101;
const LOG_TAIL_LINES = 25;

export function createBuildLogState(): BuildLogState {
  return { builds: new Map(), activityToDrv: new Map(), errors: [], waits: 0 };
}

const ANSI = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");
/** Removes ANSI colour codes (Nix colours its messages, BuildResult.errorMsg included). */
export const stripAnsi = (s: string) => s.replace(ANSI, "");

/** A derivation's build on a builder started, printed a log line, or finished. */
export type BuildLogEvent =
  { kind: "start" | "done"; build: DerivationBuild } | { kind: "log"; build: DerivationBuild; line: string };

/**
 * Folds one stderr line of `--log-format internal-json` into the state (other lines are
 * ignored). Returns an event when a build on a builder starts, logs a line, or finishes.
 */
export function applyBuildLogLine(
  state: BuildLogState,
  line: string,
  nowMs: number,
): BuildLogEvent | undefined {
  if (!line.startsWith("@nix ")) return undefined;
  let ev: Record<string, unknown>;
  try {
    ev = JSON.parse(line.slice(5)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const id = typeof ev["id"] === "number" ? ev["id"] : undefined;
  switch (ev["action"]) {
    case "start": {
      if (ev["type"] === 111) state.waits++;
      if (ev["type"] !== TYPE_BUILD || id === undefined) break;
      const fields = Array.isArray(ev["fields"]) ? (ev["fields"] as unknown[]) : [];
      const drv = typeof fields[0] === "string" ? fields[0] : undefined;
      const machine = typeof fields[1] === "string" ? fields[1] : "";
      if (!drv) break;
      state.activityToDrv.set(id, drv);
      const existing = state.builds.get(drv);
      // A remote build shows a second start with an empty machine name: keep the first.
      if (!existing || (existing.machine === "" && machine !== "")) {
        const build: DerivationBuild = {
          drv,
          machine,
          startedMs: existing?.startedMs ?? nowMs,
          finishedMs: undefined,
          logTail: existing?.logTail ?? [],
        };
        state.builds.set(drv, build);
        if (machine !== "") return { kind: "start", build };
      }
      break;
    }
    case "stop": {
      if (id === undefined) break;
      const drv = state.activityToDrv.get(id);
      const b = drv ? state.builds.get(drv) : undefined;
      if (b && b.finishedMs === undefined) {
        b.finishedMs = nowMs;
        if (b.machine !== "") return { kind: "done", build: b };
      }
      break;
    }
    case "result": {
      if (id === undefined || ev["type"] !== RESULT_BUILD_LOG_LINE) break;
      const drv = state.activityToDrv.get(id);
      const b = drv ? state.builds.get(drv) : undefined;
      const fields = Array.isArray(ev["fields"]) ? (ev["fields"] as unknown[]) : [];
      if (b && typeof fields[0] === "string") {
        const text = stripAnsi(fields[0]);
        b.logTail.push(text);
        if (b.logTail.length > LOG_TAIL_LINES) b.logTail.shift();
        return { kind: "log", build: b, line: text };
      }
      break;
    }
    case "msg": {
      // Nix prints its warnings at level 0 too; they are never the reason a build failed.
      if (ev["level"] === 0 && typeof ev["msg"] === "string") {
        const msg = stripAnsi(ev["msg"]);
        if (!msg.startsWith("warning:")) state.errors.push(msg);
      }
      break;
    }
  }
  return undefined;
}

/** The derivation a Nix error message says failed, if any ("builder for '/nix/store/…drv' failed"). */
export function failedDerivation(errors: readonly string[]): string | undefined {
  for (const e of errors) {
    const m =
      /builder for '([^']+\.drv)' failed/.exec(e) ?? /build of '([^']+\.drv)' on '[^']*' failed/.exec(e);
    if (m?.[1]) return m[1];
  }
  return undefined;
}

/** "leaf-3" from "/nix/store/<hash>-leaf-3.drv". */
export function derivationName(drv: string): string {
  const base = drv.split("/").pop() ?? drv;
  return base.replace(/^[0-9a-z]{32}-/, "").replace(/\.drv$/, "");
}
