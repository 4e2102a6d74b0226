import { AUTOSCALE_DEFAULTS, type AutoscaleConfig } from "../../src/core/autoscale/config.js";
import { createLocalBooter } from "../../src/emulator/hetzner/local-booter.js";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import type { EmulatorTiming } from "../../src/emulator/hetzner/state.js";
import { TEST_TOKEN } from "./hetzner-emulator.js";

// What the autoscaling tests share: the Hetzner emulator whose servers boot as real builder hosts,
// and the autoscaler's settings for a test.

/** The emulator with fast timings, its servers booting as real hosts under `hostsDir`. */
export function startBootingEmulator(
  hostsDir: string,
  timing: Partial<EmulatorTiming> = {},
): Promise<RunningEmulator> {
  return startHetznerEmulator({
    tokens: [TEST_TOKEN],
    booter: createLocalBooter(hostsDir),
    timing: { createMs: 300, bootMs: 200, deleteMs: 200, ...timing },
  });
}

/** The emulator's API for nixpool and the official clients. */
export function emulatorEnv(emu: RunningEmulator): Record<string, string> {
  return { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: TEST_TOKEN };
}

/** At most one worker, rented at once for waiting work, ticks every 200 ms, no budget; then `over`. */
export function testAutoscaleConfig(over: Partial<AutoscaleConfig> = {}): AutoscaleConfig {
  return {
    ...AUTOSCALE_DEFAULTS,
    maxWorkers: 1,
    scaleUpAfterMs: 0,
    intervalMs: 200,
    bootTimeoutMs: 120_000,
    budget: {},
    ...over,
  };
}
