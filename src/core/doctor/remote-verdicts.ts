import { failCheck, passCheck, skipCheck, warnCheck, type CheckResult } from "./model.js";
import { configString, configWords, matchNixUser, type RemoteFacts } from "./parse.js";
import { effectiveStoreUri, resolveStoreKind, type StoreKind } from "../nix-store-kind.js";
import {
  TITLES,
  LIMITS,
  formatBytes,
  editHint,
  sshCommand,
  remoteProgram,
  hookSymptom,
} from "./builder-verdict-helpers.js";
import type { BuilderProbe } from "./builder-verdicts.js";

// Phase 2: what the builder's Nix is and offers (remote nix, store, trust, systems, jobs, space, clock)

export function remoteStoreKind(f: RemoteFacts): StoreKind {
  const storeSetting = f.config ? configString(f.config, "store") : "";
  return resolveStoreKind(effectiveStoreUri({ storeSetting, nixRemote: f.nixRemote }), f);
}

export function judgeRemoteNix(p: BuilderProbe, f: RemoteFacts): CheckResult {
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

export function judgeStoreMode(p: BuilderProbe, f: RemoteFacts): CheckResult {
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

export function judgeTrust(p: BuilderProbe, f: RemoteFacts, pingTrusted: boolean | undefined): CheckResult {
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

export function judgeSystems(p: BuilderProbe, f: RemoteFacts): CheckResult[] {
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

export function judgeJobs(p: BuilderProbe, f: RemoteFacts): CheckResult {
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

export function judgeSpace(p: BuilderProbe, f: RemoteFacts): CheckResult {
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

export function judgeClock(p: BuilderProbe): CheckResult {
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
