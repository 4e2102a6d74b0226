import { z } from "zod";
import type { Derivation } from "../core/derivation.js";
import type { BasicDerivation } from "../core/nix-serve/build.js";

/**
 * A derivation given by value rather than by a .drv file in the coordinator's store: what the
 * gateway receives from Nix's build hook (BuildDerivation carries a BasicDerivation and the
 * .drv's path, never the file). Its inputs are all sources (the input derivations' outputs are
 * in inputSrcs), so it is a graph of one node, dispatched with BuildDerivation as it is.
 */
export interface GivenDerivationJson {
  outputs: Record<string, { path: string; hashAlgo: string; hash: string }>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
}

const STORE_PATH = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]{1,211}$/;
const storePath = z.string().regex(STORE_PATH, "is not a store path");

/** The JSON form, checked as strictly as the serve codec checks the bytes. */
export const GivenDerivationSchema = z.strictObject({
  outputs: z
    .record(
      z.string().regex(/^[A-Za-z0-9+._?=-]{1,64}$/, "is not an output name"),
      z.strictObject({
        path: storePath,
        hashAlgo: z.string().max(32),
        hash: z.string().max(256),
      }),
    )
    .refine((o) => Object.keys(o).length > 0, "has no outputs"),
  inputSrcs: z.array(storePath).max(100_000),
  platform: z.string().min(1).max(100),
  builder: z.string().min(1).max(4096),
  args: z.array(z.string().max(1024 * 1024)).max(10_000),
  env: z.record(z.string().max(256 * 1024), z.string().max(16 * 1024 * 1024)),
});

/** The JSON a submit request carries for a BasicDerivation. */
export function toGivenJson(drv: BasicDerivation): GivenDerivationJson {
  return {
    outputs: Object.fromEntries(drv.outputs),
    inputSrcs: [...drv.inputSrcs],
    platform: drv.platform,
    builder: drv.builder,
    args: [...drv.args],
    env: Object.fromEntries(drv.env),
  };
}

/** The derivation the dispatcher loads for a given root: no input derivations, every input a source. */
export function fromGivenJson(j: GivenDerivationJson): Derivation {
  return {
    outputs: new Map(Object.entries(j.outputs)),
    inputDrvs: new Map(),
    inputSrcs: [...j.inputSrcs].sort(),
    platform: j.platform,
    builder: j.builder,
    args: [...j.args],
    env: new Map(Object.entries(j.env)),
  };
}
