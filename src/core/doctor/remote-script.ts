/**
 * The POSIX sh script the doctor feeds to one SSH session on a builder (`ssh … sh -s`).
 * It runs in the same non-interactive environment as Nix's own remote commands, so what
 * `command -v nix-daemon` finds here is what `ssh-ng://` finds. parseRemoteFacts reads it.
 */
export const REMOTE_FACTS_SCRIPT = `
echo "@@user $(id -un 2>/dev/null)"
echo "@@uid $(id -u 2>/dev/null)"
echo "@@groups $(id -Gn 2>/dev/null)"
echo "@@nproc $(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
echo "@@date $(date +%s)"
echo "@@nix-remote \${NIX_REMOTE-}"
echo "@@path $PATH"
for c in nix-store nix-daemon nix; do echo "@@which $c $(command -v $c 2>/dev/null)"; done
echo "@@nix-version $(nix-store --version 2>/dev/null)"
if [ -e /nix/var/nix/daemon-socket/socket ] || [ -L /nix/var/nix/daemon-socket/socket ]; then echo "@@daemon-socket yes"; fi
if [ -r /nix/var/nix ] && [ -w /nix/var/nix ]; then echo "@@state-writable yes"; fi
echo "@@store-owner $(stat -c %U /nix/store 2>/dev/null)"
echo "@@df $(df -Pk /nix/store 2>/dev/null | tail -n 1)"
echo "@@config-begin"
nix --extra-experimental-features nix-command show-config --json 2>/dev/null
echo
echo "@@config-end"
`;
