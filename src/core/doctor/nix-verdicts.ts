import { storeUri } from "../builder.js";
import { failCheck, passCheck, skipCheck, type CheckResult } from "./model.js";
import { parseStorePing } from "./parse.js";
import { classifyFailure, symptomOf } from "./nix-errors.js";
import { LOGIN_CHECKS, TITLES, unfinished, failureFix } from "./builder-verdict-helpers.js";
import type { BuilderProbe } from "./builder-verdicts.js";

// Phase 3: does Nix itself get through? (store ping, a build round trip)

export function judgePing(p: BuilderProbe, sshOk: boolean): { check: CheckResult; trusted?: boolean } {
  const id = "store-ping";
  const title = TITLES[id];
  const r = p.ping;
  if (!sshOk) return { check: skipCheck(id, title, "SSH login fails") };
  if (!r)
    return {
      check: unfinished(p, "nix store ping", id, title) ?? skipCheck(id, title, "not probed"),
    };
  const uri = storeUri(p.builder);
  if (r.exitCode === 0) {
    const info = parseStorePing(r.stdout + r.stderr);
    return {
      check: passCheck(id, title, `${uri} answers${info.version ? ` (Nix ${info.version})` : ""}.`, {
        durationMs: r.ms,
        data: { ...info },
      }),
      ...(info.trusted !== undefined ? { trusted: info.trusted } : {}),
    };
  }
  const known = classifyFailure(r.stderr);
  const line = symptomOf(r.stderr);
  return {
    check: failCheck(id, title, `nix store ping --store ${uri} fails${known ? `: ${known.cause}` : ""}.`, {
      symptom: line,
      fix:
        failureFix(known?.check) ||
        `Run it by hand: NIX_SSHOPTS="-F ${p.sshConfigPath}" nix store ping --store ${uri}`,
      durationMs: r.ms,
      data: { stderr: r.stderr.split("\n").slice(-8).join("\n") },
    }),
  };
}

export function judgeRoundTrip(p: BuilderProbe, sshOk: boolean): CheckResult {
  const id = "round-trip";
  const title = TITLES[id];
  const r = p.roundTrip;
  if (!sshOk) return skipCheck(id, title, "SSH login fails");
  if (p.roundTripSkipped) return skipCheck(id, title, p.roundTripSkipped);
  if (!r) return unfinished(p, "round trip", id, title) ?? skipCheck(id, title, "not probed");
  if (r.ok) {
    return passCheck(
      id,
      title,
      `Built a probe derivation on ${p.builder.name} and copied ${r.outPath ?? "it"} back in ${(r.ms / 1000).toFixed(2)} s.`,
      {
        durationMs: r.ms,
        ...(r.outPath ? { data: { outPath: r.outPath } } : {}),
      },
    );
  }
  const known = classifyFailure(r.stderr);
  if (known && [...LOGIN_CHECKS, "identity"].includes(known.check)) {
    // nixpool's own ssh logged in, so the build hook's ssh sees another setup (root's, under a daemon).
    return failCheck(
      id,
      title,
      `Nix's build hook could not log in to ${p.builder.name} (${known.cause}) although nixpool's ssh_config can: the hook's ssh (root's, when nix-daemon runs it) lacks nixpool's aliases, pinned keys or identity.`,
      {
        symptom: symptomOf(r.stderr),
        fix: "Install nixpool's ssh_config and known_hosts where the hook's ssh reads them: sudo nixpool config apply (see the local.hook-ssh check).",
        durationMs: r.ms,
        data: { stderr: r.stderr.split("\n").slice(-8).join("\n") },
      },
    );
  }
  return failCheck(
    id,
    title,
    `A one-line derivation could not be built on ${p.builder.name}${known ? `: ${known.cause}` : ""}.`,
    {
      symptom: symptomOf(r.stderr),
      fix:
        failureFix(known?.check) ||
        "Run nixpool doctor again with the failing check's fix applied; the symptom above is Nix's own message.",
      durationMs: r.ms,
      data: { stderr: r.stderr.split("\n").slice(-8).join("\n") },
    },
  );
}

/** Turns one builder's probe results into its rows of checks, in a fixed order. */
