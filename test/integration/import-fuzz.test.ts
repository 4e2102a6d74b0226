import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { localSystem } from "../../src/config/load.js";
import { parseInventory } from "../../src/config/inventory-parse.js";
import { normaliseBuilders } from "../../src/config/schema.js";
import { renderInventoryToml } from "../../src/core/inventory-render.js";
import { renderMachinesFile } from "../../src/core/machines.js";
import { planImport } from "../../src/core/machines-import-plan.js";
import { parseMachinesFile } from "../../src/core/machines-parse.js";
import { makeTempDir } from "../helpers/cli.js";
import { randomMachinesFile } from "../helpers/machines-corpus.js";
import { formatAsNix, nixParseMachines } from "../helpers/nix-machines.js";

const SYSTEM = localSystem();
const noIncludes = () => Promise.resolve({ kind: "missing" as const });
// Problems Nix 2.8 itself stops at (a host key that is base64 but no key is nixpool's own check).
const NIX_FATAL = new Set(["MACHINES_NO_URI", "MACHINES_BAD_NUMBER", "MACHINES_BAD_BASE64"]);
const SEEDS = 40;
// Where each seed's checks ended: a corpus of only broken files would test nothing after
// parsing, so the round trip must keep being reached (today 18 seeds; 22 are refused by Nix).
const MIN_ROUND_TRIPS = 18;

describe("nixpool's machines parser agrees with Nix 2.8 on generated files", { concurrency: 4 }, () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    tmp = await makeTempDir("nixpool-import-fuzz-");
  });
  const reached = { nixRefused: 0, nixpoolRefused: 0, roundTrip: 0 };
  after(async () => {
    await tmp.cleanup();
  });
  after(() => {
    assert.equal(
      reached.nixRefused + reached.nixpoolRefused + reached.roundTrip,
      SEEDS,
      JSON.stringify(reached),
    );
    assert.ok(
      reached.roundTrip >= MIN_ROUND_TRIPS,
      `only ${reached.roundTrip} of ${SEEDS} seeds reached the round trip: ${JSON.stringify(reached)}`,
    );
    assert.ok(reached.nixRefused >= 1, `no seed made a file Nix refuses: ${JSON.stringify(reached)}`);
  });

  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`seed ${seed}: same verdict, same machines, and the round trip is equivalent`, async () => {
      const text = randomMachinesFile(seed, { invalid: true });
      const file = join(tmp.dir, `m${seed}`);
      await writeFile(file, text);
      const ours = await parseMachinesFile(file, text, { read: noIncludes });
      const nix = await nixParseMachines(file);
      const fatal = ours.diagnostics.filter((d) => NIX_FATAL.has(d.code));
      assert.equal(nix.ok, fatal.length === 0, `${JSON.stringify(text)}: ${nix.ok ? "" : nix.error}`);
      if (!nix.ok) return void reached.nixRefused++;
      assert.deepEqual(
        nix.machines,
        ours.machines.map((m) => formatAsNix(m, SYSTEM)),
        JSON.stringify(text),
      );
      if (ours.diagnostics.some((d) => d.severity === "error")) return void reached.nixpoolRefused++;

      const plan = planImport(ours);
      const builders = normaliseBuilders(
        parseInventory(renderInventoryToml(plan.builders), "nixpool.toml"),
        SYSTEM,
      );
      const rendered = renderMachinesFile(builders, { uriStyle: "direct" });
      const renderedFile = join(tmp.dir, `r${seed}`);
      await writeFile(renderedFile, rendered);
      const nixRendered = await nixParseMachines(renderedFile);
      assert.ok(nixRendered.ok);
      const renderedParsed = await parseMachinesFile(renderedFile, rendered, { read: noIncludes });
      assert.deepEqual(
        nixRendered.machines,
        renderedParsed.machines.map((m) => formatAsNix(m, SYSTEM)),
      );
      assert.equal(nixRendered.machines.length, plan.builders.length);
      // What Nix matches derivations against is unchanged for every imported machine.
      for (const [i, b] of plan.builders.entries()) {
        const before = b.machine;
        const after = renderedParsed.machines[i];
        assert.ok(after);
        assert.deepEqual(after.systems ?? [SYSTEM], before.systems ?? [SYSTEM]);
        assert.equal(after.maxJobs, before.maxJobs);
        assert.deepEqual(
          after.supportedFeatures,
          [...new Set([...before.supportedFeatures, ...before.mandatoryFeatures])].sort(),
        );
        assert.deepEqual(after.mandatoryFeatures, before.mandatoryFeatures);
        assert.equal(after.storeUri, before.storeUri);
      }
      reached.roundTrip++;
    });
  }
});
