#!/bin/sh
# sshd's forced command for a gateway client: greet.sh NODE MAIN.js --state-dir DIR --client NAME
# Nix's main loop waits for each build hook's connection, the server's greeting included, one
# derivation after the other. This writes the serve protocol's greeting (magic 0x5452eecb, then
# version 2.7, as two little-endian 64-bit words) at once, before node starts, and then runs the
# gateway, which reads the client's greeting from the pipe and goes on (docs/gateway.md).
printf '\313\356\122\124\0\0\0\0\7\2\0\0\0\0\0\0'
exec "$@" --greeted
