import type { Builder } from "../core/builder.js";
import type { BasicDerivation, BuildResult } from "../core/nix-serve/build.js";
import type { PathInfo } from "../core/nix-serve/messages.js";
import type { SshFailure } from "../core/ssh-errors.js";

/** What the dispatcher needs of one `nix-store --serve --write` session (a builder's or this machine's). */
export interface DispatchSession {
  /** The subset of `paths` valid there; `substitute`: that store first tries its substituters for the others. */
  queryValidPaths(paths: readonly string[], options?: { substitute?: boolean }): Promise<string[]>;
  /** The closure of `paths` in that store (references included, outputs not). */
  queryClosure(paths: readonly string[]): Promise<string[]>;
  buildDerivation(drvPath: string, drv: BasicDerivation): Promise<BuildResult>;
  /** The NAR hash (`sha256:…`) of each valid path, as that store reports it; invalid paths are left out. */
  queryPathInfos(paths: readonly string[]): Promise<PathInfo[]>;
  /** Streams the NAR of one valid path into `sink`. */
  dumpStorePath(path: string, sink: NodeJS.WritableStream): Promise<void>;
  close(): Promise<void>;
  kill(): void;
  /** Ended (closed, killed, or lost): it takes no more requests. */
  readonly isClosed: boolean;
}

export interface OpenSessionOptions {
  builder: Builder;
  /** The builder's transfer session (opened first), or its job slot number `slot` (from 0). */
  role: { kind: "transfer" } | { kind: "slot"; slot: number };
  onStderrLine: (line: string) => void;
  /** Called once if the session ends other than by close()/kill(), with the reason (and what ssh said). */
  onClose: (reason: string, ssh?: SessionSshCause) => void;
  /** Aborting kills the session, even one still connecting. */
  signal: AbortSignal;
}

export type OpenSession = (options: OpenSessionOptions) => Promise<DispatchSession>;

/** Moves `paths` (references first) from one store to another in one stream; resolves to its bytes. */
export type TransferPaths = (
  from: DispatchSession,
  to: DispatchSession,
  paths: readonly string[],
) => Promise<number>;

/** What ssh said when a builder's session ended: its classified cause and its last lines. */
export interface SessionSshCause {
  failure: SshFailure;
  stderr: string;
}
