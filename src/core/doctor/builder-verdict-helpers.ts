import type { Builder } from "../builder.js";
import { sshAlias, storeUri } from "../builder.js";
import { failCheck, type CheckResult } from "./model.js";
import type { BuilderProbe } from "./builder-verdicts.js";

// What every phase of a builder's checks shares: titles, limits, hint builders.

/** Each builder check's id and title, in the order of the report. */
export const TITLES = {
  dns: "Name resolution",
  tcp: "TCP reachability",
  "host-key": "Host key pinned and matching",
  identity: "Identity file",
  auth: "SSH key accepted",
  "remote-nix": "Remote Nix for the protocol",
  "store-ping": "nix store ping",
  "store-mode": "Multi-user or single-user Nix",
  trust: "Remote user trusted",
  systems: "Systems",
  features: "Features",
  "max-jobs": "maxJobs against cores",
  "store-space": "Free space in the store",
  clock: "Clock skew",
  "round-trip": "Build there and copy back",
} as const;

/** The checks whose failure stops the SSH login, and with it every later check. */
export const LOGIN_CHECKS: readonly string[] = ["dns", "tcp", "host-key", "auth"];

/** Thresholds of the doctor's judgement. */
export const LIMITS = {
  storeFailBytes: 256 * 1024 * 1024,
  storeWarnBytes: 2 * 1024 * 1024 * 1024,
  skewWarnSeconds: 5,
};

export const MiB = 1024 * 1024;
export function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / 1024 / MiB).toFixed(1)} GiB`;
  return `${(n / MiB).toFixed(1)} MiB`;
}

/** Where the user changes a builder field: the inventory entry, or how to recreate a pool builder. */
export function editHint(
  p: Pick<BuilderProbe, "builder" | "inventoryPath">,
  field: string,
  value: string,
): string {
  const b = p.builder;
  if (b.source === "inventory") {
    return `set ${field} = ${value} under [builders.${b.name}] in ${p.inventoryPath ?? "nixpool.toml"}`;
  }
  if (b.source === "local")
    return field === "maxJobs"
      ? `recreate the local pool with fewer jobs (nixpool local down; nixpool local up --jobs ${value})`
      : `recreate the local pool (nixpool local down; nixpool local up), which sets ${field} itself`;
  return `recreate the worker ${b.name}, which sets ${field} itself`;
}

export function sshCommand(p: BuilderProbe): string {
  return `ssh -F ${p.sshConfigPath} ${sshAlias(p.builder)}`;
}

/** Nix's remote command for the builder's protocol. */
export function remoteProgram(b: Pick<Builder, "protocol">): string {
  return b.protocol === "ssh-ng" ? "nix-daemon" : "nix-store";
}

/**
 * What Nix 2.8's build hook prints when the remote command fails with `line` (verified by
 * running it): ssh-ng:// shows the line, then the connection error; ssh:// folds it into one.
 */
export function hookSymptom(b: Pick<Builder, "name" | "protocol">, line: string): string {
  const uri = storeUri(b);
  const failed =
    b.protocol === "ssh-ng"
      ? `${line}\ncannot build on '${uri}': error: cannot open connection to remote store '${uri}': error: unexpected end-of-file`
      : `cannot build on '${uri}': error: cannot connect to '${sshAlias(b)}': ${line}`;
  return `${failed}\nFailed to find a machine for remote build!`;
}

/** A failing row for a step that did not finish (hung past the budget, or could not start). */
export function unfinished(
  p: BuilderProbe,
  step: string,
  id: string,
  title: string,
): CheckResult | undefined {
  const why = p.unfinished?.[step];
  if (why === undefined) return undefined;
  const budget = p.budgetMs !== undefined ? ` (${Math.round(p.budgetMs / 1000)} s)` : "";
  const timedOut = /did not finish|timed out|time budget/i.test(why);
  return failCheck(
    id,
    title,
    timedOut
      ? `The ${step} did not finish within the time budget${budget}: the builder, its sshd or its shell start-up hangs or is very slow.`
      : `The ${step} could not run: ${why}`,
    {
      fix: timedOut
        ? `Run it by hand to see where it stops: ${sshCommand(p)} -v true — or raise --timeout if the builder is just slow.`
        : "Install the missing program (see the message) and run nixpool doctor again.",
      data: { step, reason: why },
    },
  );
}

export function failureFix(check: string | undefined): string {
  return check ? `See the ${check} check above for the fix.` : "";
}
