# A flake that needs nothing but builtins (no nixpkgs, no network), to try nixpool with flakes:
#   nixpool build ./examples/flake#graph      # a graph of 12 leaves and a root, on the pool
#   nixpool build ./examples/flake            # the default package
#   nixpool check ./examples/flake            # every check built on the pool, a table of results
#   nixpool build ./examples/flake#checks.x86_64-linux   # a set: every derivation in it
#   nixpool build ./examples/flake#hydraJobs  # a nested set, every system's jobs (needs builders of each)
# `seed` below changes every store path: edit it for a fresh build instead of a cached one.
{
  description = "nixpool's example flake: packages, checks and hydraJobs made of builtins only";

  outputs = { self }:
    let
      seed = "example";
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      mk = system: name: script: extra: builtins.derivation ({
        inherit name system seed;
        # PATH is empty inside a build: use absolute paths and shell builtins.
        builder = "/bin/sh";
        args = [ "-c" script ];
      } // extra);
      graph = system:
        let leaf = i: mk system "leaf-${toString i}" "/bin/sleep 0.5; echo leaf-${toString i} > $out" { };
        in mk system "graph-root" ''
          for l in $leaves; do read x < "$l"; echo "$x"; done > $out
        '' { leaves = builtins.genList leaf 12; };
    in
    {
      packages = forAllSystems (system: {
        graph = graph system;
        hello = mk system "hello" "echo hello > $out" { };
        default = self.packages.${system}.hello;
      });

      # nixpool check builds these (and evaluates the packages), as nix flake check does.
      checks = forAllSystems (system: {
        hello-says-hello = mk system "check-hello" ''
          read x < ${self.packages.${system}.hello}
          [ "$x" = hello ] && echo ok > $out
        '' { };
        graph-has-12-leaves = mk system "check-graph" ''
          n=0; while read l; do n=$((n + 1)); done < ${self.packages.${system}.graph}
          [ "$n" = 12 ] && echo ok > $out
        '' { };
      });

      # Hydra's jobs: nested sets are followed all the way down.
      hydraJobs = {
        hello = forAllSystems (system: self.packages.${system}.hello);
        graph = forAllSystems (system: self.packages.${system}.graph);
      };
    };
}
