import { sshAlias } from "../builder.js";
import { failCheck, passCheck, skipCheck, warnCheck, type CheckResult } from "./model.js";
import { fingerprintOf, keyTypeLabel, readKeyFields, type PublicKey } from "../public-key.js";
import { TITLES, editHint, sshCommand, hookSymptom, unfinished } from "./builder-verdict-helpers.js";
import type { BuilderProbe } from "./builder-verdicts.js";

// Phase 1 of a builder's checks: can nixpool log in? (dns, tcp, host key, identity, auth)

export function judgeResolve(p: BuilderProbe): CheckResult {
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

export function judgeTcp(p: BuilderProbe): CheckResult {
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

export function judgeHostKey(p: BuilderProbe, reachable: boolean): CheckResult {
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

export function judgeIdentity(p: BuilderProbe): CheckResult {
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

export function judgeAuth(p: BuilderProbe, reachable: boolean, hostKeyOk: boolean): CheckResult {
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
