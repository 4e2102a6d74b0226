#!/usr/bin/env bash
# Makes a fresh Debian 12 machine ready for nixpool and its tests: installs the Debian packages
# that are missing, then creates the Nix state a plain `nix-bin` install lacks. Safe to re-run.
set -euo pipefail
# g++, make, python3: npm ci compiles better-sqlite3 (the coordinator's history) from source.
# sudo: deploy tests log in to targets as a non-root user and run its commands through sudo -n.
# python3-hcloud: Hetzner's official Python client, tested against the emulator as the hcloud CLI is.
# git: Nix fetches a flake inside a git checkout (and git+file:// inputs) with git.
# postgresql: the coordinator's shared database when several coordinators run; tests start their
# own server in a temporary directory with initdb and pg_ctl (no system cluster is used).
pkgs=(nix-bin openssh-server openssh-client iproute2 procps util-linux hcloud-cli python3-hcloud cloud-init chromium g++ make python3 sudo git postgresql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: not root: Nix build users and /nix/var/nix/daemon-socket are left as they are" >&2
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# What Debian's nix-setup-systemd (a Recommends that pulls in systemd) would create, without its
# units: Nix's default build-users-group is nixbld, and every Nix command warns while it is
# missing; the daemon needs its socket directory; Debian's nix.conf turns the sandbox off.
getent group nix-users >/dev/null || groupadd --system nix-users
getent group nixbld >/dev/null || groupadd --system nixbld
nologin=$(command -v nologin || echo /usr/sbin/nologin)
for n in $(seq 1 10); do
  id "nixbld$n" >/dev/null 2>&1 ||
    useradd --system --comment "Nix build user $n" --home-dir /var/empty --gid nixbld \
      --groups nixbld --no-user-group --shell "$nologin" "nixbld$n"
done
# Directories are created with their mode when missing; existing ones are left as they are.
ensure_dir() { [ -d "$3" ] || install -d -m "$1" -o root -g "$2" "$3"; }
mkdir -p /nix/var/nix /etc/nix
ensure_dir 0770 nix-users /nix/var/nix/daemon-socket
ensure_dir 1777 root /nix/var/nix/gcroots/per-user
ensure_dir 1777 root /nix/var/nix/profiles/per-user
if [ ! -e /etc/nix/nix.conf ]; then
  printf '%s\n' "# Written by nixpool's scripts/install-deps.sh, as Debian's nix-setup-systemd ships it." \
    "sandbox = false" >/etc/nix/nix.conf
fi
mkdir -p /run/sshd
