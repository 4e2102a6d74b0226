import js from "@eslint/js";
import tseslint from "typescript-eslint";

/** Modules with effects (processes, files, network, clock) that src/core must not import. */
const EFFECT_MODULES = [
  "fs",
  "fs/promises",
  "child_process",
  "net",
  "process",
  "os",
  "http",
  "https",
  "http2",
  "dgram",
  "dns",
  "tls",
  "timers",
  "timers/promises",
  "readline",
  "worker_threads",
  "cluster",
].flatMap((m) => [m, `node:${m}`]);

/** src/core: pure. No effect modules, no effect packages, nothing outside src/core (`depth` = folders below src/core). */
/** @param {number} depth */
function coreLayer(depth) {
  return {
    files: [`src/core/${"*/".repeat(depth)}*.ts`],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [...EFFECT_MODULES, "execa", "@hono/node-server"].map((name) => ({
            name,
            message: "src/core is pure: effects live in src/adapters (see docs/development.md#layers).",
          })),
          patterns: [
            {
              regex: `^(\\.\\./){${depth + 1},}`,
              message: "src/core imports only src/core (see docs/development.md#layers).",
            },
          ],
        },
      ],
      "no-restricted-globals": [
        "error",
        ...["process", "setTimeout", "setInterval", "fetch"].map((name) => ({
          name,
          message: "src/core is pure: pass the value in (env, clock, timers) from the caller.",
        })),
      ],
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "src/core is pure: take the time as an argument." },
      ],
    },
  };
}

/** Only src/commands and src/cli (and src/serve itself) import the coordinator service. */
const SERVE_IS_ABOVE = {
  regex: "^(\\.\\./)+serve/",
  message: "Only commands and the CLI import src/serve (see docs/development.md#layers).",
};

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "src/providers/hetzner/generated/"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ["eslint.config.js"] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            {
              from: "package",
              package: "node:test",
              name: ["test", "describe", "it", "suite", "before", "after"],
            },
          ],
        },
      ],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/restrict-template-expressions": [
        "error",
        { allowNumber: true, allowBoolean: true },
      ],
    },
  },
  {
    // The dashboard's browser script: plain JavaScript served as a file, outside the TypeScript project.
    files: ["src/serve/dashboard/static/**/*.js"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: false, program: null },
      sourceType: "script",
      globals: Object.fromEntries(
        [
          "addEventListener",
          "console",
          "document",
          "DOMParser",
          "EventSource",
          "fetch",
          "location",
          "setInterval",
          "setTimeout",
          "clearTimeout",
          "URLSearchParams",
        ].map((name) => [name, "readonly"]),
      ),
    },
  },
  // Layers (docs/development.md#layers): each rule below is a directory's import boundary.
  coreLayer(0),
  coreLayer(1),
  coreLayer(2),
  {
    // A command never imports another command: what two commands share lives below them.
    files: ["src/commands/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^\\./|^\\.\\./commands/",
              message: "Commands do not import other commands: move what they share below src/commands.",
            },
          ],
        },
      ],
    },
  },
  {
    // Effects, providers, the dispatcher and deploy's use cases sit below the commands and the CLI.
    files: ["src/adapters/**/*.ts", "src/providers/**/*.ts", "src/dispatch/**/*.ts", "src/deploy/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^(\\.\\./)+(commands|cli)/",
              message:
                "Adapters, providers and the dispatcher do not import commands or the CLI (see docs/development.md#layers).",
            },
            SERVE_IS_ABOVE,
          ],
        },
      ],
    },
  },
  {
    // The other layers below the coordinator service.
    files: ["src/config/**/*.ts", "src/doctor/**/*.ts", "src/access/**/*.ts", "src/emulator/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [SERVE_IS_ABOVE] }] },
  },
  {
    // The coordinator service (nixpool serve) sits below the commands and the CLI only.
    files: ["src/serve/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^(\\.\\./)+(commands|cli)/",
              message: "src/serve does not import commands or the CLI (see docs/development.md#layers).",
            },
          ],
        },
      ],
    },
  },
);
