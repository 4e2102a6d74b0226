// The AuthorizedKeysCommand sshd runs at every login, as a small POSIX sh script: it checks the
// name and prints one file nixpool precompiled for that member (no node start per login).
/** Where `nixpool access install-keys-command` puts the command unless told otherwise. */
export const DEFAULT_KEYS_COMMAND_PREFIX = "/usr/local/lib/nixpool";
/** The command's file name inside the prefix. */
export const KEYS_COMMAND_NAME = "keys-command";

/** Precompiled files under STATE/access/sshd/: one directory per answer kind, one file per member. */
export const SSHD_ANSWER_DIRS = ["ssh-ng", "ssh", "principals", "gateway"] as const;
/** In sshd/gateway/: every gateway client's lines, for the gateway's one account (`--protocol gateway`). */
export const GATEWAY_ALL_FILE = ".all";
export type SshdAnswerKind = (typeof SSHD_ANSWER_DIRS)[number];

/**
 * The keys command. Same arguments as dist/access/keys-command.js:
 *   keys-command --state-dir DIR [--protocol ssh-ng|ssh|gateway] USER
 *   keys-command --state-dir DIR --principals [--key-id KEYID] USER
 * Output is STATE/access/sshd/{ssh-ng,ssh,principals}/USER as written; no file, no output. With
 * --protocol gateway (sshd's `Match User` of the gateway's account) it is every gateway client's
 * lines, STATE/access/sshd/gateway/.all, whatever the valid USER.
 * Only shell builtins run (no fork), so a login costs one sh start and one small read. The name
 * check is USER_NAME_PATTERN (core/access/names.ts) written as case patterns; a test runs both.
 */
export function renderKeysCommandScript(): string {
  return `#!/bin/sh
# nixpool keys command, installed by: nixpool access install-keys-command. Do not edit.
# sshd's AuthorizedKeysCommand / AuthorizedPrincipalsCommand:
#   keys-command --state-dir DIR [--protocol ssh-ng|ssh|gateway] USER
#   keys-command --state-dir DIR --principals [--key-id KEYID] USER
# Prints STATE/access/sshd/KIND/USER, precompiled by nixpool (restricted key lines with
# expiry-time, or the member's principal); an unlisted or invalid name prints nothing (exit 0).
# An unreachable state directory exits 1 with a message in sshd's log.
state= kind=ssh-ng principals= keyid= haskeyid= user= nusers=0
while [ $# -gt 0 ]; do
  case $1 in
    --state-dir|--protocol|--key-id)
      [ $# -ge 2 ] || { echo "nixpool keys-command: $1 needs a value" >&2; exit 2; }
      case $1 in
        --state-dir) state=$2 ;;
        --protocol) kind=$2 ;;
        --key-id) keyid=$2 haskeyid=1 ;;
      esac
      shift 2 ;;
    --principals) principals=1; shift ;;
    *) user=$1 nusers=$((nusers + 1)); shift ;;
  esac
done
if [ -z "$state" ] || [ "$nusers" -ne 1 ]; then
  echo "nixpool keys-command: give --state-dir DIR and one USER" >&2; exit 2
fi
case $kind in
  ssh-ng|ssh|gateway) ;;
  *) echo "nixpool keys-command: --protocol must be ssh-ng, ssh or gateway" >&2; exit 2 ;;
esac
# The name comes from sshd's %u: only a valid member name ([a-z_][a-z0-9_-]{0,31}) has keys.
case $user in
  ''|[!a-z_]*|*[!a-z0-9_-]*) exit 0 ;;
esac
[ \${#user} -le 32 ] || exit 0
if [ -n "$principals" ]; then
  kind=principals
  # %i, the certificate's key ID: only a certificate issued to this very member (nixpool:USER:SERIAL).
  if [ -n "$haskeyid" ]; then
    case $keyid in
      "nixpool:$user:"*) serial=\${keyid#"nixpool:$user:"} ;;
      *) exit 0 ;;
    esac
    case $serial in
      ''|*[!0-9]*) exit 0 ;;
    esac
  fi
fi
file=$user
[ "$kind" = gateway ] && file=${GATEWAY_ALL_FILE}
dir=$state/access/sshd/$kind
if [ ! -d "$dir" ] || [ ! -x "$dir" ]; then
  echo "nixpool keys-command: cannot reach $dir as $(id -un 2>/dev/null || echo this user)" >&2; exit 1
fi
[ -e "$dir/$file" ] || exit 0
{
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\\n' "$line"
  done
} <"$dir/$file" || exit 1
`;
}
