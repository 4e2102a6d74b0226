import type { Builder } from "../builder.js";
import { sshAlias, storeUri } from "../builder.js";
import { failCheck, passCheck, skipCheck, warnCheck, type CheckResult } from "./model.js";
import {
  configString,
  configWords,
  matchNixUser,
  parseStorePing,
  type OfferedKey,
  type RemoteFacts,
  type SshTrace,
} from "./parse.js";
import { fingerprintOf, keyTypeLabel, readKeyFields, type PublicKey } from "../public-key.js";
import { effectiveStoreUri, resolveStoreKind, type StoreKind } from "../nix-store-kind.js";
import { classifyFailure, symptomOf } from "./nix-errors.js";

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

/** Each builder check's id and title, in the order of the report. */
const TITLES = {
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
const LOGIN_CHECKS: readonly string[] = ["dns", "tcp", "host-key", "auth"];

/** Thresholds of the doctor's judgement. */
const LIMITS = {
  storeFailBytes: 256 * 1024 * 1024,
  storeWarnBytes: 2 * 1024 * 1024 * 1024,
  skewWarnSeconds: 5,
};

const MiB = 1024 * 1024;
function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / 1024 / MiB).toFixed(1)} GiB`;
  return `${(n / MiB).toFixed(1)} MiB`;
}

/** Where the user changes a builder field: the inventory entry, or how to recreate a pool builder. */
function editHint(p: Pick<BuilderProbe, "builder" | "inventoryPath">, field: string, value: string): string {
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

function sshCommand(p: BuilderProbe): string {
  return `ssh -F ${p.sshConfigPath} ${sshAlias(p.builder)}`;
}

/** Nix's remote command for the builder's protocol. */
function remoteProgram(b: Pick<Builder, "protocol">): string {
  return b.protocol === "ssh-ng" ? "nix-daemon" : "nix-store";
}

/**
 * What Nix 2.8's build hook prints when the remote command fails with `line` (verified by
 * running it): ssh-ng:// shows the line, then the connection error; ssh:// folds it into one.
 */
function hookSymptom(b: Pick<Builder, "name" | "protocol">, line: string): string {
  const uri = storeUri(b);
  const failed =
    b.protocol === "ssh-ng"
      ? `${line}\ncannot build on '${uri}': error: cannot open connection to remote store '${uri}': error: unexpected end-of-file`
      : `cannot build on '${uri}': error: cannot connect to '${sshAlias(b)}': ${line}`;
  return `${failed}\nFailed to find a machine for remote build!`;
}

/** A failing row for a step that did not finish (hung past the budget, or could not start). */
function unfinished(p: BuilderProbe, step: string, id: string, title: string): CheckResult | undefined {
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

function judgeResolve(p: BuilderProbe): CheckResult {
  const id = "dns";
  const title = TITLES[id];
  const r = p.resolve;
  if (!r) return skipCheck(id, title, "not probed");
  if (r.ok)
    return passCheck(id, title, `${p.builder.host} resolves to ${r.addresses.join(", ")}.`, {
      durationMs: r.ms,
      data: { addresses: r.addresses },
    });
  return failCheck(id, title, `${p.builder.host} does not resolve (${r.error}).`, {
    symptom: `ssh: Could not resolve hostname ${p.builder.host}: Name or service not known`,
    fix: `Correct the host name (${editHint(p, "host", '"ADDRESS"')}) or add it to DNS or /etc/hosts.`,
    durationMs: r.ms,
  });
}

function judgeTcp(p: BuilderProbe): CheckResult {
  const id = "tcp";
  const title = TITLES[id];
  const t = p.tcp;
  const where = `${p.builder.host}:${p.builder.port}`;
  if (!t) return skipCheck(id, title, p.resolve?.ok === false ? "the name does not resolve" : "not probed");
  if (t.ok) {
    if (t.banner !== undefined && !t.banner.startsWith("SSH-")) {
      return failCheck(
        id,
        title,
        `${where} answers, but not with SSH (it said "${t.banner.slice(0, 60)}").`,
        {
          symptom: "kex_exchange_identification: Connection closed by remote host",
          fix: `Point the builder at its SSH port (${editHint(p, "port", "22")}).`,
          durationMs: t.ms,
        },
      );
    }
    return passCheck(id, title, `${where} answered in ${t.ms} ms${t.banner ? ` (${t.banner})` : ""}.`, {
      durationMs: t.ms,
      data: { address: t.address, ms: t.ms, ...(t.banner ? { banner: t.banner } : {}) },
    });
  }
  if (t.connected) {
    return failCheck(
      id,
      title,
      `${where} accepted the connection but sent no SSH banner within ${(t.ms / 1000).toFixed(1)} s: the builder is down behind a proxy or firewall that answers for it, or its sshd hangs.`,
      {
        symptom: `Connection timed out during banner exchange\nConnection to ${p.builder.host} port ${p.builder.port} timed out`,
        fix: `Check that the builder is up and its sshd answers (ssh-keyscan -p ${p.builder.port} ${p.builder.host}); remove it from the pool while it is down.`,
        durationMs: t.ms,
        data: { error: t.error, timedOut: t.timedOut, connected: true },
      },
    );
  }
  const refused = /ECONNREFUSED|refused/i.test(t.error);
  const cause = refused
    ? `Nothing listens on ${where} (connection refused): sshd is not running there or the port is wrong.`
    : t.timedOut
      ? `${where} did not answer within ${(t.ms / 1000).toFixed(1)} s: the builder is down, its link is cut, or a firewall drops the packets.`
      : `${where} is unreachable (${t.error}): the builder is down or no route leads to it.`;
  return failCheck(id, title, cause, {
    symptom: `ssh: connect to host ${p.builder.host} port ${p.builder.port}: ${refused ? "Connection refused" : t.timedOut ? "Connection timed out" : "No route to host"}`,
    fix: refused
      ? `Start sshd on the builder (systemctl start ssh) or correct the port (${editHint(p, "port", "PORT")}).`
      : `Bring the builder up or restore its network (try: ping ${p.builder.host}); remove it from the pool while it is down.`,
    durationMs: t.ms,
    data: { error: t.error, timedOut: t.timedOut },
  });
}

function judgeHostKey(p: BuilderProbe, reachable: boolean): CheckResult {
  const id = "host-key";
  const title = TITLES[id];
  const b = p.builder;
  if (!reachable) return skipCheck(id, title, "the builder is unreachable");
  const presented = p.keyscan?.keys ?? [];
  const pinned = b.hostKey ? readKeyFields(b.hostKey) : undefined;
  const keyLine = (k: PublicKey<string>) => `"${k.type} ${k.blob}"`;
  const preferred = presented.find((k) => k.type === "ssh-ed25519") ?? presented[0];
  const pinFix = (k: PublicKey<string> | undefined) =>
    k
      ? `Confirm on the builder's console that ssh-keygen -lf /etc/ssh/ssh_host_${k.type.replace(/^ssh-/, "")}_key.pub prints ${fingerprintOf(k)}, then ${editHint(p, "hostKey", keyLine(k))}.`
      : `Read the key on the builder (cat /etc/ssh/ssh_host_ed25519_key.pub) and ${editHint(p, "hostKey", '"ssh-ed25519 AAAA…"')}.`;
  if (!pinned) {
    return failCheck(
      id,
      title,
      `No host key is pinned for ${b.name}, and nixpool never trusts an unknown key.`,
      {
        symptom: `No ED25519 host key is known for ${sshAlias(b)} and you have requested strict checking.\nHost key verification failed.`,
        fix: pinFix(preferred),
        data: { presented: presented.map((k) => ({ type: k.type, fingerprint: fingerprintOf(k) })) },
      },
    );
  }
  const pinnedFp = fingerprintOf(pinned);
  const t = p.session?.trace;
  const sameType = presented.find((k) => k.type === pinned.type);
  if (presented.length > 0 && !sameType) {
    return failCheck(
      id,
      title,
      `The inventory pins a ${keyTypeLabel(pinned.type)} key, but the builder offers only ${presented.map((k) => `${keyTypeLabel(k.type)} ${fingerprintOf(k)}`).join(", ")}: the inventory side is wrong.`,
      {
        symptom: "Host key verification failed.",
        fix: pinFix(preferred),
        data: { pinned: pinnedFp, presented: presented.map((k) => fingerprintOf(k)), wrongSide: "inventory" },
      },
    );
  }
  // The builder's key of the pinned type: from ssh-keyscan, else what the session's ssh saw.
  const builderFp = sameType
    ? fingerprintOf(sameType)
    : t?.hostKeyChanged
      ? (t.serverHostKey?.fingerprint ?? "another key")
      : t?.authenticated || t?.serverHostKey
        ? pinnedFp
        : undefined;
  if (builderFp === undefined && p.unfinished?.["ssh-keyscan"] !== undefined)
    return skipCheck(id, title, "the time budget ran out before the builder's key was read (see auth)");
  if (builderFp === undefined) {
    return warnCheck(
      id,
      title,
      `ssh-keyscan got no host key from the builder (${p.keyscan?.error ?? "no answer"}).`,
      {
        fix: `Check by hand: ssh-keyscan -p ${b.port} ${b.host}`,
      },
    );
  }
  // The third party: the known_hosts files the build hook's own ssh reads for this builder.
  const hook = p.hookKnownHosts;
  const recorded = (hook?.entries ?? []).filter((e) => e.key.type === pinned.type);
  const recordedWith = (fp: string) => recorded.find((e) => fingerprintOf(e.key) === fp);
  const label = keyTypeLabel(pinned.type);
  const changedSymptom = `WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\nHost key for ${hook?.name ?? sshAlias(b)} has changed and you have requested strict checking.\nHost key verification failed.`;
  if (builderFp === pinnedFp) {
    const stale = recordedWith(pinnedFp) ? [] : recorded;
    const first = stale[0];
    if (hook && first) {
      return failCheck(
        id,
        title,
        `The builder and the inventory agree on ${label} key ${pinnedFp}, but ${first.file}, which the build hook's ssh reads, records ${fingerprintOf(first.key)} for ${hook.name}: this machine's known_hosts is the wrong side, and Nix's builds fail there.`,
        {
          symptom: changedSymptom,
          fix: `ssh-keygen -R ${hook.name} -f ${first.file} && echo '${hook.name} ${pinned.type} ${pinned.blob}' >> ${first.file}`,
          data: {
            pinned: pinnedFp,
            presented: pinnedFp,
            recorded: fingerprintOf(first.key),
            file: first.file,
            wrongSide: "known_hosts",
          },
        },
      );
    }
    const agrees = recordedWith(pinnedFp);
    return passCheck(
      id,
      title,
      `The builder presents the pinned ${label} key ${pinnedFp}${agrees ? `, as ${agrees.file} records` : ""}.`,
      { data: { pinned: pinnedFp } },
    );
  }
  const fix = sameType ? editHint(p, "hostKey", keyLine(sameType)) : editHint(p, "hostKey", '"TYPE KEY"');
  const byBuilder = recordedWith(builderFp);
  if (byBuilder) {
    return failCheck(
      id,
      title,
      `The builder presents ${label} key ${builderFp}, which ${byBuilder.file} (the build hook's known_hosts) also records, but the inventory pins ${pinnedFp}: the inventory side is wrong.`,
      {
        symptom: changedSymptom,
        fix: `${fix[0]?.toUpperCase() ?? ""}${fix.slice(1)}.`,
        data: { pinned: pinnedFp, presented: builderFp, file: byBuilder.file, wrongSide: "inventory" },
      },
    );
  }
  const byPin = recordedWith(pinnedFp);
  if (byPin) {
    return failCheck(
      id,
      title,
      `The inventory and ${byPin.file} (the build hook's known_hosts) both record ${label} key ${pinnedFp}, but the builder now presents ${builderFp}: the builder side changed (reinstalled, its key regenerated, or someone else answers at ${b.host}).`,
      {
        symptom: changedSymptom,
        fix: `Do not build there until the builder's console confirms ${builderFp}; if it does, ${fix} and run ssh-keygen -R ${hook?.name ?? sshAlias(b)} -f ${byPin.file}.`,
        data: { pinned: pinnedFp, presented: builderFp, file: byPin.file, wrongSide: "builder" },
      },
    );
  }
  return failCheck(
    id,
    title,
    `The builder presents ${label} key ${builderFp}, but the inventory pins ${pinnedFp}: the pin is stale (the builder was reinstalled or its key regenerated) or someone else answers at ${b.host}.`,
    {
      symptom: changedSymptom,
      fix: `If the builder's console shows ${builderFp} (ssh-keygen -lf /etc/ssh/ssh_host_${pinned.type.replace(/^ssh-/, "")}_key.pub), the inventory is wrong: ${fix}. If it shows ${pinnedFp}, the builder side is wrong: do not connect; find who answers at ${b.host}.`,
      data: { pinned: pinnedFp, presented: builderFp, wrongSide: "unknown: inventory or builder" },
    },
  );
}

function judgeIdentity(p: BuilderProbe): CheckResult {
  const id = "identity";
  const title = TITLES[id];
  const i = p.identity;
  const b = p.builder;
  if (!b.identityFile || !i) {
    return passCheck(
      id,
      title,
      "No identity file is set: ssh offers the default keys (~/.ssh/id_*) of the user running it (root, when nix-daemon runs the build hook).",
    );
  }
  if (!i.exists) {
    return failCheck(id, title, `The identity file ${i.path} does not exist.`, {
      symptom: `no such identity: ${i.path}: No such file or directory\n${b.user ?? "root"}@${b.host}: Permission denied (publickey).`,
      fix: `Create it (ssh-keygen -t ed25519 -N "" -f ${i.path}) and authorise ${i.path}.pub on the builder, or ${editHint(p, "identityFile", '"/path/to/key"')}.`,
    });
  }
  if (!i.readable) {
    return failCheck(
      id,
      title,
      `The identity file ${i.path} cannot be read (${i.error ?? "permission denied"}).`,
      {
        symptom: `no such identity: ${i.path}: Permission denied\n${b.user ?? "root"}@${b.host}: Permission denied (publickey).`,
        fix: `Make it readable by the user who runs ssh (${i.runner} here; root when nix-daemon runs the build hook): chown ${i.runner} ${i.path} && chmod 600 ${i.path}`,
      },
    );
  }
  if (i.mode !== undefined && (i.mode & 0o077) !== 0) {
    const mode = `0${(i.mode & 0o777).toString(8)}`;
    return failCheck(
      id,
      title,
      `The identity file ${i.path} has mode ${mode}; ssh ignores a private key that others can read.`,
      {
        symptom: `WARNING: UNPROTECTED PRIVATE KEY FILE!\nPermissions ${mode} for '${i.path}' are too open.\nLoad key "${i.path}": bad permissions`,
        fix: `chmod 600 ${i.path}`,
        data: { mode },
      },
    );
  }
  if (i.encrypted) {
    return failCheck(
      id,
      title,
      `The identity file ${i.path} is protected by a passphrase, and the build hook runs ssh in batch mode where nobody can type it.`,
      {
        symptom: "Permission denied (publickey).",
        fix: `Use a key without a passphrase for builds (ssh-keygen -t ed25519 -N "" -f /root/.ssh/nixpool_ed25519) and ${editHint(p, "identityFile", '"/root/.ssh/nixpool_ed25519"')}.`,
      },
    );
  }
  const pub = i.publicKey ? readKeyFields(i.publicKey) : undefined;
  return passCheck(
    id,
    title,
    `${i.path} is present, readable and 0600${pub ? ` (${keyTypeLabel(pub.type)} ${fingerprintOf(pub)})` : ""}.`,
    pub ? { data: { type: keyTypeLabel(pub.type), fingerprint: fingerprintOf(pub) } } : {},
  );
}

function judgeAuth(p: BuilderProbe, reachable: boolean, hostKeyOk: boolean): CheckResult {
  const id = "auth";
  const title = TITLES[id];
  const s = p.session;
  if (!reachable) return skipCheck(id, title, "the builder is unreachable");
  if (!s) return unfinished(p, "ssh session", id, title) ?? skipCheck(id, title, "not probed");
  const t = s.trace;
  if (t.hostKeyChanged || t.hostKeyUnknown || !hostKeyOk)
    return skipCheck(id, title, "ssh stops at the host key check (see host-key)");
  if (t.authenticated) {
    const k = t.accepted;
    return passCheck(
      id,
      title,
      k
        ? `The builder accepted ${k.type} key ${k.fingerprint} (${k.path}).`
        : "The builder accepted the login.",
      {
        durationMs: s.ms,
        ...(k ? { data: { type: k.type, fingerprint: k.fingerprint, path: k.path } } : {}),
      },
    );
  }
  const user = p.builder.user ?? "root";
  if (t.badPermissions.length > 0) {
    return failCheck(
      id,
      title,
      `ssh ignored ${t.badPermissions.join(", ")} because others can read it, so it had no key to offer.`,
      {
        symptom: `Load key "${t.badPermissions[0] ?? ""}": bad permissions\nPermission denied (publickey).`,
        fix: `chmod 600 ${t.badPermissions.join(" ")}`,
      },
    );
  }
  if (t.permissionDenied || s.exitCode === 255) {
    const offered = t.offered;
    const offeredText = offered.length
      ? offered.map((k) => `${k.type} key ${k.fingerprint} (${k.path})`).join(", ")
      : "no key at all";
    const alt = p.alternatives?.accepted;
    const offeredTypes = [...new Set(offered.map((k) => k.type))];
    const pubLine = p.identity?.publicKey;
    if (t.noMutualSignature) {
      return failCheck(
        id,
        title,
        `The builder refuses the RSA key's SHA-1 signatures and shares no signature algorithm with this ssh.`,
        {
          symptom: "send_pubkey_test: no mutual signature algorithm\nPermission denied (publickey).",
          fix: `Use an ED25519 key: ssh-keygen -t ed25519 -N "" -f /root/.ssh/nixpool_ed25519, authorise its .pub on the builder, and ${editHint(p, "identityFile", '"/root/.ssh/nixpool_ed25519"')}.`,
        },
      );
    }
    if (alt) {
      return failCheck(
        id,
        title,
        `The builder refused the ${offeredTypes.join("/") || "configured"} key offered (${offeredText}) but accepts the ${alt.type} key ${alt.path}: ${offeredTypes.length ? `an ${offeredTypes.join("/")} key is offered where only an ${alt.type} key is authorised` : "the wrong key is configured"}.`,
        {
          symptom: hookSymptom(p.builder, `${user}@${p.builder.host}: Permission denied (publickey).`),
          fix: `${editHint(p, "identityFile", `"${alt.path}"`)}${pubLine ? `, or authorise the offered key on the builder: echo '${pubLine}' >> ~${user}/.ssh/authorized_keys` : ""}.`,
          data: { offered, acceptedAlternative: alt },
        },
      );
    }
    return failCheck(id, title, `The builder refused ${offeredText} for user ${user}.`, {
      symptom: hookSymptom(p.builder, `${user}@${p.builder.host}: Permission denied (publickey).`),
      fix: pubLine
        ? `Authorise the key on the builder: echo '${pubLine}' >> ~${user}/.ssh/authorized_keys`
        : `Authorise one of your public keys in ~${user}/.ssh/authorized_keys on the builder, or ${editHint(p, "identityFile", '"/path/to/key"')}.`,
      data: { offered, methodsCanContinue: t.methodsCanContinue, tried: p.alternatives?.tried ?? [] },
    });
  }
  return failCheck(id, title, `ssh failed: ${t.otherLines.at(-1) ?? `exit code ${s.exitCode}`}.`, {
    fix: `Run it by hand to see more: ${sshCommand(p)} -v true`,
  });
}

/** Which store a remote Nix command opens for the login user: Nix 2.8's "auto" rules. */
export function remoteStoreKind(f: RemoteFacts): StoreKind {
  const storeSetting = f.config ? configString(f.config, "store") : "";
  return resolveStoreKind(effectiveStoreUri({ storeSetting, nixRemote: f.nixRemote }), f);
}

function judgeRemoteNix(p: BuilderProbe, f: RemoteFacts): CheckResult {
  const id = "remote-nix";
  const title = TITLES[id];
  const prog = remoteProgram(p.builder);
  const found = f.which[prog];
  if (!found) {
    const other = p.builder.protocol === "ssh-ng" && f.which["nix-store"];
    return failCheck(
      id,
      title,
      `${prog} is not on the PATH of non-interactive SSH sessions on the builder (PATH=${f.path || "empty"}), and ${p.builder.protocol}:// runs "${prog} ${p.builder.protocol === "ssh-ng" ? "--stdio" : "--serve --write"}" there.`,
      {
        symptom: hookSymptom(p.builder, `bash: line 1: ${prog}: command not found`),
        fix: `On the builder, put ${prog} on the system PATH: ln -s /nix/var/nix/profiles/default/bin/${prog} /usr/local/bin/${prog}${other ? ` — or use the ssh protocol, which needs only nix-store (${editHint(p, "protocol", '"ssh"')})` : ""}.`,
        data: { path: f.path, which: f.which },
      },
    );
  }
  return passCheck(id, title, `${prog} is at ${found}${f.nixVersion ? ` (Nix ${f.nixVersion})` : ""}.`, {
    data: { program: prog, path: found, ...(f.nixVersion ? { version: f.nixVersion } : {}) },
  });
}

function judgeStoreMode(p: BuilderProbe, f: RemoteFacts): CheckResult {
  const id = "store-mode";
  const title = TITLES[id];
  const kind = remoteStoreKind(f);
  const user = f.user ?? p.builder.user ?? "root";
  if (kind === "daemon") {
    return passCheck(id, title, `Multi-user: ${user}'s Nix commands go through the builder's nix-daemon.`, {
      data: { kind, daemonSocket: f.daemonSocket },
    });
  }
  if (kind === "local" && f.stateWritable) {
    return passCheck(
      id,
      title,
      `Single-user store owned by ${f.storeOwner ?? "the login user"}; ${user} writes it directly and builds run as ${user}.`,
      {
        data: { kind, owner: f.storeOwner },
      },
    );
  }
  if (kind === "local") {
    return failCheck(
      id,
      title,
      `The builder's Nix is single-user (no nix-daemon socket) and its store belongs to ${f.storeOwner ?? "another user"}, so ${user} cannot open it.`,
      {
        symptom:
          "error: could not set permissions on '/nix/var/nix/profiles/per-user' to 755: Operation not permitted",
        fix: `Either log in as the store's owner (${editHint(p, "user", `"${f.storeOwner ?? "OWNER"}"`)}) or make the builder multi-user: start nix-daemon there (systemctl enable --now nix-daemon).`,
        data: { kind, owner: f.storeOwner, user },
      },
    );
  }
  return warnCheck(id, title, `The builder's Nix uses the store "${configString(f.config ?? {}, "store")}".`);
}

function judgeTrust(p: BuilderProbe, f: RemoteFacts, pingTrusted: boolean | undefined): CheckResult {
  const id = "trust";
  const title = TITLES[id];
  const kind = remoteStoreKind(f);
  const user = f.user ?? p.builder.user ?? "root";
  const trustedUsers = f.config ? configWords(f.config, "trusted-users") : [];
  const allowedUsers = f.config ? configWords(f.config, "allowed-users") : ["*"];
  if (kind === "local") {
    if (!f.stateWritable) return skipCheck(id, title, "the store cannot be opened (see store-mode)");
    return passCheck(
      id,
      title,
      `${user} opens the store directly (no daemon), which Nix treats as trusted.`,
      {
        data: { trusted: true, via: "local store" },
      },
    );
  }
  const trusted = pingTrusted ?? matchNixUser(user, f.groups, trustedUsers);
  if (!trusted && !matchNixUser(user, f.groups, allowedUsers)) {
    return failCheck(
      id,
      title,
      `The builder's nix-daemon refuses ${user}: it is neither in allowed-users (${allowedUsers.join(" ") || "empty"}) nor in trusted-users.`,
      {
        symptom:
          p.builder.protocol === "ssh-ng"
            ? hookSymptom(
                p.builder,
                "error: splicing data from daemon socket to stdout: Connection reset by peer",
              )
            : "error: cannot open connection to remote store 'daemon': error: reading from file: Connection reset by peer\nerror: unexpected end-of-file",
        fix: `On the builder, add to /etc/nix/nix.conf: trusted-users = ${[...new Set([...trustedUsers, user])].join(" ")} — then restart nix-daemon (systemctl restart nix-daemon).`,
      },
    );
  }
  if (!trusted) {
    return failCheck(
      id,
      title,
      `The builder's nix-daemon does not trust ${user} (trusted-users = ${trustedUsers.join(" ") || "(empty)"}): it refuses the derivations the build hook sends and unsigned paths copied to it.`,
      {
        symptom: "error: you are not privileged to build input-addressed derivations",
        fix: `On the builder, add to /etc/nix/nix.conf: trusted-users = ${[...new Set([...trustedUsers, user])].join(" ")} — then restart nix-daemon (systemctl restart nix-daemon).`,
        data: { trusted: false, user, trustedUsers },
      },
    );
  }
  return passCheck(id, title, `${user} is in the builder's trusted-users (${trustedUsers.join(" ")}).`, {
    data: { trusted: true, user, trustedUsers },
  });
}

function judgeSystems(p: BuilderProbe, f: RemoteFacts): CheckResult[] {
  const b = p.builder;
  const cfg = f.config;
  if (!cfg) {
    return [
      skipCheck("systems", TITLES.systems, "the builder's Nix did not print its configuration"),
      skipCheck("features", TITLES.features, "the builder's Nix did not print its configuration"),
    ];
  }
  const system = configString(cfg, "system");
  const platforms = [system, ...configWords(cfg, "extra-platforms")].filter(Boolean);
  const missing = b.systems.filter((s) => !platforms.includes(s));
  const systems = missing.length
    ? failCheck(
        "systems",
        TITLES.systems,
        `The inventory says ${b.name} builds ${missing.join(", ")}, but the builder is ${system} (extra-platforms: ${configWords(cfg, "extra-platforms").join(" ") || "none"}).`,
        {
          symptom: `error: a '${missing[0] ?? ""}' with features {} is required to build '/nix/store/…drv', but I am a '${system}' with features {${configWords(cfg, "system-features").join(", ")}}`,
          fix: `${editHint(p, "systems", `[${[system].map((s) => `"${s}"`).join(", ")}]`)} — or add the system to extra-platforms on the builder if it can run it (binfmt/qemu).`,
          data: { declared: b.systems, builderSystems: platforms },
        },
      )
    : passCheck(
        "systems",
        TITLES.systems,
        `The builder runs ${b.systems.join(", ")} as declared (system ${system}).`,
        {
          data: { declared: b.systems, builderSystems: platforms },
        },
      );
  const remoteFeatures = configWords(cfg, "system-features");
  const wanted = [...new Set([...b.supportedFeatures, ...b.mandatoryFeatures])];
  const absent = wanted.filter((x) => !remoteFeatures.includes(x));
  const features = absent.length
    ? failCheck(
        "features",
        TITLES.features,
        `The inventory says ${b.name} supports ${absent.join(", ")}, but its system-features are ${remoteFeatures.join(" ") || "empty"}: Nix sends it builds it refuses.`,
        {
          symptom: `error: a '${system}' with features {${absent.join(", ")}} is required to build '/nix/store/…drv', but I am a '${system}' with features {${remoteFeatures.join(", ")}}`,
          fix: `On the builder, add to /etc/nix/nix.conf: system-features = ${[...new Set([...remoteFeatures, ...absent])].join(" ")} — or ${editHint(
            p,
            "supportedFeatures",
            `[${b.supportedFeatures
              .filter((x) => !absent.includes(x))
              .map((x) => `"${x}"`)
              .join(", ")}]`,
          )}.`,
          data: { declared: wanted, builderFeatures: remoteFeatures },
        },
      )
    : passCheck(
        "features",
        TITLES.features,
        wanted.length
          ? `The builder offers ${wanted.join(", ")} as declared.`
          : `No features declared; the builder offers ${remoteFeatures.join(", ") || "none"}.`,
        { data: { declared: wanted, builderFeatures: remoteFeatures } },
      );
  return [systems, features];
}

function judgeJobs(p: BuilderProbe, f: RemoteFacts): CheckResult {
  const id = "max-jobs";
  const title = TITLES[id];
  const n = f.nproc;
  const b = p.builder;
  if (n === undefined) return skipCheck(id, title, "the builder did not report its cores");
  if (b.maxJobs > n) {
    return warnCheck(
      id,
      title,
      `maxJobs ${b.maxJobs} exceeds the builder's ${n} cores: parallel builds there compete for CPU and each runs slower.`,
      {
        fix: editHint(p, "maxJobs", String(n)),
        data: { maxJobs: b.maxJobs, cores: n },
      },
    );
  }
  return passCheck(id, title, `maxJobs ${b.maxJobs} for ${n} cores.`, {
    data: { maxJobs: b.maxJobs, cores: n },
  });
}

function judgeSpace(p: BuilderProbe, f: RemoteFacts): CheckResult {
  const id = "store-space";
  const title = TITLES[id];
  const free = f.storeFreeBytes;
  if (free === undefined) return skipCheck(id, title, "df did not report /nix/store");
  const data = { freeBytes: free, sizeBytes: f.storeSizeBytes };
  if (free < LIMITS.storeFailBytes) {
    return failCheck(
      id,
      title,
      `Only ${formatBytes(free)} free for /nix/store on the builder${f.storeSizeBytes !== undefined ? ` (of ${formatBytes(f.storeSizeBytes)})` : ""}: builds and copies there fail.`,
      {
        symptom: "error: writing to file: No space left on device",
        fix: `Free space on the builder (${sshCommand(p)} nix-collect-garbage -d) or grow the filesystem that holds /nix.`,
        data,
      },
    );
  }
  if (free < LIMITS.storeWarnBytes) {
    return warnCheck(
      id,
      title,
      `${formatBytes(free)} free for /nix/store on the builder: large builds may run out.`,
      {
        fix: `${sshCommand(p)} nix-collect-garbage -d`,
        data,
      },
    );
  }
  return passCheck(id, title, `${formatBytes(free)} free for /nix/store.`, { data });
}

function judgeClock(p: BuilderProbe): CheckResult {
  const id = "clock";
  const title = TITLES[id];
  const skew = p.session?.skewSeconds;
  if (skew === undefined) return skipCheck(id, title, "the builder did not report its time");
  // The skew is measured against the middle of the ssh session: a slow session (a loaded machine)
  // leaves up to half its length unknown, which is not the builder's fault.
  const slack = Math.ceil((p.session?.ms ?? 0) / 2000);
  if (Math.abs(skew) > LIMITS.skewWarnSeconds + slack) {
    return warnCheck(
      id,
      title,
      `The builder's clock is ${Math.abs(skew)} s ${skew > 0 ? "ahead" : "behind"}: SSH certificates look not yet valid or expired, and build tools warn of clock skew.`,
      {
        fix: "Synchronise the builder's clock (on the builder: timedatectl set-ntp true, or chronyd -q).",
        data: { skewSeconds: skew },
      },
    );
  }
  return passCheck(id, title, `Within ${LIMITS.skewWarnSeconds + slack} s (${skew} s).`, {
    data: { skewSeconds: skew, sessionMs: p.session?.ms ?? null },
  });
}

function failureFix(check: string | undefined): string {
  return check ? `See the ${check} check above for the fix.` : "";
}

function judgePing(p: BuilderProbe, sshOk: boolean): { check: CheckResult; trusted?: boolean } {
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

function judgeRoundTrip(p: BuilderProbe, sshOk: boolean): CheckResult {
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
