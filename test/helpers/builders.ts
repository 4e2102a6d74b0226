import type { Builder } from "../../src/core/builder.js";

/** A valid ed25519 public key for fixtures. */
export const SAMPLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";

/** A normalised builder with Nix's defaults (ssh-ng, one job, no key), overridable per test. */
export function sampleBuilder(over: Partial<Builder> = {}): Builder {
  return {
    name: "b1",
    host: "10.0.0.1",
    port: 22,
    user: undefined,
    protocol: "ssh-ng",
    systems: ["x86_64-linux"],
    maxJobs: 1,
    speedFactor: 1,
    supportedFeatures: [],
    mandatoryFeatures: [],
    hostKey: undefined,
    identityFile: undefined,
    tags: [],
    trust: "trusted",
    source: "inventory",
    ...over,
  };
}
