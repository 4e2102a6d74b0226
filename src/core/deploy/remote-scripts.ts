/**
 * The fixed POSIX sh scripts a deploy runs on its target, and the argv that runs each. Values
 * never become script text: every script reads them from its positional parameters, and the
 * target's login shell receives each word quoted (renderTargetCommand).
 */

/** How the target's profile changes before activation. */
export type ProfileChange =
  /** `nix-env -p PROFILE --set PATH`: a new generation (switch, boot). */
  | { kind: "set" }
  /** `nix-env -p PROFILE --switch-generation N` (deploy --rollback). */
  | { kind: "switch"; generation: number }
  /** Nothing: `test` and `dry-activate` leave the profile alone, as nixos-rebuild does. */
  | { kind: "none" };

/** What restores the target: the generation that was current, and its system. */
export interface RestorePoint {
  /** The generation to switch the profile back to; undefined when the profile was not changed or had none. */
  generation: number | undefined;
  /** The system activated again (the previous generation's, or the profile's for `test`); undefined: nothing to activate. */
  path: string | undefined;
}

/** Exit statuses of the scripts that mean something to nixpool (not a failing command). */
export const SCRIPT_STATUS = {
  /** arm: the system has no such activation program. */
  noActivation: 64,
  /** claim: the watchdog decided first (it rolled the target back). */
  watchdogDecided: 65,
  /** claim: the activation has not finished yet. */
  stillActivating: 66,
  /** arm: another deploy's watchdog has not decided yet (it may still roll the target back). */
  busy: 67,
} as const;

/**
 * The watchdog: waits for the activation to end (at most `limit` s), then `wait` s more; unless
 * nixpool claimed the decision first (mkdir is atomic), it switches the profile back and
 * activates the previous system. $1 dir, $2 profile, $3 generation or "-", $4 system path or
 * "-", $5 program, $6 action, $7 wait, $8 limit.
 */
export const WATCHDOG_SCRIPT = `d=$1 p=$2 gen=$3 sys=$4 prog=$5 action=$6 wait=$7 limit=$8
echo $$ > "$d/watchdog.pid"
i=0
while [ ! -e "$d/status" ] && [ "$i" -lt "$limit" ]; do sleep 1; i=$((i+1)); done
sleep "$wait"
mkdir "$d/decided" 2>/dev/null || exit 0
echo watchdog > "$d/decided/by"
rc=0
if [ "$gen" != - ]; then nix-env -p "$p" --switch-generation "$gen" || rc=$?; fi
if [ "$rc" = 0 ] && [ "$sys" != - ]; then
  case $prog in /*) "$prog" "$action" ;; *) "$sys/$prog" "$action" ;; esac > "$d/rollback.log" 2>&1 || rc=$?
fi
echo "$rc" > "$d/rollback-status"
`;

/**
 * arm: refuses a system without its activation program, and a profile for which another
 * deploy's watchdog is still alive and undecided (it would later roll back over this deploy:
 * prints its directory); makes the deploy's directory on the target, and starts the watchdog there: a
 * transient systemd unit where systemd runs, else a detached process in a session of its own
 * (neither dies with the ssh connection). Prints the directory. $1 watchdog script, $2 new
 * system, $3 program, then the watchdog's $2…$8.
 */
export const ARM_SCRIPT = `w=$1 new=$2 prog=$3; shift 3
case $prog in /*) x=$prog ;; *) x=$new/$prog ;; esac
[ -x "$x" ] || { echo "$x is not an executable" >&2; exit ${SCRIPT_STATUS.noActivation}; }
# The profile, by its directory's device and inode too: machines sharing a /tmp (hosts of a
# local pool) are told apart by their own /nix.
id="$(stat -c %d:%i "\${1%/*}" 2>/dev/null) $1"
for o in "\${TMPDIR:-/tmp}"/nixpool-deploy.*; do
  [ -d "$o" ] && [ ! -e "$o/decided" ] && [ "$(cat "$o/profile.id" 2>/dev/null)" = "$id" ] || continue
  read -r kind unit 2>/dev/null < "$o/watchdog.kind" || continue
  if [ "$kind" = systemd ]; then systemctl is-active --quiet "$unit" || continue
  else kill -0 "$(cat "$o/watchdog.pid" 2>/dev/null)" 2>/dev/null || continue
  fi
  echo "$o"; exit ${SCRIPT_STATUS.busy}
done
d=$(mktemp -d "\${TMPDIR:-/tmp}/nixpool-deploy.XXXXXXXX") || exit 1
echo "$id" > "$d/profile.id"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  u=nixpool-deploy-\${d##*.}
  echo "systemd $u" > "$d/watchdog.kind"
  systemd-run --quiet --collect --unit "$u" --setenv=PATH="$PATH" /bin/sh -c "$w" sh "$d" "$@" >&2 || exit 1
else
  echo detached > "$d/watchdog.kind"
  setsid /bin/sh -c "$w" sh "$d" "$@" < /dev/null > "$d/watchdog.log" 2>&1 &
  echo $! > "$d/watchdog.pid"
fi
echo "$d"
`;

/**
 * activate: changes the profile, then runs the activation with its output in a file, so that
 * neither depends on the ssh connection; writes the status the watchdog waits for, then prints
 * the log's tail. $1 dir, $2 profile, $3 change (set|switch|none), $4 generation or "-",
 * $5 system, $6 program, $7 action.
 */
export const ACTIVATE_SCRIPT = `d=$1 p=$2 change=$3 gen=$4 sys=$5 prog=$6 action=$7
rc=0
case $change in
  set) nix-env -p "$p" --set "$sys" > "$d/activation.log" 2>&1 || rc=$? ;;
  switch) nix-env -p "$p" --switch-generation "$gen" > "$d/activation.log" 2>&1 || rc=$? ;;
esac
if [ "$rc" = 0 ]; then
  case $prog in /*) "$prog" "$action" ;; *) "$sys/$prog" "$action" ;; esac >> "$d/activation.log" 2>&1 || rc=$?
fi
echo "$rc" > "$d/status"
tail -n 20 "$d/activation.log" >&2
exit "$rc"
`;

/**
 * claim: nixpool takes the decision from the watchdog (atomically: mkdir), stops it, and prints
 * the activation's status. Exits 65 when the watchdog decided first (printing its rollback
 * status), 66 when the activation has not finished. $1 dir.
 */
export const CLAIM_SCRIPT = `d=$1
[ -e "$d/status" ] || [ -e "$d/decided" ] || exit ${SCRIPT_STATUS.stillActivating}
if ! mkdir "$d/decided" 2>/dev/null; then
  cat "$d/rollback-status" 2>/dev/null || echo running
  exit ${SCRIPT_STATUS.watchdogDecided}
fi
echo nixpool > "$d/decided/by"
read -r kind unit < "$d/watchdog.kind" || kind=
if [ "$kind" = systemd ]; then systemctl stop "$unit" 2>/dev/null || true
elif [ -s "$d/watchdog.pid" ]; then kill -- "-$(cat "$d/watchdog.pid")" 2>/dev/null || true
fi
cat "$d/status"
`;

/**
 * restore: switches the profile back and activates the previous system (after a failed
 * activation that nixpool claimed), its output in a file so that a lost connection (Ctrl-C)
 * cannot stop it half-way, then prints the log's tail and removes the deploy's directory.
 * $1 dir, $2 profile, $3 generation or "-", $4 system or "-", $5 program, $6 action.
 */
export const RESTORE_SCRIPT = `d=$1 p=$2 gen=$3 sys=$4 prog=$5 action=$6
rc=0
if [ "$gen" != - ]; then nix-env -p "$p" --switch-generation "$gen" > "$d/restore.log" 2>&1 || rc=$?; fi
if [ "$rc" = 0 ] && [ "$sys" != - ]; then
  case $prog in /*) "$prog" "$action" ;; *) "$sys/$prog" "$action" ;; esac >> "$d/restore.log" 2>&1 || rc=$?
fi
tail -n 20 "$d/restore.log" >&2 2>/dev/null
rm -rf "$d"
exit "$rc"
`;

/** generations: one line per generation, `N<TAB>PATH<TAB>MTIME`, then `current<TAB>LINK`. $1 profile. */
export const GENERATIONS_SCRIPT = `p=$1
for l in "$p"-*-link; do
  [ -L "$l" ] || continue
  n=\${l#"$p"-}; n=\${n%-link}
  # PROFILE-old-1-link belongs to the profile PROFILE-old, not to this one.
  case $n in "" | *[!0-9]*) continue ;; esac
  printf '%s\\t%s\\t%s\\n' "$n" "$(readlink "$l")" "$(stat -c %Y "$l")"
done
printf 'current\\t%s\\n' "$(readlink "$p" 2>/dev/null)"
`;

const sh = (script: string, args: readonly string[]) => ["sh", "-c", script, "sh", ...args];
const orDash = (v: string | number | undefined) => (v === undefined ? "-" : String(v));

/** What every step of one activation needs to know. */
export interface ActivationSpec {
  profile: string;
  /** The system (store path) to activate. */
  system: string;
  /** `bin/switch-to-configuration`, or what --activate names (relative: inside the system). */
  program: string;
  action: string;
  change: ProfileChange;
  restore: RestorePoint;
  /** Seconds the watchdog waits after the activation ended before it rolls back. */
  confirmSeconds: number;
  /** Seconds the watchdog waits for the activation to end at most. */
  activationLimitSeconds: number;
}

/** argv of the arm step: checks the activation program, starts the watchdog, prints its directory. */
export function armArgv(s: ActivationSpec): string[] {
  return sh(ARM_SCRIPT, [
    WATCHDOG_SCRIPT,
    s.system,
    s.program,
    s.profile,
    orDash(s.restore.generation),
    orDash(s.restore.path),
    s.program,
    s.action,
    String(s.confirmSeconds),
    String(s.activationLimitSeconds),
  ]);
}

/** argv of the activation step (profile change, then the program), in the armed directory. */
export function activateArgv(dir: string, s: ActivationSpec): string[] {
  const gen = s.change.kind === "switch" ? String(s.change.generation) : "-";
  return sh(ACTIVATE_SCRIPT, [dir, s.profile, s.change.kind, gen, s.system, s.program, s.action]);
}

/** argv of the claim step: nixpool's confirmation, run over a fresh connection. */
export function claimArgv(dir: string): string[] {
  return sh(CLAIM_SCRIPT, [dir]);
}

/** argv of the restore step: back to the restore point, activated again. */
export function restoreArgv(dir: string, s: ActivationSpec): string[] {
  return sh(RESTORE_SCRIPT, [
    dir,
    s.profile,
    orDash(s.restore.generation),
    orDash(s.restore.path),
    s.program,
    s.action,
  ]);
}

/** argv that removes the deploy's directory once the decision is made. */
export function cleanupArgv(dir: string): string[] {
  return ["rm", "-rf", "--", dir];
}

/** argv that lists the profile's generations (parseGenerations reads its output). */
export function generationsArgv(profile: string): string[] {
  return sh(GENERATIONS_SCRIPT, [profile]);
}

/** argv of a dry activation: the program with `dry-activate`, nothing changed, no watchdog. */
export function dryActivateArgv(system: string, program: string): string[] {
  return program.startsWith("/") ? [program, "dry-activate"] : [`${system}/${program}`, "dry-activate"];
}
