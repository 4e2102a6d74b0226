/** Nix's `nix-store --serve` protocol (Nix 2.8): framing, messages, NAR and export-stream scanners. */
export * from "./wire.js";
export * from "./incremental-decoder.js";
export * from "./handshake.js";
export * from "./messages.js";
export * from "./build.js";
export * from "./nar.js";
export * from "./export-stream.js";
export * from "./close-reason.js";
export * from "./server.js";
export * from "./realisation.js";
