import type { Builder } from "../builder.js";
import { skipCheck, type CheckResult } from "./model.js";
import { type OfferedKey, type RemoteFacts, type SshTrace } from "./parse.js";
import { type PublicKey } from "../public-key.js";
import { LOGIN_CHECKS, TITLES } from "./builder-verdict-helpers.js";
import { judgeAuth, judgeHostKey, judgeIdentity, judgeResolve, judgeTcp } from "./login-verdicts.js";
import { judgePing, judgeRoundTrip } from "./nix-verdicts.js";
import {
  judgeClock,
  judgeJobs,
  judgeRemoteNix,
  judgeSpace,
  judgeStoreMode,
  judgeSystems,
  judgeTrust,
} from "./remote-verdicts.js";

/** Everything the probes found out about one builder; absent fields were not probed. */
export interface BuilderProbe {
  builder: Builder;
  /** The inventory file to edit, when the builder comes from one. */
  inventoryPath?: string;
  /** The ssh_config file the probes used (for fix commands). */
  sshConfigPath: string;
  resolve?: { ok: true; addresses: string[]; ms: number } | { ok: false; error: string; ms: number };
  tcp?:
    | { ok: true; address: string; ms: number; banner?: string }
    | { ok: false; error: string; ms: number; timedOut: boolean; connected?: boolean };
  keyscan?: { keys: PublicKey<string>[]; error?: string };
  /** The keys the build hook's ssh has on record for this builder (absent: unknown to it, or not readable). */
  hookKnownHosts?: { name: string; entries: { file: string; key: PublicKey<string> }[] };
  identity?: IdentityFacts;
  session?: { exitCode: number; trace: SshTrace; facts?: RemoteFacts; skewSeconds?: number; ms: number };
  /** Other local keys tried when the configured one was refused. */
  alternatives?: { tried: string[]; accepted?: OfferedKey };
  ping?: { exitCode: number; stdout: string; stderr: string; ms: number };
  roundTrip?: { ok: boolean; stderr: string; outPath?: string; ms: number };
  /** Steps that did not finish: the time budget ran out, or the command could not run. */
  unfinished?: Record<string, string>;
  /** Why the round trip was not attempted (e.g. this machine's daemon ignores --builders from us). */
  roundTripSkipped?: string;
  /** The per-builder time budget in ms (for messages). */
  budgetMs?: number;
}

export interface IdentityFacts {
  path: string;
  exists: boolean;
  readable: boolean;
  /** Permission bits, e.g. 0o600. */
  mode?: number;
  /** The user the doctor (and so its ssh) runs as. */
  runner: string;
  /** The public key line derived from the private key (public, safe to print). */
  publicKey?: string;
  encrypted?: boolean;
  error?: string;
}

export function judgeBuilder(p: BuilderProbe): CheckResult[] {
  const checks: CheckResult[] = [];
  checks.push(judgeResolve(p));
  const tcp = judgeTcp(p);
  checks.push(tcp);
  const reachable = tcp.status === "pass";
  const hostKey = judgeHostKey(p, reachable);
  checks.push(hostKey, judgeIdentity(p));
  const auth = judgeAuth(p, reachable, hostKey.status !== "fail");
  checks.push(auth);
  const sshOk = auth.status === "pass";
  const f = sshOk ? p.session?.facts : undefined;
  const ping = judgePing(p, sshOk);
  const blocker = checks.find((c) => c.status === "fail" && LOGIN_CHECKS.includes(c.id));
  const loginFails = `the SSH login fails${blocker ? ` (see ${blocker.id})` : ""}`;
  if (f) {
    checks.push(
      judgeRemoteNix(p, f),
      ping.check,
      judgeStoreMode(p, f),
      judgeTrust(p, f, ping.trusted),
      ...judgeSystems(p, f),
      judgeJobs(p, f),
      judgeSpace(p, f),
      judgeClock(p),
    );
  } else {
    const why = sshOk ? "the builder's facts could not be read" : loginFails;
    checks.push(skipCheck("remote-nix", TITLES["remote-nix"], why), ping.check);
    for (const id of [
      "store-mode",
      "trust",
      "systems",
      "features",
      "max-jobs",
      "store-space",
      "clock",
    ] as const)
      checks.push(skipCheck(id, TITLES[id], why));
  }
  const rt = judgeRoundTrip(p, sshOk);
  checks.push(rt.status === "skip" && blocker ? skipCheck(rt.id, rt.title, loginFails) : rt);
  return checks;
}
