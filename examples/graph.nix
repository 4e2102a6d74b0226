# A graph of many small derivations that needs nothing but builtins (no nixpkgs):
# N independent leaves that each sleep, plus one root that depends on all of them.
#   nixpool build examples/graph.nix --arg n 40 --argstr sleep 0.5 --argstr seed "$(date +%s)"
# `seed` changes every store path, so a new seed means a fresh build instead of a cached one.
{ n ? 12, sleep ? "0.5", seed ? "" }:
let
  mk = name: script: extra: builtins.derivation ({
    inherit name seed;
    system = builtins.currentSystem;
    # PATH is empty inside a build: use absolute paths and shell builtins.
    builder = "/bin/sh";
    args = [ "-c" script ];
  } // extra);
  leaf = i: mk "leaf-${toString i}" "/bin/sleep ${sleep}; echo leaf-${toString i} > $out" { };
  leaves = builtins.genList leaf n;
in
mk "graph-root" ''
  for l in $leaves; do read x < "$l"; echo "$x"; done > $out
'' { inherit leaves; }
