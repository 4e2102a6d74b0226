import type { Command } from "commander";
import type { Context } from "./context.js";
import { registerBuilders } from "../commands/builders.js";
import { registerLocal } from "../commands/local.js";
import { registerBuild } from "../commands/build.js";
import { registerEmulator } from "../commands/emulator.js";
import { registerWorker } from "../commands/worker.js";
import { registerConfig } from "../commands/config.js";
import { registerImport } from "../commands/import.js";
import { registerAccess } from "../commands/access.js";
import { registerCa } from "../commands/ca.js";
import { registerDoctor } from "../commands/doctor.js";

/** A command module adds its subcommands to the program. */
export type RegisterCommands = (program: Command, context: () => Context) => void;

/** Every command module; each owns one file in src/commands/. */
export const commandModules: RegisterCommands[] = [
  registerBuilders,
  registerLocal,
  registerBuild,
  registerEmulator,
  registerWorker,
  registerConfig,
  registerImport,
  registerAccess,
  registerCa,
  registerDoctor,
];
