# A dependency chain that needs nothing but builtins: step i reads step i-1 and adds one,
# so the steps must build in order and every result must be copied between builders.
#   nixpool build examples/chain.nix --arg length 5 --argstr seed "$(date +%s)"
# The final output holds the number `length`.
{ length ? 5, sleep ? "0.2", seed ? "" }:
let
  step = i: builtins.derivation ({
    name = "chain-${toString i}";
    inherit seed;
    system = builtins.currentSystem;
    builder = "/bin/sh";
  } // (if i == 0 then {
    args = [ "-c" "/bin/sleep ${sleep}; echo 0 > $out" ];
  } else {
    prev = step (i - 1);
    args = [ "-c" "/bin/sleep ${sleep}; read x < \"$prev\"; echo $((x + 1)) > $out" ];
  }));
in
step length
